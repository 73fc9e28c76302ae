"""Random-resized-crop boxes for DALI pipelines, as pixels (for the decoder) and normalized corners (for labels)."""

from __future__ import annotations

from nvidia.dali import fn, types


def random_resized_crop_box(jpegs, *, area: tuple[float, float] = (0.08, 1.0),
                            aspect: tuple[float, float] = (3 / 4, 4 / 3)):
    """Draws one random-resized-crop window per encoded image (torchvision's RandomResizedCrop sampling).

    Args:
        jpegs: encoded images (CPU DataNode), e.g. from ``fn.readers.file``.
        area: range of the crop's area as a fraction of the image's.
        aspect: range of the crop's aspect ratio (width / height).

    Returns:
        ``(anchor, shape, rel_start, rel_end)``: ``anchor``/``shape`` int32 ``[2]`` in (y, x) pixels, ready for
        ``fn.decoders.image_slice(..., axis_names="HW")``; ``rel_start``/``rel_end`` float32 ``[2]``: the window's
        (y, x) corners normalized to the image, ready for ``fn.relabel.label_pool``.
    """
    shape_hwc = fn.peek_image_shape(jpegs)
    anchor, shape = fn.random_crop_generator(shape_hwc, random_area=list(area), random_aspect_ratio=list(aspect))
    rel_start, rel_end = normalized_corners(shape_hwc, anchor, shape)
    return anchor, shape, rel_start, rel_end


def normalized_corners(shape_hwc, anchor, shape):
    """(y, x) pixel window of an image of shape HWC → normalized (rel_start, rel_end), float32 [2] each."""
    hw = fn.cast(shape_hwc[0:2], dtype=types.FLOAT)
    start = fn.cast(anchor, dtype=types.FLOAT)
    return start / hw, (start + fn.cast(shape, dtype=types.FLOAT)) / hw
