"""``Mixup``: timm's ``timm.data.Mixup`` arguments and call, for ReLabel's soft targets.

timm's ``Mixup`` one-hots its targets (``one_hot(target.long().view(-1, 1))``): given ReLabel's [B, C]
probabilities it silently returns [B·C, C] targets of the wrong meaning. This class takes timm's arguments
(``mixup_alpha``, ``cutmix_alpha``, ``cutmix_minmax``, ``prob``, ``switch_prob``, ``mode``, ``correct_lam``,
``label_smoothing``, ``num_classes``, ``multi_label``), is called as timm's is (``images, targets = mixup(images,
targets)``), and returns timm-shaped outputs: [B, C] targets, for soft targets as for hard labels (which it
one-hots as timm does). It is a :class:`dali_relabel.mix.ReLabelMix`: a batch is mixed with one λ and one patch
(timm's ``mode="batch"``), and the target of a CutMix is relabel_imagenet's ``λ·t_a + (1 − λ)·t_b`` (``policy=
"area"``) unless ``policy="region"`` is asked for (with the loader's boxes: ``Mixup.for_loader``).

    from dali_relabel.timm import Mixup                     # was: from timm.data import Mixup
    mixup_fn = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=1000)
    images, targets = mixup_fn(images, targets)             # targets: [B, C] soft targets in, [B, C] out
    loss = SoftTargetCrossEntropy()(model(images), targets)

Differences from timm's, by design: the partner of image ``i`` is drawn by a random permutation (timm's is the
reversed batch, ``B − 1 − i``; so odd batch sizes are fine here), and the draws come from the mixer's own
generator (``seed=``) instead of NumPy's global one.
"""

from __future__ import annotations

import dataclasses

import torch

from ..mix import MixParams, ReLabelMix


