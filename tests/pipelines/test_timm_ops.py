"""pipelines/timm_ops.py against timm's own ops (PIL, run by timm's AugmentOp with its coin flips fixed): the same
arguments from the same magnitudes and signs, and the same pixels up to the documented differences."""

from __future__ import annotations

import numpy as np
import pytest
from timm_reference import dali_op, sample_images, timm_op

from dali_relabel.augment_spec import SUPPORTED_OPS
from dali_relabel.pipelines.timm_ops import OPS

MAGNITUDES = (3.0, 9.0)
# PIL's look-up tables and blends, recomputed: at most 1 level off, and rarely (the blends' float32 factors vs PIL's
# double: where the exact value is an integer, float32 may truncate it one level lower)
EXACT = ("AutoContrast", "Invert", "Posterize", "PosterizeIncreasing", "PosterizeOriginal", "Solarize",
         "SolarizeIncreasing", "SolarizeAdd", "Brightness", "BrightnessIncreasing", "Color", "ColorIncreasing",
         "Contrast", "ContrastIncreasing", "Desaturate")
GEOMETRY = ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY", "TranslateXRel", "TranslateYRel")
SIGNED = GEOMETRY + ("BrightnessIncreasing", "ColorIncreasing", "ContrastIncreasing", "SharpnessIncreasing")


def cases(rand: float = 0.3):
    return [(image, m, negate, rand) for image in sample_images() for m in MAGNITUDES for negate in (0, 1)]


def run(name: str, rand: float = 0.3, arithmetic: bool = False):
    """[(image, ours, timm's, timm's with the other sign)] for every case (ours: the CPU's implementation, or
    with ``arithmetic`` the GPU's, run on the CPU)."""
    mp = pytest.MonkeyPatch()
    todo = cases(rand)
    ours = dali_op(name, *zip(*todo), arithmetic=arithmetic)
    assert all(o.dtype == np.uint8 and o.shape == t[0].shape for o, t in zip(ours, todo)), name
    return [(image, out, timm_op(name, image, m, bool(n), r, mp), timm_op(name, image, m, not n, r, mp))
            for (image, m, n, r), out in zip(todo, ours)]


def diff(a, b):
    return np.abs(a.astype(np.int32) - b.astype(np.int32))


def test_every_supported_op_has_an_implementation():
    assert set(OPS) == set(SUPPORTED_OPS)


# The CPU's saturation is one colour matrix: the blend with L not rounded per pixel (PIL rounds L first), so up to
# (1 - factor) / 2 levels apart before the truncation: one level, in about a fifth of the values.
MATRIX_SATURATION = ("Color", "ColorIncreasing", "Desaturate")


@pytest.mark.parametrize("arithmetic", [False, True], ids=["cpu", "gpu_arithmetic"])
@pytest.mark.parametrize("name", EXACT)
def test_lookup_and_blend_ops_are_pils(name, arithmetic):
    changed = 0.0
    tolerance = 0.25 if name in MATRIX_SATURATION and not arithmetic else 0.1
    for image, ours, ref, _ in run(name, arithmetic=arithmetic):
        d = diff(ours, ref)
        assert d.max() <= 1 and d.mean() < tolerance, (name, d.max(), d.mean())
        changed = max(changed, diff(ref, image).mean())
    assert changed > 2, f"{name} changed nothing on the test images: the comparison proves nothing"


@pytest.mark.parametrize("name", GEOMETRY)
def test_geometry_is_pils_affine_map(name):
    """Equal to PIL's bilinear warp but on the 1-pixel edge where the fill colour meets the image (PIL does not
    blend the fill into that edge); the other sign would be far off (the direction is timm's)."""
    for image, ours, ref, other in run(name):
        d = diff(ours, ref).max(-1)
        assert (d > 1).mean() < 0.04 and d.mean() < 2.0, (name, (d > 1).mean(), d.mean())
        assert diff(ours, other).mean() > 5 * max(d.mean(), 1.0), name


@pytest.mark.parametrize("name", ["Sharpness", "SharpnessIncreasing"])
def test_sharpness_is_pils_inside_the_border(name):
    """PIL keeps the 1-pixel border unfiltered; inside it the SMOOTH blend is PIL's (one filter on both devices)."""
    for image, ours, ref, _ in run(name):
        assert diff(ours, ref)[1:-1, 1:-1].max() <= 1, name


def test_signed_ops_follow_timms_sign():
    for name in SIGNED:
        results = run(name)
        ours = np.mean([diff(o, r).mean() for _, o, r, _ in results])
        other = np.mean([diff(o, x).mean() for _, o, _, x in results])
        assert other > 3 * ours + 0.5, (name, ours, other)


def test_equalize_is_close_to_pils():
    """DALI equalizes with OpenCV's mapping (inclusive histogram sums), PIL with its own (exclusive sums, rounded
    steps): a few levels apart, and where equalizing changes an image much, far closer to PIL's than the input."""
    for image, ours, ref, _ in run("Equalize"):
        assert diff(ours, ref).mean() < 10
        if diff(ref, image).mean() > 15:
            assert diff(ours, ref).mean() < 0.25 * diff(ref, image).mean()


@pytest.mark.parametrize("name,rand", [("GaussianBlur", 0.3), ("GaussianBlurRand", 0.9)])
def test_gaussian_blur_is_close_to_pils(name, rand):
    """A Gaussian of sigma = PIL's radius; PIL approximates it by box blurs."""
    for image, ours, ref, _ in [r for r in run(name, rand)]:
        if diff(ref, image).mean() < 2:   # (small radii barely blur)
            continue
        assert diff(ours, ref).mean() < 0.5 * diff(ref, image).mean(), name


def test_zero_magnitude_geometry_is_the_identity():
    images = sample_images()[:2]
    for name in GEOMETRY:
        for out, image in zip(dali_op(name, images, [0.0, 0.0], [0, 1], [0.0, 0.0]), images):
            np.testing.assert_array_equal(out, image)


def test_posterize_to_zero_bits_is_black():
    """timm asks PIL for 0 bits at PosterizeIncreasing's magnitude 10 (and Posterize's below 2.5): PIL < 11 returned
    a black image (mask 0), Pillow >= 11 raises. Ours is black, what timm computes the mask for."""
    images = sample_images()[:2]
    for name, magnitude in (("PosterizeIncreasing", 10.0), ("Posterize", 2.0)):
        for out in dali_op(name, images, [magnitude] * 2, [0, 0], [0.0, 0.0]):
            assert not out.any(), name
