"""Crop windows for DALI pipelines, as pixels (for the decoder) and normalized corners (for the labels)."""

from __future__ import annotations

import nvidia.dali.math as dmath
from nvidia.dali import fn, types


def random_resized_crop_box(jpegs, *, area: tuple[float, float] = (0.08, 1.0),
                            aspect: tuple[float, float] = (3 / 4, 4 / 3), seed: int = -1):
    """Draws one random-resized-crop window per encoded image (torchvision's RandomResizedCrop sampling).

    Args:
        jpegs: encoded images (CPU DataNode), e.g. from ``fn.readers.file``.
        area: range of the crop's area as a fraction of the image's.
        aspect: range of the crop's aspect ratio (width / height).
        seed: the generator's seed (-1: derived from the pipeline's seed). DALI draws sample ``i`` of batch ``j``
            from a counter-based generator at ``(seed, j * batch_size, i)``: the windows of a batch depend on
            the seed and the batch's index only, never on earlier batches' images (the loaders' resume uses it).

    Returns:
        ``(anchor, shape, rel_start, rel_end)``: ``anchor``/``shape`` int32 ``[2]`` in (y, x) pixels, ready for
        ``fn.decoders.image_slice(..., axis_names="HW")``; ``rel_start``/``rel_end`` float32 ``[2]``: the window's
        (y, x) corners normalized to the image, ready for ``fn.relabel.label_pool``.
    """
    shape_hwc = fn.peek_image_shape(jpegs)
    anchor, shape = fn.random_crop_generator(shape_hwc, random_area=list(area), random_aspect_ratio=list(aspect),
                                             seed=seed)
    rel_start, rel_end = normalized_corners(shape_hwc, anchor, shape)
    return anchor, shape, rel_start, rel_end


def center_crop_box(jpegs, *, crop_size: int, resize_size: int):
    """The window, in the original image, that "resize the shorter side to ``resize_size``, centre-crop
    ``crop_size``" shows: ``crop_size / resize_size`` of the shorter side, centred (clipped to the image).

    Returns:
        ``(rel_start, rel_end)``: float32 ``[2]`` normalized (y, x) corners.
    """
    hw = fn.cast(fn.peek_image_shape(jpegs)[0:2], dtype=types.FLOAT)
    side = dmath.min(hw[0], hw[1]) * (crop_size / resize_size)
    half = dmath.min(fn.stack(side, side), hw) / (2.0 * hw)
    return 0.5 - half, 0.5 + half


def normalized_corners(shape_hwc, anchor, shape):
    """(y, x) pixel window of an image of shape HWC → normalized (rel_start, rel_end), float32 [2] each."""
    hw = fn.cast(shape_hwc[0:2], dtype=types.FLOAT)
    start = fn.cast(anchor, dtype=types.FLOAT)
    return start / hw, (start + fn.cast(shape, dtype=types.FLOAT)) / hw
