"""The ReLabel training pipeline: random-resized-crop on the decoder, soft target of each crop."""

from __future__ import annotations

import os
import warnings

from nvidia.dali import fn, pipeline_def, types

from dali_relabel.config import AugmentConfig, TargetConfig, check_choice, split_settings
from dali_relabel.normalization import IMAGENET_MEAN, IMAGENET_STD
from dali_relabel.ops import load_plugin
from dali_relabel.store.bank import LabelBank

from .augment import augment_crops, crop_interpolation, erase_crops, needs_conditionals
from .crop import random_resized_crop_box
from .image import decode_window, normalize, resize_square
from .reader import READER_NAME, FileReader, split_pipeline_args
from .targets import as_bank, relabel_targets

TRAIN_OUTPUTS = ("images", "targets", "labels", "boxes", "rows", "mirror")
# Keywords of the old flat signature: reader fields, and fields of the configs given one by one.
_READER_KEYS = {"file_root": "file_root", "file_list": "file_list", "shuffle": "shuffle", "shard_id": "shard_id",
                "num_shards": "num_shards", "reader_name": "name"}


def relabel_train_pipeline(*, reader: FileReader | None = None, bank: LabelBank | str | os.PathLike | None = None,
                           augment: AugmentConfig | None = None, target_config: TargetConfig | None = None,
                           device: str = "gpu", outputs: tuple[str, ...] = ("images", "targets", "labels"),
                           missing: str = "error", check_images: bool = True, augment_seed: int = -1,
                           **kwargs):
    """Images and ReLabel soft targets for training.

    Decoding and random-resized-crop happen together on the decoder (nvJPEG / the hardware decoder with
    ``device="gpu"``), the crop window also gives each image's normalized box, and the label ops pool the
    image's label map over exactly that box. Build with the usual pipeline arguments, e.g.
    ``relabel_train_pipeline(batch_size=256, num_threads=8, device_id=0, seed=1, reader=FileReader(...),
    bank=store.materialize(), augment=AugmentConfig(crop_size=176))``.

    Args:
        reader: where the images and their store rows come from (:class:`FileReader`: a file list of
            ``<relative path> <store row>`` lines, or explicit lists; :class:`ShardReader`: webdataset shards in a
            given order, with their rows; rows of images without a label map: see ``missing``).
        bank: the served label bank (``LabelStore.materialize()``) or its directory; needed for ``targets`` and
            ``labels`` (C, N come from it).
        augment: crop, flip, resize filter, normalization, dtype, layout (default ``AugmentConfig()``).
        target_config: temperature, transpose_box, label_type, bank_memory (default ``TargetConfig()``).
        device: "gpu" (mixed decoding, GPU label ops) or "cpu" (``device_id=None`` pipelines).
        outputs: names, in order, from ``TRAIN_OUTPUTS``: images ``[3, crop, crop]`` (``[crop, crop, 3]`` with
            ``memory_format="channels_last"``), targets ``[C]`` float32, labels ``[]`` int32 (the store's label),
            boxes ``[4]`` normalized (y0, x0, y1, x1), rows ``[]`` int32 (the reader's), mirror ``[]`` int32
            (1 if flipped).
        missing: "error" or "onehot" (see :func:`relabel_targets`).
        check_images: fail on truncated/garbage files naming them (``fn.relabel.check_image``), instead of the
            decoder's anonymous error or a silently half-grey truncated JPEG.
        augment_seed: seed of the crop and flip generators (-1: derived from the pipeline's ``seed``). The
            loaders derive it from (seed, epoch, rank). A batch's crops and flips depend on this seed and the
            batch's index only.
        kwargs: the pipeline's own arguments (``batch_size``, ``num_threads``, ``device_id``, ``seed``,
            ``prefetch_queue_depth``, ... of ``nvidia.dali.Pipeline``), and the old flat keywords (``file_root``,
            ``file_list``, ``shuffle``, ``shard_id``, ``num_shards``, ``reader_name``, ``num_classes``,
            ``missing_from``, and the configs' fields one by one: ``crop_size``, ``area``, ...), each with a
            DeprecationWarning.
    """
    check_choice("device", device, ("gpu", "cpu"))
    pipeline_args, deprecated = split_pipeline_args(kwargs)
    reader, augment, target_config, missing = _legacy(reader, bank, augment, target_config, missing, deprecated)
    unknown = set(outputs) - set(TRAIN_OUTPUTS)
    if unknown:
        raise ValueError(f"unknown outputs {sorted(unknown)}; choose from {TRAIN_OUTPUTS}")
    if bank is None and {"targets", "labels"} & set(outputs):
        raise ValueError("the targets and labels outputs need a label bank (bank=...)")
    if needs_conditionals(augment):   # per-sample op choices (RandAugment, colour jitter order, ...)
        pipeline_args["enable_conditionals"] = True
    return _train_graph(reader=reader, bank=None if bank is None else as_bank(bank), augment=augment,
                        target_config=target_config, device=device, outputs=tuple(outputs), missing=missing,
                        check_images=check_images, augment_seed=augment_seed, **pipeline_args)


