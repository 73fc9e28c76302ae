"""ReLabelMix: region targets against a pixel-mask brute force, area targets against the official formula,
λ and box sampling, flips, map-less images, the loader's outputs, errors; GPU equality where CUDA exists."""

from __future__ import annotations

import shutil
from unittest import mock

import numpy as np
import pytest
import torch
from bank_util import make_bank
from conftest import requires_gpu
from dali_relabel.pipelines import IMAGENET_MEAN, IMAGENET_STD
from mix_reference import Crop, mask_box, pixel_field, region_parts, region_targets, softmax
from PIL import Image
from reference import random_label_map, slow_pooled_logits

from dali_relabel import LabelStore, ReLabelLoader
from dali_relabel.mix import MixParams, ReLabelMix, cutmix_box, patch_regions
from dali_relabel.testing.demo_dataset import build_demo_dataset, label_map_from_owner

S = 16                     # output side of the synthetic crops
H, W, C = 64, 96, 20       # original image size, classes
CROPS = [                  # varied scales per axis, flips, borders; crop 4 is smaller than two map cells
    Crop(H, W, 0, 0, 4, 4, False), Crop(H, W, 8, 20, 2, 3, True), Crop(H, W, 16, 48, 3, 2, False),
    Crop(H, W, 0, 0, 4, 6, True), Crop(H, W, 40, 70, 1, 1, True), Crop(H, W, 5, 3, 2, 2, False),
]
PERM = np.array([3, 4, 0, 1, 5, 2])  # sample 5 is its own partner
PATCHES = [(3, 5, 11, 14), (0, 0, 16, 7), (7, 0, 8, 16), (0, 9, 16, 16), (0, 0, 16, 16)]


@pytest.fixture(scope="module")
def maps():
    rng = np.random.default_rng(7)
    return [random_label_map(rng, 7, 11, 3, C, np.float16, np.int16) for _ in CROPS]


@pytest.fixture(scope="module")
def bank(maps, tmp_path_factory):
    return make_bank(tmp_path_factory.mktemp("bank"), maps, C)


def cutmix(patch, perm=PERM, size=S) -> MixParams:
    y0, x0, y1, x1 = patch
    lam = 1 - (y1 - y0) * (x1 - x0) / size**2
    return MixParams("cutmix", lam, lam, tuple(patch), (size, size), np.asarray(perm))


def batch_inputs(crops=CROPS, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(len(crops), 3, S, S, generator=g)
    # Given targets: only used for map-less samples, so garbage here proves they are ignored otherwise.
    targets = torch.softmax(torch.randn(len(crops), C, generator=g), 1)
    boxes = torch.from_numpy(np.stack([c.box(S) for c in crops]))
    mirror = torch.tensor([int(c.mirror) for c in crops])
    return images, targets, boxes, mirror


# --- region policy --------------------------------------------------------------------------------

@pytest.mark.parametrize("patch", PATCHES, ids=lambda p: "-".join(map(str, p)))
@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_region_targets_equal_the_pixel_mask_reference(maps, bank, patch, temperature):
    images, targets, boxes, mirror = batch_inputs()
    mix = ReLabelMix(bank=bank, policy="region", temperature=temperature)
    out_images, out = mix.apply(cutmix(patch), images, targets, boxes=boxes, rows=torch.arange(len(CROPS)),
                                mirror=mirror)
    ref = region_targets(maps, CROPS, S, patch, PERM, C, temperature)
    assert out.dtype == torch.float32 and out.shape == (len(CROPS), C)
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-5, rtol=0)
    np.testing.assert_allclose(out.sum(1).numpy(), 1, atol=1e-6)
    y0, x0, y1, x1 = patch
    expected = images.clone()
    expected[:, :, y0:y1, x0:x1] = images[PERM][:, :, y0:y1, x0:x1]
    assert torch.equal(out_images, expected)


