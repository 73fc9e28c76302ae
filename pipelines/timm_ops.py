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
    """

    size: tuple[int, int]
    fill: tuple[int, int, int]
    translate_const: int
    device: str = "cpu"


@do_not_convert
def _on(ctx: OpContext, node):
    """A per-sample CPU value where the images are (DALI's arithmetic needs its inputs on one device)."""
    return node.gpu() if ctx.device == "gpu" else node


@do_not_convert
def _const(value, dtype, ctx: OpContext):
    return types.Constant(np.asarray(value, dtype=dtype), device=ctx.device)


@do_not_convert
def _sign(negate):
    return 1.0 - 2.0 * fn.cast(negate, dtype=types.FLOAT64)


@do_not_convert
def _double(value: float):
    """``value`` as an exact double. DALI keeps scalar constants of its arithmetic in float32 (1.8 would be
    1.7999999523), so the double is the sum of three float32 parts (24 + 24 + the remaining bits, each exact)."""
    parts, rest = [], float(value)
    for _ in range(3):
        part = float(np.float32(rest))
        parts.append(part)
        rest -= part
    assert rest == 0.0, value
    total = None
    for part in parts:
        term = fn.cast(types.Constant(np.float32(part)), dtype=types.FLOAT64)
        total = term if total is None else total + term
    return total


@do_not_convert
def _level(magnitude):
    """M / 10, in double: timm computes its arguments in Python floats, PIL blends with a double factor."""
    return fn.cast(magnitude, dtype=types.FLOAT64) / _double(LEVEL_DENOM)


@do_not_convert
def _to_uint8_truncated(values):
    """float → uint8 as PIL's blend stores it: clipped to [0, 255], truncated."""
    return fn.cast(dmath.clamp(dmath.floor(values), 0.0, 255.0), dtype=types.UINT8)


# ---- geometry ----------------------------------------------------------------------------------------------

@do_not_convert
def _affine(images, coefficients, ctx: OpContext):
    """PIL's ``Image.transform(size, AFFINE, (a, b, c, d, e, f))``: output (x, y) shows input (ax+by+c, dx+ey+f).

    ``coefficients``: a float32 [2, 3] per-sample matrix (CPU). DALI's warp with ``inverse_map`` takes the same
    destination → source matrix, in the same coordinates (origin at the image's corner, pixel centres at +0.5).
    Areas from outside the image get ``ctx.fill``: the image is shifted by -fill in int16, warped with fill 0 and
    shifted back (DALI's warp fills with one value for all channels).
    """
    fill = _const(ctx.fill, np.int16, ctx)
    shifted = fn.cast(images, dtype=types.INT16) - fill
    warped = fn.warp_affine(shifted, matrix=coefficients, fill_value=0.0, interp_type=types.INTERP_LINEAR,
                            inverse_map=True)
    return fn.cast(dmath.clamp(warped + fill, 0, 255), dtype=types.UINT8)


@do_not_convert
def _matrix(entries: dict[tuple[int, int], object]):
    """A [2, 3] float32 per-sample matrix: the identity plus the given (row, column) → value entries."""
    base = np.array([[1, 0, 0], [0, 1, 0]], np.float32)
    out = None
    for (r, c), value in entries.items():
        base[r, c] = 0.0
        unit = np.zeros((2, 3), np.float32)
        unit[r, c] = 1.0
        term = value * types.Constant(unit)
        out = term if out is None else out + term
    return fn.cast(out + types.Constant(base), dtype=types.FLOAT)


def rotate(images, magnitude, negate, rand, ctx: OpContext):
    """timm: degrees = M/10 · 30, randomly negated; PIL ``rotate`` (counter-clockwise about the centre)."""
    degrees = _level(magnitude) * 30.0 * _sign(negate)
    angle = -degrees * (math.pi / 180.0)                # PIL's rotate builds its matrix from -radians(degrees)
    cos, sin = dmath.cos(angle), dmath.sin(angle)
    h, w = ctx.size
    cx, cy = w / 2.0, h / 2.0
    matrix = _matrix({(0, 0): cos, (0, 1): sin, (0, 2): cx - cos * cx - sin * cy,
                      (1, 0): -sin, (1, 1): cos, (1, 2): cy + sin * cx - cos * cy})
    return _affine(images, matrix, ctx)


def _shear(row: int, column: int):
    def shear(images, magnitude, negate, rand, ctx: OpContext):
        factor = _level(magnitude) * 0.3 * _sign(negate)
        return _affine(images, _matrix({(row, column): factor}), ctx)
    return shear


def _translate(row: int, relative: bool):
    def translate(images, magnitude, negate, rand, ctx: OpContext):
        if relative:   # timm: pct = M/10 · 0.45, pixels = pct · the image's width (x) or height (y)
            pixels = _level(magnitude) * TRANSLATE_PCT * _sign(negate) * float(ctx.size[1 - row])
        else:          # timm: pixels = M/10 · translate_const
            pixels = _level(magnitude) * float(ctx.translate_const) * _sign(negate)
        return _affine(images, _matrix({(row, 2): pixels}), ctx)
    return translate


# ---- enhance (PIL's ImageEnhance: blend with a degenerate image) -------------------------------------------

@do_not_convert
def luma(images, ctx: OpContext):
    """PIL's ``convert("L")``: (19595 R + 38470 G + 7471 B + 0x8000) >> 16, int32 [H, W, 1]."""
    weighted = fn.cast(images, dtype=types.INT32) * _const([19595, 38470, 7471], np.int32, ctx)
    return (fn.reductions.sum(weighted, axis_names="C", keep_dims=True) + 32768) // 65536


@do_not_convert
def _blend(degenerate, images, factor, ctx: OpContext):
    """PIL's ``Image.blend(degenerate, images, factor)`` on uint8: degenerate + factor · (image − degenerate),
    in double as PIL computes it."""
    degenerate = fn.cast(degenerate, dtype=types.FLOAT64)
    factor = _on(ctx, fn.cast(factor, dtype=types.FLOAT64))
    return _to_uint8_truncated(degenerate + factor * (fn.cast(images, dtype=types.FLOAT64) - degenerate))


@do_not_convert
def enhance_factor(magnitude, negate, increasing: bool):
    """timm: M/10 · 1.8 + 0.1 (in [0.1, 1.9]); the increasing ops: max(0.1, 1 ± M/10 · 0.9)."""
    if increasing:
        return dmath.max(_double(1.0) + _sign(negate) * _level(magnitude) * _double(0.9), _double(0.1))
    return _level(magnitude) * _double(1.8) + _double(0.1)


@do_not_convert
def color_by(images, factor, ctx: OpContext):
    """PIL ``ImageEnhance.Color``: blend with the image's grayscale (L) version."""
    return _blend(luma(images, ctx), images, factor, ctx)


@do_not_convert
def contrast_by(images, factor, ctx: OpContext):
    """PIL ``ImageEnhance.Contrast``: blend with a flat image of the rounded mean of L."""
    total = fn.reductions.sum(luma(images, ctx), dtype=types.INT64, axis_names="HWC", keep_dims=True)
    mean = fn.cast(total, dtype=types.FLOAT64) / float(ctx.size[0] * ctx.size[1])   # (an integer: exact)
    return _blend(dmath.floor(mean + 0.5), images, factor, ctx)


@do_not_convert
def brightness_by(images, factor, ctx: OpContext):
    """PIL ``ImageEnhance.Brightness``: blend with black."""
    return _to_uint8_truncated(fn.cast(images, dtype=types.FLOAT64) * _on(ctx, fn.cast(factor, dtype=types.FLOAT64)))


_SMOOTH = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], np.float32) / 13.0


