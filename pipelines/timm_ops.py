"""timm's RandAugment / AutoAugment image ops in DALI, on uint8 HWC images, with timm's arguments.

Each op is ``op(images, magnitude, negate, rand, ctx)``: ``magnitude`` float32 per sample on timm's scale (10 = the
op's full range, already clipped), ``negate`` int32 0/1 per sample (1: the op's argument is negated, for the ops
timm negates at random), ``rand`` float32 in [0, 1) per sample (GaussianBlurRand's radius). The argument is
computed from the magnitude with timm's arithmetic (``timm.data.auto_augment``'s ``*_level_to_arg``), and the
image op follows PIL's (what timm applies) where DALI can:

* geometry (Rotate, Shear*, Translate*) is PIL's exact affine map (output pixel centre → input position, the
  same matrix PIL builds), sampled bilinearly (DALI's warp has nearest and linear only; timm uses the loader's
  interpolation), areas from outside the image filled with timm's fill colour (the mean, per channel);
* the enhance ops (Color, Contrast, Brightness, Sharpness) blend with PIL's degenerate images (luma L from PIL's
  integer weights, the rounded mean of L, black, the SMOOTH filter) and truncate as PIL's blend does;
* Posterize, Solarize, SolarizeAdd, Invert, AutoContrast are PIL's look-up tables, computed the same way;
* Equalize is DALI's (OpenCV's formula: PIL's differs by a few levels per pixel), GaussianBlur a true Gaussian
  of sigma = PIL's radius (PIL approximates it by box blurs), Sharpness's 1-pixel border is filtered too (PIL
  keeps it): the documented differences; ``tests/pipelines/test_timm_ops.py`` measures each op against timm.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import nvidia.dali.math as dmath
from nvidia.dali import fn, types
from nvidia.dali.pipeline import do_not_convert

from dali_relabel.augment_spec import LEVEL_DENOM, TRANSLATE_PCT


@dataclasses.dataclass(frozen=True)
class OpContext:
    """What the ops need beyond the image and its magnitude.

    Attributes:
        size: (height, width) of the images (the crops: fixed).
        fill: fill colour of areas moved in from outside the image, (R, G, B) 0–255 (timm: the mean).
        translate_const: TranslateX/Y's shift at magnitude 10, pixels (timm: 0.45 × the image size).
        device: "cpu" or "gpu": where the images are (per-sample values are moved there for arithmetic).
        arithmetic: compute the enhance ops by DALI arithmetic on the images even on the CPU (what the GPU runs;
            the tests compare both). On the CPU they otherwise use DALI's native colour operators, several
            times faster there, whose parameters must be CPU values (so on the GPU, where the image statistics
            they need are GPU values, arithmetic is used).
    """

    size: tuple[int, int]
    fill: tuple[int, int, int]
    translate_const: int
    device: str = "cpu"
    arithmetic: bool = False

    @property
    def native(self) -> bool:
        return self.device == "cpu" and not self.arithmetic


# Graph size: the ops run inside DALI conditionals, which split every input an op reads from outside its branch,
# constants included (a constant used n branches deep costs n splits). So the ops use scalar arithmetic with
# Python numbers (kept in the expression, not split) and build matrices from per-sample scalars; the only
# constant tensor is the fill colour.

@do_not_convert
def _on(ctx: OpContext, node):
    """A per-sample CPU value where the images are (DALI's arithmetic needs its inputs on one device)."""
    return node.gpu() if ctx.device == "gpu" else node


@do_not_convert
def _sign(negate):
    return 1.0 - 2.0 * fn.cast(negate, dtype=types.FLOAT)


@do_not_convert
def _level(magnitude):
    return magnitude / LEVEL_DENOM


@do_not_convert
def _to_uint8_truncated(values):
    """float → uint8 as PIL's blend stores it: clipped to [0, 255], truncated."""
    return fn.cast(dmath.clamp(dmath.floor(values), 0.0, 255.0), dtype=types.UINT8)


# ---- geometry ----------------------------------------------------------------------------------------------

@do_not_convert
def _affine(images, coefficients, ctx: OpContext):
    """PIL's ``Image.transform(size, AFFINE, (a, b, c, d, e, f))``: output (x, y) shows input (ax+by+c, dx+ey+f).

    ``coefficients``: the six per-sample float32 scalars. DALI's warp with ``inverse_map`` takes the same
    destination → source matrix, in the same coordinates (origin at the image's corner, pixel centres at +0.5).
    Areas from outside the image get ``ctx.fill``: the image is framed by one pixel of the fill colour (a padded
    slice) and warped without a fill value, so that source positions outside the frame are clamped to it (DALI's
    warp fills with one value for all channels; this is one copy and a uint8 warp, where shifting the image by
    the fill colour in int16 took four passes of arithmetic more: 3× slower on the CPU).
    """
    a, b, c, d, e, f = coefficients
    matrix = fn.reshape(fn.stack(a, b, c + 1.0, d, e, f + 1.0), shape=[2, 3])      # (the frame: +1 pixel)
    h, w = ctx.size
    framed = fn.slice(fn.reshape(images, layout="HWC"), start=[-1, -1], shape=[h + 2, w + 2], axes=[0, 1],
                      out_of_bounds_policy="pad", fill_values=[float(v) for v in ctx.fill])
    return fn.warp_affine(framed, matrix=matrix, size=[h, w], interp_type=types.INTERP_LINEAR, inverse_map=True)


@do_not_convert
def _shift_matrix(value, position: int):
    """(a, b, c, d, e, f) of the identity with entry ``position`` (0..5) set to the per-sample ``value``."""
    zero = value * 0.0
    entries = [zero + 1.0, zero, zero, zero, zero + 1.0, zero]
    entries[position] = value
    return entries


@do_not_convert
def rotate(images, magnitude, negate, rand, ctx: OpContext):
    """timm: degrees = M/10 · 30, randomly negated; PIL ``rotate`` (counter-clockwise about the centre)."""
    degrees = _level(magnitude) * 30.0 * _sign(negate)
    angle = degrees * (-math.pi / 180.0)                # PIL's rotate builds its matrix from -radians(degrees)
    cos, sin = dmath.cos(angle), dmath.sin(angle)
    h, w = ctx.size
    cx, cy = w / 2.0, h / 2.0
    coefficients = (cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy)
    return _affine(images, coefficients, ctx)


def _shear(position: int):
    @do_not_convert
    def shear(images, magnitude, negate, rand, ctx: OpContext):
        """timm: factor = M/10 · 0.3, randomly negated; PIL's affine (1, f, 0, 0, 1, 0) (x) or (1, 0, 0, f, 1, 0)."""
        factor = _level(magnitude) * 0.3 * _sign(negate)
        return _affine(images, _shift_matrix(factor, position), ctx)
    return shear


def _translate(position: int, relative: bool):
    @do_not_convert
    def translate(images, magnitude, negate, rand, ctx: OpContext):
        """timm: pixels = M/10 · 0.45 · width (x) or height (y) for the Rel ops, M/10 · translate_const for the
        others, randomly negated; PIL's affine (1, 0, pixels, 0, 1, 0) (x) or (1, 0, 0, 0, 1, pixels) (y)."""
        if relative:
            scale = TRANSLATE_PCT * float(ctx.size[1] if position == 2 else ctx.size[0])
        else:
            scale = float(ctx.translate_const)
        return _affine(images, _shift_matrix(_level(magnitude) * scale * _sign(negate), position), ctx)
    return translate


# ---- enhance (PIL's ImageEnhance: blend with a degenerate image) -------------------------------------------

@do_not_convert
def luma(images, ctx: OpContext):
    """PIL's ``convert("L")``: (19595 R + 38470 G + 7471 B + 0x8000) >> 16, int32 [H, W, 1]."""
    rgb = fn.cast(images, dtype=types.INT32)
    weighted = rgb[:, :, 0:1] * 19595 + rgb[:, :, 1:2] * 38470 + rgb[:, :, 2:3] * 7471
    return (weighted + 32768) // 65536


@do_not_convert
def _blend(degenerate, images, factor, ctx: OpContext):
    """PIL's ``Image.blend(degenerate, images, factor)`` on uint8: degenerate + factor · (image − degenerate),
    truncated. (PIL computes it in double, this in float32: where the exact value is an integer, a pixel can
    come out one level lower.)"""
    degenerate = fn.cast(degenerate, dtype=types.FLOAT)
    return _to_uint8_truncated(degenerate + _on(ctx, factor) * (fn.cast(images, dtype=types.FLOAT) - degenerate))


@do_not_convert
def enhance_factor(magnitude, negate, increasing: bool):
    """timm: M/10 · 1.8 + 0.1 (in [0.1, 1.9]); the increasing ops: max(0.1, 1 ± M/10 · 0.9)."""
    if increasing:
        return dmath.max(1.0 + _sign(negate) * _level(magnitude) * 0.9, 0.1)
    return _level(magnitude) * 1.8 + 0.1


# A float → uint8 conversion rounds; PIL's blends truncate. Shifting by -0.5 (+ a margin for the rounding of the
# shift itself) makes DALI's rounding a truncation (but for fractions above 0.999).
_TRUNCATE = -0.5 + 1e-3


LUMA_WEIGHTS = (19595 / 65536, 38470 / 65536, 7471 / 65536)    # PIL's L (ITU-R 601-2): its integer weights / 2**16


@do_not_convert
def saturation_matrix(images, factor, shift: float):
    """``L + factor · (x − L)`` per pixel as one colour matrix (DALI's coord_transform), L = the luma of x (not
    rounded, unlike PIL's), plus ``shift`` before the conversion to uint8 (which rounds). CPU only."""
    keep = 1.0 - factor
    entries = []
    for c in range(3):
        entries += [keep * w + (factor if j == c else 0.0) for j, w in enumerate(LUMA_WEIGHTS)]
        entries.append(factor * 0.0 + shift)
    mt = fn.cast(fn.reshape(fn.stack(*entries), shape=[3, 4]), dtype=types.FLOAT)
    return fn.coord_transform(images, MT=mt, dtype=types.UINT8)


@do_not_convert
def color_by(images, factor, ctx: OpContext):
    """PIL ``ImageEnhance.Color``: blend with the image's grayscale (L) version, truncated. Native: one colour
    matrix (L not rounded per pixel first: a pixel can be one level apart)."""
    if ctx.native:
        return saturation_matrix(images, factor, _TRUNCATE)
    return _blend(luma(images, ctx), images, factor, ctx)


@do_not_convert
def contrast_by(images, factor, ctx: OpContext):
    """PIL ``ImageEnhance.Contrast``: blend with a flat image of the rounded mean of L. Native: the mean of L from
    the channel means (PIL averages L's rounded pixels: the centre can be one level apart)."""
    if ctx.native:
        means = fn.reductions.mean(images, axis_names="HW")
        center = dmath.floor(sum(means[c] * w for c, w in enumerate(LUMA_WEIGHTS)) + 0.5)
        return fn.brightness_contrast(images, contrast=factor, contrast_center=center,
                                      brightness_shift=_TRUNCATE / 255.0)
    total = fn.reductions.sum(luma(images, ctx), dtype=types.INT64, axis_names="HWC", keep_dims=True)
    mean = fn.cast(total, dtype=types.FLOAT64) / float(ctx.size[0] * ctx.size[1])   # (exact below 2**24 pixels)
    return _blend(dmath.floor(mean + 0.5), images, factor, ctx)


@do_not_convert
def brightness_by(images, factor, ctx: OpContext):
    """PIL ``ImageEnhance.Brightness``: blend with black."""
    if ctx.native:
        return fn.brightness(images, brightness=factor, brightness_shift=_TRUNCATE / 255.0)
    return _to_uint8_truncated(fn.cast(images, dtype=types.FLOAT) * _on(ctx, factor))


@do_not_convert
def sharpness_by(images, factor, ctx: OpContext):
    """PIL ``ImageEnhance.Sharpness``: blend with the image filtered by PIL's SMOOTH kernel, [[1, 1, 1], [1, 5, 1],
    [1, 1, 1]] / 13: one filter whose kernel is the blend, (1 − f) · SMOOTH + f · identity (PIL rounds the smoothed
    image before blending, and keeps the 1-pixel border unfiltered)."""
    side = (1.0 - factor) / 13.0
    centre = (1.0 - factor) * (5.0 / 13.0) + factor
    kernel = fn.reshape(fn.stack(side, side, side, side, centre, side, side, side, side), shape=[3, 3])
    return fn.filter(images, _on(ctx, fn.cast(kernel, dtype=types.FLOAT)), border="clamp")


def _enhance(apply, increasing: bool):
    @do_not_convert
    def op(images, magnitude, negate, rand, ctx: OpContext):
        return apply(images, enhance_factor(magnitude, negate, increasing), ctx)
    return op


@do_not_convert
def desaturate(images, magnitude, negate, rand, ctx: OpContext):
    """timm (3a): factor = clamp(0.5 + M/10 · 0.5, 0.5, 1); Color by clamp(1 − factor, 0, 1)."""
    factor = dmath.clamp(0.5 + 0.5 * _level(magnitude), 0.5, 1.0)
    return color_by(images, dmath.clamp(1.0 - factor, 0.0, 1.0), ctx)


# ---- look-up-table ops -------------------------------------------------------------------------------------

def _posterize(offset: float, increasing: bool):
    """timm: bits = int(M/10 · 4) (+4 for PosterizeOriginal; 4 − bits for PosterizeIncreasing); PIL keeps the
    ``bits`` high bits (bits >= 8: unchanged; bits <= 0: black): the mask 256 − 2 ** (8 − bits)."""
    @do_not_convert
    def posterize(images, magnitude, negate, rand, ctx: OpContext):
        bits = dmath.floor(_level(magnitude) * 4.0)
        bits = 4.0 - bits if increasing else bits + offset
        mask = 256.0 - dmath.pow(2.0, 8.0 - dmath.clamp(bits, 0.0, 8.0))
        return images & _on(ctx, fn.cast(mask, dtype=types.UINT8))
    return posterize


def _solarize(increasing: bool):
    """timm: threshold = min(256, int(M/10 · 256)) (256 − that when increasing); PIL inverts pixels >= it.
    (255 − x = x XOR 255 on uint8: one XOR with 255 where x >= threshold, 0 elsewhere.)"""
    @do_not_convert
    def solarize(images, magnitude, negate, rand, ctx: OpContext):
        threshold = dmath.min(dmath.floor(_level(magnitude) * 256.0), 256.0)
        if increasing:
            threshold = 256.0 - threshold
        flip = (images >= _on(ctx, fn.cast(threshold, dtype=types.INT32))) * _on(ctx, _U8_255(threshold))
        return images ^ flip
    return solarize


@do_not_convert
def _U8_255(like):
    """A per-sample uint8 255 (made from a per-sample value: no constant to split per branch)."""
    return fn.cast(like * 0.0 + 255.0, dtype=types.UINT8)


@do_not_convert
def solarize_add(images, magnitude, negate, rand, ctx: OpContext):
    """timm: add = min(128, int(M/10 · 110)); pixels below 128 get min(255, pixel + add) (= pixel + add: at
    most 127 + 128, so uint8 arithmetic without a clamp)."""
    add = _on(ctx, fn.cast(dmath.min(dmath.floor(_level(magnitude) * 110.0), 128.0), dtype=types.UINT8))
    return images + (images < 128) * add


@do_not_convert
def invert(images, magnitude, negate, rand, ctx: OpContext):
    """255 − x, as uint8 XOR 255."""
    return images ^ types.Constant(np.uint8(255), device=ctx.device)


@do_not_convert
def auto_contrast(images, magnitude, negate, rand, ctx: OpContext):
    """PIL ``ImageOps.autocontrast``: per channel, int(x · scale + offset) with scale = 255 / (hi − lo) and
    offset = −lo · scale (in double, as PIL computes its table); channels with hi <= lo are unchanged. Native: one
    colour matrix (diag(scale), offset), in float32."""
    lo = fn.cast(fn.reductions.min(images, axis_names="HW", keep_dims=not ctx.native), dtype=types.FLOAT64)
    hi = fn.cast(fn.reductions.max(images, axis_names="HW", keep_dims=not ctx.native), dtype=types.FLOAT64)
    spread = hi - lo
    flat = fn.cast(spread <= 0.0, dtype=types.FLOAT64)
    scale = 255.0 / (spread + flat) * (1.0 - flat) + flat          # flat channels: x · 1 + 0
    offset = -lo * scale * (1.0 - flat)
    if ctx.native:
        zero = scale[0] * 0.0
        rows = [(scale[c] if j == c else zero) for c in range(3) for j in range(3)]
        shifts = [offset[c] + _TRUNCATE for c in range(3)]
        mt = fn.stack(*(rows[0:3] + shifts[0:1] + rows[3:6] + shifts[1:2] + rows[6:9] + shifts[2:3]))
        return fn.coord_transform(images, MT=fn.cast(fn.reshape(mt, shape=[3, 4]), dtype=types.FLOAT),
                                  dtype=types.UINT8)
    values = dmath.floor(fn.cast(images, dtype=types.FLOAT64) * scale + offset)
    return fn.cast(dmath.clamp(values, 0.0, 255.0), dtype=types.UINT8)


@do_not_convert
def equalize(images, magnitude, negate, rand, ctx: OpContext):
    """Histogram equalization per channel (DALI's, OpenCV's formula)."""
    return fn.equalize(images)


# ---- blur --------------------------------------------------------------------------------------------------

@do_not_convert
def _blur(images, radius):
    sigma = dmath.max(radius, 0.01)
    return fn.gaussian_blur(images, sigma=fn.stack(sigma, sigma))


@do_not_convert
def gaussian_blur(images, magnitude, negate, rand, ctx: OpContext):
    """timm (3a): radius = clamp(0.1 + M/10 · 1.9, 0.1, 2); a Gaussian of sigma = radius."""
    return _blur(images, dmath.clamp(0.1 + 1.9 * _level(magnitude), 0.1, 2.0))


@do_not_convert
def gaussian_blur_rand(images, magnitude, negate, rand, ctx: OpContext):
    """timm (3a): radius uniform between 0.1 and 2 · clamp(M/10, 0, 1)."""
    top = 2.0 * dmath.clamp(_level(magnitude), 0.0, 1.0)
    return _blur(images, 0.1 + (top - 0.1) * rand)


@do_not_convert
def identity(images, magnitude, negate, rand, ctx: OpContext):
    return images


# timm op name -> DALI implementation (augment_spec.SUPPORTED_OPS lists the same names). The ops have no
# data-dependent Python control flow and are kept out of AutoGraph's conversion (@do_not_convert: it would
# transpile each of them, seconds per graph; the tests check the batches are the same either way).
OPS = {
    "AutoContrast": auto_contrast, "Equalize": equalize, "Invert": invert, "Rotate": rotate,
    "Posterize": _posterize(0.0, False), "PosterizeIncreasing": _posterize(0.0, True),
    "PosterizeOriginal": _posterize(4.0, False),
    "Solarize": _solarize(False), "SolarizeIncreasing": _solarize(True), "SolarizeAdd": solarize_add,
    "Color": _enhance(color_by, False), "ColorIncreasing": _enhance(color_by, True),
    "Contrast": _enhance(contrast_by, False), "ContrastIncreasing": _enhance(contrast_by, True),
    "Brightness": _enhance(brightness_by, False), "BrightnessIncreasing": _enhance(brightness_by, True),
    "Sharpness": _enhance(sharpness_by, False), "SharpnessIncreasing": _enhance(sharpness_by, True),
    "ShearX": _shear(1), "ShearY": _shear(3),
    "TranslateX": _translate(2, False), "TranslateY": _translate(5, False),
    "TranslateXRel": _translate(2, True), "TranslateYRel": _translate(5, True),
    "Desaturate": desaturate, "GaussianBlur": gaussian_blur, "GaussianBlurRand": gaussian_blur_rand,
}

__all__ = ["LUMA_WEIGHTS", "OPS", "OpContext", "brightness_by", "color_by", "contrast_by", "enhance_factor",
           "identity", "luma", "saturation_matrix", "sharpness_by"]