def test_region_differs_from_area_and_from_pasting_unflipped(maps, bank):
    """The reference is sensitive to what matters: the region and the flip (not a vacuous equality)."""
    images, targets, boxes, mirror = batch_inputs()
    patch = (0, 0, 16, 7)
    pooled = torch.from_numpy(np.stack([softmax(z) for z, *_ in region_parts(maps, CROPS, S, (0, 0, 16, 16),
                                                                              np.arange(6), C)]))
    rows = torch.arange(len(CROPS))
    region = ReLabelMix(bank=bank).apply(cutmix(patch), images, pooled.float(), boxes=boxes, rows=rows,
                                         mirror=mirror)[1]
    area = ReLabelMix(policy="area").apply(cutmix(patch), images, pooled.float())[1]
    assert (region - area).abs().max() > 0.05
    unflipped = ReLabelMix(bank=bank).apply(cutmix(patch), images, targets, boxes=boxes, rows=rows,
                                            mirror=torch.zeros_like(mirror))[1]
    assert (region - unflipped).abs().max() > 0.05


def test_flips_paste_the_mirrored_region(tmp_path):
    """Partner: class 1 on its left half, class 2 on its right; a flipped crop shows its right half on the left."""
    h, w, k = 4, 8, 1
    scores = np.full((h, w, k), 8.0, np.float16)
    partner = np.where(np.arange(w) < w // 2, 1, 2).astype(np.int16)[None, :, None].repeat(h, 0)
    receiver = np.zeros((h, w, k), np.int16)  # class 0 everywhere
    bank = make_bank(tmp_path, [(scores, receiver), (scores, partner)], 3)
    images = torch.zeros(2, 3, 16, 16)
    targets = torch.full((2, 3), 1 / 3)
    boxes = torch.tensor([[0, 0, 1, 1]] * 2, dtype=torch.float32)
    params = MixParams("cutmix", 0.75, 0.75, (0, 0, 16, 4), (16, 16), np.array([1, 0]))  # left quarter
    mix = ReLabelMix(bank=bank)
    for flipped, pasted_class, other in ((0, 1, 2), (1, 2, 1)):
        out = mix.apply(params, images, targets, boxes=boxes, rows=torch.tensor([0, 1]),
                        mirror=torch.tensor([0, flipped]))[1][0]
        assert out[pasted_class] > 0.2 and out[other] < 0.01, (flipped, out)
        assert out[0] > 0.7  # the kept three quarters are the receiver's class 0


def test_images_without_a_map_use_their_given_target(maps, bank):
    images, targets, boxes, mirror = batch_inputs()
    rows = torch.arange(len(CROPS))
    rows[[1, 3]] = -1  # sample 3 is sample 0's partner, sample 1 sample 3's: both roles are exercised
    onehot = torch.eye(C)[[2, 7, 4, 11, 0, 5]]
    targets = torch.where((rows < 0)[:, None], onehot, targets)
    patch = (3, 5, 11, 14)
    out = ReLabelMix(bank=bank).apply(cutmix(patch), images, targets, boxes=boxes, rows=rows,
                                      mirror=mirror)[1]
    ref = region_targets(maps, CROPS, S, patch, PERM, C, has_map=rows.numpy() >= 0, given=targets.double().numpy())
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-5, rtol=0)
    # Both map-less: the area policy.
    lam = cutmix(patch).lam
    np.testing.assert_allclose(out[3].numpy(), lam * onehot[3] + (1 - lam) * onehot[1], atol=1e-6)


