"""LabelBank: the serving copy of a label store, uncompressed and memory-mapped.

``<cache>/<content hash>/`` holds ``scores.npy`` (float16 or float32 [N, H, W, K], as in the store),
``classes.npy`` (int16 or int32 [N, H, W, K]), ``labels.npy`` (int32 [N]) — plain C-order ``.npy`` files, so the
``fn.relabel.lookup`` operator (and anything else) can map them — plus ``keys.json`` and
``bank.json`` (format, geometry, dtypes, content hash, annotator, class names).

A bank is created once per machine and shared: the directory name is the store's
:meth:`~dali_relabel.store.LabelStore.content_hash` and the bank format version (:func:`bank_name`); the one process that builds it holds a file
lock and writes into a temporary directory renamed into place when complete, so N ranks asking
at once end with one intact copy (in ``/dev/shm`` by default: one copy of RAM per node) that all
of them map. A bank directory that exists is always complete.

Environment variable: ``DALI_RELABEL_BANK_DIR`` — where banks live (overrides the default choice).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sys
import time
import uuid
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import BankError, BankNotFoundError, InvalidArgument, StoreDamagedError, storage_error
from ..fs import atomic_directory, cache_root, file_lock

if TYPE_CHECKING:
    from .label_store import LabelStore

BANK_FORMAT = "dali_relabel.bank"
# Version 2: read-only files, per-file sizes and digests in bank.json (checked at open, in full by verify).
BANK_VERSION = 2
ENV_BANK_DIR = "DALI_RELABEL_BANK_DIR"
SHM_DIR = Path("/dev/shm/dali_relabel")
# /dev/shm is RAM: leave this much (and 10%) free beyond the bank before choosing it.
_SHM_MARGIN_BYTES = 512 << 20
DATA_FILES = ("scores.npy", "classes.npy", "labels.npy", "keys.json")
MAPPED_FILES = ("scores.npy", "classes.npy", "labels.npy")
# The cheap check at open: each file's size and a digest of this many windows spread over it.
SAMPLE_WINDOWS, SAMPLE_WINDOW_BYTES = 64, 4096
INTEGRITY_RULE = (f"files: per data file its size, 'blake2b' (BLAKE2b-128 of the whole file) and 'sampled' "
                  f"(BLAKE2b-128 of the size as 8 little-endian bytes followed by {SAMPLE_WINDOWS} windows of "
                  f"{SAMPLE_WINDOW_BYTES} bytes at offsets round(i * (size - {SAMPLE_WINDOW_BYTES}) / "
                  f"{SAMPLE_WINDOWS - 1}), i < {SAMPLE_WINDOWS}, clipped to the file)")
_REBUILD = "LabelStore.materialize() rebuilds it (delete it by hand if it keeps failing)"


class LabelBank:
    """A materialized bank, memory-mapped read-only.

    Attributes:
        path: the bank directory.
        num_samples, height, width, k, num_classes: geometry.
        scores: np.memmap float16 or float32 [N, H, W, K] (the store's scores dtype).
        classes: np.memmap int16/int32 [N, H, W, K].
        labels: np.memmap int32 [N].
        meta: the parsed ``bank.json``.
    """

    def __init__(self, path: Path, meta: dict, scores: np.ndarray, classes: np.ndarray, labels: np.ndarray,
                 handles: dict | None = None):
        self.path, self.meta = path, meta
        self.num_samples: int = meta["num_samples"]
        self.height: int = meta["height"]
        self.width: int = meta["width"]
        self.k: int = meta["k"]
        self.num_classes: int = meta["num_classes"]
        self.scores, self.classes, self.labels = scores, classes, labels
        self.scores_dtype: str = "float32" if scores.dtype == np.float32 else "float16"
        self._keys: list[str] | None = None
        # Open handles on the mapped files: their size, seen through the handle, is what the mappings see.
        self._handles = handles or {}

    @classmethod
    def open(cls, path, *, check: str = "sampled") -> LabelBank:
        """Maps an existing bank directory.

        Args:
            path: the bank directory.
            check: ``"sampled"`` (default): each file's size and a digest of 64 windows of it (about 1 MiB read)
                against ``bank.json``; ``"full"``: the digest of every byte (as ``verify`` does); ``"none"``.

        Raises:
            BankNotFoundError (FileNotFoundError): no bank there.
            BankError (ValueError): the directory is not a bank of a supported version, or its files are missing,
                damaged or modified (the message names the file and the bank).
        """
        if check not in ("sampled", "full", "none"):
            raise InvalidArgument("check", check, "must be 'sampled', 'full' or 'none'", where="LabelBank.open")
        path = Path(path)
        meta = read_bank_meta(path)
        if check != "none":
            problems = check_bank_files(path, meta, full=check == "full")
            if problems:
                raise BankError(f"LabelBank.open: the bank {path} is damaged: {problems[0]}"
                                + (f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else "")
                                + f"; {_REBUILD}", path=path)
        try:
            shape = (int(meta["num_samples"]), int(meta["height"]), int(meta["width"]), int(meta["k"]))
            dtypes = {"scores": meta.get("scores_dtype", "<f2"), "classes": meta["classes_dtype"], "labels": "<i4"}
        except (KeyError, TypeError, ValueError) as e:
            raise BankError(f"LabelBank.open: {path / 'bank.json'} lacks or garbles {e}; the bank is damaged; "
                            f"{_REBUILD}", path=path) from None
        if dtypes["scores"] not in ("<f2", "<f4"):
            raise BankError(f"LabelBank.open: {path / 'bank.json'} says scores_dtype {dtypes['scores']!r}; a bank "
                            f"holds float16 ('<f2') or float32 ('<f4') scores; {_REBUILD}", path=path)
        arrays, handles = {}, {}
        for name, want in (("scores", shape), ("classes", shape), ("labels", shape[:1])):
            file = path / f"{name}.npy"
            try:
                handles[file.name] = open(file, "rb")
                arr = np.load(file, mmap_mode="r")
            except (OSError, ValueError, EOFError) as e:
                raise BankError(f"LabelBank.open: {file} cannot be mapped ({type(e).__name__}: {e}); the bank is "
                                f"damaged; {_REBUILD}", path=path) from None
            if arr.shape != want or arr.dtype != np.dtype(dtypes[name]) or not arr.flags.c_contiguous:
                raise BankError(f"LabelBank.open: {file} holds {arr.dtype} {arr.shape}, bank.json says "
                                f"{np.dtype(dtypes[name])} {want}: the bank is damaged; delete {path} and materialize "
                                f"again", path=path)
            arrays[name] = arr
        return cls(path, meta, arrays["scores"], arrays["classes"], arrays["labels"], handles)

    @property
    def keys(self) -> list[str]:
        """The store's keys (image paths), row order."""
        if self._keys is None:
            try:
                self._keys = json.loads((self.path / "keys.json").read_text())
            except (OSError, ValueError) as e:
                raise BankError(f"LabelBank.keys: {self.path / 'keys.json'} cannot be read ({type(e).__name__}: "
                                f"{e}); the bank is damaged; {_REBUILD}", path=self.path) from None
        return self._keys

    def check_files(self) -> None:
        """Cheap (a few ``fstat`` calls): raises :class:`BankError` if a mapped file shrank under this process.

        A file truncated in place while it is mapped makes the next read of its lost pages kill the process
        with SIGBUS; the loader calls this at the start of every epoch to turn that into a clear error where it
        can be seen coming. (Files replaced by a new file, e.g. a rebuild, do not matter: the mapping keeps
        the old one.)
        """
        files = self.meta.get("files") or {}
        for name, handle in self._handles.items():
            want = (files.get(name) or {}).get("size")
            try:
                have = os.fstat(handle.fileno()).st_size
            except (OSError, ValueError):
                continue
            if want is not None and have < want:
                raise BankError(f"the bank file {self.path / name} shrank from {want} to {have} bytes while this "
                                f"process maps it: the read-only bank was truncated or rewritten in place, and "
                                f"reading it now would crash the process (SIGBUS). Stop the job and restart it: "
                                f"{_REBUILD}", path=self.path)

    def verify(self) -> list[str]:
        """Every problem of the bank's files against ``bank.json`` (full digests: reads every byte); [] if none."""
        return check_bank_files(self.path, self.meta, full=True)

    def close(self) -> None:
        """Closes the handles kept for :meth:`check_files` (the mappings stay valid while referenced)."""
        for handle in self._handles.values():
            handle.close()
        self._handles = {}

    def __len__(self) -> int:
        return self.num_samples

    def __repr__(self) -> str:
        return (f"LabelBank({str(self.path)!r}, N={self.num_samples}, H={self.height}, W={self.width}, K={self.k}, "
                f"C={self.num_classes}, scores={self.scores_dtype})")


def read_bank_meta(path: Path) -> dict:
    """The parsed ``bank.json`` of a bank directory of this version.

    Raises:
        BankNotFoundError: no bank.json. BankError: unparsable, or another format or version.
    """
    meta_path = Path(path) / "bank.json"
    if not meta_path.is_file():
        raise BankNotFoundError(f"LabelBank.open: {path} is not a label bank (no bank.json)")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as e:
        raise BankError(f"LabelBank.open: {meta_path} cannot be parsed ({type(e).__name__}: {e}): the bank is "
                        f"damaged; {_REBUILD}", path=path) from None
    if not isinstance(meta, dict) or meta.get("format") != BANK_FORMAT or meta.get("version") != BANK_VERSION:
        got = (meta.get("format"), meta.get("version")) if isinstance(meta, dict) else (None, None)
        raise BankError(f"LabelBank.open: {meta_path} is format {got[0]!r} version {got[1]!r}; expected "
                        f"{BANK_FORMAT!r} version {BANK_VERSION}: {_REBUILD}", path=path)
    return meta


def check_bank_files(path: Path, meta: dict, *, full: bool) -> list[str]:
    """Problems of a bank's files against the sizes and digests recorded in ``bank.json`` (messages name them)."""
    files = meta.get("files")
    if not isinstance(files, dict) or set(files) != set(DATA_FILES):
        return [f"{Path(path) / 'bank.json'} does not record the files' sizes and digests"]
    problems = []
    for name in DATA_FILES:
        file, want = Path(path) / name, files[name]
        try:
            size = file.stat().st_size
        except OSError as e:
            problems.append(f"{file} is missing or unreadable ({e.strerror})")
            continue
        if size != want.get("size"):
            problems.append(f"{file} has {size} bytes, bank.json records {want.get('size')} (truncated or replaced)")
            continue
        kind = "blake2b" if full else "sampled"
        try:
            digest = file_digest(file) if full else sampled_digest(file)
        except OSError as e:
            problems.append(f"{file} cannot be read ({e.strerror})")
            continue
        if digest != want.get(kind):
            problems.append(f"{file} does not match its recorded {'digest' if full else 'sampled digest'} "
                            f"(modified after it was built)")
    return problems


def file_digest(path: Path) -> str:
    """BLAKE2b-128 hex of a whole file."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def sampled_digest(path: Path) -> str:
    """BLAKE2b-128 hex of a file's size and of :data:`SAMPLE_WINDOWS` windows spread over it (see
    :data:`INTEGRITY_RULE`): catches truncation, replacement and most rewrites for ~1 MiB of reading."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        h.update(size.to_bytes(8, "little"))
        span = max(size - SAMPLE_WINDOW_BYTES, 0)
        for i in range(SAMPLE_WINDOWS):
            f.seek(round(i * span / (SAMPLE_WINDOWS - 1)))
            h.update(f.read(SAMPLE_WINDOW_BYTES))
    return h.hexdigest()