@do_not_convert
def sharpness_by(images, factor, ctx: OpContext):
    """PIL ``ImageEnhance.Sharpness``: blend with the image filtered by PIL's SMOOTH kernel (rounded)."""
    smooth = fn.filter(images, _const(_SMOOTH, np.float32, ctx), dtype=types.FLOAT, border="clamp")
    smooth = fn.cast(smooth, dtype=types.FLOAT64)
    return _blend(dmath.floor(smooth + 0.5), images, factor, ctx)


def _enhance(apply, increasing: bool):
    def op(images, magnitude, negate, rand, ctx: OpContext):
        return apply(images, enhance_factor(magnitude, negate, increasing), ctx)
    return op


def desaturate(images, magnitude, negate, rand, ctx: OpContext):
    """timm (3a): factor = clamp(0.5 + M/10 · 0.5, 0.5, 1); Color by clamp(1 − factor, 0, 1)."""
    factor = dmath.clamp(0.5 + 0.5 * _level(magnitude), 0.5, 1.0)
    return color_by(images, dmath.clamp(1.0 - factor, 0.0, 1.0), ctx)


# ---- look-up-table ops -------------------------------------------------------------------------------------

def _posterize(offset: float, increasing: bool):
    """timm: bits = int(M/10 · 4) (+4 for PosterizeOriginal; 4 − bits for PosterizeIncreasing); PIL keeps the
    ``bits`` high bits (bits >= 8: unchanged; bits <= 0: black)."""
    masks = np.array([(0xFF << (8 - b)) & 0xFF for b in range(9)], np.uint8)   # index: bits 0..8

    def posterize(images, magnitude, negate, rand, ctx: OpContext):
        bits = dmath.floor(_level(magnitude) * 4.0)
        bits = 4.0 - bits if increasing else bits + offset
        index = fn.cast(dmath.clamp(bits, 0.0, 8.0), dtype=types.INT32)
        return images & _on(ctx, types.Constant(masks)[index])
    return posterize


