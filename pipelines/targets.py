"""ReLabel targets inside a DALI pipeline: store row → label map (fn.relabel.lookup) → soft target (label_pool)."""

from __future__ import annotations

import os
import warnings

from nvidia.dali import fn, types

from dali_relabel.config import TargetConfig, check_choice, split_settings
from dali_relabel.ops import load_plugin
from dali_relabel.store.bank import LabelBank

MISSING = ("error", "onehot")


def as_bank(bank: LabelBank | str | os.PathLike) -> LabelBank:
    """A ``LabelBank`` from itself or its directory (the bank knows its N, H, W, K and C)."""
    return bank if isinstance(bank, LabelBank) else LabelBank.open(bank)


def relabel_targets(rows, rel_start, rel_end, *, bank: LabelBank | str | os.PathLike,
                    config: TargetConfig | None = None, device: str = "cpu", missing: str = "error",
                    validate: bool | None = None, **deprecated):
    """Soft targets and hard labels for a batch of crops.

    Args:
        rows: per-sample int32 store row, e.g. the rows of :class:`~dali_relabel.pipelines.FileReader`. With
            ``missing="onehot"``, a value ``N + c`` (``N`` = the bank's size) marks an image without a label map
            whose target is the one-hot vector of class ``c`` (file list labels cannot be negative, hence the
            offset).
        rel_start, rel_end: float32 ``[2]`` normalized (y, x) corners of each crop (CPU).
        bank: the served label bank (``LabelStore.materialize()``) or its directory; C comes from it.
        config: temperature, transpose_box, label_type, bank_memory (default ``TargetConfig()``).
        device: "cpu" or "gpu" for the lookup and the pooling.
        missing: "error" (every row is a bank row) or "onehot" (enables the rows above; costs a few element-wise
            ops).
        validate: check map entries per batch; default True on the CPU, False on the GPU (the bank was
            verified when it was materialized, and checking costs a stream synchronization per batch).
        deprecated: the old keywords ``num_classes`` (must equal the bank's), ``missing_from`` (must equal the
            bank's size: use ``missing="onehot"``) and the fields of ``TargetConfig`` given one by one
            (``temperature``, ``transpose_box``/``official_axes``, ``label_type``, ``bank_memory``); each warns.

    Returns:
        ``(targets, labels)``: float32 ``[C]`` probabilities and int32 ``[]`` hard labels, on ``device``.
    """
    bank = as_bank(bank)
    config, missing = _legacy("relabel_targets", config or TargetConfig(), missing, deprecated, bank)
    check_choice("missing", missing, MISSING)
    load_plugin()  # fn.relabel.*: built once and cached, loaded on first use
    if validate is None:
        validate = device == "cpu"
    num_classes = bank.num_classes
    rows = fn.reshape(rows, shape=[])
    if missing == "onehot":
        n = bank.num_samples
        is_missing = fn.cast(rows >= n, dtype=types.INT32)       # 1 where the image has no label map
        missing_class = rows - n * is_missing
        row = rows * (1 - is_missing)                              # any valid row; its target is replaced
    else:
        row = rows
    lookup_args = {"bank_memory": config.bank_memory} if device == "gpu" else {}
    scores, classes, labels = fn.relabel.lookup(row=row, bank=str(bank.path), device=device, **lookup_args)
    targets = fn.relabel.label_pool(scores, classes, rel_start=rel_start, rel_end=rel_end, num_classes=num_classes,
                                    temperature=config.temperature, transpose_box=config.transpose_box,
                                    validate=validate, label_type=config.label_type, device=device)
    if missing == "onehot":
        onehot = fn.one_hot(missing_class, num_classes=num_classes)
        if device == "gpu":
            is_missing, onehot, missing_class = is_missing.gpu(), onehot.gpu(), missing_class.gpu()
        targets = (targets * fn.cast(1 - is_missing, dtype=types.FLOAT)
                   + onehot * fn.cast(is_missing, dtype=types.FLOAT))
        labels = fn.cast(labels * (1 - is_missing) + missing_class * is_missing, dtype=types.INT32)
    return targets, labels


def _legacy(owner: str, config: TargetConfig, missing: str, deprecated: dict, bank: LabelBank):
    """Maps the keywords of the old signature onto (config, missing), with a DeprecationWarning each."""
    deprecated = dict(deprecated)
    num_classes = deprecated.pop("num_classes", None)
    if num_classes is not None:
        _warn(owner, "num_classes= is deprecated: C comes from the bank")
        if num_classes != bank.num_classes:
            raise ValueError(f"{owner}: num_classes={num_classes} but the bank {bank.path} has {bank.num_classes} "
                             f"classes")
    if "missing_from" in deprecated:
        missing_from = deprecated.pop("missing_from")
        _warn(owner, "missing_from= is deprecated: use missing='onehot' (N comes from the bank)")
        if missing_from is not None:
            if missing_from != bank.num_samples:
                raise ValueError(f"{owner}: missing_from={missing_from} must be the bank's size "
                                 f"{bank.num_samples}; use missing='onehot'")
            missing = "onehot"
    if deprecated:
        config = split_settings(owner, deprecated, {"config": config}, stacklevel=5)["config"]  # unknown: TypeError
        names = [k for k in deprecated if k != "official_axes"]
        if names:
            _warn(owner, f"{', '.join(f'{k}=' for k in names)} one by one is deprecated: pass "
                         f"config=TargetConfig({', '.join(f'{k}=...' for k in names)})")
    return config, missing


def _warn(owner: str, message: str) -> None:
    warnings.warn(f"{owner}: {message}", DeprecationWarning, stacklevel=4)


__all__ = ["MISSING", "as_bank", "relabel_targets"]
