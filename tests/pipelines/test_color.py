"""pipelines/color.py: ColorJitter's factors and random order, RandomGrayscale and the blur, against torchvision's
definitions (the enhance ops themselves are PIL's: tests/pipelines/test_timm_ops.py)."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from nvidia.dali import fn, pipeline_def, types
from nvidia.dali.pipeline import do_not_convert
from PIL import Image
from scipy.stats import kstest
from timm_reference import sample_images

from dali_relabel.pipelines import color
from dali_relabel.pipelines.timm_ops import OpContext


def run(stage, images, n=None, conditionals=True, arithmetic=False):
    """``stage(images_node, ctx, seed)`` on uint8 HWC images (repeated to ``n`` samples); ``arithmetic``: the
    implementation the GPU runs."""
    images = list(images) * ((n or len(images)) // len(images))
    size = images[0].shape[:2]
    ctx = OpContext(size=size, fill=(0, 0, 0), translate_const=0, arithmetic=arithmetic)

    @pipeline_def(batch_size=len(images), num_threads=1, device_id=None, seed=0, enable_conditionals=conditionals)
    def pipe():
        data = fn.external_source(lambda: images, batch=True, layout="HWC", dtype=types.UINT8)
        return stage(data, ctx, lambda k: 7000 + k)

    p = pipe()
    p.build()
    (out,) = p.run()
    return images, [np.array(out[i]) for i in range(len(images))]


def recorder(code):
    """A jitter op that only records (its code, 100 · factor) in the first pixel, shifting the rest right."""
    @do_not_convert
    def op(images, factor, ctx):
        pixel = fn.stack(types.Constant(np.float32(code)), factor * 100.0, types.Constant(np.float32(0)))
        pixel = fn.reshape(fn.cast(pixel, dtype=types.UINT8), shape=[1, 1, 3], layout="HWC")
        return fn.cat(pixel, images[:, 0:7], axis=1)
    return op


def test_jitter_factors_and_order(monkeypatch):
    """Each factor uniform in [max(0, 1 - s), 1 + s]; the three ops in each of the 6 orders equally often; with
    color_jitter_prob, applied to that fraction of the images."""
    monkeypatch.setattr(color, "_JITTER_OPS", (recorder(1), recorder(2), recorder(3)))
    blank = np.zeros((1, 8, 3), np.uint8)
    strengths = (0.4, 0.2, 0.8)
    _, outs = run(lambda d, ctx, seed: color.color_jitter(d, strengths, ctx, seed, prob=0.8), [blank], n=3000)
    applied = [o[0, :3][::-1] for o in outs if o[0, 0, 0]]          # oldest first
    assert abs(len(applied) / 3000 - 0.8) < 0.03
    orders = Counter(tuple(int(px[0]) for px in rec) for rec in applied)
    assert set(orders) == set(itertools.permutations((1, 2, 3)))
    assert all(abs(c / len(applied) - 1 / 6) < 0.03 for c in orders.values()), orders
    for code, s in zip((1, 2, 3), strengths):
        factors = np.array([px[1] for rec in applied for px in rec if px[0] == code]) / 100.0
        lo, hi = max(0.0, 1 - s), 1 + s
        assert kstest(factors, "uniform", args=(lo, hi - lo)).statistic < 0.03, (code, factors.min(), factors.max())


def test_jitter_leaves_out_zero_strengths(monkeypatch):
    monkeypatch.setattr(color, "_JITTER_OPS", (recorder(1), recorder(2), recorder(3)))
    _, outs = run(lambda d, ctx, seed: color.color_jitter(d, (0.3, 0.0, 0.3), ctx, seed), [np.zeros((1, 8, 3),
                                                                                                 np.uint8)], n=300)
    assert {tuple(int(px[0]) for px in o[0, :2][::-1]) for o in outs} == {(1, 3), (3, 1)}
    assert all(o[0, 2, 0] == 0 for o in outs)


def test_jitter_on_images_is_a_chain_of_pil_enhancements():
    """Each output is PIL's Brightness/Contrast/Color chain for some order and factors in range: checked by
    the brightness-only case, where the output is floor(f · x) for one f per image."""
    image = np.full((8, 8, 3), 100, np.uint8)
    _, outs = run(lambda d, ctx, seed: color.color_jitter(d, (0.4, 0.0, 0.0), ctx, seed), [image], n=1000)
    factors = np.array([o[0, 0, 0] for o in outs]) / 100.0
    assert all((o == o[0, 0, 0]).all() for o in outs)
    assert kstest(factors + 0.005, "uniform", args=(0.6, 0.8)).statistic < 0.05


@pytest.mark.parametrize("arithmetic", [False, True])
def test_grayscale_is_pils_luma(arithmetic):
    """PIL's L in the three channels: exactly (GPU's arithmetic); the CPU's colour matrix in float32 (PIL: integer
    weights) may round a value on a .5 boundary the other way."""
    images, outs = run(lambda d, ctx, seed: color.grayscale(d, 0.3, ctx, seed), sample_images(32), n=400,
                       conditionals=False, arithmetic=arithmetic)
    gray, off = 0, []
    for image, out in zip(images, outs):
        if np.array_equal(out, image):
            continue
        gray += 1
        ref = np.asarray(Image.fromarray(image).convert("L")).astype(int)
        d = np.abs(out.astype(int) - ref[..., None])
        assert d.max() <= (0 if arithmetic else 1)
        off.append((d > 0).mean())
    assert abs(gray / len(images) - 0.3) < 0.07
    assert np.mean(off) < 0.01


def test_blur_is_torchvisions_gaussian_blur():
    """With a given sigma, torchvision's GaussianBlur(23) (reflected borders, rounded), up to 1 level."""
    images = sample_images(32)
    for sigma in (0.5, 1.3, 2.0):
        _, outs = run(lambda d, ctx, seed: color._blurred(d, types.Constant(np.float32(sigma)), ctx), images,
                      conditionals=False)
        for image, out in zip(images, outs):
            ref = TF.gaussian_blur(torch.from_numpy(image.copy()).permute(2, 0, 1), [23, 23], [sigma, sigma])
            d = np.abs(out.astype(int) - ref.permute(1, 2, 0).numpy().astype(int))
            assert d.max() <= 1 and np.abs(ref.permute(1, 2, 0).numpy().astype(int) - image).mean() > 1


def test_blur_probability():
    images, outs = run(lambda d, ctx, seed: color.gaussian_blur(d, 0.25, ctx, seed), sample_images(32), n=400)
    blurred = np.mean([not np.array_equal(o, i) for i, o in zip(images, outs)])
    assert abs(blurred - 0.25) < 0.07
