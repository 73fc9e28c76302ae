"""torchvision's ColorJitter (brightness, contrast, saturation, in a random order), RandomGrayscale and
timm's Gaussian blur, on uint8 HWC images in a DALI graph.

ColorJitter on a PIL image (what timm applies): each factor uniform in ``[max(0, 1 − s), 1 + s]``, the ops in a
random order per image, each a PIL ``ImageEnhance`` blend: Brightness, Contrast, Color (saturation) — the same
ops as RandAugment's (:mod:`.timm_ops`). RandomGrayscale: PIL's L, three channels. Blur (timm's
``gaussian_blur_prob``): torchvision's ``GaussianBlur(kernel_size=23)``, sigma uniform in [0.1, 2], reflected
borders.
"""

from __future__ import annotations

import itertools
from typing import Callable

import numpy as np
from nvidia.dali import fn, types
from nvidia.dali.pipeline import do_not_convert

from .auto_augment import select
from .timm_ops import OpContext, brightness_by, color_by, contrast_by, luma, saturation_matrix

_JITTER_OPS = (brightness_by, contrast_by, color_by)   # the order of color_jitter's (b, c, s)


@do_not_convert
def _keep(images, factor, ctx):
    return images


def color_jitter(images, factors: tuple[float, float, float], ctx: OpContext, seed: Callable[[int], int],
                 prob: float | None = None):
    """ColorJitter(brightness, contrast, saturation) = ``factors`` (0: that op is off), applied with ``prob``
    (None: always), the enabled ops in a uniformly random order per image."""
    enabled = [i for i, s in enumerate(factors) if s > 0]
    drawn = {i: fn.random.uniform(range=[max(0.0, 1.0 - factors[i]), 1.0 + factors[i]], seed=seed(1 + i))
             for i in enabled}
    orders = np.array(list(itertools.permutations(range(len(enabled)))), np.int32)
    order = fn.random.uniform(values=list(range(len(orders))), dtype=types.INT32, seed=seed(4))
    skip = None
    if prob is not None:
        skip = 1 - fn.cast(fn.random.coin_flip(probability=prob, seed=seed(5)), dtype=types.INT32)
    ops = [_jitter_op(enabled[k]) for k in range(len(enabled))] + [_keep]
    for position in range(len(enabled)):
        which = types.Constant(orders[:, position])[order]           # index into `enabled`
        if skip is not None:
            which = which * (1 - skip) + len(enabled) * skip
        factor = _pick([drawn[i] for i in enabled], which)
        images = select(ops, which, images, factor, ctx)
    return images


@do_not_convert
def _jitter_op(index: int):
    apply = _JITTER_OPS[index]

    def op(images, factor, ctx):
        return apply(images, factor, ctx)
    return op


@do_not_convert
def _pick(values, which):
    """``values[which]`` per sample (float32 scalars; the index ``len(values)`` gives 1.0, the neutral factor)."""
    stacked = fn.stack(*values, types.Constant(np.float32(1.0)))
    return stacked[which]


@do_not_convert
def grayscale(images, prob: float, ctx: OpContext, seed: Callable[[int], int]):
    """torchvision's RandomGrayscale(prob) on PIL images: L = PIL's luma (rounded), in the three channels."""
    keep = fn.cast(1 - fn.cast(fn.random.coin_flip(probability=prob, seed=seed(6)), dtype=types.INT32),
                   dtype=types.FLOAT)                          # 0: grayscale, 1: unchanged
    if ctx.native:
        return saturation_matrix(images, keep, 0.0)
    gray = fn.cast(luma(images, ctx), dtype=types.UINT8)
    gray = fn.cat(gray, gray, gray, axis=2)
    coin = fn.cast(1.0 - keep, dtype=types.UINT8)
    coin = coin.gpu() if ctx.device == "gpu" else coin
    return coin * gray + (types.Constant(1, dtype=types.UINT8) - coin) * images


@do_not_convert
def _blurred(images, sigma, ctx):
    return fn.gaussian_blur(images, window_size=23, sigma=fn.stack(sigma, sigma))


@do_not_convert
def _unblurred(images, sigma, ctx):
    return images


def gaussian_blur(images, prob: float, ctx: OpContext, seed: Callable[[int], int]):
    """timm's ``gaussian_blur_prob``: with ``prob``, torchvision's GaussianBlur(23, sigma uniform in [0.1, 2])."""
    sigma = fn.random.uniform(range=[0.1, 2.0], seed=seed(7))
    which = 1 - fn.cast(fn.random.coin_flip(probability=prob, seed=seed(8)), dtype=types.INT32)
    return select([_blurred, _unblurred], which, images, sigma, ctx)


__all__ = ["color_jitter", "gaussian_blur", "grayscale"]
