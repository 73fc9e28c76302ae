"""timm's RandomErasing on normalized images in a DALI graph (``fn.erase``), drawn as timm draws it.

Per image, with probability ``prob``: ``count`` regions (uniform in 1..max_count); each region tries up to 10
(area, aspect) draws — area uniform in [0.02, 1/3] of the image divided by ``count``, log-aspect uniform in
[log 0.3, log 1/0.3], ``h = round(sqrt(area · aspect))``, ``w = round(sqrt(area / aspect))`` — and takes the
first that fits (``h < H`` and ``w < W``; none fits: no region), at a uniform position. The erased pixels,
after normalization: 0 (``"const"``, the mean colour), one N(0, 1) value per channel (``"rand"``) or N(0, 1) per
pixel (``"pixel"``). All draws are made for every image (unused ones are discarded), so the batch's draws
depend on the seed and the batch's index only.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import nvidia.dali.math as dmath
from nvidia.dali import fn, types
from nvidia.dali.pipeline import do_not_convert

ATTEMPTS = 10
AREA = (0.02, 1 / 3)
LOG_ASPECT = (math.log(0.3), math.log(1 / 0.3))


@do_not_convert
def _region(height: int, width: int, count, active, seed: Callable[[int], int], stream: int):
    """One region's (anchor, shape) as float32 [2] (y, x); shape 0 when inactive or nothing fits."""
    area = fn.random.uniform(range=list(AREA), shape=[ATTEMPTS], seed=seed(stream)) * float(height * width) / count
    aspect = dmath.exp(fn.random.uniform(range=list(LOG_ASPECT), shape=[ATTEMPTS], seed=seed(stream + 1)))
    h = dmath.floor(dmath.sqrt(area * aspect) + 0.5)
    w = dmath.floor(dmath.sqrt(area / aspect) + 0.5)
    fits = fn.cast((w < float(width)) & (h < float(height)), dtype=types.INT32)
    attempt = types.Constant(np.arange(ATTEMPTS, dtype=np.int32))
    first = fn.reductions.min(fits * attempt + (1 - fits) * ATTEMPTS)       # ATTEMPTS: none fits
    found = fn.cast(first < ATTEMPTS, dtype=types.FLOAT) * fn.cast(active, dtype=types.FLOAT)
    first = dmath.min(first, ATTEMPTS - 1)
    h, w = h[first] * found, w[first] * found
    u = fn.random.uniform(range=[0.0, 1.0], shape=[2], seed=seed(stream + 2))
    top = dmath.floor(u[0] * (float(height) - h + 1.0))      # timm: randint(0, H - h), inclusive
    left = dmath.floor(u[1] * (float(width) - w + 1.0))
    return fn.stack(top, left), fn.stack(h, w)


@do_not_convert
def random_erase(images, *, prob: float, mode: str, max_count: int, size: tuple[int, int],
                 seed: Callable[[int], int], device: str, channels_last: bool = False):
    """Erases regions of normalized float images.

    Args:
        images: the normalized crops (float32 or float16), all ``size`` = (height, width), CHW (HWC with
            ``channels_last``).
        prob: probability that an image is erased at all. mode: "const", "rand" or "pixel".
        max_count: the most regions per image. seed: stream number → generator seed.
        device: where the images are.
    """
    height, width = size
    active = fn.random.coin_flip(probability=prob, seed=seed(1))
    count = types.Constant(np.float32(1.0))
    if max_count > 1:
        count = fn.cast(fn.random.uniform(values=list(range(1, max_count + 1)), dtype=types.INT32, seed=seed(2)),
                        dtype=types.FLOAT)
    regions = []
    for r in range(max_count):
        in_count = active if r == 0 else active & (count > float(r))
        regions.append(_region(height, width, count, in_count, seed, 10 + 10 * r))
    if mode == "rand":   # one colour per region: one erase per region
        for r, (anchor, shape) in enumerate(regions):
            color = fn.random.normal(shape=[3], seed=seed(5 + 10 + 10 * r))
            images = fn.erase(images, anchor=anchor, shape=shape, axis_names="HW", fill_value=color)
        return images
    anchors = fn.cat(*[a for a, _ in regions])
    shapes = fn.cat(*[s for _, s in regions])
    if mode == "const":
        return fn.erase(images, anchor=anchors, shape=shapes, axis_names="HW", fill_value=0.0)
    # "pixel": per region, N(0, 1) noise of the region's own size, placed by a padded slice (zeros around it),
    # added where the region was erased to 0 (in float32: DALI's arithmetic has no float16)
    values = fn.cast(images, dtype=types.FLOAT)
    for r, (anchor, shape) in enumerate(regions):
        size = fn.cast(shape, dtype=types.INT32)
        dims = fn.stack(size[0], size[1], 3) if channels_last else fn.stack(3 + 0 * size[0], size[0], size[1])
        noise = fn.random.normal(shape=dims, seed=seed(3 + 10 * r), device=device)
        placed = fn.slice(noise, start=fn.cast(-anchor, dtype=types.INT32), shape=[height, width],
                          axes=[0, 1] if channels_last else [1, 2], out_of_bounds_policy="pad", fill_values=0.0)
        values = fn.erase(values, anchor=anchor, shape=shape, axis_names="HW", fill_value=0.0) + placed
    return fn.cast_like(values, images)

__all__ = ["ATTEMPTS", "random_erase"]
