"""Several machines, simulated on localhost: two torchrun "nodes" of two ranks each (gloo, CPU) train an epoch from
an image folder and from shards, the label store on object storage (an fsspec URL: fsspec's local file system
configured, like an object store, to need no directories; zarr reads it through its fsspec store, as it would
s3://), one bank per node shared by the node's ranks. The four ranks partition each epoch exactly once."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

from loader_util import small_demo  # noqa: F401 (fixture)
from multinode_util import TESTS, torchrun_nodes
from shard_util import demo_shards  # noqa: F401 (fixture)

from dali_relabel import LabelStore


def test_two_nodes_of_two_ranks_partition_an_epoch(small_demo, demo_shards, tmp_path):
    url = f"local://{tmp_path / 'bucket' / 'labels.zarr'}"
    shutil.copytree(small_demo.labels, tmp_path / "bucket" / "labels.zarr")   # "uploaded"
    out = tmp_path / "out"
    out.mkdir()
    torchrun_nodes(2, 2, [str(TESTS / "multinode_worker.py"), str(small_demo.images), str(demo_shards), url, str(out)],
                   tmp_path)
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(4)]
    assert [(r["world"], r["node"], r["local_rank"]) for r in ranks] == [(4, 0, 0), (4, 0, 1), (4, 1, 0), (4, 1, 1)]
    store_keys = LabelStore.open(str(small_demo.labels)).keys.tolist()
    for source in ("folder", "shards"):
        runs = [r[source] for r in ranks]
        assert [r["shard"] for r in runs] == [[i, 4] for i in range(4)]
        assert len({r["len"] for r in runs}) == 1 and len({r["seed"] for r in runs}) == 1
        assert Counter(k for r in runs for k in r["keys"]) == Counter(store_keys)     # each image exactly once
        assert all(r["weights"] == runs[0]["weights"] for r in runs)                  # DDP stayed in step
    # One bank per node, in the node's bank directory, mapped by both of its ranks.
    for node in (0, 1):
        banks = {r[s]["bank"] for r in ranks if r["node"] == node for s in ("folder", "shards")}
        assert len(banks) == 1 and Path(banks.pop()).parent == tmp_path / f"node{node}" / "banks"
        assert len([p for p in (tmp_path / f"node{node}" / "banks").iterdir() if not p.name.startswith(".")]) == 1