def test_linearity_versus_pixel_exact_averages():
    """How far 'crop minus patch by linearity' is from averaging the kept pixels exactly.

    RoIAlign samples a box on a grid of ceil(extent) points per axis, so pooled logits are only
    approximately additive over regions. Pixel-exact reference: the map's bilinear field (roi_align's
    interpolation) at every original pixel shown, averaged over the mask. Over 40 random crops and
    patches (seeded) on 15x15 maps, the kept part's error is of the order of RoIAlign's own error when
    it pools a whole crop. Measured here, max |logit error| median / max:
    demo-like maps (alpha 6):   kept 0.011 / 0.17, whole crop 0.010 / 0.15;
    white-noise maps (scale 4): kept 0.025 / 0.17, whole crop 0.016 / 0.07;
    in target space (total variation of the kept part's softmax): median 0.1-0.4%, max 4%.
    Patches narrower than one map cell are left out: roi_align widens such boxes to one cell, so
    their error is larger (docs/MIXING.md).
    """
    rng = np.random.default_rng(1)
    size, h, w = 16, 15, 15

    def demo_like_map():
        owner = np.full((H, W), -1)
        for o in range(3):
            y0, x0 = rng.integers(0, H - 10), rng.integers(0, W - 10)
            owner[y0:y0 + rng.integers(10, H - y0 + 1), x0:x0 + rng.integers(10, W - x0 + 1)] = o
        return label_map_from_owner(owner, rng.choice(C, 3, replace=False), C, h, 5, 6.0)

    for kind, bound in (("demo-like", 0.2), ("white-noise", 0.2)):
        kept_err, crop_err, kept_tv = [], [], []
        while len(kept_err) < 40:
            ky, kx = int(rng.integers(1, 5)), int(rng.integers(1, 7))
            crop = Crop(H, W, int(rng.integers(0, H - size * ky + 1)), int(rng.integers(0, W - size * kx + 1)), ky, kx,
                        bool(rng.integers(2)))
            m = demo_like_map() if kind == "demo-like" else random_label_map(rng, h, w, 5, C, np.float16, np.int16)
            (a, b), (c, d) = np.sort(rng.choice(size + 1, 2, replace=False)), np.sort(rng.choice(size + 1, 2, False))
            removed = crop.shown_mask(size, (a, c, b, d))
            start, end = mask_box(removed)
            if (b - a) * (d - c) == size**2 or min((end[0] - start[0]) * h, (end[1] - start[1]) * w) < 1:
                continue  # nothing kept, or a sub-cell patch (see the docstring)
            (z_crop, z_kept, _, _), = region_parts([m], [crop], size, (a, c, b, d), [0], C, exact=True)
            field = pixel_field(*m, H, W, C)
            shown = crop.shown_mask(size, (0, 0, size, size))
            exact_kept, exact_crop = field[:, shown & ~removed].mean(1), field[:, shown].mean(1)
            kept_err.append(np.abs(z_kept - exact_kept).max())
            crop_err.append(np.abs(z_crop - exact_crop).max())
            kept_tv.append(0.5 * np.abs(softmax(z_kept) - softmax(exact_kept)).sum())
        kept_err, crop_err = np.array(kept_err), np.array(crop_err)
        assert kept_err.max() < bound and np.median(kept_err) < 2 * np.median(crop_err), kind
        assert np.median(kept_err) > 0  # the approximation is real: not exact
        assert max(kept_tv) < 0.05, kind  # in target space: under 5% of the probability mass moves


# --- area policy, Mixup, smoothing -----------------------------------------------------------------

def official_cutmix(images, targets, box, perm, smoothing=0.0):
    """relabel_imagenet's cutmix_batch, given its random draws (box, permutation)."""
    y0, x0, y1, x1 = box
    images = images.clone()
    images[:, :, y0:y1, x0:x1] = images[perm, :, y0:y1, x0:x1]
    lam = 1 - (y1 - y0) * (x1 - x0) / (images.shape[2] * images.shape[3])
    c = targets.shape[1]
    smooth = targets * (1 - smoothing) + smoothing / c
    return images, lam * smooth + (1 - lam) * smooth[perm]


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_area_policy_is_the_official_formula(smoothing):
    g = torch.Generator().manual_seed(3)
    images, targets = torch.randn(8, 3, 24, 24, generator=g), torch.softmax(torch.randn(8, 10, generator=g), 1)
    mix = ReLabelMix(policy="area", smoothing=smoothing, seed=5)
    for _ in range(5):
        out_images, out = mix(images, targets)
        p = mix.last_params
        assert p.kind == "cutmix"
        ref_images, ref = official_cutmix(images, targets, p.box, torch.from_numpy(p.perm), smoothing)
        assert torch.equal(out_images, ref_images)
        np.testing.assert_allclose(out.numpy(), ref.numpy(), atol=1e-7)