def _solarize(increasing: bool):
    """timm: threshold = min(256, int(M/10 · 256)) (256 − that when increasing); PIL inverts pixels >= it."""
    def solarize(images, magnitude, negate, rand, ctx: OpContext):
        threshold = dmath.min(dmath.floor(_level(magnitude) * 256.0), 256.0)
        if increasing:
            threshold = 256.0 - threshold
        threshold = _on(ctx, fn.cast(threshold, dtype=types.INT32))
        keep = fn.cast(images, dtype=types.INT32) < threshold
        return _select_uint8(keep, images, invert(images, None, None, None, ctx))
    return solarize


@do_not_convert
def _select_uint8(mask, where_true, where_false):
    """``where_true`` where ``mask`` else ``where_false`` (uint8)."""
    mask = fn.cast(mask, dtype=types.UINT8)
    return fn.cast(mask * where_true + (types.Constant(1, dtype=types.UINT8) - mask) * where_false,
                   dtype=types.UINT8)


def solarize_add(images, magnitude, negate, rand, ctx: OpContext):
    """timm: add = min(128, int(M/10 · 110)); pixels below 128 get min(255, pixel + add)."""
    add = _on(ctx, fn.cast(dmath.min(dmath.floor(_level(magnitude) * 110.0), 128.0), dtype=types.INT32))
    raised = fn.cast(dmath.min(fn.cast(images, dtype=types.INT32) + add, 255), dtype=types.UINT8)
    return _select_uint8(images < types.Constant(128, dtype=types.UINT8), raised, images)


def invert(images, magnitude, negate, rand, ctx: OpContext):
    return types.Constant(255, dtype=types.UINT8) - images