def bank_nbytes(store: LabelStore) -> int:
    """Bytes a store's bank takes (data files; headers and keys are small)."""
    cells = store.num_samples * store.height * store.width * store.k
    return cells * (store.scores_numpy_dtype.itemsize + store.class_dtype.itemsize) + 4 * store.num_samples


def default_bank_dirs() -> list[Path]:
    """Where banks are looked for, in order: ``$DALI_RELABEL_BANK_DIR`` alone if set, else /dev/shm then the
    user cache dir."""
    env = os.environ.get(ENV_BANK_DIR)
    if env:
        return [Path(env).expanduser()]

    dirs = [SHM_DIR] if SHM_DIR.parent.is_dir() and os.access(SHM_DIR.parent, os.W_OK) else []
    return dirs + [cache_root() / "banks"]


def store_source(store: LabelStore) -> str:
    """Where a store lives, canonically (``host:absolute path`` for local stores, else the URL): banks record it,
    so that a store's banks of other contents (older versions of it) can be found and removed. The host is part of
    it because a cache shared by machines may see the same local path hold different stores."""
    url = str(store.url)
    local = url[len("file://"):] if url.startswith("file://") else url
    return url if "://" in local else f"{socket.gethostname()}:{Path(local).expanduser().resolve()}"


def materialize_store(store: LabelStore, cache_dir=None, *, progress: bool = True) -> LabelBank:
    """Finds or builds the bank of a complete store (see :meth:`LabelStore.materialize`).

    An existing bank is checked (sizes and sampled digests); one that fails is rebuilt in place, with a warning.
    Banks made from earlier contents of the same store are removed afterwards (processes mapping them keep their
    mapping: the files disappear when the last one closes).
    """
    problem = store.identity_problem()
    if problem is not None:
        raise StoreDamagedError(f"materialize: {store.url}: {problem}; run `dali-relabel verify {store.url}`",
                                url=store.url)
    key = bank_name(store)  # also checks completeness
    candidates = [Path(cache_dir).expanduser()] if cache_dir is not None else default_bank_dirs()
    for d in candidates:
        if d.exists() and not d.is_dir():
            raise InvalidArgument("cache_dir", str(d), "is a file, not a directory of banks", where="materialize")
    existing, _ = _find(candidates, key)
    if existing is None:
        # The lock lives in the first candidate whatever the final location, so that ranks deciding at
        # once agree on one builder (and the others then find its result).
        lock_dir = candidates[0]
        try:
            lock_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise storage_error(e, doing=f"create the bank directory {lock_dir}", path=lock_dir) from e
        with file_lock(lock_dir / f".{key}.lock"):
            existing, damaged = _find(candidates, key)  # built by another process while this one waited?
            if existing is None:
                if damaged is not None:
                    warnings.warn(f"dali_relabel: rebuilding the bank {damaged[0]}: {damaged[1]}", stacklevel=3)
                    target = damaged[0].parent
                else:
                    target = _choose_dir(candidates, bank_nbytes(store))
                existing = _build(store, target / key, key, progress)
    remove_stale_banks(candidates, store_source(store), keep=key)
    return existing


