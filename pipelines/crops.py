"""The training crops: ``crops_per_image`` random-resized crops of each image, decoded once, with boxes and flips.

How the crops are made, and why (measured on the 2-core development CPU, 500×375 JPEGs, B = 32, 2 threads,
CPU milliseconds per 224-px crop; ``benchmarks/loader_bench.py --breakdown`` measures it again):

* ``n = 1``: only the crop's window is decoded (``fn.decoders.image_slice``: ~0.7 ms instead of ~0.9 ms for
  the whole image), then resized.
* ``n > 1``: the whole image is decoded once (~0.9 ms, ~0.2 ms per crop at n = 4) and every crop is read
  from it in place. Decoding n windows instead would decode the overlapping parts again, and n full
  decodes would cost n times the decode.
* The resize, not the decode, is what a crop costs on a CPU: DALI's ``fn.resize`` takes ~1.2 ms per crop
  (antialiased linear filter), ``crop_mirror_normalize`` ~0.1 ms more, so with DALI's operators n = 4
  gives only ~1.3× the crops per second of n = 1. The candidates measured with DALI's operators — a
  ``fn.resize`` per crop over the crop's region of interest (no slice copy; the fastest of them), a
  ``fn.slice`` + ``fn.resize`` per crop (+8%: the slice copy), ``fn.random_resized_crop`` per crop (same
  resize inside, but its windows are not exposed for the labels), one ``crop_mirror_normalize`` over the
  stacked uint8 crops instead of one per crop (the same within noise), uint8 output normalized by torch
  (moves the work to the training process), antialiasing off (-25%, but other pixels than the reference's)
  — all leave the resize dominant, and DALI's resize cannot take per-crop regions over a sequence of
  crops (``fn.per_frame`` regions are refused). So on the CPU the crops are made by
  ``fn.relabel.resized_crop`` (``resampler="pillow"``): one pass per crop from the decoded image to the
  normalized, flipped output, resampled with Pillow's fixed-point arithmetic in vectorized loops: ~0.2 ms
  per crop, and the crops equal torchvision's RandomResizedCrop + flip + ToTensor + Normalize of the same
  decoded image bit for bit.
* On the GPU (``resampler="dali"``): mixed decoding once, then per crop one ``fn.resize`` over its region
  of interest with the flip fused in (a reversed x range), the uint8 crops stacked, one
  ``crop_mirror_normalize`` over them (:func:`~.image.dali_resized_crops`).

Each crop has its own generators: crop ``k``'s window and flip streams are derived from the augmentation
seed and ``k``, and crop 0's are the single-crop pipeline's (so crop 0 of ``n`` crops is the crop that
``n = 1`` would give, box and flip).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from nvidia.dali import fn, types

from dali_relabel.config import AugmentConfig

from .crop import random_resized_crop_box
from .image import dali_resized_crops, decode, decode_window, normalize, resize_square, resized_crops


def crop_stream(k: int) -> int:
    """Operator id of crop ``k``'s window generator (crop 0: the single-crop pipeline's)."""
    return 1 if k == 0 else 1000 + 2 * k     # (3..399: the timm augmentations' streams, pipelines/augment.py)


def flip_stream(k: int) -> int:
    """Operator id of crop ``k``'s flip generator (crop 0: the single-crop pipeline's)."""
    return 2 if k == 0 else 1001 + 2 * k


@dataclasses.dataclass(frozen=True)
class TrainCrops:
    """The crops of a batch of images, and what the label ops and the loaders need of them.

    Attributes:
        images: per image ``[3, S, S]`` (one crop) or ``[n, 3, S, S]`` (``[.., S, S, 3]`` channels_last).
        rel_starts, rel_ends: per crop k, float32 ``[2]`` normalized (y, x) corners of its box.
        flips: per crop k, int32 ``[]`` (1: flipped).
    """

    images: object
    rel_starts: tuple
    rel_ends: tuple
    flips: tuple

    @property
    def count(self) -> int:
        return len(self.rel_starts)

    def boxes(self):
        """``[4]`` (one crop) or ``[n, 4]`` normalized (y0, x0, y1, x1)."""
        boxes = [fn.cat(s, e) for s, e in zip(self.rel_starts, self.rel_ends)]
        return boxes[0] if self.count == 1 else fn.stack(*boxes)

    def mirror(self):
        """int32 ``[]`` (one crop) or ``[n]``: 1 where the crop was flipped."""
        return self.flips[0] if self.count == 1 else fn.stack(*self.flips)


def random_resized_crops(jpegs, augment: AugmentConfig, *, device: str, seed_of: Callable[[int], int]) -> TrainCrops:
    """``augment.crops_per_image`` random-resized crops of each encoded image (see the module).

    Args:
        jpegs: encoded images (CPU), e.g. from a reader.
        augment: crop_size, area, aspect, flip_prob, crops_per_image, resampler, interpolation, normalization.
        device: "cpu" or "gpu" (mixed decoding, crops on the GPU).
        seed_of: operator id -> generator seed (-1: derived from the pipeline's seed), see :func:`crop_stream`.
    """
    n, resampler = augment.crops_per_image, augment.resampler_for(device)
    windows, starts, ends, flips = [], [], [], []
    for k in range(n):
        anchor, shape, rel_start, rel_end = random_resized_crop_box(jpegs, area=augment.area, aspect=augment.aspect,
                                                                    seed=seed_of(crop_stream(k)))
        windows.append((anchor, shape))
        starts.append(rel_start)
        ends.append(rel_end)
        flips.append(fn.cast(fn.random.coin_flip(probability=augment.flip_prob, seed=seed_of(flip_stream(k))),
                             dtype=types.INT32))
    if n == 1:
        window = decode_window(jpegs, *windows[0], device=device)
        if resampler == "pillow":
            images = resized_crops(window, augment, mirror=flips[0])
        else:
            images = normalize(resize_square(window, augment), augment, mirror=flips[0])
    elif resampler == "pillow":
        images = resized_crops(decode(jpegs, device=device), augment, anchor=fn.stack(*(a for a, _ in windows)),
                               shape=fn.stack(*(s for _, s in windows)), mirror=fn.stack(*flips))
    else:
        images = dali_resized_crops(decode(jpegs, device=device), augment, windows=windows, mirrors=flips)
    return TrainCrops(images=images, rel_starts=tuple(starts), rel_ends=tuple(ends), flips=tuple(flips))


__all__ = ["TrainCrops", "crop_stream", "flip_stream", "random_resized_crops"]