def auto_contrast(images, magnitude, negate, rand, ctx: OpContext):
    """PIL ``ImageOps.autocontrast``: per channel, int(x · scale + offset) with scale = 255 / (hi − lo) and
    offset = −lo · scale (in double, as PIL computes its table); channels with hi <= lo are unchanged."""
    lo = fn.cast(fn.reductions.min(images, axis_names="HW", keep_dims=True), dtype=types.FLOAT64)
    hi = fn.cast(fn.reductions.max(images, axis_names="HW", keep_dims=True), dtype=types.FLOAT64)
    spread = hi - lo
    flat = fn.cast(spread <= 0.0, dtype=types.FLOAT64)
    scale = 255.0 / (spread + flat)            # (flat channels: any finite scale, replaced below)
    offset = -lo * scale
    values = dmath.floor(fn.cast(images, dtype=types.FLOAT64) * scale + offset)
    values = values * (1.0 - flat) + fn.cast(images, dtype=types.FLOAT64) * flat
    return fn.cast(dmath.clamp(values, 0.0, 255.0), dtype=types.UINT8)


def equalize(images, magnitude, negate, rand, ctx: OpContext):
    """Histogram equalization per channel (DALI's, OpenCV's formula)."""
    return fn.equalize(images)


# ---- blur --------------------------------------------------------------------------------------------------

@do_not_convert
def _blur(images, radius):
    sigma = fn.cast(dmath.max(radius, 0.01), dtype=types.FLOAT)
    return fn.gaussian_blur(images, sigma=fn.stack(sigma, sigma))


def gaussian_blur(images, magnitude, negate, rand, ctx: OpContext):
    """timm (3a): radius = clamp(0.1 + M/10 · 1.9, 0.1, 2); a Gaussian of sigma = radius."""
    return _blur(images, dmath.clamp(0.1 + 1.9 * _level(magnitude), 0.1, 2.0))


def gaussian_blur_rand(images, magnitude, negate, rand, ctx: OpContext):
    """timm (3a): radius uniform between 0.1 and 2 · clamp(M/10, 0, 1)."""
    top = 2.0 * dmath.clamp(_level(magnitude), 0.0, 1.0)
    return _blur(images, 0.1 + (top - 0.1) * rand)


def identity(images, magnitude, negate, rand, ctx: OpContext):
    return images


# timm op name -> DALI implementation (augment_spec.SUPPORTED_OPS lists the same names). The ops have no
# data-dependent Python control flow: they are kept out of AutoGraph's conversion (which otherwise transpiles
# every op of every branch again, seconds per graph; the tests check the batches are the same either way).
OPS = {
    "AutoContrast": auto_contrast, "Equalize": equalize, "Invert": invert, "Rotate": rotate,
    "Posterize": _posterize(0.0, False), "PosterizeIncreasing": _posterize(0.0, True),
    "PosterizeOriginal": _posterize(4.0, False),
    "Solarize": _solarize(False), "SolarizeIncreasing": _solarize(True), "SolarizeAdd": solarize_add,
    "Color": _enhance(color_by, False), "ColorIncreasing": _enhance(color_by, True),
    "Contrast": _enhance(contrast_by, False), "ContrastIncreasing": _enhance(contrast_by, True),
    "Brightness": _enhance(brightness_by, False), "BrightnessIncreasing": _enhance(brightness_by, True),
    "Sharpness": _enhance(sharpness_by, False), "SharpnessIncreasing": _enhance(sharpness_by, True),
    "ShearX": _shear(0, 1), "ShearY": _shear(1, 0),
    "TranslateX": _translate(0, False), "TranslateY": _translate(1, False),
    "TranslateXRel": _translate(0, True), "TranslateYRel": _translate(1, True),
    "Desaturate": desaturate, "GaussianBlur": gaussian_blur, "GaussianBlurRand": gaussian_blur_rand,
}
OPS = {name: do_not_convert(op) for name, op in OPS.items()}
identity = do_not_convert(identity)

__all__ = ["OPS", "OpContext", "brightness_by", "color_by", "contrast_by", "enhance_factor", "identity", "luma",
           "sharpness_by"]
