"""Index files that make ``fn.readers.webdataset`` read given samples in a given order.

DALI's webdataset reader reads its archives one after the other, each in the order of its index file, and seeks
to every member it is told: so an index may list any of a tar's samples, in any order, repeated. A reading order
whose consecutive samples come from the same tar in runs becomes one ``(tar, index file)`` pair per run. The
loaders draw their shard epochs tar by tar (:func:`dali_relabel.loader.epochs.grouped_order`), so an epoch needs
about one pair per tar.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .index import INDEX_VERSION

if TYPE_CHECKING:
    from .shard_set import ShardSet


def write_reading_order(shards: ShardSet, samples: np.ndarray, directory: str | Path, *,
                        prefix: str = "") -> tuple[list[str], list[str]]:
    """Writes the index files that read ``samples`` (indices into ``shards``) in order.

    Args:
        shards: the shard set.
        samples: [P] int, P ≥ 1, in reading order (repeats allowed).
        directory: where to write the index files (read when the DALI pipeline is built).
        prefix: file name prefix of the index files.

    Returns:
        ``(paths, index_paths)`` for ``fn.readers.webdataset``: one pair per run of samples from the same tar.
    """
    samples = np.asarray(samples, np.int64)
    if samples.size == 0:
        raise ValueError("write_reading_order: no samples")
    directory = Path(directory)
    tar_ids = shards.tar_ids[samples]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(tar_ids)) + 1, [len(samples)]])
    keys, exts = shards.sample_keys, shards.image_exts
    offsets, sizes = shards.image_offsets[samples].tolist(), shards.image_sizes[samples].tolist()
    order = samples.tolist()
    paths, index_paths = [], []
    for run, (a, b) in enumerate(zip(starts[:-1].tolist(), starts[1:].tolist())):
        lines = [f"{INDEX_VERSION} {b - a}\n"]
        lines += [f"{exts[i]} {offsets[j]} {sizes[j]} {keys[i]}.{exts[i]}\n" for j, i in enumerate(order[a:b], a)]
        index = directory / f"{prefix}{run:06d}.idx"
        index.write_text("".join(lines))
        paths.append(str(shards.tars[int(tar_ids[a])]))
        index_paths.append(str(index))
    return paths, index_paths


__all__ = ["write_reading_order"]
