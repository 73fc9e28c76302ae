"""Brute-force references for CutMix targets: explicit per-pixel masks in the original images.

A crop is described in pixels (anchor, integer scale per axis, mirror) so that every output pixel shows
exactly a ``ky × kx`` block of original pixels; the pasted and kept regions are then plain boolean masks
of the original images, built pixel by pixel, sharing nothing with ``dali_relabel.mix`` (which maps
normalized boxes affinely). Pooling uses ``reference.slow_pooled_logits`` (torchvision's roi_align,
literally, in float64).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from reference import slow_pooled_logits


@dataclasses.dataclass(frozen=True)
class Crop:
    """A loader crop in pixels: image (height, width), anchor (ay, ax), scale (ky, kx) → [S·ky, S·kx]."""

    height: int
    width: int
    ay: int
    ax: int
    ky: int
    kx: int
    mirror: bool

    def box(self, size: int) -> np.ndarray:
        """The loader's normalized (y0, x0, y1, x1) box, float32."""
        return np.array([self.ay / self.height, self.ax / self.width, (self.ay + size * self.ky) / self.height,
                         (self.ax + size * self.kx) / self.width], np.float32)

    def shown_mask(self, size: int, patch) -> np.ndarray:
        """Original pixels shown by the output pixels of ``patch`` (y0, x0, y1, x1), pixel by pixel."""
        mask = np.zeros((self.height, self.width), bool)
        y0, x0, y1, x1 = patch
        for p in range(y0, y1):
            for q in range(x0, x1):
                col = size - 1 - q if self.mirror else q  # a flipped output shows the crop's mirrored column
                r0, c0 = self.ay + p * self.ky, self.ax + col * self.kx
                mask[r0:r0 + self.ky, c0:c0 + self.kx] = True
        return mask


def mask_box(mask: np.ndarray, dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    """Normalized (y, x) corners of a mask that must be a full rectangle.

    ``dtype=np.float32`` rounds them as a loader reports boxes: roi_align's grid is ceil(extent), so a
    box whose extent is an integer number of map cells pools differently one float32 ulp away.
    """
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    assert mask.sum() == (r1 - r0) * (c1 - c0), "the region is not a rectangle"
    h, w = mask.shape
    return np.array([r0 / h, c0 / w]).astype(dtype), np.array([r1 / h, c1 / w]).astype(dtype)


def softmax(z: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    e = np.exp((z - z.max()) / temperature)
    return e / e.sum()


def region_parts(maps, crops, size: int, patch, perm, num_classes: int, exact: bool = False):
    """Per sample: (z_crop, z_kept, z_pasted, kept fraction), following the documented semantics.

    z_kept is the linear combination of pooled logits weighted by pixel counts of the masks:
    ``(z(crop) · |crop| − z(removed) · |removed|) / |crop − removed|``; z_pasted is the partner's map
    pooled over the box of the partner's pixels that the patch shows. Boxes are rounded to float32
    (``exact=False``), as the operator receives them, or kept in float64.
    """
    dtype = np.float64 if exact else np.float32
    full = (0, 0, size, size)
    out = []
    for i, crop in enumerate(crops):
        crop_mask = crop.shown_mask(size, full)
        removed = crop.shown_mask(size, patch)
        assert not (removed & ~crop_mask).any()
        z_crop = slow_pooled_logits(*maps[i], *mask_box(crop_mask, dtype), num_classes)
        z_removed = slow_pooled_logits(*maps[i], *mask_box(removed, dtype), num_classes)
        kept_pixels = crop_mask.sum() - removed.sum()
        z_kept = (z_crop * crop_mask.sum() - z_removed * removed.sum()) / max(kept_pixels, 1)
        j = perm[i]
        pasted = crops[j].shown_mask(size, patch)
        z_pasted = slow_pooled_logits(*maps[j], *mask_box(pasted, dtype), num_classes)
        y0, x0, y1, x1 = patch
        kept_fraction = 1 - (y1 - y0) * (x1 - x0) / size**2
        out.append((z_crop, z_kept, z_pasted, kept_fraction))
    return out


def region_targets(maps, crops, size: int, patch, perm, num_classes: int, temperature: float = 1.0,
                   has_map=None, given=None) -> np.ndarray:
    """The region policy's targets [B, C], float64. Samples without a map use their ``given`` target."""
    n = len(crops)
    has_map = np.ones(n, bool) if has_map is None else np.asarray(has_map)
    # Map-less samples still need some map for region_parts; their parts are replaced below.
    safe_maps = [maps[i] if has_map[i] else maps[int(np.flatnonzero(has_map)[0])] for i in range(n)]
    parts = region_parts(safe_maps, crops, size, patch, perm, num_classes)
    out = []
    for i, (_, z_kept, z_pasted, lam) in enumerate(parts):
        j = perm[i]
        kept = softmax(z_kept, temperature) if has_map[i] else given[i]
        pasted = softmax(z_pasted, temperature) if has_map[j] else given[j]
        out.append(lam * kept + (1 - lam) * pasted)
    return np.stack(out)


def pixel_field(scores: np.ndarray, classes: np.ndarray, height: int, width: int, num_classes: int) -> np.ndarray:
    """The map's value at every image pixel centre [C, height, width], by roi_align's bilinear rule.

    RoIAlign of a box averages this bilinear field at a grid of sample points; the average over the
    box's pixels is its pixel-exact counterpart.
    """
    h, w, k = scores.shape
    dense = np.zeros((num_classes, h, w))
    for r in range(h):
        for c in range(w):
            for j in range(k):
                dense[classes[r, c, j], r, c] += float(scores[r, c, j])

    def axis(n_pixels, n_cells):
        pos = np.clip((np.arange(n_pixels) + 0.5) / n_pixels * n_cells - 0.5, 0, None)  # roi_align's coordinates
        lo = np.minimum(pos.astype(int), n_cells - 1)
        hi = np.minimum(lo + 1, n_cells - 1)
        frac = np.where(lo >= n_cells - 1, 0.0, pos - lo)
        m = np.zeros((n_pixels, n_cells))
        m[np.arange(n_pixels), lo] += 1 - frac
        m[np.arange(n_pixels), hi] += frac
        return m

    return np.einsum("yr,crq,xq->cyx", axis(height, h), dense, axis(width, w))
