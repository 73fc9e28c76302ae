"""ReLabelLoader(crops_per_image=n): batches of B·n crops, each crop's target, pixels and box checked against
independent references; the two crop orders; the boxes' distribution; CutMix on multi-crop batches."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from crop_reference import ks_critical, ks_statistic, pixel_window, sample_crop_windows, torchvision_crop
from loader_util import small_demo, train_loader  # noqa: F401 (fixtures)
from shard_util import demo_shards, shard_loader  # noqa: F401 (fixtures)
from mix_reference import softmax
from PIL import Image
from reference import slow_label_pool, slow_pooled_logits

from dali_relabel import LabelStore, ReLabelMix
from dali_relabel.mix import MixParams, patch_regions

ALL = ("images", "targets", "labels", "boxes", "rows", "keys", "mirror", "valid")
H, W = 150, 200   # small_demo's images


def test_every_crop_matches_its_references(small_demo):
    """n = 3: every image 3 times per epoch, each crop's target = the float64 roi_align reference over the crop's
    box, its pixels = torchvision's crop of the image over that box (bit for bit), per-image outputs repeated."""
    store = LabelStore.open(str(small_demo.labels))
    ld = train_loader(small_demo, batch_size=5, crops_per_image=3, crop_size=48, outputs=ALL)
    assert len(ld) == 5                      # batches of crops: as many as batches of images
    seen = Counter()
    sizes = []
    for images, targets, labels, boxes, rows, keys, mirror, valid in ld:
        sizes.append(len(keys))
        assert images.shape[1:] == (3, 48, 48) and len({len(images), len(targets), len(boxes), len(mirror)}) == 1
        for i in range(0, len(keys), 3):     # grouped: an image's 3 crops side by side
            assert len(set(keys[i:i + 3])) == 1 and len(set(rows[i:i + 3].tolist())) == 1
            assert len({pixel_window(b, H, W) for b in boxes[i:i + 3]}) == 3      # distinct crops
        for i, key in enumerate(keys):
            seen[key] += 1
            row = int(rows[i])
            assert store.keys[row] == key and labels[i] == store.labels[row] and valid[i]
            box = boxes[i].numpy()
            ref = slow_label_pool(*store.read(row), box[:2], box[2:], store.num_classes)
            np.testing.assert_allclose(targets[i].numpy(), ref, rtol=1e-5, atol=1e-6)
            image = Image.open(small_demo.images / key).convert("RGB")
            ref_image = torchvision_crop(image, pixel_window(box, H, W), bool(mirror[i]), 48)
            assert torch.equal(images[i], ref_image), (key, box)
    assert sizes == [15, 15, 15, 15, 12]
    assert seen == Counter(list(small_demo.objects) * 3)


def test_shards_give_every_image_n_crops_with_their_references(small_demo, demo_shards):
    """Webdataset shards (read tar by tar) with crops_per_image=2: every image twice per epoch, each crop's target
    the reference over its box and its pixels torchvision's crop of the image over it (the same JPEG bytes); a
    resumed loader continues with the same crops."""
    store = LabelStore.open(str(small_demo.labels))
    outputs = ("images", "targets", "boxes", "keys", "mirror")
    ld = shard_loader(small_demo, demo_shards, crops_per_image=2, crop_size=40, outputs=outputs)
    assert len(ld) == 5
    seen, batches = Counter(), []
    for b, (images, targets, boxes, keys, mirror) in enumerate(ld):
        batches.append((images, targets, boxes, keys, mirror))
        if b == 1:
            state = ld.state_dict()
        for i, key in enumerate(keys):
            seen[key] += 1
            row = int(store.rows_of([key])[0])
            box = boxes[i].numpy()
            ref = slow_label_pool(*store.read(row), box[:2], box[2:], store.num_classes)
            np.testing.assert_allclose(targets[i].numpy(), ref, rtol=1e-5, atol=1e-6)
            image = Image.open(small_demo.images / key).convert("RGB")
            assert torch.equal(images[i], torchvision_crop(image, pixel_window(box, H, W), bool(mirror[i]), 40)), key
        assert all(keys[i] == keys[i + 1] for i in range(0, len(keys), 2))     # grouped: an image's crops together
    assert seen == Counter(list(small_demo.objects) * 2)
    resumed = shard_loader(small_demo, demo_shards, crops_per_image=2, crop_size=40, outputs=outputs)
    resumed.load_state_dict(state)
    for got, want in zip(resumed, batches[2:]):
        assert got[3] == want[3] and all(torch.equal(got[j], want[j]) for j in (0, 1, 2, 4))


def test_spread_is_the_grouped_batch_reordered(small_demo):
    """crop_order="spread" puts crop k of image i at k·B + i: the same crops as "grouped" (at i·n + k)."""
    grouped = list(train_loader(small_demo, batch_size=5, crops_per_image=4, outputs=ALL))
    spread = list(train_loader(small_demo, batch_size=5, crops_per_image=4, crop_order="spread", outputs=ALL))
    assert len(grouped) == len(spread) == 5
    for g, s in zip(grouped, spread):
        b = len(g[5]) // 4
        order = [i * 4 + k for k in range(4) for i in range(b)]     # spread position -> grouped position
        for name, x, y in zip(ALL, g, s):
            if isinstance(x, list):
                assert y == [x[j] for j in order], name
            else:
                assert torch.equal(y, x[order]), name
    assert spread[0][5][:5] == [grouped[0][5][i * 4] for i in range(5)]   # the first block: one crop of each