def test_mixup_is_the_convex_combination():
    g = torch.Generator().manual_seed(4)
    images, targets = torch.randn(6, 3, 8, 8, generator=g), torch.softmax(torch.randn(6, 5, generator=g), 1)
    mix = ReLabelMix(mode="mixup", alpha=0.4, seed=1)
    out_images, out = mix(images, targets)
    p = mix.last_params
    assert p.kind == "mixup" and 0 < p.lam < 1
    np.testing.assert_allclose(out_images.numpy(), (p.lam * images + (1 - p.lam) * images[p.perm]).numpy(), atol=1e-6)
    np.testing.assert_allclose(out.numpy(), (p.lam * targets + (1 - p.lam) * targets[p.perm]).numpy(), atol=1e-7)


def test_unmixed_batches_pass_through():
    images, targets = torch.randn(4, 3, 8, 8), torch.softmax(torch.randn(4, 5), 1)
    mix = ReLabelMix(policy="area", prob=0.0, smoothing=0.2)
    out_images, out = mix(images, targets)
    assert mix.last_params.kind == "none" and out_images is images
    np.testing.assert_allclose(out.numpy(), (targets * 0.8 + 0.04).numpy(), atol=1e-7)


def test_float16_images_stay_float16():
    images, targets = torch.randn(4, 3, 8, 8).half(), torch.softmax(torch.randn(4, 5), 1)
    for mode in ("cutmix", "mixup"):
        out_images, out = ReLabelMix(mode=mode, policy="area", seed=0)(images, targets)
        assert out_images.dtype == torch.float16 and out.dtype == torch.float32


# --- sampling ------------------------------------------------------------------------------------

@pytest.mark.parametrize("alpha", [0.4, 1.0, 2.0])
def test_lambda_follows_beta_alpha_alpha(alpha):
    from scipy import stats  # imported here: the GPU machine runs `pytest -m gpu` without scipy

    mix = ReLabelMix(mode="mixup", alpha=alpha, seed=11)
    lams = np.array([mix.sample(4, 32, 32).lam for _ in range(3000)])
    assert stats.kstest(lams, stats.beta(alpha, alpha).cdf).pvalue > 0.01
    wrong = 1.6 * alpha  # the test has the power to tell a different alpha apart
    assert stats.kstest(lams, stats.beta(wrong, wrong).cdf).pvalue < 1e-4


def test_cutmix_lambda_box_and_correction():
    from scipy import stats

    mix = ReLabelMix(mode="cutmix", policy="area", alpha=1.0, seed=2)
    draws = [mix.sample(4, 224, 160) for _ in range(3000)]
    sampled = np.array([p.sampled_lam for p in draws])
    assert stats.kstest(sampled, stats.uniform().cdf).pvalue > 0.01  # Beta(1, 1)
    for p in draws:
        y0, x0, y1, x1 = p.box
        assert 0 <= y0 <= y1 <= 224 and 0 <= x0 <= x1 <= 160
        ratio = np.sqrt(1 - p.sampled_lam)
        assert y1 - y0 <= int(224 * ratio) and x1 - x0 <= int(160 * ratio)  # clipped only
        assert p.lam == pytest.approx(1 - (y1 - y0) * (x1 - x0) / (224 * 160))  # correct_lam
    # Unclipped boxes have exactly the sampled sides.
    inner = [p for p in draws if 0 < p.box[0] and p.box[2] < 224 and 0 < p.box[1] and p.box[3] < 160]
    assert len(inner) > 300
    assert all(p.box[2] - p.box[0] == int(224 * np.sqrt(1 - p.sampled_lam)) for p in inner)
    uncorrected = ReLabelMix(policy="area", correct_lam=False, seed=2).sample(4, 224, 160)
    assert uncorrected.lam == uncorrected.sampled_lam


