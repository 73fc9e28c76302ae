"""The official relabel_imagenet target computation, re-implemented for comparison.

This is the dense path the paper's code runs every iteration (and what this project
replaces): scatter each sample's top-k map into a zero ``[B, C, H, W]`` tensor, RoIAlign it
over the crop box with torchvision, softmax over the classes. It is used by the tests (as the
definition of ``transpose_box=True``) and by the benchmarks (as the baseline to beat).

Reproduced faithfully, including the axis quirk: the official code passes normalized
``(y0, x0, y1, x1)`` crop coordinates, scaled by the map width, where torchvision's
``roi_align`` reads ``(x1, y1, x2, y2)``.
"""

from __future__ import annotations

import warnings

import torch
from torchvision.ops import roi_align


def dense_label_maps(maps_topk: torch.Tensor, num_classes: int = 1000) -> torch.Tensor:
    """Expands top-k maps to dense logit maps (zeros outside the top-k).

    Args:
        maps_topk: ``[B, 2, K, H, W]`` as stored by relabel_imagenet: ``[:, 0]`` top-k logits,
            ``[:, 1]`` class indices stored as floats.
        num_classes: C.

    Returns:
        ``[B, C, H, W]`` dense maps, dtype of the scores.
    """
    b, _, _, h, w = maps_topk.shape
    dense = torch.zeros(b, num_classes, h, w, dtype=maps_topk.dtype, device=maps_topk.device)
    return dense.scatter_(1, maps_topk[:, 1].long(), maps_topk[:, 0])


def official_relabel_targets(maps_topk: torch.Tensor, coords: torch.Tensor, num_classes: int = 1000,
                             dense: torch.Tensor | None = None) -> torch.Tensor:
    """Soft targets exactly as relabel_imagenet computes them.

    Args:
        maps_topk: ``[B, 2, K, H, W]`` top-k maps (see :func:`dense_label_maps`).
        coords: ``[B, 4]`` normalized crop boxes ``(y0, x0, y1, x1)`` (the official loader's
            ``(i/H, j/W, (i+h)/H, (j+w)/W)``).
        num_classes: C.
        dense: the already expanded ``[B, C, H, W]`` maps, to time the two stages separately.

    Returns:
        ``[B, C]`` probabilities.
    """
    if dense is None:
        dense = dense_label_maps(maps_topk, num_classes)
    b = dense.shape[0]
    batch_index = torch.arange(b, dtype=dense.dtype, device=dense.device).view(b, 1)
    boxes = torch.cat([batch_index, coords.to(dense.dtype) * dense.shape[3] - 0.5], 1)
    pooled = roi_align(dense, boxes, output_size=(1, 1))
    return torch.softmax(pooled.view(b, -1), dim=1)


def roi_align_targets(scores: torch.Tensor, classes: torch.Tensor, rel_start: torch.Tensor, rel_end: torch.Tensor,
                      num_classes: int, temperature: float = 1.0) -> torch.Tensor:
    """Geometrically correct targets by the same dense torchvision path (what label_pool computes).

    Args:
        scores: ``[B, H, W, K]`` top-k logits (rows = image y).
        classes: ``[B, H, W, K]`` class indices.
        rel_start: ``[B, 2]`` normalized (y0, x0) crop corners.
        rel_end: ``[B, 2]`` normalized (y1, x1) crop corners.
        num_classes: C.
        temperature: softmax temperature.

    Returns:
        ``[B, C]`` probabilities, in the dtype of ``scores``.
    """
    b, h, w, _ = scores.shape
    dense = torch.zeros(b, num_classes, h, w, dtype=scores.dtype, device=scores.device)
    dense.scatter_add_(1, classes.permute(0, 3, 1, 2).long(), scores.permute(0, 3, 1, 2))
    y0, x0 = rel_start[:, 0:1].to(scores.dtype), rel_start[:, 1:2].to(scores.dtype)
    y1, x1 = rel_end[:, 0:1].to(scores.dtype), rel_end[:, 1:2].to(scores.dtype)
    batch_index = torch.arange(b, dtype=scores.dtype, device=scores.device).view(b, 1)
    boxes = torch.cat([batch_index, x0 * w - 0.5, y0 * h - 0.5, x1 * w - 0.5, y1 * h - 0.5], 1)
    pooled = roi_align(dense, boxes, output_size=(1, 1), spatial_scale=1.0, sampling_ratio=-1, aligned=False)
    return torch.softmax(pooled.view(b, -1) / temperature, dim=1)


def __getattr__(name: str):
    # The old name of roi_align_targets: it clashed with dali_relabel.pipelines.relabel_targets (the DALI graph).
    if name == "relabel_targets":
        warnings.warn("dali_relabel.testing.official.relabel_targets is now roi_align_targets (the torch reference; "
                      "dali_relabel.pipelines.relabel_targets is the DALI graph)", DeprecationWarning, stacklevel=2)
        return roi_align_targets
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
