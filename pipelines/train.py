"""The ReLabel training pipeline: random-resized-crop on the decoder, soft target of each crop."""

from __future__ import annotations

from nvidia.dali import fn, pipeline_def, types

from dali_relabel.normalization import IMAGENET_MEAN, IMAGENET_STD
from dali_relabel.ops import load_plugin

from .crop import random_resized_crop_box
from .targets import relabel_targets

TRAIN_OUTPUTS = ("images", "targets", "labels", "boxes", "rows", "mirror")


@pipeline_def
def relabel_train_pipeline(*, file_root: str, file_list: str, bank: str, num_classes: int, device: str = "gpu",
                           crop_size: int = 224, area: tuple[float, float] = (0.08, 1.0),
                           aspect: tuple[float, float] = (3 / 4, 4 / 3), flip_prob: float = 0.5,
                           mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD,
                           dtype: str = "float32", shuffle: bool = True, shard_id: int = 0, num_shards: int = 1,
                           reader_name: str = "Reader", outputs: tuple[str, ...] = ("images", "targets", "labels"),
                           temperature: float = 1.0, official_axes: bool = False, missing_from: int | None = None,
                           bank_memory: str = "device", check_images: bool = True,
                           label_type: str = "localized_multi"):
    """Images and ReLabel soft targets for training.

    Decoding and random-resized-crop happen together on the decoder (nvJPEG / the hardware decoder with
    ``device="gpu"``), the crop window also gives each image's normalized box, and the label ops pool the
    image's label map over exactly that box. Build with the usual pipeline arguments, e.g.
    ``relabel_train_pipeline(batch_size=256, num_threads=8, device_id=0, seed=1, file_root=..., ...)``.

    Args:
        file_root: directory the file list's paths are relative to.
        file_list: text file, one ``<relative path> <store row>`` per line (rows of images without a label map:
            see ``missing_from`` in :func:`dali_relabel.pipelines.targets.relabel_targets`).
        bank: served label bank directory (``LabelStore.materialize()``).
        num_classes: C.
        device: "gpu" (mixed decoding, GPU label ops) or "cpu" (``device_id=None`` pipelines).
        crop_size: output side in pixels. area, aspect: random-resized-crop ranges.
        flip_prob: probability of a horizontal flip (it does not change the target: the box is the same).
        mean, std: normalization in [0, 1] units. dtype: "float32" or "float16" images.
        shuffle: reshuffle the file list every epoch. shard_id, num_shards: data-parallel sharding.
        reader_name: the reader's name, for ``DALIGenericIterator(reader_name=...)``.
        outputs: names, in order, from ``TRAIN_OUTPUTS``: images ``[3, crop, crop]``, targets ``[C]`` float32,
            labels ``[]`` int32 (the store's label), boxes ``[4]`` normalized (y0, x0, y1, x1), rows ``[]`` int32,
            mirror ``[]`` int32 (1 if flipped).
        temperature, official_axes, missing_from, bank_memory, label_type: see ``relabel_targets``.
        check_images: fail on truncated/garbage files naming them (``fn.relabel.check_image``), instead of the
            decoder's anonymous error or a silently half-grey truncated JPEG.
    """
    unknown = set(outputs) - set(TRAIN_OUTPUTS)
    if unknown:
        raise ValueError(f"unknown outputs {sorted(unknown)}; choose from {TRAIN_OUTPUTS}")
    jpegs, rows = fn.readers.file(file_root=file_root, file_list=file_list, shuffle_after_epoch=shuffle,
                                  shard_id=shard_id, num_shards=num_shards, pad_last_batch=True, name=reader_name)
    if check_images:
        load_plugin()
        jpegs = fn.relabel.check_image(jpegs)
    anchor, shape, rel_start, rel_end = random_resized_crop_box(jpegs, area=area, aspect=aspect)
    decoder = "mixed" if device == "gpu" else "cpu"
    images = fn.decoders.image_slice(jpegs, anchor, shape, axis_names="HW", device=decoder, output_type=types.RGB)
    images = fn.resize(images, size=[crop_size, crop_size])
    mirror = fn.random.coin_flip(probability=flip_prob)
    images = fn.crop_mirror_normalize(images, dtype=types.FLOAT16 if dtype == "float16" else types.FLOAT,
                                      output_layout="CHW", mean=[m * 255 for m in mean], std=[s * 255 for s in std],
                                      mirror=mirror)
    named = {"images": lambda: images, "rows": lambda: fn.reshape(rows, shape=[]),
             "boxes": lambda: fn.cat(rel_start, rel_end), "mirror": lambda: fn.cast(mirror, dtype=types.INT32)}
    if {"targets", "labels"} & set(outputs):
        targets, labels = relabel_targets(rows, rel_start, rel_end, bank=bank, num_classes=num_classes, device=device,
                                          temperature=temperature, official_axes=official_axes,
                                          missing_from=missing_from, bank_memory=bank_memory,
                                          label_type=label_type)
        named.update(targets=lambda: targets, labels=lambda: labels)
    return tuple(named[name]() for name in outputs)
