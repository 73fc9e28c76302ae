"""DALI input pipeline of the machine annotator: whole images, in list order, resized to a square.

Importable as ``dali_relabel.pipelines.annotate``. Build with the usual pipeline arguments, e.g.::

    pipe = annotate_pipeline(file_root=root, files=keys, positions=range(len(keys)), size=475,
                             mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), decoder="mixed",
                             batch_size=64, num_threads=4, device_id=0)

Outputs per sample: ``images`` ``[3, size, size]`` float32 (CHW, normalized) and ``positions`` ``[1]``
int32 (the sample's entry of ``positions``, to check order). The reader never shuffles; with
``prefetch_queue_depth`` ≥ 2 DALI decodes the next batches while the model runs on the current one.
"""

from __future__ import annotations

from collections.abc import Sequence

from nvidia.dali import fn, pipeline_def, types

# How a whole image becomes size×size (the paper's annotator squashed it).
RESIZE_POLICIES = {
    "squash": "resize both sides to size (aspect ratio not kept, the whole image is seen)",
    "crop": "resize the shorter side to size, then take the centre size×size square (borders cut off)",
    "pad": "resize the longer side to size, then pad to size×size with the mean colour (whole image, aspect kept)",
}

READER_NAME = "reader"


@pipeline_def
def annotate_pipeline(*, file_root: str, files: Sequence[str], positions: Sequence[int], size: int,
                      mean: Sequence[float], std: Sequence[float], resize: str = "squash", decoder: str = "cpu"):
    """Reads, decodes, resizes and normalizes the images ``file_root/files[i]`` in order.

    Args:
        file_root: directory the ``files`` are relative to.
        files: relative paths, read in this order (repeat entries to pad a batch).
        positions: one int per file, returned with it (e.g. its index in ``files``).
        size: output side in pixels.
        mean, std: RGB normalization for pixels in [0, 1] (the model's).
        resize: one of :data:`RESIZE_POLICIES`.
        decoder: ``"mixed"`` (nvJPEG; resize and normalize then run on the GPU) or ``"cpu"``.

    Returns:
        (images ``[B, 3, size, size]`` float32, positions ``[B, 1]`` int32).
    """
    if resize not in RESIZE_POLICIES:
        raise ValueError(f"resize policy {resize!r} is not one of {', '.join(RESIZE_POLICIES)}")
    jpegs, pos = fn.readers.file(file_root=file_root, files=list(files), labels=[int(p) for p in positions],
                                 random_shuffle=False, name=READER_NAME)
    images = fn.decoders.image(jpegs, device=decoder, output_type=types.RGB)
    if resize == "squash":
        images = fn.resize(images, resize_x=size, resize_y=size)
    elif resize == "crop":
        images = fn.resize(images, resize_shorter=size)
    else:
        images = fn.resize(images, resize_longer=size)
    # crop centres the size×size window; for "pad" the window is larger than the image on one side and the
    # out-of-bounds part is filled with 0 after normalization, i.e. the mean colour.
    images = fn.crop_mirror_normalize(images, crop=(size, size), dtype=types.FLOAT, output_layout="CHW",
                                      mean=[255.0 * m for m in mean], std=[255.0 * s for s in std],
                                      out_of_bounds_policy="pad", fill_values=0.0)
    return images, pos


__all__ = ["READER_NAME", "RESIZE_POLICIES", "annotate_pipeline"]