def bank_name(store: LabelStore) -> str:
    """The directory name of a store's bank: ``<content hash>.v<bank version>``.

    The bank format version is part of the name so that two installs of different versions sharing one cache
    (``/dev/shm`` is per machine, not per environment) each find their own bank instead of taking the other's for
    a damaged one and rebuilding it in turn.
    """
    return f"{store.content_hash()}.v{BANK_VERSION}"


def _find(candidates: list[Path], key: str) -> tuple[LabelBank | None, tuple[Path, str] | None]:
    """(the bank ``key`` in the first candidate holding an intact one, else None; a damaged one found and why)."""
    damaged = None
    for d in candidates:
        if (d / key).is_dir():
            try:
                return LabelBank.open(d / key), None
            except (BankError, BankNotFoundError) as e:
                damaged = damaged or (d / key, str(e))
    return None, damaged


def remove_stale_banks(candidates: list[Path], source: str, *, keep: str) -> list[Path]:
    """Deletes the banks in ``candidates`` that were built from ``source`` with content other than ``keep``, or by
    an older bank version (upgrade leftovers: ``/dev/shm`` is RAM); a newer version's banks are left alone.

    Skips banks whose lock another process holds (being built or replaced). Returns the removed directories.
    """
    import filelock

    removed = []
    for d in candidates:
        if not d.is_dir():
            continue
        for entry in d.iterdir():
            if entry.name.startswith(".") or entry.name == keep or not (entry / "bank.json").is_file():
                continue
            try:
                meta = json.loads((entry / "bank.json").read_text())
            except (OSError, ValueError):
                continue
            if not isinstance(meta, dict) or meta.get("format") != BANK_FORMAT or meta.get("source_id") != source:
                continue
            version = meta.get("version")
            if not isinstance(version, int) or version > BANK_VERSION:
                continue  # a newer install's bank (installs share the cache): not this one's to judge
            lock = filelock.FileLock(str(d / f".{entry.name}.lock"))
            try:
                lock.acquire(timeout=0)
            except (filelock.Timeout, OSError):
                continue
            try:
                aside = d / f".{entry.name}.stale-{uuid.uuid4().hex[:8]}"
                os.rename(entry, aside)  # atomic: a reader sees the bank or nothing
                shutil.rmtree(aside, ignore_errors=True)
                removed.append(entry)
            except OSError:
                pass
            finally:
                lock.release()
    return removed


