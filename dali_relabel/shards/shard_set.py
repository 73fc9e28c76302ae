"""A set of webdataset shards as the loaders see it: every sample's key, tar, image member and label member.

The samples are listed from DALI's index files (``<shard>.idx`` next to each ``<shard>.tar``, as DALI's
``wds2idx`` and ``dali-relabel shard`` write them); a tar without one is scanned once (its member headers only)
and the index kept in the cache (``$DALI_RELABEL_CACHE/shard_index``). Nothing is decoded here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
from pathlib import Path

import numpy as np

from ..errors import ShardError
from ..fs import atomic_write_bytes, cache_root
from ..image_folder import IMAGE_EXTENSIONS
from .index import INDEX_VERSION, TAR_BLOCK, SampleEntry, format_index, index_path_for, read_index, scan_tar
from .keys import match_sample_keys
from .paths import shard_paths

# The members that hold the image: torchvision's image extensions, in any case (webdataset writes "jpg").
IMAGE_EXTS = tuple(e.lstrip(".") for e in IMAGE_EXTENSIONS)
LABEL_EXT = "cls"   # webdataset's class-index member: the label as ASCII digits


@dataclasses.dataclass
class ShardSet:
    """The samples of some webdataset shards, in stored order (tar by tar, each tar's order).

    Attributes:
        root: what was given (for messages).
        tars: the shard files, in order.
        keys: [N] each sample's key: its ``__key__``, or after :meth:`with_store_keys` the store key it matches.
        sample_keys: [N] each sample's ``__key__`` (its member names up to the extension).
        tar_ids: [N] int32 index into ``tars``.
        image_exts, image_offsets, image_sizes: [N] the image member's extension, data offset and size.
        label_offsets, label_sizes: [N] int64 the ``.cls`` member's (-1 when a sample has none).
        skipped: keys of samples without an image member (left out; reported by the loaders).
    """

    root: str
    tars: list[Path]
    keys: list[str]
    sample_keys: list[str]
    tar_ids: np.ndarray
    image_exts: list[str]
    image_offsets: np.ndarray
    image_sizes: np.ndarray
    label_offsets: np.ndarray
    label_sizes: np.ndarray
    skipped: list[str] = dataclasses.field(default_factory=list)
    _labels: list[int] | None = None

    # What the loaders also read of an image listing: shards have no class folders.
    classes = None
    empty_classes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def open(cls, spec, *, progress: bool = True, damaged: list[str] | None = None) -> ShardSet:
        """The shards ``spec`` names (a directory, ``train-{000000..000127}.tar``, a glob, a wids
        ``shardindex.json``, or a list of those; see :mod:`dali_relabel.shards.paths`).

        Args:
            damaged: None: a damaged tar or index raises. A list: each one's message is appended to it and its
                samples are left out (``verify --shards`` reports every damaged shard, and checks the others).

        Raises:
            ShardsNotFoundError: missing shards. ShardError: damaged, truncated or compressed tars, unreadable or
                stale indexes, no images in the shards.
        """
        tars = shard_paths(spec)
        parts, kept = [], []
        for tar in tars:
            try:
                parts.append(_index_columns(tar, index_file(tar, progress=progress)))
                kept.append(tar)
            except ShardError as e:
                if damaged is None:
                    raise
                damaged.append(str(e))
        keys = [k for p in parts for k in p["key"]]
        if not keys:
            raise ShardError(f"{spec}: the shards hold no image members (extensions {', '.join(IMAGE_EXTS)})"
                             + (f" that could be read ({len(tars) - len(kept)} damaged)" if len(kept) < len(tars)
                                else ""))
        column = lambda name, dtype: np.concatenate([np.asarray(p[name], dtype) for p in parts])  # noqa: E731
        return cls(root=str(spec), tars=kept, keys=list(keys), sample_keys=keys,
                   tar_ids=np.concatenate([np.full(len(p["key"]), t, np.int32) for t, p in enumerate(parts)]),
                   image_exts=[e for p in parts for e in p["ext"]], image_offsets=column("off", np.int64),
                   image_sizes=column("size", np.int64), label_offsets=column("loff", np.int64),
                   label_sizes=column("lsize", np.int64), skipped=[k for p in parts for k in p["skipped"]])

    def with_store_keys(self, store_keys) -> ShardSet:
        """A copy whose ``keys`` are the store keys the samples match (:mod:`dali_relabel.shards.keys`); samples
        that match none keep their ``__key__``.

        Raises:
            ShardError: a sample key matches several store keys, or two samples match the same store key.
        """
        store_keys = list(store_keys)
        rows = match_sample_keys(self.sample_keys, store_keys)
        values, counts = np.unique(rows[rows >= 0], return_counts=True)
        if (counts > 1).any():
            row = int(values[counts > 1][0])
            where = [self.location(i) for i in np.flatnonzero(rows == row)]
            raise ShardError(f"store key {store_keys[row]} is matched by {len(where)} shard samples "
                             f"({', '.join(where[:3])}): an image is in the shards more than once")
        keys = [store_keys[r] if r >= 0 else k for r, k in zip(rows.tolist(), self.sample_keys)]
        return dataclasses.replace(self, keys=keys)

    @property
    def labels(self) -> list[int]:
        """Each sample's class index from its ``.cls`` member (-1 without one); read on first use (one small read
        per sample, in every tar: the loaders ask only when they need them)."""
        if self._labels is None:
            self._labels = self.read_labels(np.arange(len(self))).tolist()
        return self._labels

    def read_labels(self, samples) -> np.ndarray:
        """[len(samples)] int64 class indices of ``samples`` from their ``.cls`` members (-1 without one).

        Raises:
            ShardError: a ``.cls`` member that is not a class index in ASCII digits (the message names it).
        """
        samples = np.asarray(samples, np.int64)
        labels = np.full(len(samples), -1, np.int64)
        have = self.label_offsets[samples] >= 0
        for t in np.unique(self.tar_ids[samples[have]]).tolist():
            where = np.flatnonzero(have & (self.tar_ids[samples] == t))
            fd = os.open(self.tars[t], os.O_RDONLY)
            try:
                for j in where.tolist():
                    i = int(samples[j])
                    raw = os.pread(fd, int(self.label_sizes[i]), int(self.label_offsets[i]))
                    try:
                        labels[j] = int(raw.decode("ascii").strip())
                    except (UnicodeDecodeError, ValueError):
                        raise ShardError(f"{self.tars[t]}: {self.sample_keys[i]}.cls holds {raw[:20]!r}, not a class "
                                         f"index in ASCII digits (webdataset's .cls convention)") from None
            finally:
                os.close(fd)
        return labels

    def member(self, i: int) -> SampleEntry:
        """Sample ``i``'s image member, as an index entry."""
        from .index import Component

        return SampleEntry(self.sample_keys[i], (Component(self.image_exts[i], int(self.image_offsets[i]),
                                                           int(self.image_sizes[i])),))

    def read_image(self, i: int) -> bytes:
        """The encoded image of sample ``i``."""
        with open(self.tars[self.tar_ids[i]], "rb") as f:
            f.seek(int(self.image_offsets[i]))
            return f.read(int(self.image_sizes[i]))

    def location(self, i: int) -> str:
        """``<tar>:<member>`` of sample ``i``'s image, for messages."""
        return f"{self.tars[self.tar_ids[i]]}:{self.sample_keys[i]}.{self.image_exts[i]}"

    def layout_lines(self) -> list[str]:
        """One ``<tar name>\\t<key>`` line per sample: what decides the loaders' epochs over these shards."""
        names = [t.name for t in self.tars]
        return [f"{names[t]}\t{k}" for t, k in zip(self.tar_ids.tolist(), self.keys)]


