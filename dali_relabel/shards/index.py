"""DALI's webdataset index files: what ``fn.readers.webdataset(index_paths=...)`` reads.

One index per tar archive (the format of DALI's ``wds2idx`` tool, version 1.2)::

    v1.2 <number of samples>
    <ext> <data offset> <size> <member name> [<ext> <data offset> <size> <member name> ...]   (one line per sample)

A sample is the run of consecutive regular members that share a *key*: the member name up to the first dot of
its file name (``n01440764/n01440764_10026.jpeg`` → key ``n01440764/n01440764_10026``, extension ``jpeg``), as
webdataset and DALI split names. Offsets are those of the member's data (a multiple of 512, the tar block).

DALI seeks to each component's offset, so an index may list a tar's samples in any order, some of them only or
some several times: the loaders write such an index per epoch to make DALI read their order
(:mod:`dali_relabel.shards.reading_order`).
"""

from __future__ import annotations

import dataclasses
import os
import tarfile
from pathlib import Path
from typing import Sequence

from ..errors import ShardError

INDEX_VERSION = "v1.2"
READABLE_VERSIONS = ("v1.2",)   # v1.0/v1.1 indexes carry no member names, hence no keys
TAR_BLOCK = 512


@dataclasses.dataclass(frozen=True)
class Component:
    """One member of a sample: its extension (the name after the key's dot), data offset and size in bytes."""

    ext: str
    offset: int
    size: int


@dataclasses.dataclass(frozen=True)
class SampleEntry:
    """One sample of a tar: its key and its members (in tar order)."""

    key: str
    components: tuple[Component, ...]

    def member_name(self, component: Component) -> str:
        return f"{self.key}.{component.ext}"


def split_name(name: str) -> tuple[str, str]:
    """``(key, extension)`` of a member name: split at the first dot of the file name (webdataset's rule)."""
    start = name.rfind("/") + 1
    dot = name.find(".", start)
    return (name, "") if dot < 0 else (name[:dot], name[dot + 1:])


def index_path_for(tar: str | os.PathLike) -> Path:
    """Where DALI's ``wds2idx`` puts a tar's index by default: next to it, the file name up to its first dot
    (after the first character) + ``.idx`` (``train-000000.tar`` → ``train-000000.idx``)."""
    tar = Path(tar)
    name = tar.name
    dot = name.find(".", 1)
    return tar.with_name((name if dot < 0 else name[:dot]) + ".idx")


def scan_tar(tar: str | os.PathLike) -> list[SampleEntry]:
    """The samples of a tar archive, read from its member headers (stdlib ``tarfile``; no data is read).

    Regular members only; members whose file name starts with a dot (hidden) are left out, as DALI does.

    Raises:
        ShardError: not a readable, uncompressed tar (DALI reads members at their offsets: no compression), or a
            truncated or damaged one (the message says where).
    """
    samples: list[SampleEntry] = []
    key, parts = None, []
    try:
        with tarfile.open(tar, mode="r:") as archive:
            for member in archive:
                if not member.isreg():
                    continue
                k, ext = split_name(member.name)
                if not k or k.endswith("/"):
                    continue
                if k != key:
                    if parts:
                        samples.append(SampleEntry(key, tuple(parts)))
                    key, parts = k, []
                parts.append(Component(ext, member.offset_data, member.size))
            # Where the listing stopped: the end-of-archive blocks, or a header tarfile could not read (it stops
            # there silently when that is not the first header).
            stopped = archive.offset
    except tarfile.ReadError as e:
        raise ShardError(_unreadable(Path(tar), e)) from None
    if parts:
        samples.append(SampleEntry(key, tuple(parts)))
    damaged = _first_nonzero_byte(Path(tar), stopped)
    if damaged is not None:
        raise ShardError(f"{tar}: damaged or truncated at byte {damaged} of {Path(tar).stat().st_size}: no valid "
                         f"member header there, so the samples after it cannot be found ({len(samples)} before it); "
                         f"copy the shard again, or write it again (`dali-relabel shard`)")
    return samples


