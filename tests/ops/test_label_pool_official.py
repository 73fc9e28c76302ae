"""label_pool(transpose_box=True) reproduces relabel_imagenet's targets as the official code computes them.

The reference is the official arithmetic (dali_relabel.testing.official) run as it runs: float32 maps,
float32 coordinates assembled the official way (Python floats → float64 tensors → starts added in float64 →
float32), torchvision's float32 roi_align and softmax, on 10,000 random-resized crops of images of assorted
sizes, 400 of them spanning whole numbers of map cells. The operator gets its box as the training pipeline
makes it (pipelines.crop.normalized_corners inside DALI).

What "reproduces" means, measured here: the operator computes the official geometry in float32 step by step,
so it takes exactly the official sample grid and bilinear fractions; it accumulates in float64. Its targets
then differ from the exact value of the official arithmetic by < 1e-7, and from the official float32 run by
the float32 rounding of that run: torchvision's float32 accumulation (≤ ~2e-6 on logits up to ~13) and
torch's float32 softmax on the CPU (≤ ~2e-6 on probabilities). Both bounds are asserted, and against the
official pooled logits followed by an exact softmax the targets agree to 1e-6.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import requires_gpu
from official_cases import (
    C,
    MAP,
    PipelineLabelPool,
    official_crops,
    official_logits_of_present_classes,
    official_maps,
    official_tensors,
    roi_align_of_present_classes,
)

from dali_relabel.testing.official import official_pooled_logits

N_CROPS = 10_000
# Against torch's float32 CPU softmax of the official logits (its own rounding, ~1.3e-6 relative in every
# probability, from summing 1000 exponentials in float32), and on logits relative to their size against
# torchvision's float32 sums (a few float32 ulps).
TARGET_TOL_F32_RUN = 3e-6
TARGET_TOL = 1e-6
LOGIT_RTOL = 1e-6


@pytest.fixture(scope="module")
def crops():
    return official_crops(N_CROPS)


@pytest.fixture(scope="module")
def official(crops):
    """Per scores dtype: the official float32 pooled logits [N, C] (torchvision roi_align, as the official code)."""
    out = {}
    for dtype in ("float16", "float32"):
        maps = official_tensors(*official_maps(len(crops), dtype))
        out[dtype] = official_logits_of_present_classes(maps, crops.coords, C)
        # The shortcut is the official computation bit for bit (checked on a batch of the full dense one).
        full = official_pooled_logits(maps[:128], crops.coords[:128], C)
        assert torch.equal(out[dtype][:128], full)
    return out


@pytest.fixture(scope="module")
def ours(crops):
    """Per scores dtype: the operator's official-mode targets and logits [N, C], and its corners [N, 4]."""
    out = {}
    for dtype in ("float16", "float32"):
        scores, classes = official_maps(len(crops), dtype)
        targets, rel_start, rel_end = PipelineLabelPool(num_classes=C, transpose_box=True)(crops, scores, classes)
        logits, _, _ = PipelineLabelPool(num_classes=C, transpose_box=True, output="logits")(crops, scores, classes)
        out[dtype] = targets, logits, np.concatenate([rel_start, rel_end], 1)
    return out


def sample_counts(coords: np.ndarray, dtype) -> np.ndarray:
    """The official sample grid along each box axis, [N, 2], with the geometry in ``dtype``."""
    t = dtype
    box = (coords.astype(t) * t(MAP)).astype(t) - t(0.5)
    extent = np.maximum((box[:, 2:] - box[:, :2]).astype(t), t(1))
    return np.ceil(extent).astype(np.int64)


def test_pipeline_corners_are_the_official_float32_coordinates(crops, ours):
    """The pipeline's float32 corners, (anchor + shape) / size in float32, are exactly the official
    float32(float64(i/H) + float64(h/H)); checked by DALI on the crops and by numpy on every window."""
    corners = ours["float16"][2]
    assert corners.dtype == np.float32
    np.testing.assert_array_equal(corners.view(np.uint32), crops.coords.numpy().view(np.uint32))
    # Every window (i, h) of every image side up to 256 px and of ImageNet's common sides (float32 division
    # is what DALI computes).
    for side in [*range(1, 257), 281, 333, 375, 500]:
        i, h = np.triu_indices(side + 1, 1)
        h = h - i  # all 0 <= i < i + h <= side
        official = (i / side + h / side).astype(np.float32)  # float64 sum, then float32
        pipeline = (i + h).astype(np.float32) / np.float32(side)
        assert np.array_equal(official, pipeline), side