def _choose_dir(candidates: list[Path], nbytes: int) -> Path:
    """The first candidate with room for the bank (plus a margin, as /dev/shm is RAM); else the last."""
    for d in candidates[:-1]:
        if _free_bytes(d) >= nbytes * 1.1 + _SHM_MARGIN_BYTES:
            return d
    return candidates[-1]


def _free_bytes(path: Path) -> int:
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        st = os.statvfs(path)
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize


def _write_header(f, dtype: str, shape: tuple[int, ...]) -> None:
    np.lib.format.write_array_header_1_0(f, {"descr": np.dtype(dtype).str, "fortran_order": False,
                                             "shape": tuple(int(s) for s in shape)})


class _HashingWriter:
    """A binary file that hashes what is written to it (the bank's full digests cost no second pass)."""

    def __init__(self, f):
        self.f, self.hash = f, hashlib.blake2b(digest_size=16)

    def write(self, data) -> int:
        self.hash.update(data)
        return self.f.write(data)


def _build(store: LabelStore, final: Path, key: str, progress: bool) -> LabelBank:
    """Decompresses block by block into a temp dir (RAM use: one block), checks each block's digest, renames.

    Durable before visible: every file and the directory are fsynced before the rename, so a machine
    crash cannot leave a bank directory that exists but is incomplete. The files are made read-only.
    """
    try:
        return _build_files(store, final, key, progress)
    except OSError as e:
        raise storage_error(e, doing=f"build the bank {final} of {store.url}", path=final.parent,
                            then=f"or set {ENV_BANK_DIR} to a directory with room for {bank_nbytes(store):,} bytes"
                            ) from e