def test_boxes_follow_the_samplers_distribution(small_demo):
    """The boxes' areas, aspect ratios and positions are distributed as DALI's sampler draws them (re-implemented
    in numpy: two-sample KS tests at level 1e-3; fixed seeds, so the outcome is fixed), and the crops of one image
    are independent of each other."""
    ld = train_loader(small_demo, batch_size=24, crops_per_image=8, seed=21, outputs=("boxes",))
    windows = np.array([pixel_window(b, H, W) for _ in range(4) for boxes in ld for b in boxes])   # [768, 4]
    assert len(windows) == 4 * 24 * 8
    sim = sample_crop_windows(np.random.default_rng(0), H, W, 20000)

    def stats(w):
        top, left, h, w_ = w.T
        return {"area": h * w_ / (H * W), "log aspect": np.log(w_ / h), "center x": (left + w_ / 2) / W,
                "center y": (top + h / 2) / H}

    got, ref = stats(windows), stats(sim)
    limit = ks_critical(len(windows), len(sim))
    for name in got:
        d = ks_statistic(got[name], ref[name])
        assert d < limit, f"{name}: KS statistic {d:.3f} >= {limit:.3f}"
    # Independence: the areas of consecutive crops of an image are uncorrelated (672 pairs: |r| < 0.15).
    areas = got["area"].reshape(-1, 8)
    r = np.corrcoef(areas[:, :-1].ravel(), areas[:, 1:].ravel())[0, 1]
    assert abs(r) < 0.15, r
    # And the test can tell: a sampler with another area range is refused.
    other = stats(sample_crop_windows(np.random.default_rng(1), H, W, 20000, area=(0.2, 1.0)))
    assert ks_statistic(got["area"], other["area"]) > limit


@pytest.mark.parametrize("order", ["grouped", "spread"])
def test_output_settings_apply_to_every_crop(small_demo, order):
    """channels_last and bfloat16 batches are views/casts of the same crops, in either order."""
    base = next(iter(train_loader(small_demo, batch_size=4, crops_per_image=2, crop_order=order)))
    other = next(iter(train_loader(small_demo, batch_size=4, crops_per_image=2, crop_order=order,
                                   memory_format=torch.channels_last, dtype="bfloat16")))
    assert other[0].shape == (8, 3, 32, 32) and other[0].dtype == torch.bfloat16
    assert other[0].is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(other[0], base[0].to(torch.bfloat16)) and torch.equal(other[1], base[1])


def test_cutmix_on_multi_crop_batches(small_demo):
    """ReLabelMix.for_loader works on B·n crops: the patch's target is pooled from the partner crop's map over the
    pasted region (through its box and flip), the kept part's from the crop's own map (slow references)."""
    store = LabelStore.open(str(small_demo.labels))
    loader = train_loader(small_demo, batch_size=4, crops_per_image=3, crop_size=64, temperature=1.5,
                          outputs=("images", "targets", "boxes", "rows", "mirror"))
    mix = ReLabelMix.for_loader(loader, seed=0)
    images, targets, boxes, rows, mirror = next(iter(loader))
    n = len(rows)
    patch = (8, 20, 56, 60)
    params = MixParams("cutmix", 0, 0, patch, (64, 64), np.roll(np.arange(n), 1))
    lam = 1 - params.patch_fraction
    out_images, out = mix.apply(params, images, targets, boxes=boxes, rows=rows, mirror=mirror)
    starts, ends = patch_regions(boxes.numpy(), mirror.numpy(), tuple(v / 64 for v in patch))
    for i in range(n):
        j = int(params.perm[i])
        assert torch.equal(out_images[i, :, 8:56, 20:60], images[j, :, 8:56, 20:60])
        z_in = slow_pooled_logits(*store.read(int(rows[j])), starts[j], ends[j], store.num_classes)
        s_i, c_i = store.read(int(rows[i]))
        b = boxes[i].numpy()
        z_keep = (slow_pooled_logits(s_i, c_i, b[:2], b[2:], store.num_classes) - params.patch_fraction
                  * slow_pooled_logits(s_i, c_i, starts[i], ends[i], store.num_classes)) / lam
        np.testing.assert_allclose(out[i].numpy(), lam * softmax(z_keep, 1.5) + (1 - lam) * softmax(z_in, 1.5),
                                   atol=1e-5)


def test_crop_order_is_checked(small_demo):
    from dali_relabel import ReLabelLoader

    with pytest.raises(ValueError, match="crop_order must be one of 'grouped', 'spread', got 'mixed'"):
        ReLabelLoader(small_demo.images, small_demo.labels, 4, device="cpu", crops_per_image=2, crop_order="mixed")
    with pytest.raises(ValueError, match="crops_per_image must be an integer >= 1, got -1"):
        ReLabelLoader(small_demo.images, small_demo.labels, 4, device="cpu", crops_per_image=-1)
