"""How a batch of ``B`` images with ``n`` crops each is laid out as ``B·n`` crops.

``crop_order="grouped"`` (default): crop ``k`` of image ``i`` is at ``i·n + k``, an image's crops side by side
(the pipeline's own layout: no copy). ``"spread"``: at ``k·B + i``, i.e. the batch is ``n`` blocks of ``B`` crops,
each block one crop of every image (e.g. so that a split of the batch into ``n`` parts, or BatchNorm over a
part, never sees the same image twice; one copy of the batch, on its device).
"""

from __future__ import annotations

import torch

CROP_ORDERS = ("grouped", "spread")


def flatten_crops(value: torch.Tensor, order: str) -> torch.Tensor:
    """``[B, n, ...]`` per-crop values -> ``[B·n, ...]`` in ``order``."""
    if order == "grouped":
        return value.reshape(-1, *value.shape[2:])
    return value.transpose(0, 1).reshape(-1, *value.shape[2:])


def repeat_per_crop(value, n: int, order: str):
    """``[B, ...]`` per-image values (a tensor or a list) -> one per crop, ``[B·n, ...]`` in ``order``."""
    if isinstance(value, torch.Tensor):
        if order == "grouped":
            return value.repeat_interleave(n, dim=0)
        return value.repeat(n, *([1] * (value.ndim - 1)))
    if order == "grouped":
        return [v for v in value for _ in range(n)]
    return list(value) * n


__all__ = ["CROP_ORDERS", "flatten_crops", "repeat_per_crop"]
