"""One training iteration, the same for hard labels, ReLabel soft targets and distillation targets.

    scaler = torch.amp.GradScaler("cuda")                  # mixed precision on the GPU (optional)
    model = model.cuda().to(memory_format=torch.channels_last)
    for images, targets in ReLabelLoader("imagenet/train", "labels.zarr", batch_size=256):
        loss = train_step(model, images, targets, nn.CrossEntropyLoss(), optimizer, scaler=scaler,
                          channels_last=True)

``nn.CrossEntropyLoss`` accepts both class indices ``[B]`` and probabilities ``[B, C]``, so switching a
training loop from hard labels to ReLabel (or to distillation targets from :func:`teacher_targets`)
changes the loader only.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


def amp_dtype(device_type: str) -> torch.dtype:
    """The autocast dtype used for a device type: float16 on CUDA, bfloat16 elsewhere (CPU autocast)."""
    return torch.float16 if device_type == "cuda" else torch.bfloat16


def train_step(model: nn.Module, images: torch.Tensor, targets: torch.Tensor,
               criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], optimizer: torch.optim.Optimizer, *,
               scaler: torch.amp.GradScaler | None = None, channels_last: bool = False) -> torch.Tensor:
    """Forward, loss, backward and optimizer step on one batch.

    Args:
        model: the network, in training mode, on the device of ``images`` (move it to channels_last memory
            format once, beforehand, when ``channels_last`` is set).
        images: ``[B, 3, H, W]`` input batch.
        targets: ``[B]`` int64 class indices, or ``[B, C]`` probabilities (ReLabel or distillation targets).
        criterion: loss of ``(logits [B, C], targets)``, e.g. ``nn.CrossEntropyLoss()``.
        optimizer: updates the model's parameters.
        scaler: a ``torch.amp.GradScaler``: enables mixed precision (autocast to :func:`amp_dtype` of the
            device) with loss scaling; None trains in the model's own precision.
        channels_last: convert ``images`` to channels_last memory format (faster convolutions with AMP on
            tensor cores).

    Returns:
        The loss, a detached 0-dim tensor on the device (reading it with ``.item()`` synchronizes; the step
        itself does not).
    """
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    with torch.autocast(images.device.type, dtype=amp_dtype(images.device.type), enabled=scaler is not None):
        loss = criterion(model(images), targets)
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return loss.detach()


@torch.no_grad()
def teacher_targets(teacher: nn.Module, images: torch.Tensor, *, size: int | None = None, temperature: float = 1.0,
                    amp: bool = False, channels_last: bool = False) -> torch.Tensor:
    """Knowledge-distillation targets: the teacher's class probabilities for the same crops.

    Online distillation runs this on every batch; feed the result to :func:`train_step` as ``targets``
    (soft cross-entropy, which differs from KL divergence by the targets' entropy, a constant for the student).

    Args:
        teacher: the teacher network, in eval mode, on the device of ``images``.
        images: ``[B, 3, H, W]`` the student's input batch (already normalized).
        size: the teacher's input side; the crops are resized (bilinear) to ``size × size`` when it differs
            from theirs, e.g. 600 for EfficientNet-B7. None keeps the student's resolution.
        temperature: softmax temperature T: ``softmax(logits / T)``.
        amp: run the teacher under autocast (:func:`amp_dtype` of the device).
        channels_last: convert the teacher's input to channels_last memory format.

    Returns:
        ``[B, C]`` float32 probabilities.
    """
    if size is not None and tuple(images.shape[-2:]) != (size, size):
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    with torch.autocast(images.device.type, dtype=amp_dtype(images.device.type), enabled=amp):
        logits = teacher(images)
    return torch.softmax(logits.float() / temperature, dim=1)