def _build_files(store: LabelStore, final: Path, key: str, progress: bool) -> LabelBank:
    from tqdm import tqdm

    # An existing directory here failed its check (or lacks bank.json): it is replaced.
    with atomic_directory(final, durable=True, replace=final.exists()) as tmp:
        shape = (store.num_samples, store.height, store.width, store.k)
        started = time.perf_counter()
        files = {}
        with open(tmp / "scores.npy", "wb") as raw_s, open(tmp / "classes.npy", "wb") as raw_c:
            fs, fc = _HashingWriter(raw_s), _HashingWriter(raw_c)
            _write_header(fs, store.scores_numpy_dtype.str, shape)
            _write_header(fc, store.class_dtype.str, shape)
            bar = tqdm(total=store.num_samples, unit="sample", desc=f"materializing {store.url}", disable=not progress,
                       file=sys.stderr)
            for b in range(store.num_blocks):
                scores, classes = store.read_block(b)  # checked against the block's digest (else names the block)
                fs.write(np.ascontiguousarray(scores, store.scores_numpy_dtype).data)
                fc.write(np.ascontiguousarray(classes).data)
                bar.update(scores.shape[0])
            bar.close()
        files["scores.npy"], files["classes.npy"] = fs.hash.hexdigest(), fc.hash.hexdigest()
        np.save(tmp / "labels.npy", np.ascontiguousarray(store.labels, "<i4"))
        (tmp / "keys.json").write_text(json.dumps(store.keys.tolist(), ensure_ascii=False))
        files["labels.npy"], files["keys.json"] = file_digest(tmp / "labels.npy"), file_digest(tmp / "keys.json")
        records = {name: {"size": (tmp / name).stat().st_size, "blake2b": digest, "sampled": sampled_digest(tmp / name)}
                   for name, digest in files.items()}
        meta = {"format": BANK_FORMAT, "version": BANK_VERSION, "num_samples": store.num_samples,
                "height": store.height, "width": store.width, "k": store.k, "num_classes": store.num_classes,
                "scores_dtype": store.scores_numpy_dtype.str, "classes_dtype": store.class_dtype.str,
                "content_hash": store.content_hash(),
                "values": "logits", "source": store.url, "source_id": store_source(store),
                "annotator": store.annotator, "class_names": store.class_names,
                "store_format_version": store.format_version, "files": records, "integrity": INTEGRITY_RULE,
                "materialize_seconds": round(time.perf_counter() - started, 3)}
        (tmp / "bank.json").write_text(json.dumps(meta, indent=1))
        for name in (*DATA_FILES, "bank.json"):
            # Read-only: nothing of ours writes a bank after it is built, and an accidental write (or an
            # editor, or np.save over it) is refused; the directory stays writable so that it can be deleted.
            os.chmod(tmp / name, 0o444)
    return LabelBank.open(final)
