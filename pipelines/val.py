"""The validation pipeline: resize the shorter side, centre-crop, normalize; soft targets of the central box."""

from __future__ import annotations

import os
import warnings

from nvidia.dali import fn, pipeline_def

from dali_relabel.config import EvalConfig, TargetConfig, check_choice, split_settings
from dali_relabel.ops import load_plugin
from dali_relabel.store.bank import LabelBank

from .crop import center_crop_box
from .image import decode, normalize, resize_shorter
from .reader import READER_NAME, FileReader, split_pipeline_args
from .targets import as_bank, relabel_targets

VAL_OUTPUTS = ("images", "labels", "targets", "boxes", "rows")
_READER_KEYS = {"file_root": "file_root", "file_list": "file_list", "shard_id": "shard_id",
                "num_shards": "num_shards", "reader_name": "name"}


def relabel_val_pipeline(*, reader: FileReader | None = None, bank: LabelBank | str | os.PathLike | None = None,
                         config: EvalConfig | None = None, target_config: TargetConfig | None = None,
                         device: str = "gpu", outputs: tuple[str, ...] = ("images", "labels"), missing: str = "error",
                         check_images: bool = True, **kwargs):
    """Images and labels for evaluation (no randomness).

    Args:
        reader: as for training (``FileReader`` or ``ShardReader``). Without ``bank`` its rows are the class labels; with ``bank`` they are store rows,
            labels come from the store and ``targets`` (the soft target of the central crop's box) are available.
        bank: the served label bank or its directory (C comes from it), or None.
        config: crop_size, crop_pct (resize the shorter side to ``floor(crop_size / crop_pct)``, then centre-crop),
            interpolation, normalization, dtype, layout (default ``EvalConfig()``).
        target_config: how the central box's target is pooled (default ``TargetConfig()``).
        device: "gpu" or "cpu".
        outputs: names, in order, from ``VAL_OUTPUTS``.
        missing: "error" or "onehot" (with a bank; see ``relabel_targets``).
        check_images: fail on truncated/garbage files naming them (``fn.relabel.check_image``).
        kwargs: the pipeline's own arguments (``batch_size``, ``num_threads``, ``device_id``, ... of
            ``nvidia.dali.Pipeline``), and the old flat keywords (``file_root``, ``file_list``, ``shard_id``,
            ``num_shards``, ``reader_name``, ``num_classes``; ``resize_shorter`` (→ ``crop_pct = crop_size /
            resize_shorter``), ``crop_size``, ``mean``, ``std``, ``dtype``), each with a DeprecationWarning.
    """
    check_choice("device", device, ("gpu", "cpu"))
    pipeline_args, deprecated = split_pipeline_args(kwargs)
    reader, config, target_config = _legacy(reader, bank, config, target_config, deprecated)
    unknown = set(outputs) - set(VAL_OUTPUTS)
    if unknown:
        raise ValueError(f"unknown outputs {sorted(unknown)}; choose from {VAL_OUTPUTS}")
    if bank is None and {"targets", "boxes", "rows"} & set(outputs):
        raise ValueError("the targets, boxes and rows outputs need a label bank (bank=...)")
    return _val_graph(reader=reader, bank=None if bank is None else as_bank(bank), config=config,
                      target_config=target_config, device=device, outputs=tuple(outputs), missing=missing,
                      check_images=check_images, **pipeline_args)


@pipeline_def
def _val_graph(*, reader: FileReader, bank: LabelBank | None, config: EvalConfig, target_config: TargetConfig,
               device: str, outputs: tuple[str, ...], missing: str, check_images: bool):
    jpegs, column = reader()
    if check_images:
        load_plugin()
        jpegs = fn.relabel.check_image(jpegs)
    images = resize_shorter(decode(jpegs, device=device), config.resize_size, config)
    named = {"images": normalize(images, config, center_crop=True)}
    if bank is None:
        named["labels"] = fn.reshape(column, shape=[])
    else:
        rel_start, rel_end = center_crop_box(jpegs, crop_size=config.crop_size, resize_size=config.resize_size)
        named["targets"], named["labels"] = relabel_targets(column, rel_start, rel_end, bank=bank,
                                                            config=target_config, device=device, missing=missing)
        named["boxes"], named["rows"] = fn.cat(rel_start, rel_end), fn.reshape(column, shape=[])
    return tuple(named[name] for name in outputs)


def _legacy(reader, bank, config, target_config, deprecated):
    deprecated = dict(deprecated)
    reader_args = {new: deprecated.pop(old) for old, new in _READER_KEYS.items() if old in deprecated}
    if "num_classes" in deprecated:
        num_classes = deprecated.pop("num_classes")
        _warn("num_classes= is deprecated: C comes from the bank")
        if (bank is None) != (num_classes is None):
            raise ValueError("relabel_val_pipeline: num_classes without a bank (or a bank without num_classes)")
    if reader_args:
        _warn(f"{', '.join(f'{k}=' for k in reader_args)} are deprecated: pass reader=FileReader(...)")
        if reader is not None:
            raise TypeError("relabel_val_pipeline: give reader= or the old file_root=/file_list= keywords, not both")
        reader = FileReader(**{"name": READER_NAME, **reader_args})
    if reader is None:
        raise TypeError("relabel_val_pipeline: reader= is required (e.g. FileReader(file_root, file_list=...))")
    if deprecated:
        names = ", ".join(f"{k}=" for k in deprecated)
        resize = deprecated.pop("resize_shorter", None)
        if resize is not None:
            deprecated["crop_pct"] = deprecated.get("crop_size", (config or EvalConfig()).crop_size) / resize
        config = split_settings("relabel_val_pipeline", deprecated, {"config": config or EvalConfig},
                                stacklevel=6)["config"]   # (an unknown keyword: TypeError)
        _warn(f"{names} one by one are deprecated: pass config=EvalConfig(...)")
    return reader, config or EvalConfig(), target_config or TargetConfig()


def _warn(message: str) -> None:
    warnings.warn(f"relabel_val_pipeline: {message}", DeprecationWarning, stacklevel=5)


__all__ = ["VAL_OUTPUTS", "relabel_val_pipeline"]
