"""The training augmentations after the crop, in timm's order, from an :class:`AugmentConfig`.

    crop → resize (bilinear / bicubic / "random") → auto_augment → color_jitter → grayscale → blur
         → flip + normalize → random erasing

(timm's ``transforms_imagenet_train``: RandomResizedCrop, flip, then AutoAugment/RandAugment, ColorJitter,
grayscale, blur, then normalize and RandomErasing. The flip is applied in the normalize step here, after the
colour and RandAugment ops rather than before: every op draws its sign or direction at random, so the images'
distribution is the same.) Every op works on the resized crop only: no pixel from outside the crop box enters
the image, and the target stays the box's (docs/TIMM.md, "Soft targets under augmentation").
"""

from __future__ import annotations

from typing import Callable

from nvidia.dali import fn, types
from nvidia.dali.pipeline import do_not_convert

from dali_relabel.augment_spec import fill_color, translate_const
from dali_relabel.config import AugmentConfig

from .auto_augment import auto_augment
from .color import color_jitter, gaussian_blur, grayscale
from .erase import random_erase
from .timm_ops import OpContext

# Random-stream numbers of each stage (added to the pipeline's augmentation seed; 1 and 2: crop and flip).
INTERPOLATION_STREAM, AUTO_AUGMENT_STREAMS, COLOR_STREAMS, ERASE_STREAMS = 3, 100, 200, 300


def needs_conditionals(config: AugmentConfig) -> bool:
    """Whether the graph must be built with ``enable_conditionals=True`` (per-sample op choices)."""
    return bool(config.auto_augment or config.color_jitter or config.blur_prob)


@do_not_convert
def crop_interpolation(config: AugmentConfig, seed: Callable[[int], int]):
    """The crops' resize filter for ``interpolation="random"``: bilinear or bicubic per image (timm's
    RandomResizedCropAndInterpolation); None for a fixed filter (the config's)."""
    if config.interpolation != "random":
        return None
    return fn.random.choice([types.INTERP_LINEAR, types.INTERP_CUBIC], seed=seed(INTERPOLATION_STREAM))


def augment_crops(images, config: AugmentConfig, *, device: str, seed: Callable[[int], int]):
    """auto_augment, color jitter, grayscale and blur on the resized crops (uint8 HWC, ``crop_size`` square)."""
    size = (config.crop_size, config.crop_size)
    ctx = OpContext(size=size, fill=fill_color(config.mean), translate_const=translate_const(config.crop_size),
                    device=device)
    if config.auto_augment is not None:
        images = auto_augment(images, config.auto_augment_spec, ctx, _streams(seed, AUTO_AUGMENT_STREAMS))
    colors = _streams(seed, COLOR_STREAMS)
    if config.color_jitter is not None:
        images = color_jitter(images, config.color_jitter, ctx, colors, prob=config.color_jitter_prob)
    if config.grayscale_prob > 0:
        images = grayscale(images, config.grayscale_prob, ctx, colors)
    if config.blur_prob > 0:
        images = gaussian_blur(images, config.blur_prob, ctx, colors)
    return images


@do_not_convert
def erase_crops(images, config: AugmentConfig, *, device: str, seed: Callable[[int], int]):
    """Random erasing of the normalized crops (``erase_prob`` > 0), else the images unchanged."""
    if config.erase_prob <= 0:
        return images
    return random_erase(images, prob=config.erase_prob, mode=config.erase_mode, max_count=config.erase_count,
                        size=(config.crop_size, config.crop_size), seed=_streams(seed, ERASE_STREAMS), device=device,
                        channels_last=config.channels_last)


@do_not_convert
def _streams(seed: Callable[[int], int], base: int) -> Callable[[int], int]:
    return lambda k: seed(base + k)


__all__ = ["augment_crops", "crop_interpolation", "erase_crops", "needs_conditionals"]
