"""ReLabelValLoader: timm's resize + centre crop, hard labels, central-box targets, each image once per epoch."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch
from loader_util import device, on_cpu, small_demo  # noqa: F401 (fixtures)
from PIL import Image
from reference import slow_label_pool

from dali_relabel import LabelStore, ReLabelValLoader
from dali_relabel.image_folder import ImageList
from dali_relabel.pipelines import IMAGENET_MEAN, IMAGENET_STD

pytestmark = pytest.mark.filterwarnings("ignore:1 class folders hold no images")


def val_loader(demo, device="cpu", batch_size=5, store=None, **kw):
    kw.setdefault("num_threads", 2)
    return ReLabelValLoader(demo.images, store, batch_size, device=device, **kw)


def timm_reference(path, crop_size, crop_pct):
    """PIL: resize the shorter side to floor(crop / crop_pct), centre-crop as torchvision's CenterCrop, normalize."""
    img = Image.open(path).convert("RGB")
    size = math.floor(crop_size / crop_pct)
    w, h = img.size
    scale = size / min(w, h)
    img = img.resize((round(w * scale), round(h * scale)), Image.BILINEAR)
    left, top = int(round((img.size[0] - crop_size) / 2)), int(round((img.size[1] - crop_size) / 2))
    arr = np.asarray(img.crop((left, top, left + crop_size, top + crop_size)), np.float32) / 255
    return ((arr - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)


def test_geometry_and_folder_labels(small_demo, device):
    listing = ImageList.from_folder(small_demo.images)
    ld = val_loader(small_demo, device, crop_size=56, crop_pct=0.875, outputs=("images", "labels", "keys"))
    assert ld.config.resize_size == 64 and len(ld) == 5
    labels_of = dict(zip(listing.keys, listing.labels))

    def blocks(x):  # 8x8 block means: resize filters differ on fine texture; the geometry (scale, centring) must not
        return x.reshape(3, 7, 8, 7, 8).mean((2, 4))

    for images, labels, keys in map(on_cpu, ld):
        assert images.shape[1:] == (3, 56, 56) and labels.dtype == torch.int64
        assert labels.tolist() == [labels_of[k] for k in keys]
        for image, key in zip(images.numpy(), keys):
            ref = timm_reference(small_demo.images / key, 56, 0.875)
            err = np.abs(blocks(image) - blocks(ref)).mean()
            assert err < 0.15, key
            for axis in (1, 2):       # the test can tell a crop shifted by 8 pixels either way
                for shift in (-8, 8):
                    assert np.abs(blocks(image) - blocks(np.roll(ref, shift, axis))).mean() > 2 * err, key


def test_store_targets_of_the_central_box(small_demo, device):
    store = LabelStore.open(str(small_demo.labels))
    ld = val_loader(small_demo, device, store=small_demo.labels, crop_size=56, crop_pct=0.875,
                    outputs=("targets", "labels", "boxes", "rows", "keys"))
    # 150x200 images: the crop shows 56/64 of the shorter side (150), centred.
    half_y, half_x = 150 * 0.875 / 2 / 150, 150 * 0.875 / 2 / 200
    seen = []
    for targets, labels, boxes, rows, keys in map(on_cpu, ld):
        np.testing.assert_allclose(boxes, [[0.5 - half_y, 0.5 - half_x, 0.5 + half_y, 0.5 + half_x]] * len(keys),
                                   atol=1e-6)
        for t, label, b, r, k in zip(targets.numpy(), labels, boxes.numpy(), rows, keys):
            assert store.keys[int(r)] == k and label == store.labels[int(r)]
            np.testing.assert_allclose(t, slow_label_pool(*store.read(int(r)), b[:2], b[2:], store.num_classes),
                                       rtol=1e-5, atol=1e-6)
        seen += keys
    assert seen == store.keys.tolist()      # store order, each image once


@pytest.mark.parametrize("world,batch", [(1, 5), (2, 5), (3, 4), (5, 4), (7, 1)])
def test_each_image_once_per_epoch_over_the_ranks(small_demo, device, world, batch):
    """Equal batch counts on every rank; counting `valid` images counts each image exactly once. 24 images over
    5 ranks × 4 leave 4 for the last step: rank 4 reads one repeated image there, marked not valid (and warned)."""
    rest = 24 % (world * batch)
    if 0 < rest < world:
        with pytest.warns(UserWarning, match=rf"leave {rest} images for the last step: ranks {rest}..{world - 1} read "
                                             r"one repeated image"):
            ranks = [val_loader(small_demo, device, batch, shard_id=r, num_shards=world,
                                outputs=("labels", "keys", "valid")) for r in range(world)]
    else:
        ranks = [val_loader(small_demo, device, batch, shard_id=r, num_shards=world,
                            outputs=("labels", "keys", "valid")) for r in range(world)]
    assert len({len(ld) for ld in ranks}) == 1 and ranks[0].num_samples == 24
    for _ in range(2):
        counted, real_per_batch = Counter(), []
        for ld in ranks:
            batches = [on_cpu(b) for b in ld]
            assert len(batches) == len(ld)
            for labels, keys, valid in batches:
                counted.update(k for k, v in zip(keys, valid.tolist()) if v)
                real_per_batch.append(int(valid.sum()))
        assert counted == Counter(list(small_demo.objects)) and sum(real_per_batch) == 24


def test_break_then_a_full_epoch(small_demo, device):
    ld = val_loader(small_demo, device, outputs=("keys",))
    next(iter(ld))
    assert Counter(k for keys in ld for k in keys) == Counter(list(small_demo.objects))


def test_val_arguments(small_demo):
    with pytest.raises(ValueError, match="the outputs targets, rows need a label store"):
        val_loader(small_demo, outputs=("images", "targets", "rows"))
    with pytest.raises(ValueError, match=r"crop_pct must be in \(0, 1\], got 0.0"):
        val_loader(small_demo, crop_pct=0)
    with pytest.raises(TypeError, match="batch_size must be an integer >= 1, got '5'"):
        val_loader(small_demo, batch_size="5")