def _unreadable(tar: Path, error: tarfile.ReadError) -> str:
    with open(tar, "rb") as f:
        magic = f.read(6)
    if magic.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"\x28\xb5\x2f\xfd")):
        return (f"{tar}: a compressed tar; webdataset shards for DALI must be plain .tar files (DALI reads members "
                f"at their offsets): decompress it")
    if "unexpected end of data" in str(error):
        return (f"{tar}: truncated: the file ({tar.stat().st_size} bytes) ends inside a member; copy the shard "
                f"again, or write it again (`dali-relabel shard`)")
    return (f"{tar}: not an uncompressed tar archive ({error}); webdataset shards for DALI must be plain .tar files "
            f"(DALI reads members at their offsets)")


def _first_nonzero_byte(path: Path, start: int) -> int | None:
    """The offset of the first non-zero byte of ``path`` from ``start`` on (a tar ends in zero blocks), or None."""
    with open(path, "rb") as f:
        f.seek(start)
        while chunk := f.read(1 << 16):
            stripped = chunk.lstrip(b"\0")
            if stripped:
                return start + len(chunk) - len(stripped)
            start += len(chunk)
    return None


def write_index(path: str | os.PathLike, samples: Sequence[SampleEntry]) -> None:
    """Writes ``samples`` (any order, repeats allowed) as a version 1.2 index file.

    Raises:
        ValueError: no samples (DALI refuses an empty index), or a name DALI's parser would split (whitespace).
    """
    Path(path).write_text(format_index(samples))


def format_index(samples: Sequence[SampleEntry]) -> str:
    """The text of an index file listing ``samples`` (see :func:`write_index`)."""
    if not samples:
        raise ValueError("a webdataset index needs at least one sample")
    lines = [f"{INDEX_VERSION} {len(samples)}\n"]
    for s in samples:
        if any(c.isspace() for c in s.key):
            raise ValueError(f"sample key {s.key!r} contains whitespace, which DALI's index format cannot hold")
        lines.append(" ".join(f"{c.ext} {c.offset} {c.size} {s.key}.{c.ext}" for c in s.components) + "\n")
    return "".join(lines)


def read_index(path: str | os.PathLike) -> list[SampleEntry]:
    """The samples an index file lists, in its order.

    Raises:
        ShardError: not a version 1.2 index (the message says which line is wrong and how to regenerate it).
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            head = f.readline().split()
            if len(head) != 2 or not head[0].startswith("v") or not head[1].isdigit():
                raise ShardError(f"{path}: not a webdataset index (first line must be 'v1.2 <number of samples>')")
            if head[0] not in READABLE_VERSIONS:
                raise ShardError(f"{path}: index version {head[0]} has no member names (keys); regenerate it with "
                                 f"DALI's wds2idx or `dali-relabel shard --index-only`")
            count = int(head[1])
            samples = [_parse_line(path, number, line) for number, line in enumerate(f, start=2)]
    except UnicodeDecodeError:
        raise ShardError(f"{path}: not a webdataset index (not text); delete it (the loader rebuilds it) or "
                         f"regenerate it with DALI's wds2idx") from None
    if len(samples) != count:
        raise ShardError(f"{path}: the header says {count} samples but {len(samples)} lines follow")
    return samples


def _parse_line(path: Path, number: int, line: str) -> SampleEntry:
    fields = line.split()
    if not fields or len(fields) % 4:
        raise ShardError(f"{path}: line {number} is not '<ext> <offset> <size> <name>' groups")
    key, parts = None, []
    for i in range(0, len(fields), 4):
        ext, offset, size, name = fields[i:i + 4]
        k, e = split_name(name)
        if not (offset.isdigit() and size.isdigit()) or int(offset) % TAR_BLOCK or e != ext or key not in (None, k):
            raise ShardError(f"{path}: line {number}: component {fields[i:i + 4]} is malformed (offset a multiple of "
                             f"{TAR_BLOCK}, name '<key>.<ext>' with the sample's key)")
        key = k
        parts.append(Component(ext, int(offset), int(size)))
    return SampleEntry(key, tuple(parts))


__all__ = ["Component", "INDEX_VERSION", "SampleEntry", "format_index", "index_path_for",
           "read_index", "scan_tar", "split_name", "write_index"]
