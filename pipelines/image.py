"""Image stages of the pipelines: decode (a window, or the whole image), resize, flip, normalize.

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


__all__ = ["INTERP_TYPES", "decode", "decode_window", "decoder_device", "normalize", "resize_shorter",
           "resize_square"]
