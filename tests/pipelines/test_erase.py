"""pipelines/erase.py draws its regions as timm's RandomErasing draws them (the same distributions of how often,
how many, how large, where), fills them as timm does, and leaves the rest of each image untouched."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from nvidia.dali import fn, pipeline_def, types
from scipy.stats import ks_2samp

from dali_relabel.pipelines.erase import random_erase

SIZE, N, VALUE = 48, 2000, 5.0


def ours(prob, mode, count, n=N, layout="CHW", dtype=np.float32, seed=0):
    shape = (3, SIZE, SIZE) if layout == "CHW" else (SIZE, SIZE, 3)

    @pipeline_def(batch_size=n, num_threads=1, device_id=None, seed=seed)
    def pipe():
        images = fn.reshape(types.Constant(np.full(shape, VALUE, dtype)), layout=layout)
        return random_erase(images, prob=prob, mode=mode, max_count=count, size=(SIZE, SIZE),
                            seed=lambda k: seed * 1000 + k, device="cpu", channels_last=layout == "HWC")

    p = pipe()
    p.build()
    (out,) = p.run()
    arrays = [np.array(out[i]).astype(np.float32) for i in range(n)]
    return [a if layout == "CHW" else a.transpose(2, 0, 1) for a in arrays]


def timms(prob, mode, count, n=N, seed=0):
    from timm.data.random_erasing import RandomErasing

    random.seed(seed)
    torch.manual_seed(seed)
    erase = RandomErasing(prob, mode=mode, max_count=count, device="cpu")
    return [erase(torch.full((3, SIZE, SIZE), VALUE)).numpy() for _ in range(n)]


def erased(image):
    """[H, W] bool: where any channel differs from the untouched value."""
    return (image != VALUE).any(0)


def box(mask):
    """(h, w, top, left) of the erased pixels' bounding box."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1, rows[0], cols[0]


def test_one_region_is_drawn_as_timm_draws_it():
    a, b = ours(0.6, "const", 1), timms(0.6, "const", 1)
    ma, mb = [erased(x) for x in a], [erased(x) for x in b]
    hit_a, hit_b = np.mean([m.any() for m in ma]), np.mean([m.any() for m in mb])
    assert abs(hit_a - hit_b) < 4 * np.sqrt(0.24 * 2 / N) and abs(hit_a - 0.6) < 0.05
    boxes_a = np.array([box(m) for m in ma if m.any()])
    boxes_b = np.array([box(m) for m in mb if m.any()])
    for i, what in enumerate(("height", "width", "top", "left")):
        assert ks_2samp(boxes_a[:, i], boxes_b[:, i]).pvalue > 1e-3, what
    for m in ma:       # each region is a filled rectangle of zeros (the mean colour after normalization)
        if m.any():
            h, w, top, left = box(m)
            assert m.sum() == h * w
    assert all(x[:, erased(x)].max() == 0.0 for x in a if erased(x).any())


def test_several_regions_cover_what_timms_cover():
    a, b = ours(1.0, "const", 3), timms(1.0, "const", 3)
    frac_a = np.array([erased(x).mean() for x in a])
    frac_b = np.array([erased(x).mean() for x in b])
    assert ks_2samp(frac_a, frac_b).pvalue > 1e-3
    assert (frac_a > 0).mean() > 0.97


@pytest.mark.parametrize("mode", ["rand", "pixel"])
def test_random_fills(mode):
    """rand: one N(0, 1) value per channel and region; pixel: N(0, 1) per pixel."""
    values, per_region_spread = [], []
    for image in ours(1.0, mode, 1, n=400):
        mask = erased(image)
        if not mask.any():
            continue
        inside = image[:, mask]                              # [3, pixels]
        values.append(inside if mode == "pixel" else inside[:, :1])
        per_region_spread.append(np.ptp(inside, axis=1).max())
    values = np.concatenate(values, 1)
    assert abs(values.mean()) < 0.1 and abs(values.std() - 1) < 0.1
    if mode == "rand":
        assert max(per_region_spread) == 0.0
    else:
        assert min(per_region_spread) > 0.5


def test_layouts_and_dtypes_erase_the_same_regions():
    """The draws do not depend on the layout or the dtype (float16 is erased through float32 in pixel mode)."""
    for mode in ("const", "pixel"):
        chw = [erased(x) for x in ours(1.0, mode, 2, n=50)]
        hwc = [erased(x) for x in ours(1.0, mode, 2, n=50, layout="HWC", dtype=np.float16)]
        assert all(np.array_equal(x, y) for x, y in zip(chw, hwc)), mode


def test_probability_zero_and_the_untouched_pixels():
    assert not any(erased(x).any() for x in ours(0.0, "pixel", 3, n=200))
    for x in ours(1.0, "pixel", 3, n=200):
        assert (x[:, ~erased(x)] == VALUE).all()
