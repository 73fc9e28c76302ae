"""The loaders on webdataset shards keep the loader contract: complete epochs read tar by tar (the tars' order
and each tar's samples shuffled from (seed, epoch)), ranks that partition every epoch, exact resume, seeds; the
validation loader's targets and labels are the ImageFolder loader's for the same images."""

from __future__ import annotations

import io
import shutil
import tarfile
from collections import Counter

import numpy as np
import pytest
import webdataset
from loader_util import on_cpu, same_batches, small_demo  # noqa: F401 (fixtures)
from shard_util import MAX_COUNT, demo_shards, shard_loader  # noqa: F401 (fixtures)

from dali_relabel import LabelStore, ReLabelValLoader
from dali_relabel.image_folder import ImageList
from dali_relabel.shards import ShardSet
from dali_relabel.shards.writer import write_shards

OUTPUTS = ("images", "targets", "boxes", "mirror", "keys")


def epoch_keys(loader):
    return [k for batch in loader for k in batch[-1]]


def tar_runs(keys, shards):
    """How many runs of consecutive keys come from the same tar."""
    tar_of = dict(zip(shards.keys, shards.tar_ids.tolist()))
    tars = [tar_of[k] for k in keys]
    return 1 + sum(a != b for a, b in zip(tars, tars[1:]))


def test_epochs_are_complete_read_tar_by_tar_and_fixed_by_the_seed(small_demo, demo_shards):
    store = LabelStore.open(str(small_demo.labels))
    shards = ShardSet.open(demo_shards).with_store_keys(store.keys.tolist())
    ld = shard_loader(small_demo, demo_shards, outputs=OUTPUTS)
    assert len(ld) == 5
    epochs = [[on_cpu(b) for b in ld] for _ in range(3)]
    keys = [[k for b in e for k in b[-1]] for e in epochs]
    for k in keys:
        assert Counter(k) == Counter(store.keys.tolist())       # each image once
        assert tar_runs(k, shards) == 3                          # one run per tar: DALI reads whole tars in turn
    assert keys[0] != keys[1] != keys[2]                         # a new order every epoch (grouped_order's tests)
    again = shard_loader(small_demo, demo_shards, outputs=OUTPUTS)
    assert same_batches([b for e in epochs for b in e], [on_cpu(b) for _ in range(3) for b in again])


@pytest.mark.parametrize("world,policy", [(2, "partial"), (3, "fill"), (4, "drop")])
def test_ranks_partition_every_epoch(small_demo, demo_shards, world, policy):
    ranks = [shard_loader(small_demo, demo_shards, batch_size=4, shard_id=r, num_shards=world, last_batch=policy,
                          outputs=("keys", "valid")) for r in range(world)]
    assert len({len(r) for r in ranks}) == 1
    for _ in range(2):
        seen = Counter()
        for r in ranks:
            for keys, valid in r:
                seen.update(k for k, v in zip(keys, valid.tolist()) if v)
        if policy == "drop":
            assert set(seen.values()) == {1} and len(seen) == len(ranks[0]) * 4 * world
        else:
            assert seen == Counter(list(small_demo.objects))


@pytest.mark.parametrize("stop", [(0, 1), (0, 4), (1, 2)])
def test_resume_yields_exactly_the_uninterrupted_batches(small_demo, demo_shards, stop):
    outputs = ("images", "targets", "boxes", "mirror", "keys", "labels")
    run = shard_loader(small_demo, demo_shards, outputs=outputs)
    reference, state = [], None
    for epoch in range(3):
        for b, batch in enumerate(run):
            reference.append(on_cpu(batch))
            if (epoch, b) == stop:
                state = run.state_dict()
    resumed = shard_loader(small_demo, demo_shards, outputs=outputs, seed=99)
    resumed.load_state_dict(state)
    got = []
    while len(got) < len(reference):
        got += [on_cpu(b) for b in resumed]
    done = stop[0] * len(run) + stop[1] + 1
    assert same_batches(got[:len(reference) - done], reference[done:])


def test_a_state_is_refused_for_the_same_images_sharded_otherwise(small_demo, demo_shards, tmp_path):
    state = shard_loader(small_demo, demo_shards).state_dict()
    write_shards(small_demo.images, tmp_path / "other", max_count=7, progress=False)
    with pytest.raises(ValueError, match="images_digest: saved"):
        shard_loader(small_demo, tmp_path / "other").load_state_dict(state)


