"""ShardReader: fn.readers.webdataset reads exactly the order its index files give, rows alongside; the training
pipeline on shards gives the batches it gives on the same images read from files."""

from __future__ import annotations

import numpy as np
import pytest
from loader_util import DEVICES, small_demo  # noqa: F401 (fixtures)
from nvidia.dali.plugin.base_iterator import LastBatchPolicy
from nvidia.dali.plugin.pytorch import DALIGenericIterator
from shard_util import demo_shards  # noqa: F401 (fixture)

from dali_relabel import LabelStore
from dali_relabel.config import AugmentConfig
from dali_relabel.pipelines import TRAIN_OUTPUTS, FileReader, ShardReader, relabel_train_pipeline
from dali_relabel.shards import ShardSet


def batches(reader, bank, device, batch_size=4):
    pipe = relabel_train_pipeline(batch_size=batch_size, num_threads=2, device_id=0 if device == "gpu" else None,
                                  seed=5, augment_seed=5, device=device, reader=reader, bank=bank,
                                  augment=AugmentConfig(crop_size=32, flip_prob=0.5), outputs=TRAIN_OUTPUTS)
    pipe.build()
    it = DALIGenericIterator(pipe, list(TRAIN_OUTPUTS), reader_name="Reader", last_batch_policy=LastBatchPolicy.PARTIAL)
    return [{k: v.cpu().numpy() for k, v in b[0].items()} for b in it]


@pytest.mark.parametrize("device", DEVICES)
def test_shards_read_in_the_given_order_give_the_file_readers_batches(small_demo, demo_shards, tmp_path, device):
    store = LabelStore.open(str(small_demo.labels))
    bank = store.materialize(cache_dir=tmp_path / "bank", progress=False)
    shards = ShardSet.open(demo_shards).with_store_keys(store.keys.tolist())
    rows = store.rows_of(shards.keys)
    # An order that crosses tars back and forth, repeats samples and ends with a partial batch (15 = 3·4 + 3).
    samples = np.concatenate([np.random.default_rng(0).permutation(len(shards))[:12], [5, 5, 0]])
    assert len(np.unique(shards.tar_ids[samples])) == 3
    from_shards = batches(ShardReader.for_order(shards, samples, rows[samples], tmp_path), bank, device)
    from_files = batches(FileReader(str(small_demo.images), files=[shards.keys[i] for i in samples],
                                    rows=rows[samples].tolist()), bank, device)
    assert [len(b["rows"]) for b in from_shards] == [4, 4, 4, 3]
    assert np.concatenate([b["rows"] for b in from_shards]).tolist() == rows[samples].tolist()
    for a, b in zip(from_shards, from_files):
        for name in TRAIN_OUTPUTS:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_shard_reader_arguments(tmp_path):
    with pytest.raises(ValueError, match=r"one index file per tar path \(2 paths, 1 index files\)"):
        ShardReader(paths=["a.tar", "b.tar"], index_paths=["a.idx"], rows=[0])
    with pytest.raises(ValueError, match="rows is empty"):
        ShardReader(paths=["a.tar"], index_paths=["a.idx"], rows=[])
