"""Encoded images from webdataset tar shards (``fn.readers.webdataset``), in a given order, with their rows.

DALI's webdataset reader reads its archives in turn, each in the order of its index file, seeking to every
member it is told: so index files written for a reading order make it read exactly that order (written by
:func:`dali_relabel.shards.write_reading_order`; the loaders write one set per epoch and rank). The tar holds no
store rows, so the rows — known in Python, as the order is — come alongside from an ``external_source`` that
hands out batch ``i``'s rows when the reader reads batch ``i``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Sequence

import numpy as np
from nvidia.dali import Pipeline, fn, types

from .reader import READER_NAME

if TYPE_CHECKING:
    from dali_relabel.shards import ShardSet


@dataclasses.dataclass(frozen=True, eq=False)
class ShardReader:
    """Images of webdataset shards in the order their index files list them, with one row per image.

    Attributes:
        paths: tar files (a tar may appear several times), read in turn.
        index_paths: one index file per path (DALI's format 1.2), listing what to read of it, in order.
        rows: [P] the reader row (store row, or class label) of every image read, in reading order.
        extensions: the image members' extensions (matched in any case).
        name: the reader's name, for ``DALIGenericIterator(reader_name=...)``.
        dont_use_mmap: read with plain file I/O instead of memory maps (better on some network file systems).
    """

    paths: Sequence[str]
    index_paths: Sequence[str]
    rows: Sequence[int] | np.ndarray
    extensions: Sequence[str] = ("jpg", "jpeg", "png", "ppm", "bmp", "pgm", "tif", "tiff", "webp")
    name: str = READER_NAME
    dont_use_mmap: bool = False

    def __post_init__(self):
        if not self.paths or len(self.paths) != len(self.index_paths):
            raise ValueError(f"ShardReader: give one index file per tar path ({len(self.paths)} paths, "
                             f"{len(self.index_paths)} index files)")
        if len(self.rows) == 0:
            raise ValueError("ShardReader: rows is empty (one row per image read)")

    @classmethod
    def for_order(cls, shards: ShardSet, samples, rows, directory: str | os.PathLike, **kwargs) -> ShardReader:
        """A reader of ``shards``' samples ``samples`` (indices, in reading order; repeats allowed) with their
        ``rows``; the index files go to ``directory`` (read when the pipeline is built)."""
        from dali_relabel.shards import write_reading_order

        paths, index_paths = write_reading_order(shards, samples, directory)
        return cls(paths=paths, index_paths=index_paths, rows=np.asarray(rows), **kwargs)

    def __call__(self):
        """``(jpegs, rows)``: encoded images and int32 ``[1]`` rows, CPU."""
        # pad_last_batch: an epoch never bleeds into the next (the last batch repeats its last sample; the
        # iterator drops the repeats). The row source pads alike. preserve: the reader sizes the epoch (the
        # iterators ask it) even in a graph that uses only the rows (e.g. labels without images).
        jpegs = fn.readers.webdataset(paths=list(self.paths), index_paths=list(self.index_paths),
                                      ext=[";".join(self.extensions)], case_sensitive_extensions=False,
                                      missing_component_behavior="error", random_shuffle=False, pad_last_batch=True,
                                      dont_use_mmap=self.dont_use_mmap, preserve=True, name=self.name)
        batch_size = Pipeline.current().max_batch_size
        rows = fn.external_source(source=_BatchRows(self.rows, batch_size), batch=True, batch_info=True,
                                  dtype=types.INT32, ndim=1, no_copy=False)
        return jpegs, rows


class _BatchRows:
    """Batch ``i``'s rows: positions ``[i·B, (i+1)·B)`` of the reading order, the last batch padded with the last
    row as the reader pads it; past the end it wraps around, as the reader starts over (batches a pipeline may
    prefetch beyond the epoch are never yielded, but must hold valid rows)."""

    def __init__(self, rows, batch_size: int):
        rows = np.asarray(rows, np.int32).reshape(-1)
        batches = -(-len(rows) // batch_size)
        padded = np.concatenate([rows, np.repeat(rows[-1:], batches * batch_size - len(rows))])
        self.batches = padded.reshape(batches, batch_size, 1)

    def __call__(self, info) -> np.ndarray:
        return self.batches[info.iteration % len(self.batches)]


__all__ = ["ShardReader"]