def by_key(loader, outputs):
    out = {}
    for batch in loader:
        batch = dict(zip(outputs, on_cpu(batch)))
        for i, key in enumerate(batch["keys"]):
            out[key] = {n: batch[n][i] for n in outputs if n != "keys"}
    return out


@pytest.mark.filterwarnings("ignore:1 class folders hold no images")
def test_validation_on_shards_gives_the_image_folders_targets_and_labels(small_demo, demo_shards):
    outputs = ("images", "targets", "labels", "boxes", "keys")
    kw = dict(device="cpu", crop_size=48, num_threads=2, outputs=outputs)
    files = by_key(ReLabelValLoader(small_demo.images, small_demo.labels, 5, **kw), outputs)
    shards = by_key(ReLabelValLoader(demo_shards, small_demo.labels, 5, **kw), outputs)
    assert files.keys() == shards.keys()
    for key in files:
        for name in ("images", "targets", "labels", "boxes"):
            assert np.array_equal(files[key][name], shards[key][name]), (key, name)
    # Without a store: the labels are the .cls members', which are the class folders'.
    listing = ImageList.from_folder(small_demo.images)
    folder = dict(zip((k[:-4] for k in listing.keys), listing.labels))
    for labels, keys in ReLabelValLoader(demo_shards, None, 5, device="cpu", outputs=("labels", "keys")):
        assert labels.tolist() == [folder[k] for k in keys]


def test_imagenet_style_flat_keys_match_by_file_name(small_demo, tmp_path):
    """Shards as ImageNet is usually sharded (webdataset's own writer, __key__ = file name without extension,
    .jpg + .cls): each sample finds its map by file name."""
    listing = ImageList.from_folder(small_demo.images)
    (tmp_path / "flat").mkdir()
    with webdataset.TarWriter(str(tmp_path / "flat" / "imagenet-train-000000.tar")) as sink:
        for key, label in zip(listing.keys[::-1], listing.labels[::-1]):
            stem = key.split("/")[-1][:-4]
            sink.write({"__key__": stem, "jpg": (small_demo.images / key).read_bytes(), "cls": label})
    ld = shard_loader(small_demo, tmp_path / "flat", outputs=("keys", "rows", "labels"))
    store = LabelStore.open(str(small_demo.labels))
    for keys, rows, labels in ld:
        assert [store.keys[r] for r in rows.tolist()] == keys
        assert labels.tolist() == [store.labels[r] for r in rows.tolist()]


def test_samples_without_maps_are_named_or_get_their_cls_one_hot(small_demo, tmp_path):
    images = tmp_path / "imgs"
    shutil.copytree(small_demo.images, images)
    shutil.copy(next((images / "cat").glob("*.jpg")), images / "cat" / "99999.jpg")
    write_shards(images, tmp_path / "s", progress=False)
    with pytest.raises(KeyError, match=r"1 of 25 images have no label map .*cat/99999.jpg \(a shard sample's __key__ "
                                       r"matches the store key without its extension"):
        shard_loader(small_demo, tmp_path / "s")
    ld = shard_loader(small_demo, tmp_path / "s", missing="onehot", outputs=("targets", "keys", "rows"))
    cat = LabelStore.open(str(small_demo.labels)).class_names.index("cat")
    found = 0
    for targets, keys, rows in ld:
        for t, k, r in zip(targets, keys, rows.tolist()):
            if k == "cat/99999":
                found += 1
                assert r == -1 and t.argmax() == cat and t.max() == 1.0
    assert found == 1


def test_a_sample_without_an_image_member_is_skipped_and_reported(small_demo, demo_shards, tmp_path):
    shutil.copytree(demo_shards, tmp_path / "s")
    with tarfile.open(tmp_path / "s" / "extra.tar", "w") as archive:
        info = tarfile.TarInfo("lonely.cls")
        info.size = 1
        archive.addfile(info, io.BytesIO(b"3"))
    (tmp_path / "s" / "shardindex.json").unlink()
    with pytest.warns(UserWarning, match=r"1 samples of the shards .*/s have no image member and were skipped \(e.g. "
                                         r"extra.tar:lonely\)"):
        ld = shard_loader(small_demo, tmp_path / "s")
    assert len(ld.data) == 24
