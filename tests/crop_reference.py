"""Independent references for the crops: torchvision's own transforms on PIL images, and DALI's crop sampler.

`torchvision_crop` is what a torchvision ImageNet pipeline does to one image (RandomResizedCrop's
``F.resized_crop`` on the PIL image, ``RandomHorizontalFlip``, ``ToTensor``, ``Normalize``), called through
torchvision's public functions: ``fn.relabel.resized_crop`` must equal it bit for bit. `sample_crop_windows`
re-implements the window sampler of ``fn.random_crop_generator`` (area uniform, aspect ratio log-uniform,
rounded sizes, rejection, fallback) in numpy, for distribution tests.
"""

from __future__ import annotations

import numpy as np
import torch
import torchvision.transforms.functional as F
from torchvision.transforms import InterpolationMode

from dali_relabel.normalization import IMAGENET_MEAN, IMAGENET_STD

INTERPOLATION_MODES = {"bilinear": InterpolationMode.BILINEAR, "triangular": InterpolationMode.BILINEAR,
                       "bicubic": InterpolationMode.BICUBIC, "lanczos": InterpolationMode.LANCZOS,
                       "nearest": InterpolationMode.NEAREST}


def pixel_window(box, height: int, width: int) -> tuple[int, int, int, int]:
    """A normalized (y0, x0, y1, x1) box of an integer window → (top, left, h, w) pixels."""
    y0, x0, y1, x1 = (float(v) for v in box)
    top, left = round(y0 * height), round(x0 * width)
    return top, left, round(y1 * height) - top, round(x1 * width) - left


def torchvision_crop(image, window, mirror: bool, size, *, interpolation: str = "bilinear", mean=IMAGENET_MEAN,
                     std=IMAGENET_STD, normalize: bool = True) -> torch.Tensor:
    """torchvision's crop of a PIL image: ``[3, H, W]`` float32 normalized (uint8 ``[H, W, 3]`` if not
    ``normalize``)."""
    size = [size, size] if isinstance(size, int) else list(size)
    top, left, h, w = window
    crop = F.resized_crop(image, top, left, h, w, size, interpolation=INTERPOLATION_MODES[interpolation])
    if mirror:
        crop = F.hflip(crop)
    if not normalize:
        return torch.from_numpy(np.asarray(crop).copy())
    return F.normalize(F.to_tensor(crop), list(mean), list(std))


def sample_crop_windows(rng: np.random.Generator, height: int, width: int, count: int, *,
                        area=(0.08, 1.0), aspect=(3 / 4, 4 / 3), attempts: int = 10) -> np.ndarray:
    """``count`` windows (top, left, h, w) drawn as DALI's random_crop_generator draws them."""
    out = np.empty((count, 4), np.int64)
    lo, hi = np.log(aspect[0]), np.log(aspect[1])
    for i in range(count):
        for _ in range(attempts):
            target = rng.uniform(*area) * height * width
            ratio = np.exp(rng.uniform(lo, hi))
            w = max(1, int(np.round(np.sqrt(target * ratio))))
            h = max(1, int(np.round(np.sqrt(target / ratio))))
            if w <= width and h <= height and aspect[0] <= w / h <= aspect[1]:
                break
        else:   # the fallback: the whole image (clamped to the aspect range), scaled to the largest area
            w, h = width, height
            if w / h > aspect[1]:
                w = max(1, int(h * aspect[1]))
            elif w / h < aspect[0]:
                h = max(1, int(w / aspect[0]))
            scale = min(1.0, area[1] * width * height / (w * h))
            w, h = max(1, int(w * np.sqrt(scale))), max(1, int(h * np.sqrt(scale)))
        out[i] = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1), h, w
    return out


def ks_statistic(a, b) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical CDFs."""
    a, b = np.sort(np.asarray(a, np.float64)), np.sort(np.asarray(b, np.float64))
    grid = np.concatenate([a, b])
    cdf_a, cdf_b = np.searchsorted(a, grid, "right") / len(a), np.searchsorted(b, grid, "right") / len(b)
    return float(np.max(np.abs(cdf_a - cdf_b)))


def ks_critical(n: int, m: int, alpha: float = 1e-3) -> float:
    """The statistic above which two samples of sizes n and m differ at level ``alpha`` (asymptotic)."""
    return float(np.sqrt(-np.log(alpha / 2) / 2) * np.sqrt((n + m) / (n * m)))