@pytest.mark.parametrize("score_dtype", ["float16", "float32"])
def test_official_mode_reproduces_the_official_targets(crops, official, ours, score_dtype):
    scores, classes = official_maps(len(crops), score_dtype)
    assert scores.dtype == np.dtype(score_dtype)
    logits = official[score_dtype].double()
    official_run = torch.softmax(official[score_dtype], 1).double().numpy()  # the official float32 softmax
    official_exact_softmax = torch.softmax(logits, 1).numpy()

    targets, ours_logits, _ = ours[score_dtype]
    diff_run = np.abs(targets - official_run).max()
    diff = np.abs(targets - official_exact_softmax).max()
    diff_logits = np.abs(ours_logits - logits.numpy()).max()
    rel_logits = (np.abs(ours_logits - logits.numpy()) / np.maximum(1, np.abs(logits.numpy()))).max()
    print(f"\n{score_dtype} scores, {len(crops)} crops: max |targets - official float32 run| = {diff_run:.2e}, "
          f"|targets - softmax(official logits)| = {diff:.2e}, |logits - official logits| = {diff_logits:.2e} "
          f"({rel_logits:.2e} relative)")
    assert diff_run <= TARGET_TOL_F32_RUN
    assert diff <= TARGET_TOL
    assert rel_logits <= LOGIT_RTOL

    # The test has teeth: on the crops where a float64 geometry takes another sample count than the official
    # float32 one (whole-cell spans), torchvision in float64 on the same boxes is far from the official.
    coords = crops.coords.numpy()
    flipped = np.nonzero((sample_counts(coords, np.float32) != sample_counts(coords, np.float64)).any(1))[0]
    assert len(flipped) >= 0.02 * len(crops), len(flipped)
    maps64 = official_tensors(scores[flipped], classes[flipped]).double()
    float64_geometry = torch.softmax(official_pooled_logits(maps64, crops.coords[flipped].double(), C), 1).numpy()
    assert np.abs(float64_geometry - official_exact_softmax[flipped]).max() > 1e-4
    np.testing.assert_array_less(np.abs(targets[flipped] - official_exact_softmax[flipped]).max(), TARGET_TOL)


def test_default_mode_pools_the_true_box(crops, official):
    """The default mode differs from the official one by the axis quirk (and its float64 geometry): it pools the
    crop's true box, so on the transposed image and crop it gives the official targets."""
    n = 2000
    sub = type(crops)(crops.sizes[:n], crops.windows[:n], crops.coords[:n])
    scores, classes = (a[:n] for a in official_maps(len(crops), "float16"))
    official_targets = torch.softmax(official["float16"][:n].double(), 1).numpy()
    pool = PipelineLabelPool(num_classes=C)
    true_box, _, _ = pool(sub, scores, classes)
    per_crop = np.abs(true_box - official_targets).max(1)
    assert (per_crop > 1e-3).mean() > 0.5  # most crops are not square: a different box, a different target
    transposed = type(crops)([(w, h) for h, w in sub.sizes], [(j, i, w, h) for i, j, h, w in sub.windows], sub.coords)
    swapped, _, _ = pool(transposed, scores, classes)
    coords = sub.coords.numpy()
    same_grid = (sample_counts(coords, np.float32) == sample_counts(coords, np.float64)).all(1)
    assert np.abs(swapped[same_grid] - official_targets[same_grid]).max() <= TARGET_TOL
    # Where the float64 geometry takes another sample count, the documented default semantics differ a little.
    assert np.abs(swapped[~same_grid] - official_targets[~same_grid]).max() > 1e-5


