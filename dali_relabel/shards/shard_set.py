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

from ..fs import atomic_write_bytes, cache_root
from ..image_folder import IMAGE_EXTENSIONS
from .index import SampleEntry, check_index_fits, format_index, index_path_for, read_index, scan_tar
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
    def open(cls, spec, *, progress: bool = True) -> ShardSet:
        """The shards ``spec`` names (a directory, ``train-{000000..000127}.tar``, a glob, a wids
        ``shardindex.json``, or a list of those; see :mod:`dali_relabel.shards.paths`).

        Raises:
            FileNotFoundError: missing shards. ValueError: unreadable tars or indexes, no images in the shards.
        """
        tars = shard_paths(spec)
        columns: dict[str, list] = {name: [] for name in ("key", "tar", "ext", "off", "size", "loff", "lsize")}
        skipped = []
        for t, tar in enumerate(tars):
            for s in tar_samples(tar, progress=progress):
                image = label = None
                for c in s.components:
                    low = c.ext.lower()
                    if image is None and low in IMAGE_EXTS:
                        image = c
                    elif label is None and low == LABEL_EXT:
                        label = c
                if image is None:
                    skipped.append(f"{tar.name}:{s.key}")
                    continue
                columns["key"].append(s.key)
                columns["tar"].append(t)
                columns["ext"].append(image.ext)
                columns["off"].append(image.offset)
                columns["size"].append(image.size)
                columns["loff"].append(-1 if label is None else label.offset)
                columns["lsize"].append(-1 if label is None else label.size)
        if not columns["key"]:
            raise ValueError(f"{spec}: the shards hold no image members (extensions {', '.join(IMAGE_EXTS)})")
        return cls(root=str(spec), tars=tars, keys=list(columns["key"]), sample_keys=columns["key"],
                   tar_ids=np.asarray(columns["tar"], np.int32), image_exts=columns["ext"],
                   image_offsets=np.asarray(columns["off"], np.int64), image_sizes=np.asarray(columns["size"], np.int64),
                   label_offsets=np.asarray(columns["loff"], np.int64),
                   label_sizes=np.asarray(columns["lsize"], np.int64), skipped=skipped)

    def with_store_keys(self, store_keys) -> ShardSet:
        """A copy whose ``keys`` are the store keys the samples match (:mod:`dali_relabel.shards.keys`); samples
        that match none keep their ``__key__``.

        Raises:
            ValueError: a sample key matches several store keys, or two samples match the same store key.
        """
        store_keys = list(store_keys)
        rows = match_sample_keys(self.sample_keys, store_keys)
        values, counts = np.unique(rows[rows >= 0], return_counts=True)
        if (counts > 1).any():
            row = int(values[counts > 1][0])
            where = [self.location(i) for i in np.flatnonzero(rows == row)]
            raise ValueError(f"store key {store_keys[row]} is matched by {len(where)} shard samples "
                             f"({', '.join(where[:3])}): an image is in the shards more than once")
        keys = [store_keys[r] if r >= 0 else k for r, k in zip(rows.tolist(), self.sample_keys)]
        return dataclasses.replace(self, keys=keys)

    @property
    def labels(self) -> list[int]:
        """Each sample's class index from its ``.cls`` member (-1 without one); read on first use."""
        if self._labels is None:
            self._labels = self._read_labels()
        return self._labels

    def _read_labels(self) -> list[int]:
        labels = np.full(len(self), -1, np.int64)
        for t in np.unique(self.tar_ids[self.label_offsets >= 0]).tolist():
            members = np.flatnonzero((self.tar_ids == t) & (self.label_offsets >= 0))
            fd = os.open(self.tars[t], os.O_RDONLY)
            try:
                for i in members.tolist():
                    raw = os.pread(fd, int(self.label_sizes[i]), int(self.label_offsets[i]))
                    try:
                        labels[i] = int(raw.decode("ascii").strip())
                    except (UnicodeDecodeError, ValueError):
                        raise ValueError(f"{self.tars[t]}: {self.sample_keys[i]}.cls holds {raw[:20]!r}, not a class "
                                         f"index in ASCII digits (webdataset's .cls convention)") from None
            finally:
                os.close(fd)
        return labels.tolist()

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


def tar_samples(tar: Path, *, progress: bool = True) -> list[SampleEntry]:
    """A tar's samples, from its index file, or (none there) from an index built once into the cache."""
    index = index_path_for(tar)
    size = tar.stat().st_size
    if index.is_file():
        samples = read_index(index)
        check_index_fits(index, samples, size)
        return samples
    st = tar.stat()
    ident = f"{tar.resolve()}\0{st.st_size}\0{st.st_mtime_ns}".encode()
    cached = cache_root() / "shard_index" / f"{hashlib.sha256(ident).hexdigest()[:32]}.idx"
    if cached.is_file():
        return read_index(cached)
    if progress:
        print(f"dali_relabel: {tar} has no index file ({index.name}); scanning it once (cached in {cached.parent}; "
              f"`dali-relabel shard --index-only` writes them next to the shards)", file=sys.stderr)
    samples = scan_tar(tar)
    if not samples:
        raise ValueError(f"{tar}: the tar holds no samples")
    atomic_write_bytes(cached, format_index(samples).encode())
    return samples


__all__ = ["IMAGE_EXTS", "LABEL_EXT", "ShardSet", "tar_samples"]
