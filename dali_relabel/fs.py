"""File-system helpers shared by every stage: the cache root, locks, atomic directories, durability.

Several things are built once and then shared by many processes (the compiled plugin, a bank, the
demo dataset, DALI file lists). They all follow one pattern, implemented here once:

    with file_lock(lock):                         # one builder at a time (others wait, then reuse)
        if not complete(final):
            with atomic_directory(final) as tmp:  # build in a private temp dir next to `final` ...
                fill(tmp)                         # ... renamed into place only when complete

so a reader sees either no directory or a complete one, a crashed builder leaves only a temp dir
(removed by the next builder on the same host), and concurrent first users build once.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import uuid
from pathlib import Path
from typing import Callable, Iterator

import filelock

ENV_CACHE = "DALI_RELABEL_CACHE"


def cache_root() -> Path:
    """The user cache directory of dali_relabel (plugin builds, banks, demo data, file lists).

    ``$DALI_RELABEL_CACHE`` if set, else ``$XDG_CACHE_HOME/dali_relabel`` or ``~/.cache/dali_relabel``.
    """
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "dali_relabel"


def fsync_path(path) -> None:
    """Flushes a file's data, or a directory's entries (files created or renamed into it), to stable storage."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Holds an exclusive inter-process lock on ``path`` (created if needed).

    On a file system without locks (some network mounts) it proceeds unlocked: every user of this
    module renames complete results into place, so the worst case is duplicated work, not damage.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(path))
    try:
        lock.acquire()
    except (OSError, NotImplementedError):
        yield
        return
    try:
        yield
    finally:
        lock.release()


def _host() -> str:
    return socket.gethostname().replace("/", "_").replace("-", "_")


def _temp_prefix(final: Path) -> str:
    return f".{final.name}.tmp-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(final: Path) -> None:
    """Deletes temp directories of ``final`` left by dead processes of this host (a crashed builder)."""
    final = Path(final)
    if not final.parent.is_dir():
        return
    prefix = _temp_prefix(final)
    for p in final.parent.glob(prefix + "*"):
        parts = p.name[len(prefix):].split("-")  # host-pid-random
        if len(parts) == 3 and parts[0] == _host() and parts[1].isdigit() and not _pid_alive(int(parts[1])):
            shutil.rmtree(p, ignore_errors=True)


def _fsync_tree(root: Path) -> None:
    for dirpath, _, files in os.walk(root):
        for name in files:
            fsync_path(os.path.join(dirpath, name))
        fsync_path(dirpath)


@contextlib.contextmanager
def atomic_directory(final: Path, *, durable: bool = False, replace: bool = False,
                     exclusive: bool = False) -> Iterator[Path]:
    """Yields an empty temp directory next to ``final``; on success renames it to ``final``.

    Args:
        final: the directory to create. It must not exist (an empty directory is replaced) unless
            ``replace``; if another process created it meanwhile (a lock-less race), the temp copy is
            discarded and ``final`` kept.
        durable: fsync every file and directory before the rename and the parent after it, so a
            machine crash cannot leave a visible but incomplete directory.
        replace: an existing ``final`` is moved aside and deleted (a forced rebuild).
        exclusive: losing that race raises ``FileExistsError`` instead (the caller must know whether
            its own content is the one in place, e.g. a store created with its settings).

    On an exception the temp directory is deleted and ``final`` is untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(final)
    tmp = final.parent / f"{_temp_prefix(final)}{_host()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        if durable:
            _fsync_tree(tmp)
        if replace and final.exists():
            old = final.parent / f"{_temp_prefix(final)}{_host()}-{os.getpid()}-old{uuid.uuid4().hex[:5]}"
            os.rename(final, old)
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.rename(tmp, final)  # atomic: readers see nothing or the complete directory
        except OSError as e:
            if not final.is_dir():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process won the race: its copy is as good
            if exclusive:
                raise FileExistsError(errno.EEXIST, f"another process created it first ({e.strerror})",
                                      str(final)) from None
        if durable:
            fsync_path(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def build_once(final: Path, fill: Callable[[Path], None], *, complete: Callable[[Path], bool],
               lock: Path | None = None, durable: bool = False, force: bool = False) -> bool:
    """Makes ``final`` exist and be complete, building it with ``fill(tmp)`` at most once across processes.

    Args:
        final: the directory to build.
        fill: writes the content into the (empty) temp directory it is given.
        complete: whether a directory holds a complete build (e.g. its marker file exists).
        lock: the lock file (default: ``.<name>.lock`` next to ``final``).
        durable: see :func:`atomic_directory`.
        force: rebuild even if ``final`` is complete.

    Returns:
        True if this call built it, False if it was already there (or built by another process).
    """
    final = Path(final)
    if not force and complete(final):
        return False
    with file_lock(lock or final.parent / f".{final.name}.lock"):
        if not force and complete(final):  # built by another process while this one waited
            return False
        with atomic_directory(final, durable=durable, replace=final.exists()) as tmp:
            fill(tmp)
        return True


def atomic_write_text(path: Path, text: str) -> None:
    """Writes a text file through a temp file and a rename (readers never see a partial file)."""
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Writes a file through a temp file and a rename (readers never see a partial file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{_host()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


__all__ = ["atomic_directory", "atomic_write_bytes", "atomic_write_text", "build_once", "cache_root", "file_lock", "fsync_path",
           "remove_stale_temps"]
