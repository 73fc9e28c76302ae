"""Independent references for label pooling, written for clarity, not speed.

`slow_label_pool` follows torchvision's roi_align kernel literally (sample grid, bilinear
interpolation with its border rules, average), in float64 Python arithmetic, one class at a
time. It shares no code or shortcut (separability, closed-form background) with the operator.
With ``transpose_box=True`` (relabel_imagenet's way) the box and the sample grid are computed as
the official code computes them, in float32 (numpy float32 scalars, one rounding per operation),
and the weighted sum in float64.
"""

from __future__ import annotations

import math

import numpy as np


def _bilinear(plane: dict[tuple[int, int], float], h: int, w: int, y: float, x: float, t=float) -> float:
    """torchvision's bilinear_interpolate on a sparse plane {(row, col): value}; fractions in ``t``."""
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return 0.0
    y = max(y, t(0.0))
    x = max(x, t(0.0))
    y_low, x_low = int(y), int(x)
    if y_low >= h - 1:
        y_high = y_low = h - 1
        y = t(y_low)
    else:
        y_high = y_low + 1
    if x_low >= w - 1:
        x_high = x_low = w - 1
        x = t(x_low)
    else:
        x_high = x_low + 1
    ly, lx = t(y - t(y_low)), t(x - t(x_low))
    hy, hx = float(t(t(1.0) - ly)), float(t(t(1.0) - lx))
    ly, lx = float(ly), float(lx)

    def v(r, c):
        return plane.get((r, c), 0.0)

    return hy * hx * v(y_low, x_low) + hy * lx * v(y_low, x_high) + ly * hx * v(y_high, x_low) + ly * lx * v(y_high, x_high)


def roi_align_1x1(plane: dict[tuple[int, int], float], h: int, w: int, box: tuple[float, float, float, float],
                  dtype=float) -> float:
    """roi_align(aligned=False, output 1x1, sampling_ratio=-1, spatial_scale=1) of one plane.

    ``dtype``: the arithmetic of the geometry (box extent, sample count and positions, bilinear fractions):
    ``float`` (float64) or ``np.float32`` (torchvision's float32 kernel: each operation rounded to float32).
    """
    t = dtype
    x1, y1, x2, y2 = (t(v) for v in box)
    roi_w = max(t(x2 - x1), t(1.0))
    roi_h = max(t(y2 - y1), t(1.0))
    grid_h, grid_w = math.ceil(roi_h), math.ceil(roi_w)
    total = 0.0
    for iy in range(grid_h):
        y = t(y1 + t(t(t(iy) + t(0.5)) * roi_h) / t(grid_h))
        for ix in range(grid_w):
            x = t(x1 + t(t(t(ix) + t(0.5)) * roi_w) / t(grid_w))
            total += _bilinear(plane, h, w, y, x, t)
    return total / (grid_h * grid_w)


def slow_pooled_logits(scores: np.ndarray, classes: np.ndarray, rel_start, rel_end, num_classes: int,
                       transpose_box: bool = False) -> np.ndarray:
    """Pooled logits z of one sample: roi_align(dense map, box) in float64, [num_classes].

    Args:
        scores: [H, W, K] logits. classes: [H, W, K] indices. rel_start/rel_end: (y, x) in [0, 1].
        transpose_box: relabel_imagenet's way: the box's axes swapped, every corner scaled by the map width
            (``coords.float() * W - 0.5`` in float32) and the geometry in float32.
    """
    h, w, k = scores.shape
    (y0, x0), (y1, x1) = [float(v) for v in rel_start], [float(v) for v in rel_end]
    geometry = float
    if transpose_box:
        f32 = np.float32
        y0, x0, y1, x1 = (f32(f32(f32(v) * f32(w)) - f32(0.5)) for v in (x0, y0, x1, y1))
        box, geometry = (x0, y0, x1, y1), f32
    else:
        box = (x0 * w - 0.5, y0 * h - 0.5, x1 * w - 0.5, y1 * h - 0.5)
    planes: dict[int, dict[tuple[int, int], float]] = {}
    for r in range(h):
        for c in range(w):
            for j in range(k):
                plane = planes.setdefault(int(classes[r, c, j]), {})
                plane[(r, c)] = plane.get((r, c), 0.0) + float(scores[r, c, j])
    z = np.zeros(num_classes, dtype=np.float64)
    for cls, plane in planes.items():
        z[cls] = roi_align_1x1(plane, h, w, box, geometry)
    return z


def slow_label_pool(scores: np.ndarray, classes: np.ndarray, rel_start, rel_end, num_classes: int,
                    temperature: float = 1.0, transpose_box: bool = False, label_type: str = "localized_multi",
                    output: str = "probabilities") -> np.ndarray:
    """The target of one sample, per label_pool's definition, in float64."""
    if label_type.startswith("global"):
        # The operator's definition: global types pool the whole map, the mean over cells, whatever
        # transpose_box says (its official box geometry scales both axes by W: another box on non-square maps).
        rel_start, rel_end, transpose_box = (0.0, 0.0), (1.0, 1.0), False
    z = slow_pooled_logits(scores, classes, rel_start, rel_end, num_classes, transpose_box)
    if output == "logits":
        return z
    if label_type.endswith("single"):
        one_hot = np.zeros(num_classes)
        one_hot[np.argmax(z)] = 1.0  # first maximum, like torch.argmax
        return one_hot
    z = z / temperature
    e = np.exp(z - z.max())
    return e / e.sum()


def random_label_map(rng: np.random.Generator, h: int, w: int, k: int, num_classes: int,
                     score_dtype=np.float32, class_dtype=np.int32, scale: float = 4.0):
    """A random top-k map: distinct classes per cell, scores sorted descending per cell.

    Classes are drawn from a small per-image pool (as in real maps, a few objects per image)
    so that pooled classes overlap across cells.
    """
    pool = rng.choice(num_classes, size=min(num_classes, max(k, 3 * k)), replace=False)
    classes = np.stack([rng.choice(pool, size=k, replace=False) for _ in range(h * w)]).reshape(h, w, k)
    scores = -np.sort(-rng.normal(scale=scale, size=(h, w, k)), axis=-1)
    return scores.astype(score_dtype), classes.astype(class_dtype)


def random_box(rng: np.random.Generator):
    """A random normalized crop box (y0, x0), (y1, x1) with positive extent, float32."""
    while True:
        a = np.sort(rng.uniform(0, 1, size=2))
        b = np.sort(rng.uniform(0, 1, size=2))
        start = np.array([a[0], b[0]], np.float32)
        end = np.array([a[1], b[1]], np.float32)
        if np.all(start < end):
            return start, end
