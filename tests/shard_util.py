"""Shared by the shard tests: the small demo dataset written as webdataset shards (3 tars of ≤ 10 images)."""

from __future__ import annotations

import pytest
from loader_util import small_demo  # noqa: F401 (fixture)

from dali_relabel.shards.writer import write_shards

MAX_COUNT = 10   # 24 images → shards of 10, 10 and 4


@pytest.fixture(scope="session")
def demo_shards(small_demo, tmp_path_factory):  # noqa: F811
    """The small demo's images as shards (path keys, shuffled with seed 0)."""
    out = tmp_path_factory.mktemp("demo_shards") / "shards"
    write_shards(small_demo.images, out, max_count=MAX_COUNT, progress=False)
    return out


def shard_loader(demo, shards, batch_size=5, **kw):
    """A small ReLabelLoader over the demo's shards (32-px crops, 2 threads, seed 3 unless given)."""
    from dali_relabel import ReLabelLoader

    kw.setdefault("crop_size", 32)
    kw.setdefault("num_threads", 2)
    kw.setdefault("seed", 3)
    kw.setdefault("device", "cpu")
    return ReLabelLoader(shards, demo.labels, batch_size, **kw)