def index_file(tar: Path, *, progress: bool = True) -> Path:
    """A tar's index file: next to it (DALI's ``wds2idx`` name), or one built once into the cache."""
    index = index_path_for(tar)
    if index.is_file():
        return index
    st = tar.stat()
    ident = f"{tar.resolve()}\0{st.st_size}\0{st.st_mtime_ns}".encode()
    cached = cache_root() / "shard_index" / f"{hashlib.sha256(ident).hexdigest()[:32]}.idx"
    if not cached.is_file():
        if progress:
            print(f"dali_relabel: {tar} has no index file ({index.name}); scanning it once (cached in "
                  f"{cached.parent}; `dali-relabel shard --index-only` writes them next to the shards)",
                  file=sys.stderr)
        samples = scan_tar(tar)
        if not samples:
            raise ShardError(f"{tar}: the tar holds no samples")
        atomic_write_bytes(cached, format_index(samples).encode())
    return cached


def _index_columns(tar: Path, index: Path) -> dict:
    """The image (and ``.cls``) member of every sample ``index`` lists, as columns. A fast path: anything that looks
    wrong is handed to ``index.read_index``, which raises naming the line."""
    cols: dict = {name: [] for name in ("key", "ext", "off", "size", "loff", "lsize", "skipped")}
    try:
        with open(index, encoding="utf-8") as f:
            head = f.readline().split()
            lines = f.read().splitlines()
        ok = len(head) == 2 and head[0] == INDEX_VERSION and head[1].isdigit() and int(head[1]) == len(lines)
        for line in lines if ok else ():
            fields = line.split()
            if not fields or len(fields) % 4:
                ok = False
                break
            image = label = None
            for i in range(0, len(fields), 4):
                low = fields[i].lower()
                if image is None and low in IMAGE_EXTS:
                    image = fields[i:i + 4]
                elif label is None and low == LABEL_EXT:
                    label = fields[i:i + 4]
            first = image or fields[:4]
            key = first[3][:len(first[3]) - len(first[0]) - 1]
            if first[3] != f"{key}.{first[0]}" or (label is not None and label[3] != f"{key}.{label[0]}"):
                ok = False
                break
            if image is None:
                cols["skipped"].append(f"{tar.name}:{key}")
                continue
            cols["key"].append(key)
            cols["ext"].append(image[0])
            cols["off"].append(image[1])
            cols["size"].append(image[2])
            cols["loff"].append(label[1] if label else "-1")
            cols["lsize"].append(label[2] if label else "-1")
        if ok:
            for name in ("off", "size", "loff", "lsize"):
                cols[name] = np.asarray(cols[name] or ["0"][:0], dtype=object).astype(np.int64)
            # (DALI takes each component's extension from the index, so a key with a dot reads fine.)
            ok = not (cols["off"] % TAR_BLOCK).any()
    except (ValueError, UnicodeDecodeError):
        ok = False
    if not ok:
        read_index(index)    # raises, naming the line
        raise ShardError(f"{index}: not a webdataset index DALI reads (regenerate it with DALI's wds2idx)")
    ends = np.maximum(cols["off"] + cols["size"], cols["loff"] + cols["lsize"])
    size = tar.stat().st_size
    if len(ends) and ends.max() > size:
        i = int(np.argmax(ends > size))
        raise ShardError(f"{tar}: member {cols['key'][i]}.{cols['ext'][i]} ends at byte {int(ends[i])} by its index "
                         f"{index.name}, but the tar has {size} bytes: the tar is truncated (copy it again) or the "
                         f"index belongs to another version of it (delete the index: the loader rebuilds it; or "
                         f"DALI's wds2idx, `dali-relabel shard --index-only`)")
    return cols


__all__ = ["IMAGE_EXTS", "LABEL_EXT", "ShardSet", "index_file"]