def test_box_sampling_matches_timm():
    from timm.data.mixup import rand_bbox

    rng = np.random.default_rng(0)
    for lam in rng.uniform(0, 1, 200):
        state = rng.bit_generator.state
        y0, x0, y1, x1 = cutmix_box(rng, float(lam), 50, 70)
        replay = np.random.default_rng()
        replay.bit_generator.state = state
        centre = [int(replay.integers(0, 50)), int(replay.integers(0, 70))]
        with mock.patch("numpy.random.randint", side_effect=centre):
            assert rand_bbox((3, 50, 70), lam) == (y0, y1, x0, x1)


def test_prob_and_switch_prob():
    mix = ReLabelMix(mode="both", policy="area", prob=0.7, switch_prob=0.25, seed=9)
    kinds = [mix.sample(4, 16, 16).kind for _ in range(4000)]
    mixed = 4000 - kinds.count("none")
    assert abs(mixed / 4000 - 0.7) < 4 * np.sqrt(0.7 * 0.3 / 4000)
    assert abs(kinds.count("cutmix") / mixed - 0.25) < 4 * np.sqrt(0.25 * 0.75 / mixed)
    perm = mix.sample(64, 16, 16).perm
    assert sorted(perm) == list(range(64)) and (perm != np.arange(64)).any()


def test_seed_makes_draws_reproducible():
    a, b = ReLabelMix(policy="area", seed=3), ReLabelMix(policy="area", seed=3)
    for _ in range(5):
        pa, pb = a.sample(8, 32, 32), b.sample(8, 32, 32)
        assert pa.box == pb.box and pa.lam == pb.lam and (pa.perm == pb.perm).all()


def test_patch_regions_match_pixel_masks():
    """The affine box mapping equals the mask of original pixels shown, on random integer geometries."""
    rng = np.random.default_rng(4)
    for _ in range(60):
        ky, kx, size = int(rng.integers(1, 4)), int(rng.integers(1, 4)), int(rng.integers(2, 9))
        crop = Crop(40, 30, int(rng.integers(0, 40 - size * ky + 1)), int(rng.integers(0, 30 - size * kx + 1)), ky, kx,
                    bool(rng.integers(2)))
        (a, b), (c, d) = np.sort(rng.choice(size + 1, 2, replace=False)), np.sort(rng.choice(size + 1, 2, False))
        start, end = patch_regions(crop.box(size)[None], [crop.mirror], (a / size, c / size, b / size, d / size))
        ref_start, ref_end = mask_box(crop.shown_mask(size, (a, c, b, d)))
        np.testing.assert_allclose(start[0], ref_start, atol=1e-6)
        np.testing.assert_allclose(end[0], ref_end, atol=1e-6)


# --- the loader's outputs ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return build_demo_dataset(tmp_path_factory.mktemp("demo"), num_images=16, height=150, width=200, progress=False)


