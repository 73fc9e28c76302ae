"""The official relabel_imagenet target computation, re-implemented for comparison.

This is the dense path the paper's code runs every iteration (and what this project
replaces): scatter each sample's top-k map into a zero ``[B, C, H, W]`` tensor, RoIAlign it
over the crop box with torchvision, softmax over the classes. It is used by the tests (as the
definition of ``transpose_box=True``) and by the benchmarks (as the baseline to beat).

Reproduced faithfully, including the axis quirk: the official code passes normalized
``(y0, x0, y1, x1)`` crop coordinates, scaled by the map width, where torchvision's
``roi_align`` reads ``(x1, y1, x2, y2)``. The official code runs all of it in float32: to reproduce
its targets, give :func:`official_relabel_targets` float32 maps and the float32 coordinates of
:func:`official_coords` (crops drawn by :func:`official_random_resized_crop`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torchvision.ops import roi_align
from torchvision.transforms import RandomResizedCrop


def official_random_resized_crop(height: int, width: int, scale: tuple[float, float] = (0.08, 1.0),
                                 ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """One crop ``(i, j, h, w)`` (top, left, height, width in pixels) of an image of ``height`` x ``width``,
    drawn as relabel_imagenet's RandomResizedCropWithCoords draws it (torchvision's
    ``RandomResizedCrop.get_params``, torch's global generator)."""
    image = torch.empty(()).expand(1, height, width)  # only its size is read
    i, j, h, w = RandomResizedCrop.get_params(image, list(scale), list(ratio))
    return int(i), int(j), int(h), int(w)


def official_coords(crops: Sequence[tuple[int, int, int, int]], sizes: Sequence[tuple[int, int]]) -> torch.Tensor:
    """The float32 crop coordinates relabel_imagenet hands to its LabelPooling, assembled as it assembles them.

    Per image, RandomResizedCropWithCoords returns Python floats ``(i/H, j/W, h/H, w/W)``; the DataLoader's
    default collate turns each field into a float64 tensor; ``relabel_batch_fn`` stacks them to ``[B, 4]``,
    adds the starts to the extents in float64 (``coords[:, 2:] += coords[:, :2]``) and converts to float32.
    So an end corner is ``float32(float64(i/H) + float64(h/H))``.

    Args:
        crops: per image ``(i, j, h, w)`` in pixels. sizes: per image ``(H, W)`` in pixels.

    Returns:
        ``[B, 4]`` float32 ``(y0, x0, y1, x1)``.
    """
    per_image = [(i / hh, j / ww, h / hh, w / ww) for (i, j, h, w), (hh, ww) in zip(crops, sizes)]
    fields = [torch.tensor([c[f] for c in per_image], dtype=torch.float64) for f in range(4)]  # default_collate
    coords = torch.cat(fields, 0).view(4, -1).transpose(1, 0)
    coords[:, 2:] += coords[:, :2]
    return coords.float()


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


def official_pooled_logits(maps_topk: torch.Tensor, coords: torch.Tensor, num_classes: int = 1000,
                           dense: torch.Tensor | None = None) -> torch.Tensor:
    """The pooled logits of relabel_imagenet's LabelPooling (its roi_align, before the softmax).

    Args: as :func:`official_relabel_targets`.

    Returns:
        ``[B, C]`` logits, in the dtype of the maps (float32 in the official code).
    """
    if dense is None:
        dense = dense_label_maps(maps_topk, num_classes)
    b = dense.shape[0]
    batch_index = torch.arange(b, dtype=dense.dtype, device=dense.device).view(b, 1)
    # The official get_relabel: coords.float() * label_maps.size(3) - 0.5, all four corners by the width.
    boxes = torch.cat([batch_index, coords.to(dense.dtype) * dense.shape[3] - 0.5], 1)
    return roi_align(dense, boxes, output_size=(1, 1)).view(b, -1)


def official_relabel_targets(maps_topk: torch.Tensor, coords: torch.Tensor, num_classes: int = 1000,
                             dense: torch.Tensor | None = None) -> torch.Tensor:
    """Soft targets exactly as relabel_imagenet computes them.

    Args:
        maps_topk: ``[B, 2, K, H, W]`` top-k maps (see :func:`dense_label_maps`); float32 as in the official
            code (which builds float32 dense maps).
        coords: ``[B, 4]`` normalized crop boxes ``(y0, x0, y1, x1)`` (the official loader's
            ``(i/H, j/W, (i+h)/H, (j+w)/W)``, float32 as :func:`official_coords` assembles them).
        num_classes: C.
        dense: the already expanded ``[B, C, H, W]`` maps, to time the two stages separately.

    Returns:
        ``[B, C]`` probabilities.
    """
    return torch.softmax(official_pooled_logits(maps_topk, coords, num_classes, dense), dim=1)


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
