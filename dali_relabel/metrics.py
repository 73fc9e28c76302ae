"""Validation metrics: top-k accuracy and ImageNet-ReaL accuracy.

ImageNet-ReaL (Beyer et al., "Are we done with ImageNet?", 2020) re-annotated the 50,000 validation
images with *sets* of plausible labels. A prediction is correct when it is in the image's set; images
whose set is empty (no plausible ImageNet class) are excluded from the mean. ReLabel's authors point
their users to ReaL for "relabelled validation". The standard ``real.json`` is a list of 50,000 lists
of class indices, one per validation image in file-name order (``ILSVRC2012_val_00000001.JPEG`` first).

    val_loader = ReLabelValLoader("imagenet/val", None, 256, outputs=("images", "labels", "keys", "valid"))
    real = ReaLAccuracy("real.json")                 # or ReaLAccuracy.from_timm() (timm ships the file)
    real.check_keys(val_loader.images.keys)           # fails now, not after an epoch, if some have no labels
    acc = TopKAccuracy()
    for images, labels, keys, valid in val_loader:    # keys: the images' relative paths (file names count)
        logits = model(images)
        real.update(logits, keys, valid=valid)        # valid: count each image once under DDP
        acc.update(logits, labels, valid=valid)
    print(acc.compute(), real.compute())              # {"top1": ..., "top5": ...}, {"real_top1": ..., ...}

Both accumulators sum counts, so under DDP call :meth:`~TopKAccuracy.all_reduce` (or sum the
``state()`` dicts yourself) before :meth:`compute`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

import numpy as np
import torch

VAL_FILE_PATTERN = "ILSVRC2012_val_{:08d}.JPEG"


def load_real_labels(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """Reads a ReaL ``real.json``: file name → tuple of plausible class indices (possibly empty).

    Raises:
        ValueError: the file is not a list of lists of non-negative integers (names the file and the entry).
    """
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON ({e}); expected ReaL's real.json, a list of lists of class indices") \
            from None
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list (one list of class indices per validation image), "
                         f"got {type(data).__name__}")
    out = {}
    for i, labels in enumerate(data):
        if not isinstance(labels, list) or not all(isinstance(c, int) and c >= 0 for c in labels):
            raise ValueError(f"{path}: entry {i} ({VAL_FILE_PATTERN.format(i + 1)}) is {labels!r}; expected a list "
                             f"of non-negative class indices")
        out[VAL_FILE_PATTERN.format(i + 1)] = tuple(labels)
    return out


def _topk_classes(logits: torch.Tensor, k: int) -> torch.Tensor:
    if logits.ndim != 2:
        raise ValueError(f"logits must be [B, C], got shape {tuple(logits.shape)}")
    return logits.detach().topk(min(k, logits.shape[1]), dim=1).indices  # [B, k], highest first


class TopKAccuracy:
    """Top-k accuracy against hard labels, accumulated over batches.

    Args:
        topk: the k values reported.
    """

    def __init__(self, topk: Sequence[int] = (1, 5)):
        if not topk or any(int(k) < 1 for k in topk):
            raise ValueError(f"topk must hold positive integers, got {topk!r}")
        self.topk = tuple(int(k) for k in topk)
        self.correct = {k: 0 for k in self.topk}
        self.count = 0

    def update(self, logits: torch.Tensor, labels: torch.Tensor, *, valid=None) -> None:
        """Adds a batch.

        Args:
            logits: [B, C] scores.
            labels: [B] class indices.
            valid: which samples count: a [B] bool mask (the loaders' ``valid`` output), or an int: the first
                ``valid`` samples (e.g. a padded last batch); None: all.
        """
        keep = _valid_rows(valid, logits.shape[0])
        logits, labels = logits[keep.to(logits.device)], labels.reshape(-1)[keep.to(labels.device)]
        pred = _topk_classes(logits, max(self.topk))
        hit = pred == labels.reshape(-1, 1).to(pred.device)
        for k in self.topk:
            self.correct[k] += int(hit[:, :k].any(dim=1).sum())
        self.count += int(logits.shape[0])

    def state(self) -> dict[str, int]:
        return {"count": self.count, **{f"correct{k}": v for k, v in self.correct.items()}}

    def reset(self) -> None:
        """Forgets the counts (a new evaluation)."""
        self.correct = {k: 0 for k in self.topk}
        self.count = 0

    def all_reduce(self) -> None:
        """Sums the counts over an initialised ``torch.distributed`` process group (no-op without one)."""
        _all_reduce_counts(self)

    def compute(self) -> dict[str, float]:
        """``{"top1": %, "top5": %, ...}`` (NaN when nothing was counted)."""
        return {f"top{k}": 100.0 * self.correct[k] / self.count if self.count else float("nan") for k in self.topk}


class ReaLAccuracy:
    """ImageNet-ReaL top-k accuracy, accumulated over batches.

    A top-k prediction is correct when any of its k classes is in the image's ReaL label set; images
    with an empty set are skipped (``excluded`` counts them), as the ReaL paper defines.

    Args:
        real_labels: the path of ``real.json``, or a mapping file name → class indices.
        topk: the k values reported.
    """

    def __init__(self, real_labels: str | os.PathLike | Mapping[str, Sequence[int]], topk: Sequence[int] = (1,)):
        if not isinstance(real_labels, Mapping):
            real_labels = load_real_labels(real_labels)
        self.real_labels = {name: frozenset(labels) for name, labels in real_labels.items()}
        self.topk = tuple(int(k) for k in topk)
        if not self.topk or min(self.topk) < 1:
            raise ValueError(f"topk must hold positive integers, got {topk!r}")
        self.correct = {k: 0 for k in self.topk}
        self.count = 0
        self.excluded = 0

    @classmethod
    def from_timm(cls, topk: Sequence[int] = (1,)) -> ReaLAccuracy:
        """The ReaL labels that timm ships (``timm/data/_info/imagenet_real_labels.json``); needs timm."""
        try:
            import timm.data
        except ImportError:
            raise ImportError("ReaLAccuracy.from_timm needs timm (pip install timm); or pass the path of "
                              "real.json") from None
        path = Path(timm.data.__file__).parent / "_info" / "imagenet_real_labels.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: this timm version ships no ReaL labels; pass the path of real.json")
        return cls(path, topk)

    def check_keys(self, keys: Sequence[str]) -> None:
        """Raises ``KeyError`` naming the images (of ``keys``) that have no ReaL labels, before any evaluation."""
        missing = [k for k in keys if _file_name(k) not in self.real_labels]
        if missing:
            raise KeyError(f"{len(missing)} of {len(keys)} images have no ReaL labels (e.g. {', '.join(missing[:3])});"
                           f" ReaL covers ImageNet's validation images {VAL_FILE_PATTERN.format(1)} … "
                           f"{VAL_FILE_PATTERN.format(len(self.real_labels))}, matched by file name")

    def label_set(self, key: str) -> frozenset[int]:
        """The ReaL label set of an image, by file name or relative path (``val/n01440764/ILSVRC2012_val_….JPEG``)."""
        name = _file_name(key)
        try:
            return self.real_labels[name]
        except KeyError:
            raise KeyError(f"{key!r}: no ReaL labels for {name!r}; ReaL covers ImageNet's validation images "
                           f"({VAL_FILE_PATTERN.format(1)} … {VAL_FILE_PATTERN.format(len(self.real_labels))})") \
                from None

    def label_mask(self, keys: Sequence[str], num_classes: int) -> torch.Tensor:
        """The label sets of ``keys`` as a [B, num_classes] bool tensor (row i: the classes of image i; an empty
        set: a row of False), what ``ReLabelValLoader(..., real_labels=...)`` yields as its ``real`` output.

        Raises:
            KeyError: an image without ReaL labels. ValueError: a class index >= ``num_classes`` (named).
        """
        mask = torch.zeros(len(keys), num_classes, dtype=torch.bool)
        for i, key in enumerate(keys):
            labels = self.label_set(key)
            if labels and max(labels) >= num_classes:
                raise ValueError(f"{key!r}: ReaL class {max(labels)} is beyond the {num_classes} classes; the "
                                 f"labels are ImageNet's 1000 class indices (sorted synset folders)")
            mask[i, list(labels)] = True
        return mask

    def update(self, logits: torch.Tensor, keys: Sequence[str] | None = None, *, valid=None,
               label_mask: torch.Tensor | None = None) -> None:
        """Adds a batch, its label sets given by the images' ``keys`` or as a ``label_mask``.

        Args:
            logits: [B, C] scores.
            keys: the images' file names or paths: B of them, or (a padded batch without ``valid``) the real
                samples' only, the first ``len(keys)`` rows of ``logits``.
            valid: which samples count: a [B] bool mask (the loaders' ``valid`` output) or an int (the first
                ``valid``); None: all.
            label_mask: instead of ``keys``, [B, C] bool: the label sets (the validation loader's ``real``
                output, :meth:`label_mask`).
        """
        if (keys is None) == (label_mask is None):
            raise TypeError("ReaLAccuracy.update: give the images' keys or their label_mask (one of the two)")
        if label_mask is not None:
            label_mask = torch.as_tensor(label_mask)
            if label_mask.dtype != torch.bool or label_mask.ndim != 2 or label_mask.shape[0] != logits.shape[0]:
                raise ValueError(f"ReaLAccuracy.update: label_mask must be [{logits.shape[0]}, C] bool (the "
                                 f"loader's 'real' output), got {label_mask.dtype} {tuple(label_mask.shape)}")
            keys = range(logits.shape[0])
        if valid is not None:
            keep = _valid_rows(valid, logits.shape[0])
            if len(keys) != logits.shape[0]:
                raise ValueError(f"ReaLAccuracy.update: with valid=, give all {logits.shape[0]} keys (got {len(keys)})")
            logits = logits[keep.to(logits.device)]
            keys = [k for k, v in zip(keys, keep.tolist()) if v]
        if label_mask is not None:
            rows = label_mask.cpu()
            sets = [frozenset(torch.nonzero(rows[i]).flatten().tolist()) for i in keys]
        else:
            sets = [self.label_set(k) for k in keys]
        pred = _topk_classes(logits[:len(sets)], max(self.topk)).cpu().numpy()
        for row, labels in zip(pred, sets):
            if not labels:
                self.excluded += 1
                continue
            self.count += 1
            for k in self.topk:
                self.correct[k] += any(int(c) in labels for c in row[:k])

    def state(self) -> dict[str, int]:
        return {"count": self.count, "excluded": self.excluded, **{f"correct{k}": v for k, v in self.correct.items()}}

    def reset(self) -> None:
        """Forgets the counts (a new evaluation); the labels stay."""
        self.correct = {k: 0 for k in self.topk}
        self.count = self.excluded = 0

    def all_reduce(self) -> None:
        """Sums the counts over an initialised ``torch.distributed`` process group (no-op without one)."""
        _all_reduce_counts(self)

    def compute(self) -> dict[str, float]:
        """``{"real_top1": %, ..., "real_images": counted, "real_excluded": empty sets}``."""
        out = {f"real_top{k}": 100.0 * self.correct[k] / self.count if self.count else float("nan")
               for k in self.topk}
        return {**out, "real_images": self.count, "real_excluded": self.excluded}


def as_real_accuracy(real_labels, topk: Sequence[int] = (1,)) -> ReaLAccuracy:
    """A :class:`ReaLAccuracy` from a ``real.json`` path, a mapping file name → classes, ``"timm"`` (the copy timm
    ships) or a ``ReaLAccuracy`` (returned as is)."""
    if isinstance(real_labels, ReaLAccuracy):
        return real_labels
    if isinstance(real_labels, str) and real_labels == "timm":
        return ReaLAccuracy.from_timm(topk)
    return ReaLAccuracy(real_labels, topk)


def _file_name(key: str) -> str:
    """The validation file name of a key: its last path component; a webdataset ``__key__`` has no extension
    (``val/n01440764/ILSVRC2012_val_00000001``): ImageNet's ``.JPEG`` is added."""
    name = PurePosixPath(str(key).replace(os.sep, "/")).name
    return name if PurePosixPath(name).suffix else name + ".JPEG"


def _valid_rows(valid, n: int) -> torch.Tensor:
    """[n] bool: which rows count (``valid``: None, an int count of leading rows, or a bool mask)."""
    if valid is None:
        return torch.ones(n, dtype=torch.bool)
    if isinstance(valid, (int, np.integer)) and not isinstance(valid, bool):
        if not 0 <= int(valid) <= n:
            raise ValueError(f"valid={valid}: must count 0..{n} leading samples")
        return torch.arange(n) < int(valid)
    mask = torch.as_tensor(valid).reshape(-1).cpu()
    if mask.dtype != torch.bool or mask.numel() != n:
        raise ValueError(f"valid must be a [{n}] bool mask (the loader's 'valid' output) or a count, got "
                         f"{mask.dtype} of {mask.numel()} values")
    return mask


def _all_reduce_counts(metric) -> None:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    names = sorted(metric.state())
    values = torch.tensor([metric.state()[n] for n in names], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        values = values.cuda()
    dist.all_reduce(values)
    totals = dict(zip(names, (int(v) for v in values.cpu().tolist())))
    metric.count = totals["count"]
    if "excluded" in totals:
        metric.excluded = totals["excluded"]
    for k in metric.topk:
        metric.correct[k] = totals[f"correct{k}"]


def real_accuracy(logits: torch.Tensor | np.ndarray, keys: Sequence[str],
                  real_labels: str | os.PathLike | Mapping[str, Sequence[int]], topk: Sequence[int] = (1,)) -> dict:
    """ReaL accuracy of one set of predictions (see :class:`ReaLAccuracy`)."""
    metric = ReaLAccuracy(real_labels, topk)
    metric.update(torch.as_tensor(logits), keys)
    return metric.compute()


__all__ = ["ReaLAccuracy", "TopKAccuracy", "VAL_FILE_PATTERN", "as_real_accuracy", "load_real_labels",
           "real_accuracy"]