@pipeline_def
def _train_graph(*, reader: FileReader, bank: LabelBank | None, augment: AugmentConfig, target_config: TargetConfig,
                 device: str, outputs: tuple[str, ...], missing: str, check_images: bool, augment_seed: int):
    jpegs, rows = reader()
    if check_images:
        load_plugin()
        jpegs = fn.relabel.check_image(jpegs)
    anchor, shape, rel_start, rel_end = random_resized_crop_box(jpegs, area=augment.area, aspect=augment.aspect,
                                                                seed=_op_seed(augment_seed, 1))
    def seed(stream: int) -> int:
        return _op_seed(augment_seed, stream)

    images = resize_square(decode_window(jpegs, anchor, shape, device=device), augment,
                           interp=crop_interpolation(augment, seed))
    images = augment_crops(images, augment, device=device, seed=seed)     # (timm's; all off by default)
    mirror = fn.random.coin_flip(probability=augment.flip_prob, seed=_op_seed(augment_seed, 2))
    images = erase_crops(normalize(images, augment, mirror=mirror), augment, device=device, seed=seed)
    named = {"images": lambda: images, "rows": lambda: fn.reshape(rows, shape=[]),
             "boxes": lambda: fn.cat(rel_start, rel_end), "mirror": lambda: fn.cast(mirror, dtype=types.INT32)}
    if {"targets", "labels"} & set(outputs):
        targets, labels = relabel_targets(rows, rel_start, rel_end, bank=bank, config=target_config, device=device,
                                          missing=missing)
        named.update(targets=lambda: targets, labels=lambda: labels)
    return tuple(named[name]() for name in outputs)


def _op_seed(augment_seed: int, op: int) -> int:
    """One generator's seed from the augmentation seed (distinct streams per operator; -1 stays "derived")."""
    if augment_seed < 0:
        return -1
    return (augment_seed * 1_000_003 + op * 7_919) % (1 << 31)


def _legacy(reader, bank, augment, target_config, missing, deprecated):
    """The old flat keywords → (reader, configs, missing), each with a DeprecationWarning."""
    deprecated = dict(deprecated)
    reader_args = {new: deprecated.pop(old) for old, new in _READER_KEYS.items() if old in deprecated}
    for key in ("num_classes", "missing_from"):
        if key in deprecated:
            value = deprecated.pop(key)
            _warn(f"{key}= is deprecated: C and N come from the bank")
            bank_ = as_bank(bank) if bank is not None and value is not None else None
            if key == "num_classes" and bank_ is not None and value != bank_.num_classes:
                raise ValueError(f"relabel_train_pipeline: num_classes={value} but the bank has "
                                 f"{bank_.num_classes} classes")
            if key == "missing_from" and value is not None:
                missing = "onehot"
    if reader_args:
        _warn(f"{', '.join(f'{k}=' for k in reader_args)} are deprecated: pass reader=FileReader(...)")
        if reader is not None:
            raise TypeError("relabel_train_pipeline: give reader= or the old file_root=/file_list= keywords, not both")
        reader = FileReader(**{"name": READER_NAME, **reader_args})
    if reader is None:
        raise TypeError("relabel_train_pipeline: reader= is required (e.g. FileReader(file_root, file_list=...))")
    if deprecated:
        configs = split_settings("relabel_train_pipeline", deprecated,   # (an unknown keyword: TypeError)
                                 {"augment": augment or AugmentConfig, "target_config": target_config or TargetConfig},
                                 stacklevel=6)
        _warn(f"{', '.join(f'{k}=' for k in deprecated)} one by one are deprecated: pass augment=AugmentConfig(...) "
              f"and target_config=TargetConfig(...)")
        augment, target_config = configs["augment"], configs["target_config"]
    return reader, augment or AugmentConfig(), target_config or TargetConfig(), missing


def _warn(message: str) -> None:
    warnings.warn(f"relabel_train_pipeline: {message}", DeprecationWarning, stacklevel=5)


__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "TRAIN_OUTPUTS", "relabel_train_pipeline"]
