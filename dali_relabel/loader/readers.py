"""The reader of one epoch's pipeline: what it reads (this rank's images, in the plan's order) and how.

Image files: a DALI file list of ``<path> <reader row>`` lines (``pipelines.FileReader``). Webdataset shards: index
files that make ``fn.readers.webdataset`` read the plan's samples in order, the rows alongside
(``pipelines.ShardReader``). Either way, a resumed epoch first reads ``skip`` copies of a tiny placeholder image
(see :mod:`.epoch_run`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..fs import atomic_write_bytes, build_once, cache_root
from ..shards import SampleEntry, write_index
from ..shards.index import Component

if TYPE_CHECKING:
    from .dataset import LabeledImages

_PLACEHOLDER_KEY = "skip"


def skip_image() -> Path:
    """A tiny JPEG that stands in for the images of skipped batches when an epoch resumes half-way."""
    path = cache_root() / "loader" / "skip-16x16.jpg"
    if not path.is_file():
        from PIL import Image

        buf = io.BytesIO()
        Image.new("RGB", (16, 16), (124, 116, 104)).save(buf, format="JPEG", quality=90)
        atomic_write_bytes(path, buf.getvalue())
    return path


def epoch_reader(data: LabeledImages, samples: np.ndarray, *, skip: int, directory: Path):
    """The reader of ``samples`` (indices into ``data``, in order) after ``skip`` placeholder images; its list or
    index files are written to ``directory`` (they are read when the pipeline is built)."""
    from ..pipelines import FileReader, ShardReader

    rows = data.reader_rows[samples]
    placeholder_row = int(data.reader_rows[0])
    if data.sharded:
        paths, index_paths = [], []
        if skip:
            tar, image = skip_shard()
            index = directory / "skip.idx"
            write_index(index, [image] * skip)
            paths, index_paths = [str(tar)], [str(index)]
        if len(samples):
            from ..shards import write_reading_order

            more = write_reading_order(data.images, samples, directory)
            paths, index_paths = paths + more[0], index_paths + more[1]
        return ShardReader(paths=paths, index_paths=index_paths,
                           rows=np.concatenate([np.full(skip, placeholder_row), rows]))
    keys = data.keys
    lines = [f"{keys[i]} {r}\n" for i, r in zip(samples.tolist(), rows.tolist())]
    if skip:
        placeholder = os.path.relpath(skip_image(), data.images.root)
        lines = [f"{placeholder} {placeholder_row}\n"] * skip + lines
    file_list = directory / "files.txt"
    file_list.write_text("".join(lines))
    return FileReader(str(data.images.root), file_list=str(file_list))


def graph_reader(data: LabeledImages):
    """A reader of the right kind for defining (not building) a pipeline: nothing it names is read."""
    from ..pipelines import FileReader, ShardReader

    if data.sharded:
        return ShardReader(paths=[str(data.images.tars[0])], index_paths=[os.devnull], rows=[0])
    return FileReader(str(data.images.root), file_list=os.devnull)


def skip_shard() -> tuple[Path, SampleEntry]:
    """A one-sample tar holding the placeholder image (built once, in the cache), and its index entry."""
    import io
    import tarfile

    final = cache_root() / "loader" / "skip-shard"
    tar = final / "skip.tar"

    def fill(tmp: Path) -> None:
        data = skip_image().read_bytes()
        with tarfile.open(tmp / tar.name, "w", format=tarfile.USTAR_FORMAT) as archive:
            info = tarfile.TarInfo(f"{_PLACEHOLDER_KEY}.jpg")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))

    build_once(final, fill, complete=lambda d: (d / tar.name).is_file())
    with tarfile.open(tar) as archive:
        member = archive.getmembers()[0]
    return tar, SampleEntry(_PLACEHOLDER_KEY, (Component("jpg", member.offset_data, member.size),))


__all__ = ["epoch_reader", "graph_reader", "skip_image", "skip_shard"]
