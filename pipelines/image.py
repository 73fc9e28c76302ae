"""Image stages of the pipelines: decode (a window, or the whole image), resize, flip, normalize.

Crops are resized in one of two ways (``AugmentConfig.resampler``): ``resized_crops`` runs
``fn.relabel.resized_crop`` (CPU: crop, resize with Pillow's exact arithmetic, flip and normalize in one pass
per crop, straight from the decoded image), ``dali_resized_crops`` runs DALI's ``fn.resize`` per crop (the
GPU's way; the crop, its flip and the resize fused through the resize's region of interest) and one
``crop_mirror_normalize`` over the stacked crops.

Every stage takes its settings from a :class:`dali_relabel.config.ImageConfig` (or a subclass), so the train and
eval pipelines make their images the same way and a new setting is added in one place.
"""

from __future__ import annotations

from nvidia.dali import fn, types

from dali_relabel.config import ImageConfig

# config.INTERPOLATIONS -> DALI's resampling filters
INTERP_TYPES = {"bilinear": types.INTERP_LINEAR, "bicubic": types.INTERP_CUBIC, "nearest": types.INTERP_NN,
                "lanczos": types.INTERP_LANCZOS3, "triangular": types.INTERP_TRIANGULAR}


def decoder_device(device: str) -> str:
    """The decoders' device for a pipeline device: "mixed" (nvJPEG / the hardware decoder) on the GPU."""
    return "mixed" if device == "gpu" else "cpu"


def decode_window(jpegs, anchor, shape, *, device: str):
    """Decodes only the (y, x) pixel window ``anchor``/``shape`` of each image (RGB, HWC uint8)."""
    return fn.decoders.image_slice(jpegs, anchor, shape, axis_names="HW", device=decoder_device(device),
                                   output_type=types.RGB)


def decode(jpegs, *, device: str):
    """Decodes whole images (RGB, HWC uint8)."""
    return fn.decoders.image(jpegs, device=decoder_device(device), output_type=types.RGB)


def resize_square(images, config: ImageConfig, *, interp=None):
    """Resizes each image to ``crop_size × crop_size`` (the random-resized-crop's final step).

    ``interp``: a per-sample filter (``interpolation="random"``: see ``pipelines.augment.crop_interpolation``),
    or None for the config's.
    """
    if interp is None:
        interp = INTERP_TYPES[config.interpolation]
    return fn.resize(images, size=[config.crop_size, config.crop_size], interp_type=interp)


def resize_shorter(images, size: int, config: ImageConfig):
    """Resizes each image so that its shorter side is ``size`` (aspect ratio kept)."""
    return fn.resize(images, resize_shorter=size, interp_type=INTERP_TYPES[config.interpolation])


def normalize(images, config: ImageConfig, *, mirror=None, center_crop: bool = False):
    """``(x / 255 - mean) / std`` per channel, flipped where ``mirror``, in the config's dtype and layout.

    Args:
        images: HWC uint8 images.
        config: mean/std (0–1 scale), dtype (float16 is made here; bfloat16 is the loader's cast of float32),
            memory_format ("channels_last" writes HWC, which the loader views as NCHW channels_last).
        mirror: per-sample int flag (e.g. ``fn.random.coin_flip``), or None.
        center_crop: also centre-crop ``crop_size × crop_size`` (the eval pipeline).
    """
    extra = {} if mirror is None else {"mirror": mirror}
    if center_crop:
        extra.update(crop=(config.crop_size, config.crop_size), crop_pos_x=0.5, crop_pos_y=0.5)
    return fn.crop_mirror_normalize(images, dtype=types.FLOAT16 if config.dtype == "float16" else types.FLOAT,
                                    output_layout="HWC" if config.channels_last else "CHW",
                                    mean=[255.0 * m for m in config.mean], std=[255.0 * s for s in config.std],
                                    **extra)


def resized_crops(images, config: ImageConfig, *, anchor=None, shape=None, mirror=None, normalized: bool = True):
    """Crops of each decoded image, resized to ``crop_size``, flipped where ``mirror``, normalized (CPU).

    ``fn.relabel.resized_crop``: Pillow's resampling arithmetic and torchvision's normalization, exactly.

    Args:
        images: decoded HWC uint8 images (CPU).
        config: crop_size, interpolation, mean/std, dtype, memory_format.
        anchor, shape: int32 ``[2]`` (one crop) or ``[n, 2]`` (n crops) (y, x) pixel windows per image, e.g.
            from ``fn.random_crop_generator``; None: the whole image is the crop.
        mirror: int32 ``[]`` / ``[n]`` flips (1: flipped), or None.
        normalized: False returns uint8 HWC crops (e.g. for augmentations on pixels, then :func:`normalize`).

    Returns:
        per image ``[3, S, S]`` (``[S, S, 3]`` channels_last, or uint8 HWC), with a leading ``[n]`` axis for
        ``[n, 2]`` windows.
    """
    windows = {} if anchor is None else {"anchor": anchor, "shape": shape}
    flips = {} if mirror is None else {"mirror": mirror}
    if not normalized:
        return fn.relabel.resized_crop(images, size=[config.crop_size, config.crop_size], dtype=types.UINT8,
                                       output_layout="HWC", interp_type=INTERP_TYPES[config.interpolation],
                                       **windows, **flips)
    return fn.relabel.resized_crop(images, size=[config.crop_size, config.crop_size], mean=list(config.mean),
                                   std=list(config.std), interp_type=INTERP_TYPES[config.interpolation],
                                   dtype=types.FLOAT16 if config.dtype == "float16" else types.FLOAT,
                                   output_layout="HWC" if config.channels_last else "CHW", **windows, **flips)


def dali_resized_crops(images, config: ImageConfig, *, windows, mirrors):
    """n crops of each decoded image with DALI's operators: ``[n, 3, S, S]`` per image (``[n, S, S, 3]``
    channels_last), normalized.

    Each crop is one ``fn.resize`` over the crop's region of interest (no slice is copied), with the flip
    fused in (a reversed x range); the uint8 crops are stacked (4x less to copy than floats) and normalized by
    one ``crop_mirror_normalize``.

    Args:
        images: decoded HWC uint8 images (CPU or GPU).
        config: crop_size, interpolation, mean/std, dtype, memory_format.
        windows: n ``(anchor, shape)`` pairs of int32 ``[2]`` (y, x) pixel windows per image.
        mirrors: n int32 ``[]`` flips per image (1: flipped).
    """
    crops = []
    for (anchor, shape), mirror in zip(windows, mirrors):
        start, size = fn.cast(anchor, dtype=types.FLOAT), fn.cast(shape, dtype=types.FLOAT)
        flip = fn.cast(mirror, dtype=types.FLOAT)
        x0 = start[1] + flip * size[1]                  # flipped: the x range runs from right to left
        x1 = start[1] + size[1] - flip * size[1]
        crops.append(fn.resize(images, size=[config.crop_size, config.crop_size],
                               roi_start=fn.stack(start[0], x0), roi_end=fn.stack(start[0] + size[0], x1),
                               interp_type=INTERP_TYPES[config.interpolation]))
    stacked = fn.stack(*crops, axis_name="F")
    return fn.crop_mirror_normalize(stacked, dtype=types.FLOAT16 if config.dtype == "float16" else types.FLOAT,
                                    output_layout="FHWC" if config.channels_last else "FCHW",
                                    mean=[255.0 * m for m in config.mean], std=[255.0 * s for s in config.std])


__all__ = ["INTERP_TYPES", "dali_resized_crops", "decode", "decode_window", "decoder_device", "normalize",
           "resize_shorter", "resize_square", "resized_crops"]
