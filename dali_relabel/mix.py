"""ReLabelMix: batch-level CutMix and Mixup on ReLabel soft targets, on the tensors' device.

    loader = ReLabelLoader(train, store, 256, outputs=("images", "targets", "boxes", "rows", "mirror"))
    mix = ReLabelMix.for_loader(loader, mode="cutmix", policy="region")
    for images, targets, boxes, rows, mirror in loader:
        images, targets = mix(images, targets, boxes=boxes, rows=rows, mirror=mirror)

Each batch is paired with a random permutation of itself (sample ``i`` receives from ``perm[i]``), and
one λ ~ Beta(α, α) and, for CutMix, one patch are drawn per batch, as timm's ``Mixup(mode="batch")``
does. The CutMix target has two policies (full semantics: ``docs/MIXING.md``):

* ``area`` — relabel_imagenet's ``cutmix_batch``: ``λ·t_i + (1 − λ)·t_perm[i]``, where ``t`` are the
  crops' pooled targets and ``λ`` the kept fraction of the image.
* ``region`` — the patch's target is pooled from the partner's label map over exactly the region of the
  partner's image that was pasted (through the partner's crop box and flip), the kept part's target from
  the image's own map over its crop minus that region, each softmaxed, combined by area.

Mixup blends whole images, so every pixel shows both crops entirely: its target is the convex
combination of the two crop targets, and a region policy has nothing to refine (it is refused).
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import torch

from .config import TargetConfig
from .ops.eager import BankPooling, host_array

MODES = ("cutmix", "mixup", "both")
POLICIES = ("area", "region")


@dataclasses.dataclass(frozen=True)
class MixParams:
    """One batch's mixing decision (what :meth:`ReLabelMix.sample` drew).

    Attributes:
        kind: "cutmix", "mixup" or "none" (the batch passes unchanged, up to label smoothing).
        lam: weight of each sample's own image and target. Mixup: the sampled λ. CutMix: the kept fraction
            ``1 - patch area / image area`` (timm's "correct lam"), or the sampled λ with ``correct_lam=False``.
        sampled_lam: the Beta(α, α) draw (1.0 for "none").
        box: CutMix patch ``(y0, x0, y1, x1)`` in output pixels, ends exclusive; None otherwise.
        size: ``(height, width)`` of the images the patch was drawn for.
        perm: [B] int64: sample ``i`` is mixed with sample ``perm[i]``.
    """

    kind: str
    lam: float
    sampled_lam: float
    box: tuple[int, int, int, int] | None
    size: tuple[int, int]
    perm: np.ndarray

    @property
    def patch_fraction(self) -> float:
        """Fraction of the image covered by the CutMix patch (0 without one)."""
        if self.box is None:
            return 0.0
        y0, x0, y1, x1 = self.box
        return (y1 - y0) * (x1 - x0) / (self.size[0] * self.size[1])


def cutmix_box(rng: np.random.Generator, lam: float, height: int, width: int) -> tuple[int, int, int, int]:
    """timm's CutMix box: sides ``int(side · sqrt(1 − λ))`` around a uniform centre, clipped to the image.

    Returns:
        ``(y0, x0, y1, x1)`` pixels, ends exclusive (possibly empty when λ is close to 1).
    """
    ratio = np.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
    y0, y1 = np.clip([cy - cut_h // 2, cy + (cut_h + 1) // 2], 0, height)
    x0, x1 = np.clip([cx - cut_w // 2, cx + (cut_w + 1) // 2], 0, width)
    return int(y0), int(x0), int(y1), int(x1)


def patch_regions(boxes, mirror, patch) -> tuple[np.ndarray, np.ndarray]:
    """Where a patch of the displayed crops lies in each original image.

    The loader's crop ``(y0, x0, y1, x1)`` (normalized to the original image) is resized to the output
    and, where ``mirror``, flipped: display column ``v`` shows crop column ``1 − v``. The map from display
    to image coordinates is affine per axis, so a rectangle maps to a rectangle.

    Args:
        boxes: [B, 4] crop boxes (y0, x0, y1, x1). mirror: [B] flags.
        patch: ``(u0, v0, u1, v1)``: the patch normalized to the displayed image (rows u, columns v).

    Returns:
        ``(starts, ends)``: [B, 2] float32 (y, x) corners in the original image, inside [0, 1].
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    flipped = np.asarray(mirror).reshape(-1).astype(bool)
    u0, v0, u1, v1 = (float(p) for p in patch)
    c0, c1 = np.where(flipped, 1.0 - v1, v0), np.where(flipped, 1.0 - v0, v1)
    y0, x0, y1, x1 = boxes.T
    h, w = y1 - y0, x1 - x0
    starts = np.stack([y0 + u0 * h, x0 + c0 * w], 1)
    ends = np.stack([y0 + u1 * h, x0 + c1 * w], 1)
    return np.clip(starts, 0, 1).astype(np.float32), np.clip(ends, 0, 1).astype(np.float32)


class ReLabelMix:
    """Batch-level CutMix / Mixup whose targets are ReLabel soft targets.

    Args:
        mode: "cutmix", "mixup", or "both" (per batch: CutMix with probability ``switch_prob``, else Mixup).
        policy: CutMix target policy, "area" or "region" (default: "region", or "area" for mode="mixup";
            "region" with mode="mixup" is an error: Mixup has no pasted region).
        alpha: Beta(α, α) parameter of λ for CutMix (and for Mixup unless ``mixup_alpha`` is given).
        mixup_alpha: Beta parameter of λ for Mixup.
        prob: probability that a batch is mixed at all.
        switch_prob: mode="both": probability of CutMix rather than Mixup.
        correct_lam: area policy: weigh by the pasted box after clipping (timm's and relabel_imagenet's
            behaviour) instead of the sampled λ. The region policy always uses the true areas.
        smoothing: label smoothing applied to the output targets: ``t · (1 − s) + s / C``.
        bank: region policy: the loader's served ``LabelBank`` (or its directory).
        num_classes: C (default: the bank's); targets must be [B, C].
        temperature: region policy: softmax temperature, the loader's.
        transpose_box: region policy: pool transposed boxes, like a loader with ``transpose_box=True``
            (``official_axes`` is its deprecated name).
        bank_memory: region policy on the GPU: "device" or "host" (see ``fn.relabel.lookup``).
        seed: seed of the host random generator (λ, box, permutation, choices); None draws one.
    """

    def __init__(self, *, mode: str = "cutmix", policy: str | None = None, alpha: float = 1.0,
                 mixup_alpha: float | None = None, prob: float = 1.0, switch_prob: float = 0.5,
                 correct_lam: bool = True, smoothing: float = 0.0, bank=None, num_classes: int | None = None,
                 temperature: float = 1.0, transpose_box: bool = False, bank_memory: str = "device",
                 seed: int | None = None, official_axes: bool | None = None):
        if official_axes is not None:
            warnings.warn("ReLabelMix: official_axes= is deprecated, use transpose_box= (same meaning)",
                          DeprecationWarning, stacklevel=2)
            transpose_box = official_axes
        if mode not in MODES:
            raise ValueError(f"ReLabelMix: mode must be one of {MODES}, got {mode!r}")
        if policy is None:
            policy = "area" if mode == "mixup" else "region"
        if policy not in POLICIES:
            raise ValueError(f"ReLabelMix: policy must be one of {POLICIES}, got {policy!r}")
        if mode == "mixup" and policy == "region":
            raise ValueError("ReLabelMix: policy='region' refines CutMix targets; Mixup blends whole images, so its "
                             "target is the convex combination of the two crop targets. Use policy='area' with "
                             "mode='mixup', or mode='cutmix'/'both'")
        mixup_alpha = alpha if mixup_alpha is None else mixup_alpha
        for name, value in (("alpha", alpha), ("mixup_alpha", mixup_alpha)):
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"ReLabelMix: {name} must be a positive number (Beta(α, α)), got {value}")
        for name, value in (("prob", prob), ("switch_prob", switch_prob)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"ReLabelMix: {name} is a probability in [0, 1], got {value}")
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"ReLabelMix: smoothing must be in [0, 1), got {smoothing}")
        if not (np.isfinite(temperature) and temperature > 0):
            raise ValueError(f"ReLabelMix: temperature must be a positive number, got {temperature}")
        self.pooling = None
        if policy == "region":
            if bank is None:
                raise ValueError("ReLabelMix: policy='region' pools the label maps: pass bank=loader.bank (or use "
                                 "ReLabelMix.for_loader(loader, ...))")
            if not correct_lam:
                raise ValueError("ReLabelMix: policy='region' weighs the two parts by their true areas; "
                                 "correct_lam=False applies to policy='area' only")
            self.pooling = BankPooling(bank, num_classes=num_classes, transpose_box=transpose_box,
                                       bank_memory=bank_memory)
            num_classes = self.pooling.num_classes
        self.mode, self.policy = mode, policy
        self.alpha, self.mixup_alpha, self.prob, self.switch_prob = alpha, mixup_alpha, prob, switch_prob
        self.correct_lam, self.smoothing, self.temperature = correct_lam, smoothing, temperature
        self.num_classes = num_classes
        self.rng = np.random.default_rng(seed)
        self.last_params: MixParams | None = None

    @classmethod
    def for_loader(cls, loader, **kwargs) -> "ReLabelMix":
        """A mixer matching a ``ReLabelLoader``: its bank (and so its classes) and its ``target_config``
        (temperature, transpose_box, bank_memory)."""
        config: TargetConfig = loader.target_config
        if kwargs.get("policy", "area" if kwargs.get("mode") == "mixup" else "region") == "region" \
                and config.label_type != "localized_multi":
            raise ValueError(f"ReLabelMix: policy='region' pools localized multi-label targets, but the loader "
                             f"serves label_type={config.label_type!r}; use policy='area'")
        defaults = dict(bank=loader.bank, num_classes=loader.num_classes, temperature=config.temperature,
                        transpose_box=config.transpose_box, bank_memory=config.bank_memory)
        return cls(**{**defaults, **kwargs})

    # ---- sampling (host) ----------------------------------------------------------------------------

    def sample(self, batch_size: int, height: int, width: int) -> MixParams:
        """Draws one batch's decision: mixed or not, CutMix or Mixup, λ, the patch, the partners."""
        rng = self.rng
        perm = rng.permutation(batch_size).astype(np.int64)
        if rng.random() >= self.prob:
            return MixParams("none", 1.0, 1.0, None, (height, width), perm)
        cutmix = self.mode == "cutmix" or (self.mode == "both" and rng.random() < self.switch_prob)
        if not cutmix:
            lam = float(rng.beta(self.mixup_alpha, self.mixup_alpha))
            return MixParams("mixup", lam, lam, None, (height, width), perm)
        sampled = float(rng.beta(self.alpha, self.alpha))
        box = cutmix_box(rng, sampled, height, width)
        params = MixParams("cutmix", sampled, sampled, box, (height, width), perm)
        if self.correct_lam:
            params = dataclasses.replace(params, lam=1.0 - params.patch_fraction)
        return params

    # ---- mixing (device) ----------------------------------------------------------------------------

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, *, boxes=None, rows=None, mirror=None,
                 indices=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mixes one batch.

        Args:
            images: [B, 3, H, W] (any float dtype, any device). targets: [B, C] probabilities, same device.
            boxes: [B, 4] normalized crop boxes (y0, x0, y1, x1); rows: [B] bank rows (-1: no map);
                mirror: [B] flip flags — the loader's outputs of those names, needed by policy="region".
                The loader returns them on the CPU; GPU tensors cost one small copy to the host.
                (``indices`` is the deprecated name of ``rows``.)

        Returns:
            ``(images, targets)``: new tensors, same shapes, dtypes and device. The decision is kept in
            ``self.last_params``.
        """
        rows = _renamed_rows(rows, indices)
        self._check(images, targets)
        params = self.sample(images.shape[0], images.shape[2], images.shape[3])
        self.last_params = params
        return self._mix(params, images, targets, boxes, rows, mirror)

    def apply(self, params: MixParams, images: torch.Tensor, targets: torch.Tensor, *, boxes=None, rows=None,
              mirror=None, indices=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mixes one batch with a given decision (see :meth:`__call__`)."""
        rows = _renamed_rows(rows, indices)
        self._check(images, targets)
        return self._mix(params, images, targets, boxes, rows, mirror)

    def _mix(self, params: MixParams, images: torch.Tensor, targets: torch.Tensor, boxes, rows,
             mirror) -> tuple[torch.Tensor, torch.Tensor]:
        if params.kind == "none":
            return images, self._smooth(targets)
        perm = torch.as_tensor(params.perm, device=images.device)
        lam = params.lam
        if params.kind == "mixup":
            mixed = images.mul(lam).add_(images.index_select(0, perm), alpha=1.0 - lam)
            return mixed, self._smooth(targets * lam + targets.index_select(0, perm) * (1.0 - lam))
        y0, x0, y1, x1 = params.box
        mixed = images.clone()
        mixed[:, :, y0:y1, x0:x1] = images[:, :, y0:y1, x0:x1].index_select(0, perm)
        if self.policy == "area":
            out = targets * lam + targets.index_select(0, perm) * (1.0 - lam)
        else:
            out = self._region_targets(params, targets, perm, boxes, rows, mirror)
        return mixed, self._smooth(out)

    def _region_targets(self, params: MixParams, targets, perm, boxes, rows, mirror) -> torch.Tensor:
        missing = [name for name, v in (("boxes", boxes), ("rows", rows), ("mirror", mirror)) if v is None]
        if missing:
            raise ValueError(f"ReLabelMix: policy='region' needs boxes, rows and mirror (missing: "
                             f"{', '.join(missing)}); ask the loader for outputs=(..., 'boxes', 'rows', 'mirror')")
        n = targets.shape[0]
        boxes, flips = host_array(boxes, np.float32), host_array(mirror, np.int64)
        rows = host_array(rows, np.int64).reshape(-1)
        flips = flips.reshape(-1)
        for name, arr, shape in (("boxes", boxes, (n, 4)), ("rows", rows, (n,)), ("mirror", flips, (n,))):
            if arr.shape != shape:
                raise ValueError(f"ReLabelMix: {name} has shape {list(arr.shape)}, expected {list(shape)} for a batch "
                                 f"of {n}")
        size = self.pooling.bank.num_samples
        if (rows >= size).any():
            i = int(np.flatnonzero(rows >= size)[0])
            raise ValueError(f"ReLabelMix: sample {i}: row {rows[i]} is outside the bank {self.pooling.bank.path} "
                             f"({size} label maps); pass the loader's 'rows' output and its bank (-1: no map)")
        f = params.patch_fraction
        if f == 0.0:  # an empty patch pastes nothing
            return targets
        (h, w), (y0, x0, y1, x1) = params.size, params.box
        p_start, p_end = patch_regions(boxes, flips, (y0 / h, x0 / w, y1 / h, x1 / w))
        has_map = rows >= 0
        given = targets.double()
        if not has_map.any():
            t_keep = t_in = given
        else:
            # Map-less samples pool any valid row; their results are replaced by their given targets below.
            safe = np.where(has_map, rows, 0)
            z = self.pooling.logits(np.concatenate([safe, safe]), np.concatenate([boxes[:, :2], p_start]),
                                    np.concatenate([boxes[:, 2:], p_end]), device=targets.device).double()
            z_crop, z_patch = z[:n], z[n:]
            t_in = torch.softmax(z_patch / self.temperature, 1)
            if f < 1.0:
                # RoIAlign is linear before the softmax: crop = kept part ∪ patch, weighted by area.
                t_keep = torch.softmax((z_crop - f * z_patch) / ((1.0 - f) * self.temperature), 1)
            else:
                t_keep = torch.zeros_like(t_in)
            own = torch.as_tensor(has_map, device=targets.device)[:, None]
            t_keep, t_in = torch.where(own, t_keep, given), torch.where(own, t_in, given)
        return ((1.0 - f) * t_keep + f * t_in.index_select(0, perm)).to(targets.dtype)

    def _smooth(self, targets: torch.Tensor) -> torch.Tensor:
        if not self.smoothing:
            return targets
        return targets * (1.0 - self.smoothing) + self.smoothing / targets.shape[1]

    def _check(self, images: torch.Tensor, targets: torch.Tensor) -> None:
        if images.ndim != 4:
            raise ValueError(f"ReLabelMix: images must be [B, 3, H, W], got shape {list(images.shape)}")
        if targets.ndim != 2 or targets.shape[0] != images.shape[0]:
            raise ValueError(f"ReLabelMix: targets must be [B, C] with B = {images.shape[0]} (the images'), got "
                             f"shape {list(targets.shape)}")
        if self.num_classes is not None and targets.shape[1] != self.num_classes:
            raise ValueError(f"ReLabelMix: targets have {targets.shape[1]} classes, the bank {self.num_classes}")
        if targets.device != images.device:
            raise ValueError(f"ReLabelMix: images are on {images.device} but targets on {targets.device}")


def _renamed_rows(rows, indices):
    if indices is not None:
        warnings.warn("ReLabelMix: indices= is deprecated, use rows= (same values: the loader's 'rows' output)",
                      DeprecationWarning, stacklevel=3)
        if rows is not None:
            raise TypeError("ReLabelMix: got both rows and indices (its old name)")
        return indices
    return rows


__all__ = ["MODES", "POLICIES", "MixParams", "ReLabelMix", "cutmix_box", "patch_regions"]
