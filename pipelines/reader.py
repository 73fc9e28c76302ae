"""Where a pipeline's encoded images come from: ``fn.readers.file`` over (path, store row) pairs.

A reader is a small frozen description that, called inside a pipeline definition, returns ``(jpegs, rows)``:
the encoded images (CPU) and each one's int32 ``[1]`` store row (or class label, for pipelines without a
store). Other kinds of readers (e.g. webdataset shards) are other classes with the same call.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Sequence

from nvidia.dali import Pipeline, fn

READER_NAME = "Reader"


@dataclasses.dataclass(frozen=True)
class FileReader:
    """Files under ``file_root``, with their rows, from explicit lists or from a file list.

    Attributes:
        file_root: directory the paths are relative to.
        files, rows: the paths and their rows, in reading order (one epoch). The loaders give each epoch's order
            here (see ``dali_relabel.loader``), so that the order is theirs, not the reader's.
        file_list: instead of ``files``/``rows``: a text file of ``<path> <row>`` lines.
        shuffle: reshuffle after every epoch (DALI's ``shuffle_after_epoch``; the loaders never do: they order).
        seed: seed of that reshuffle.
        shard_id, num_shards: DALI's own sharding of the list (the loaders give each rank its own list instead).
        name: the reader's name, for ``DALIGenericIterator(reader_name=...)``.
    """

    file_root: str
    files: Sequence[str] | None = None
    rows: Sequence[int] | None = None
    file_list: str | None = None
    shuffle: bool = False
    seed: int = -1
    shard_id: int = 0
    num_shards: int = 1
    name: str = READER_NAME

    def __post_init__(self):
        if (self.file_list is None) == (self.files is None):
            raise ValueError("FileReader: give files= (and rows=) or file_list=, not both")
        if self.files is not None and (self.rows is None or len(self.rows) != len(self.files)):
            raise ValueError(f"FileReader: rows must give one row per file ({len(self.files)} files)")

    def __call__(self):
        """``(jpegs, rows)``: encoded images and int32 ``[1]`` rows, CPU."""
        source = (dict(file_list=self.file_list) if self.file_list is not None
                  else dict(files=list(self.files), labels=[int(r) for r in self.rows]))
        # pad_last_batch: an epoch never bleeds into the next (the last batch repeats its last sample; the
        # iterator drops the repeats).
        return fn.readers.file(file_root=self.file_root, **source, random_shuffle=False,
                               shuffle_after_epoch=self.shuffle, seed=self.seed, shard_id=self.shard_id,
                               num_shards=self.num_shards, pad_last_batch=True, name=self.name)


@functools.cache
def pipeline_arg_names() -> frozenset[str]:
    """The keyword arguments of ``nvidia.dali.Pipeline`` (batch_size, num_threads, device_id, seed, ...)."""
    return frozenset(p for p in inspect.signature(Pipeline.__init__).parameters if p != "self")


def split_pipeline_args(kwargs: dict) -> tuple[dict, dict]:
    """``(the Pipeline's own arguments, the rest)`` of a pipeline function's keyword arguments."""
    names = pipeline_arg_names()
    return ({k: v for k, v in kwargs.items() if k in names}, {k: v for k, v in kwargs.items() if k not in names})


__all__ = ["READER_NAME", "FileReader", "pipeline_arg_names", "split_pipeline_args"]