def test_default_mode_against_torchvision_in_float64_and_float32(crops):
    """The default mode is torchvision's roi_align on a float64 map and box (its documented semantics): measured
    against it, and against torchvision run in float32 (float32 map and box, the true axes), on the same crops."""
    scores, classes = official_maps(len(crops), "float32")
    maps = official_tensors(scores, classes)
    targets, rel_start, rel_end = PipelineLabelPool(num_classes=C)(crops, scores, classes)
    corners = np.concatenate([rel_start, rel_end], 1)
    c = corners.astype(np.float64)  # y0, x0, y1, x1 as the operator received them
    boxes64 = torch.from_numpy(np.stack([c[:, 1] * MAP - 0.5, c[:, 0] * MAP - 0.5, c[:, 3] * MAP - 0.5,
                                         c[:, 2] * MAP - 0.5], 1))
    c32 = torch.from_numpy(corners)
    boxes32 = torch.stack([c32[:, 1] * MAP - 0.5, c32[:, 0] * MAP - 0.5, c32[:, 3] * MAP - 0.5, c32[:, 2] * MAP - 0.5],
                          1)
    ref64 = torch.softmax(roi_align_of_present_classes(maps.double(), boxes64, C), 1).numpy()
    ref32_logits = roi_align_of_present_classes(maps, boxes32, C)
    ref32 = torch.softmax(ref32_logits.double(), 1).numpy()
    diff64, diff32 = np.abs(targets - ref64).max(1), np.abs(targets - ref32).max(1)
    same_grid = (sample_counts(corners[:, [1, 0, 3, 2]], np.float32) ==
                 sample_counts(corners[:, [1, 0, 3, 2]], np.float64)).all(1)
    print(f"\ndefault mode, {len(crops)} crops: max |targets - torchvision float64| = {diff64.max():.2e}; "
          f"vs torchvision float32 (exact softmax): {diff32.max():.2e} overall, {diff32[same_grid].max():.2e} on the "
          f"{same_grid.sum()} crops where float32 takes the float64 sample grid, {diff32[~same_grid].max():.2e} on the "
          f"other {(~same_grid).sum()}")
    assert diff64.max() <= 1e-6
    assert diff32[same_grid].max() <= 2e-6  # float32 positions, fractions and sums
    assert diff32[~same_grid].max() > 1e-4  # whole-cell boxes: float32 takes another sample grid


@requires_gpu
@pytest.mark.parametrize("score_dtype", ["float16", "float32"])
def test_gpu_official_mode_reproduces_the_official_targets(crops, official, score_dtype):
    scores, classes = official_maps(len(crops), score_dtype)
    targets, _, _ = PipelineLabelPool("gpu", num_classes=C, transpose_box=True, validate=False)(crops, scores, classes)
    official_exact_softmax = torch.softmax(official[score_dtype].double(), 1).numpy()
    assert np.abs(targets - torch.softmax(official[score_dtype], 1).numpy()).max() <= TARGET_TOL_F32_RUN
    assert np.abs(targets - official_exact_softmax).max() <= TARGET_TOL


CUDASIM_CROPS = 600


@pytest.mark.cudasim
@pytest.mark.parametrize("score_dtype", ["float16", "float32"])
def test_cuda_backend_official_mode_in_the_simulator(crops, official, ours, score_dtype, cudasim_driver):
    """The CUDA kernel (unmodified, run by cudasim) reproduces the official targets as the CPU backend does.

    The simulator runs one OS thread per CUDA thread, so it gets a subset: every crop where float32 and float64
    geometry take different sample grids (the whole-cell spans the float32 geometry exists for), then others.
    """
    from cudasim import ops
    from cudasim.harness import Session

    coords = crops.coords.numpy()
    flipped = np.nonzero((sample_counts(coords, np.float32) != sample_counts(coords, np.float64)).any(1))[0]
    others = np.setdiff1d(np.arange(len(crops)), flipped)[: max(0, CUDASIM_CROPS - len(flipped))]
    pick = np.concatenate([flipped, others])[:CUDASIM_CROPS]
    assert len(flipped) >= 100 and len(pick) == CUDASIM_CROPS

    scores, classes = official_maps(len(crops), score_dtype)
    cpu_targets, _, corners = ours[score_dtype]
    starts, ends = corners[pick, :2], corners[pick, 2:]
    s = Session()
    ops.label_pool(s, "official", "gpu", [scores[i] for i in pick], [classes[i] for i in pick], list(starts),
                   list(ends), num_classes=C, transpose_box=True)
    gpu = ops.stacked(s.execute(cudasim_driver)["official"])
    official_exact_softmax = torch.softmax(official[score_dtype][pick].double(), 1).numpy()
    print(f"\ncudasim, {score_dtype}: {len(pick)} crops ({len(flipped)} whole-cell spans): max |gpu - cpu| = "
          f"{np.abs(gpu - cpu_targets[pick]).max():.2e}, |gpu - softmax(official logits)| = "
          f"{np.abs(gpu - official_exact_softmax).max():.2e}")
    assert np.abs(gpu.astype(np.float64) - cpu_targets[pick]).max() <= 1e-6
    assert np.abs(gpu - official_exact_softmax).max() <= TARGET_TOL
    assert np.abs(gpu - torch.softmax(official[score_dtype][pick], 1).numpy()).max() <= TARGET_TOL_F32_RUN
