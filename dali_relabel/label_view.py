"""One image's label map, made viewable: per-class heatmaps at image resolution and the soft target of a box.

What ``dali-relabel show`` draws; usable on its own (e.g. in a notebook).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from .errors import InvalidArgument
from .image_folder import resolve_key


def cell_probabilities(scores: np.ndarray, classes: np.ndarray, num_classes: int) -> np.ndarray:
    """Per map cell, the softmax over all classes of its logits (unstored classes have logit 0).

    Args:
        scores: ``[H, W, K]`` logits. classes: ``[H, W, K]`` class indices. num_classes: C.

    Returns:
        ``[C, H, W]`` float64 probabilities.
    """
    h, w, _ = scores.shape
    dense = np.zeros((num_classes, h, w))
    rr, cc = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    for j in range(scores.shape[2]):
        np.add.at(dense, (classes[..., j].astype(np.int64), rr, cc), scores[..., j].astype(np.float64))
    e = np.exp(dense - dense.max(0, keepdims=True))
    return e / e.sum(0, keepdims=True)


def upsample(maps: np.ndarray, height: int, width: int) -> np.ndarray:
    """``[n, h, w]`` → ``[n, height, width]``, bilinear with cell centres at pixel centres (RoIAlign's convention)."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(maps, np.float32))[None]
    return torch.nn.functional.interpolate(t, size=(height, width), mode="bilinear", align_corners=False)[0].numpy()


@dataclasses.dataclass
class LabelView:
    """Attributes:
        key, path: the image's key and file. image: ``[h, w, 3]`` uint8 RGB.
        names: a name per class. ranked: ``[top]`` classes, best first by the whole image's target.
        whole: ``[C]`` the whole image's target (global pooling). heat: ``[top, h, w]`` per-cell probabilities of
        the ranked classes, upsampled. box: ``(y0, x0, y1, x1)`` or None; target: ``[C]`` its soft target or None.
    """

    key: str
    path: Path
    image: np.ndarray
    names: list[str]
    ranked: np.ndarray
    whole: np.ndarray
    heat: np.ndarray
    box: tuple[float, float, float, float] | None
    target: np.ndarray | None


def label_view(store, key: str, images, *, box=None, top: int = 4, temperature: float = 1.0) -> LabelView:
    """The view of the image ``key`` of ``store`` (image files under ``images``).

    Raises:
        KeyError: ``key`` is not in the store. InvalidKeyError: ``key`` could name a file outside ``images``.
        InvalidArgument: a box outside ``0 <= y0 < y1 <= 1, 0 <= x0 < x1 <= 1``. FileNotFoundError: no image file.
    """
    from PIL import Image

    from .ops.eager import pool_maps

    path = resolve_key(images, key)  # before anything is read: a key never names a file outside the root
    row = store.row_of(key)
    if not path.is_file():
        raise FileNotFoundError(f"no image {path} (the key {key!r} relative to {images})")
    if box is not None:
        y0, x0, y1, x1 = (float(v) for v in box)
        if not (0 <= y0 < y1 <= 1 and 0 <= x0 < x1 <= 1):
            raise InvalidArgument("box", [y0, x0, y1, x1], "must satisfy 0 <= y0 < y1 <= 1 and 0 <= x0 < x1 <= 1 "
                                  "(normalized to the image)")
        box = (y0, x0, y1, x1)
    image = np.asarray(Image.open(path).convert("RGB"))
    scores, classes = store.read(row)
    names = store.class_names or [str(c) for c in range(store.num_classes)]
    top = max(1, min(top, store.num_classes))
    # Rank classes by the whole image's target (global pooling, the operator's).
    whole = pool_maps([scores], [classes], [[0, 0]], [[1, 1]], num_classes=store.num_classes,
                      label_type="global_multi")[0].numpy()
    ranked = np.argsort(-whole, kind="stable")[:top]
    heat = upsample(cell_probabilities(scores, classes, store.num_classes)[ranked], image.shape[0], image.shape[1])
    target = None
    if box is not None:
        target = pool_maps([scores], [classes], [box[:2]], [box[2:]], num_classes=store.num_classes,
                           temperature=temperature)[0].numpy()
    return LabelView(key, path, image, names, ranked, whole, heat, box, target)


__all__ = ["LabelView", "cell_probabilities", "label_view", "upsample"]