def test_with_the_loaders_cpu_outputs(demo):
    """Pasted pixels are the partner's image at the mapped region; targets are the slow reference's."""
    loader = ReLabelLoader(demo.images, demo.labels, 8, device="cpu", crop_size=64, seed=4, num_threads=2,
                           temperature=1.5, outputs=("images", "targets", "boxes", "rows", "mirror", "keys"))
    mix = ReLabelMix.for_loader(loader, seed=0)
    assert mix.temperature == 1.5 and mix.num_classes == loader.num_classes
    store = LabelStore.open(str(demo.labels))
    mean, std = np.array(IMAGENET_MEAN)[:, None, None], np.array(IMAGENET_STD)[:, None, None]
    box = (8, 20, 56, 60)
    flips_seen = set()
    for images, targets, boxes, rows, mirror, keys in loader:
        n = len(keys)
        params = MixParams("cutmix", 0, 0, box, (64, 64), np.roll(np.arange(n), 1))
        lam = 1 - params.patch_fraction
        out_images, out = mix.apply(params, images, targets, boxes=boxes, rows=rows, mirror=mirror)
        starts, ends = patch_regions(boxes.numpy(), mirror.numpy(), (8 / 64, 20 / 64, 56 / 64, 60 / 64))
        for i in range(n):
            j = int(params.perm[i])
            flips_seen.add(int(mirror[j]))
            # Pixels: PIL's crop of the partner's JPEG at the mapped region, resized and flipped like the loader.
            img = Image.open(demo.images / keys[j]).convert("RGB")
            (ys, xs), (ye, xe) = starts[j] * (img.height, img.width), ends[j] * (img.height, img.width)
            ref = img.crop((round(xs), round(ys), round(xe), round(ye))).resize((40, 48), Image.BILINEAR)
            ref = np.asarray(ref, np.float32).transpose(2, 0, 1) / 255
            if mirror[j]:
                ref = ref[:, :, ::-1]
            patch = out_images[i, :, 8:56, 20:60].numpy()
            assert np.abs(patch - (ref - mean) / std).mean() < 0.15, (i, keys[j])
            # Targets: slow float64 pooling at the same regions.
            z_in = slow_pooled_logits(*store.read(int(rows[j])), starts[j], ends[j], store.num_classes)
            s_i, c_i = store.read(int(rows[i]))
            b = boxes[i].numpy()
            z_keep = (slow_pooled_logits(s_i, c_i, b[:2], b[2:], store.num_classes) - params.patch_fraction
                      * slow_pooled_logits(s_i, c_i, starts[i], ends[i], store.num_classes)) / lam
            ref_t = lam * softmax(z_keep, 1.5) + (1 - lam) * softmax(z_in, 1.5)
            np.testing.assert_allclose(out[i].numpy(), ref_t, atol=1e-5)
    assert flips_seen == {0, 1}


def test_for_loader_takes_the_loaders_bank_and_target_config(demo):
    loader = ReLabelLoader(demo.images, demo.labels, 8, device="cpu", transpose_box=True, temperature=0.7,
                           bank_memory="host", outputs=("images",))
    mix = ReLabelMix.for_loader(loader)
    assert mix.pooling.transpose_box and mix.pooling.bank_memory == "host" and mix.temperature == 0.7
    assert mix.pooling.bank.path == loader.bank.path and mix.num_classes == loader.num_classes


def test_loader_images_without_maps(demo, tmp_path):
    shutil.copytree(demo.images, tmp_path / "images")
    key = next(iter(demo.objects))
    shutil.copy(tmp_path / "images" / key, tmp_path / "images" / "cat" / "zz_unlabelled.jpg")
    loader = ReLabelLoader(tmp_path / "images", demo.labels, 17, device="cpu", crop_size=32, num_threads=2,
                           missing="onehot", outputs=("images", "targets", "boxes", "rows", "mirror", "keys"))
    images, targets, boxes, rows, mirror, keys = next(iter(loader))
    i = keys.index("cat/zz_unlabelled.jpg")
    assert rows[i] == -1
    perm = np.roll(np.arange(len(keys)), 1)
    params = MixParams("cutmix", 0.5, 0.5, (0, 0, 32, 16), (32, 32), perm)
    out = ReLabelMix.for_loader(loader).apply(params, images, targets, boxes=boxes, rows=rows, mirror=mirror)[1]
    # The map-less image keeps its one-hot on its half; its partner's half is a soft pooled target.
    onehot_class = int(targets[i].argmax())
    assert out[i, onehot_class] >= 0.5 and torch.isclose(out[i].sum(), torch.tensor(1.0))
    # And it gives its one-hot target to the image that receives its patch.
    receiver = int(np.flatnonzero(perm == i)[0])
    assert out[receiver, onehot_class] >= 0.5 - 1e-6


