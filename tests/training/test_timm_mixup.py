"""dali_relabel.timm.Mixup: timm's arguments and call, timm's outputs for hard labels (its own draws replayed),
the same mixing of soft targets (where timm's Mixup silently returns [B·C, C])."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp

from dali_relabel.mix import MixParams
from dali_relabel.timm import Mixup

timm_mixup = pytest.importorskip("timm.data.mixup")
B, C, H = 16, 10, 32


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(B, 3, H, H, generator=g)
    soft = torch.softmax(3 * torch.randn(B, C, generator=g), 1)
    labels = torch.randint(0, C, (B,), generator=g)
    return images, soft, labels


def test_timms_mixup_mangles_soft_targets_and_ours_does_not():
    """The fault this class exists for: timm's Mixup one-hots [16, 10] soft targets into [160, 10]."""
    images, soft, _ = batch()
    _, mangled = timm_mixup.Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, num_classes=C)(images.clone(), soft)
    assert mangled.shape == (B * C, C)
    _, targets = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, num_classes=C, seed=0)(images, soft)
    assert targets.shape == (B, C)
    torch.testing.assert_close(targets.sum(1), torch.ones(B))


def timm_draws(mixup, shape, seed):
    """timm's own draws for one batch (λ, CutMix box), replayed from NumPy's global generator as timm makes them."""
    np.random.seed(seed)
    lam, use_cutmix = mixup._params_per_batch()
    box = None
    if lam != 1.0 and use_cutmix:
        (y0, y1, x0, x1), lam = timm_mixup.cutmix_bbox_and_lam(shape, lam, ratio_minmax=mixup.cutmix_minmax,
                                                               correct_lam=mixup.correct_lam)
        box = (int(y0), int(x0), int(y1), int(x1))
    return lam, box


@pytest.mark.parametrize("kwargs", [dict(mixup_alpha=0.8), dict(mixup_alpha=0.0, cutmix_alpha=1.0),
                                    dict(mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5),
                                    dict(mixup_alpha=0.0, cutmix_minmax=(0.2, 0.8)),
                                    dict(mixup_alpha=0.8, prob=0.5, label_smoothing=0.0)])
def test_hard_labels_give_timms_outputs(kwargs):
    """With timm's λ, box and partners (the reversed batch), our images and targets are timm's, bit for bit up to
    float rounding — for every way timm's Mixup mixes a batch."""
    images, _, labels = batch()
    kwargs = {"num_classes": C, **kwargs}
    for seed in range(8):
        reference = timm_mixup.Mixup(**kwargs)
        lam, box = timm_draws(reference, images.shape, seed)
        np.random.seed(seed)
        ref_images, ref_targets = reference(images.clone(), labels)
        ours = Mixup(**kwargs, seed=0)
        kind = "none" if lam == 1.0 else ("cutmix" if box is not None else "mixup")
        params = MixParams(kind, lam, lam, box, (H, H), np.arange(B)[::-1].copy())
        out_images, out_targets = ours.apply(params, images, ours._as_distributions(images, labels))
        torch.testing.assert_close(out_images, ref_images)
        torch.testing.assert_close(ours._timm_smooth(out_targets), ref_targets)


def test_soft_targets_mix_like_hard_ones():
    """Soft targets are mixed with the batch's λ and partners, as one-hot targets are: λ·t + (1 − λ)·t[perm],
    then smoothed (t · (1 − s) + s / C)."""
    images, soft, _ = batch()
    mix = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=C, seed=3)
    for _ in range(10):
        _, targets = mix(images, soft)
        p = mix.last_params
        lam, perm = p.lam, torch.as_tensor(p.perm)
        expected = lam * soft + (1 - lam) * soft[perm]
        torch.testing.assert_close(targets, expected * 0.9 + 0.1 / C)


def test_minmax_boxes_are_drawn_as_timms():
    """cutmix_minmax: box sides uniform in [min, max) of the image side, λ = 1 − box area (timm's
    rand_bbox_minmax)."""
    mix = Mixup(mixup_alpha=0.0, cutmix_minmax=(0.3, 0.7), num_classes=C, seed=0)
    ours = [mix.sample(B, 64, 80) for _ in range(1500)]
    np.random.seed(0)
    theirs = [timm_mixup.rand_bbox_minmax((64, 80), (0.3, 0.7)) for _ in range(1500)]
    ours_h = [p.box[2] - p.box[0] for p in ours]
    ours_w = [p.box[3] - p.box[1] for p in ours]
    assert ks_2samp(ours_h, [int(t[1] - t[0]) for t in theirs]).pvalue > 1e-3
    assert ks_2samp(ours_w, [int(t[3] - t[2]) for t in theirs]).pvalue > 1e-3
    assert ks_2samp([p.box[0] for p in ours], [int(t[0]) for t in theirs]).pvalue > 1e-3
    for p in ours:
        assert p.kind == "cutmix" and np.isclose(p.lam, 1 - p.patch_fraction)
        assert 0 <= p.box[0] and p.box[2] <= 64 and 0 <= p.box[1] and p.box[3] <= 80


def test_switches_and_smoothing():
    images, soft, labels = batch()
    off = Mixup(mixup_alpha=0.8, num_classes=C, label_smoothing=0.2, seed=0)
    off.mixup_enabled = False            # timm's train.py does this after --mixup-off-epoch
    out_images, targets = off(images, soft)
    assert torch.equal(out_images, images)
    torch.testing.assert_close(targets, soft * 0.8 + 0.2 / C)
    multi = Mixup(mixup_alpha=0.8, num_classes=C, label_smoothing=0.2, multi_label=True, seed=0)
    multi.mixup_enabled = False
    torch.testing.assert_close(multi(images, soft)[1], soft * 0.8 + 0.1)
    _, from_labels = off(images, labels)      # hard labels: one-hot, as timm
    torch.testing.assert_close(from_labels, torch.nn.functional.one_hot(labels, C) * 0.8 + 0.2 / C)


@pytest.mark.parametrize("kwargs,match", [
    (dict(mode="elem"), "mode='elem' is not supported: ReLabel targets are mixed per batch"),
    (dict(mixup_alpha=0.0), "mixup_alpha > 0, cutmix_alpha > 0 or cutmix_minmax is needed"),
    (dict(cutmix_minmax=(0.8, 0.2)), r"cutmix_minmax must be \(min, max\)"),
    (dict(label_smoothing=1.0), r"label_smoothing must be in \[0, 1\)"),
])
def test_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Mixup(**{"num_classes": C, **kwargs})


def test_wrong_targets_are_named():
    images, soft, _ = batch()
    mix = Mixup(num_classes=1000)
    with pytest.raises(ValueError, match="targets have 10 classes"):
        mix(images, soft)
    with pytest.raises(ValueError, match=r"class indices must be in \[0, 1000\)"):
        mix(images, torch.full((B,), 1000))
