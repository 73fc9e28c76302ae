"""The validation pipeline: resize the shorter side, center crop, normalize; soft targets of the central box."""

from __future__ import annotations

import nvidia.dali.math as dmath
from nvidia.dali import fn, pipeline_def, types

from dali_relabel.normalization import IMAGENET_MEAN, IMAGENET_STD
from dali_relabel.ops import load_plugin

from .targets import relabel_targets

VAL_OUTPUTS = ("images", "labels", "targets", "boxes", "rows")


@pipeline_def
def relabel_val_pipeline(*, file_root: str, file_list: str, bank: str | None = None, num_classes: int | None = None,
                         device: str = "gpu", resize_shorter: int = 256, crop_size: int = 224,
                         mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD,
                         dtype: str = "float32", shard_id: int = 0, num_shards: int = 1, reader_name: str = "Reader",
                         outputs: tuple[str, ...] = ("images", "labels"), check_images: bool = True):
    """Images and labels for evaluation (no randomness).

    Args:
        file_root, file_list: as for training. Without ``bank`` the file list's second column is the class label;
            with ``bank`` it is the store row, labels come from the store and ``targets`` (the soft target of the
            central crop's box) are available.
        bank, num_classes: served label bank and C (both or neither).
        device: "gpu" or "cpu". resize_shorter, crop_size: resize the shorter side, then center-crop.
        mean, std, dtype: normalization and image dtype. shard_id, num_shards, reader_name: sharding / iterator.
        outputs: names, in order, from ``VAL_OUTPUTS``.
        check_images: fail on truncated/garbage files naming them (``fn.relabel.check_image``).
    """
    unknown = set(outputs) - set(VAL_OUTPUTS)
    if unknown:
        raise ValueError(f"unknown outputs {sorted(unknown)}; choose from {VAL_OUTPUTS}")
    if (bank is None) != (num_classes is None):
        raise ValueError("give bank and num_classes together (a served label bank and its C), or neither")
    if bank is None and {"targets", "boxes", "rows"} & set(outputs):
        raise ValueError("targets, boxes and rows need a label bank (bank=..., num_classes=...)")
    jpegs, column = fn.readers.file(file_root=file_root, file_list=file_list, random_shuffle=False,
                                    shard_id=shard_id, num_shards=num_shards, pad_last_batch=True, name=reader_name)
    if check_images:
        load_plugin()
        jpegs = fn.relabel.check_image(jpegs)
    decoder = "mixed" if device == "gpu" else "cpu"
    images = fn.decoders.image(jpegs, device=decoder, output_type=types.RGB)
    images = fn.resize(images, resize_shorter=resize_shorter)
    images = fn.crop_mirror_normalize(images, crop=(crop_size, crop_size), crop_pos_x=0.5, crop_pos_y=0.5,
                                      dtype=types.FLOAT16 if dtype == "float16" else types.FLOAT,
                                      output_layout="CHW", mean=[m * 255 for m in mean], std=[s * 255 for s in std])
    named = {"images": images}
    if bank is None:
        named["labels"] = fn.reshape(column, shape=[])
    else:
        # The center crop's window in the original image: crop_size / resize_shorter of the shorter side.
        hw = fn.cast(fn.peek_image_shape(jpegs)[0:2], dtype=types.FLOAT)
        side = dmath.min(hw[0], hw[1]) * (crop_size / resize_shorter)
        half = dmath.min(fn.stack(side, side), hw) / (2.0 * hw)
        rel_start, rel_end = 0.5 - half, 0.5 + half
        named["targets"], named["labels"] = relabel_targets(column, rel_start, rel_end, bank=bank,
                                                            num_classes=num_classes, device=device)
        named["boxes"], named["rows"] = fn.cat(rel_start, rel_end), fn.reshape(column, shape=[])
    return tuple(named[name] for name in outputs)