def test_region_with_an_empty_patch_keeps_the_targets(bank):
    """A zero-area patch (lam = 1) pastes nothing: images and targets come back exactly as given (no pooling)."""
    images, targets, boxes, mirror = batch_inputs()
    mix = ReLabelMix(bank=bank, policy="region")
    params = cutmix((3, 5, 3, 9))  # height 0
    assert params.patch_fraction == 0.0
    calls = []
    logits = mix.pooling.logits
    mix.pooling.logits = lambda *a, **k: calls.append(1) or logits(*a, **k)
    out_images, out = mix.apply(params, images, targets, boxes=boxes, rows=torch.arange(len(CROPS)), mirror=mirror)
    assert torch.equal(out, targets) and torch.equal(out_images, images) and not calls


# --- errors ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,message", [
    (dict(mode="cutout"), r"mode must be one of \('cutmix', 'mixup', 'both'\), got 'cutout'"),
    (dict(policy="pixels"), r"policy must be one of \('area', 'region'\)"),
    (dict(mode="mixup", policy="region"), r"policy='region' refines CutMix targets; Mixup blends whole images"),
    (dict(policy="region"), r"policy='region' pools the label maps: pass bank=loader.bank"),
    (dict(policy="area", alpha=0.0), r"alpha must be a positive number"),
    (dict(policy="area", prob=1.5), r"prob is a probability in \[0, 1\], got 1.5"),
    (dict(policy="area", smoothing=1.0), r"smoothing must be in \[0, 1\)"),
    (dict(policy="area", temperature=-1.0), r"temperature must be a positive number, got -1.0"),
    (dict(policy="area", temperature=0.0), r"temperature must be a positive number, got 0.0"),
    (dict(policy="area", temperature=float("inf")), r"temperature must be a positive number, got inf"),
])
def test_bad_configuration(kwargs, message):
    with pytest.raises(ValueError, match=r"ReLabelMix: " + message):
        ReLabelMix(**kwargs)


@pytest.mark.parametrize("mode", ["cutmix", "mixup"])
def test_targets_on_another_device_are_refused_by_name(mode):
    """Images and targets on different devices: refused before any mixing, naming both devices ("meta" stands
    for any other device, no GPU needed); the same shapes on one device mix."""
    images, targets = torch.randn(4, 3, 8, 8), torch.softmax(torch.randn(4, 5), 1)
    mix = ReLabelMix(mode=mode, policy="area", prob=1.0, seed=0)
    with pytest.raises(ValueError, match="ReLabelMix: images are on cpu but targets on meta"):
        mix(images, targets.to("meta"))
    with pytest.raises(ValueError, match="ReLabelMix: images are on meta but targets on cpu"):
        mix.apply(mix.sample(4, 8, 8), images.to("meta"), targets)
    assert mix(images, targets)[1].shape == (4, 5)


def test_old_keyword_names_still_work(bank):
    """official_axes= is transpose_box=, indices= is rows=: same results, with a DeprecationWarning each."""
    images, targets, boxes, mirror = batch_inputs()
    rows = torch.arange(len(CROPS))
    new = ReLabelMix(bank=bank, transpose_box=True).apply(cutmix(PATCHES[0]), images, targets, boxes=boxes, rows=rows,
                                                          mirror=mirror)[1]
    with pytest.warns(DeprecationWarning, match="official_axes= is deprecated, use transpose_box="):
        old_mix = ReLabelMix(bank=bank, official_axes=True)
    with pytest.warns(DeprecationWarning, match="indices= is deprecated, use rows="):
        old = old_mix.apply(cutmix(PATCHES[0]), images, targets, boxes=boxes, indices=rows, mirror=mirror)[1]
    assert old_mix.pooling.transpose_box and torch.equal(new, old)
    with pytest.raises(TypeError, match="got both rows and indices"), pytest.warns(DeprecationWarning):
        old_mix(images, targets, boxes=boxes, rows=rows, indices=rows, mirror=mirror)