class Mixup(ReLabelMix):
    """timm's ``Mixup`` for ReLabel targets (see the module).

    Args:
        mixup_alpha: Mixup's Beta(α, α); Mixup is on when > 0.
        cutmix_alpha: CutMix's Beta(α, α); CutMix is on when > 0 (or with ``cutmix_minmax``).
        cutmix_minmax: (min, max) fractions of the image side: CutMix boxes with sides uniform in that range,
            λ from the box (timm's ``rand_bbox_minmax``; as in timm, it turns CutMix on with α = 1).
        prob: probability that a batch is mixed. switch_prob: with both on, probability of CutMix.
        mode: "batch" only (one λ per batch); timm's "pair" and "elem" are refused.
        correct_lam: λ from the pasted box after clipping (timm's default).
        label_smoothing: ``t · (1 − s) + s / C`` (timm's default 0.1); with ``multi_label``,
            ``t · (1 − s) + s / 2``.
        num_classes: C; the targets must be [B, C] (or [B] hard labels, one-hot encoded as timm does).
        multi_label: timm's multi-label (BCE) targets: smoothing towards 0.5.
        policy, bank, temperature, transpose_box, bank_memory, seed: :class:`ReLabelMix`'s (``policy="area"`` by
            default: the call needs only ``images, targets``).
    """

    def __init__(self, mixup_alpha: float = 1.0, cutmix_alpha: float = 0.0, cutmix_minmax=None, prob: float = 1.0,
                 switch_prob: float = 0.5, mode: str = "batch", correct_lam: bool = True,
                 label_smoothing: float = 0.1, num_classes: int = 1000, multi_label: bool = False, *,
                 policy: str = "area", bank=None, temperature: float = 1.0, transpose_box: bool = False,
                 bank_memory: str = "device", seed: int | None = None):
        if mode != "batch":
            raise ValueError(f"Mixup: mode={mode!r} is not supported: ReLabel targets are mixed per batch (one λ and "
                             f"one patch per batch, timm's mode='batch')")
        if cutmix_minmax is not None:
            lo, hi = (float(v) for v in cutmix_minmax)
            if not 0.0 < lo < hi <= 1.0:
                raise ValueError(f"Mixup: cutmix_minmax must be (min, max) with 0 < min < max <= 1, got "
                                 f"{cutmix_minmax!r}")
            cutmix_alpha = 1.0            # timm: minmax turns CutMix on (its λ comes from the box)
        on = [name for name, a in (("mixup", mixup_alpha), ("cutmix", cutmix_alpha)) if a > 0]
        if not on:
            raise ValueError("Mixup: mixup_alpha > 0, cutmix_alpha > 0 or cutmix_minmax is needed (timm asserts the "
                             "same at the first batch)")
        mix_mode = "both" if len(on) == 2 else on[0]
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"Mixup: label_smoothing must be in [0, 1), got {label_smoothing}")
        super().__init__(mode=mix_mode, policy=policy, alpha=cutmix_alpha if cutmix_alpha > 0 else mixup_alpha,
                         mixup_alpha=mixup_alpha if mixup_alpha > 0 else None, prob=prob, switch_prob=switch_prob,
                         correct_lam=correct_lam or cutmix_minmax is not None, smoothing=0.0, bank=bank,
                         num_classes=num_classes, temperature=temperature, transpose_box=transpose_box,
                         bank_memory=bank_memory, seed=seed)
        self.mixup_alpha, self.cutmix_alpha, self.cutmix_minmax = mixup_alpha, cutmix_alpha, cutmix_minmax
        self.label_smoothing, self.multi_label = float(label_smoothing), bool(multi_label)
        self.mix_prob = prob
        self.mixup_enabled = True     # timm's switch (train.py turns mixing off after --mixup-off-epoch)

    @classmethod
    def for_loader(cls, loader, **kwargs) -> "Mixup":
        """A Mixup with the loader's classes and, for ``policy="region"``, its bank and target settings."""
        kwargs.setdefault("num_classes", loader.num_classes)
        kwargs.setdefault("policy", "area")
        return super().for_loader(loader, **kwargs)

    def sample(self, batch_size: int, height: int, width: int) -> MixParams:
        if self.cutmix_minmax is None:
            return super().sample(batch_size, height, width)
        params = super().sample(batch_size, height, width)
        if params.kind != "cutmix":
            return params
        # timm's rand_bbox_minmax: sides uniform in [min, max) of the image's, anywhere inside it; λ from the box.
        rng = self.rng
        lo, hi = self.cutmix_minmax
        cut_h = int(rng.integers(int(height * lo), int(height * hi)))
        cut_w = int(rng.integers(int(width * lo), int(width * hi)))
        y0, x0 = int(rng.integers(0, height - cut_h + 1)), int(rng.integers(0, width - cut_w + 1))
        box = (y0, x0, y0 + cut_h, x0 + cut_w)
        lam = 1.0 - cut_h * cut_w / (height * width)
        return dataclasses.replace(params, box=box, lam=lam)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, **region) -> tuple[torch.Tensor, torch.Tensor]:
        """Mixes a batch: ``images`` [B, 3, H, W], ``targets`` [B, C] probabilities (or [B] class indices).

        Returns:
            ``(images, targets)``: [B, 3, H, W] and [B, C] float (timm's shapes), smoothed.
        """
        targets = self._as_distributions(images, targets)
        if not self.mixup_enabled:
            return images, self._timm_smooth(targets)
        images, targets = super().__call__(images, targets, **region)
        return images, self._timm_smooth(targets)

    def _as_distributions(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if targets.ndim == 1:     # hard labels: timm one-hots them
            if targets.dtype.is_floating_point:
                raise ValueError("Mixup: 1-D targets must be class indices (an integer tensor)")
            if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= self.num_classes):
                raise ValueError(f"Mixup: class indices must be in [0, {self.num_classes}), got "
                                 f"[{int(targets.min())}, {int(targets.max())}]")
            return torch.nn.functional.one_hot(targets.long(), self.num_classes).to(images.device, torch.float32)
        if targets.ndim != 2:
            raise ValueError(f"Mixup: targets must be [B, C] soft targets or [B] class indices, got shape "
                             f"{list(targets.shape)}")
        return targets if targets.dtype.is_floating_point else targets.float()

    def _timm_smooth(self, targets: torch.Tensor) -> torch.Tensor:
        s = self.label_smoothing
        if not s:
            return targets
        return targets * (1.0 - s) + (0.5 * s if self.multi_label else s / targets.shape[1])


__all__ = ["Mixup"]