def test_region_needs_the_loader_geometry(bank):
    images, targets, boxes, mirror = batch_inputs()
    mix = ReLabelMix(bank=bank)
    with pytest.raises(ValueError, match=r"needs boxes, rows and mirror \(missing: rows, mirror\); ask the "
                                         r"loader for outputs=\(\.\.\., 'boxes', 'rows', 'mirror'\)"):
        mix(images, targets, boxes=boxes)
    with pytest.raises(ValueError, match=r"boxes has shape \[6, 2\], expected \[6, 4\] for a batch of 6"):
        mix.apply(cutmix((0, 0, 4, 4)), images, targets, boxes=boxes[:, :2], rows=torch.arange(6), mirror=mirror)
    with pytest.raises(ValueError, match=r"targets have 7 classes, the bank 20"):
        mix(images, targets[:, :7])
    with pytest.raises(ValueError, match=r"targets must be \[B, C\] with B = 6"):
        mix(images, targets[:3])
    with pytest.raises(ValueError, match=r"ReLabelMix: sample 2: row 99 is outside the bank .* \(6 label maps\); "
                                         r"pass the loader's 'rows' output and its bank"):
        mix.apply(cutmix((0, 0, 4, 4)), images, targets, boxes=boxes, rows=torch.tensor([0, 1, 99, 3, 4, 5]),
                  mirror=mirror)


# --- GPU -------------------------------------------------------------------------------------------

@requires_gpu
def test_region_on_the_gpu_equals_the_cpu(maps, bank):
    images, targets, boxes, mirror = batch_inputs()
    rows = torch.arange(len(CROPS))
    rows[1] = -1
    mix = ReLabelMix(bank=bank, temperature=1.3)
    for patch in PATCHES:
        cpu_images, cpu = mix.apply(cutmix(patch), images, targets, boxes=boxes, rows=rows, mirror=mirror)
        gpu_images, gpu = mix.apply(cutmix(patch), images.cuda(), targets.cuda(), boxes=boxes, rows=rows,
                                    mirror=mirror)
        assert gpu.is_cuda and gpu_images.is_cuda
        assert torch.equal(gpu_images.cpu(), cpu_images)
        np.testing.assert_allclose(gpu.cpu().numpy(), cpu.numpy(), atol=1e-6)
        ref = region_targets(maps, CROPS, S, patch, PERM, C, 1.3, has_map=rows.numpy() >= 0,
                             given=targets.double().numpy())
        np.testing.assert_allclose(gpu.cpu().numpy(), ref, atol=1e-5)
    # Geometry given as GPU tensors is accepted too (one small copy to the host).
    _, gpu2 = mix.apply(cutmix(PATCHES[0]), images.cuda(), targets.cuda(), boxes=boxes.cuda(),
                        rows=rows.cuda(), mirror=mirror.cuda())
    np.testing.assert_allclose(gpu2.cpu().numpy(), mix.apply(cutmix(PATCHES[0]), images, targets, boxes=boxes,
                                                             rows=rows, mirror=mirror)[1].numpy(), atol=1e-6)


@requires_gpu
def test_gpu_loader_batches_mix_on_the_gpu(demo):
    loader = ReLabelLoader(demo.images, demo.labels, 8, device="gpu", crop_size=64, seed=4, num_threads=2,
                           outputs=("images", "targets", "boxes", "rows", "mirror"))
    mix = ReLabelMix.for_loader(loader, mode="both", seed=0)
    for images, targets, boxes, rows, mirror in loader:
        assert images.is_cuda and targets.is_cuda and not boxes.is_cuda
        out_images, out = mix(images, targets, boxes=boxes, rows=rows, mirror=mirror)
        assert out_images.is_cuda and out.is_cuda
        cpu_images, cpu = mix.apply(mix.last_params, images.cpu(), targets.cpu(), boxes=boxes, rows=rows,
                                    mirror=mirror)
        assert torch.equal(out_images.cpu(), cpu_images)
        np.testing.assert_allclose(out.cpu().numpy(), cpu.numpy(), atol=1e-6)
