"""ReLabel targets inside a DALI pipeline: store row → label map (fn.relabel.lookup) → soft target (fn.relabel.label_pool)."""

from __future__ import annotations

from nvidia.dali import fn, types

from dali_relabel.ops import load_plugin


def relabel_targets(rows, rel_start, rel_end, *, bank: str, num_classes: int, device: str = "cpu",
                    temperature: float = 1.0, official_axes: bool = False, missing_from: int | None = None,
                    bank_memory: str = "device", validate: bool | None = None,
                    label_type: str = "localized_multi"):
    """Soft targets and hard labels for a batch of crops.

    Args:
        rows: per-sample int32 store row, e.g. the label of ``fn.readers.file`` over a file list mapping each
            image to its row. With ``missing_from=N`` (the bank's size), a value ``N + c`` marks an image
            without a label map whose target is the one-hot vector of class ``c`` (file list labels cannot be
            negative, hence the offset).
        rel_start, rel_end: float32 ``[2]`` normalized (y, x) corners of each crop (CPU).
        bank: directory of a served label bank (``LabelStore.materialize()``).
        num_classes: C.
        device: "cpu" or "gpu" for the lookup and the pooling.
        temperature: softmax temperature of the targets.
        official_axes: reproduce relabel_imagenet's transposed box exactly.
        missing_from: enables the one-hot rows above (costs a few element-wise ops); None disables them.
        bank_memory: "device" (copy the bank to the GPU once) or "host" (GPU reads pinned host memory).
        validate: check map entries per batch; default True on the CPU, False on the GPU (the bank was
            verified when it was materialized, and checking costs a stream synchronization per batch).
        label_type: localized_multi (ReLabel), localized_single, global_multi or global_single (the paper's
            factor analysis; see ``fn.relabel.label_pool``).

    Returns:
        ``(targets, labels)``: float32 ``[C]`` probabilities and int32 ``[]`` hard labels, on ``device``.
    """
    load_plugin()  # fn.relabel.*: built once and cached, loaded on first use
    if validate is None:
        validate = device == "cpu"
    rows = fn.reshape(rows, shape=[])
    if missing_from is not None:
        missing = fn.cast(rows >= missing_from, dtype=types.INT32)  # 1 where the image has no label map
        missing_class = rows - missing_from * missing
        index = rows * (1 - missing)                                   # any valid row; its target is replaced
    else:
        index = rows
    lookup_args = {"bank_memory": bank_memory} if device == "gpu" else {}
    scores, classes, labels = fn.relabel.lookup(index=index, bank=bank, device=device, **lookup_args)
    targets = fn.relabel.label_pool(scores, classes, rel_start=rel_start, rel_end=rel_end, num_classes=num_classes,
                                    temperature=temperature, transpose_box=official_axes, validate=validate,
                                    label_type=label_type, device=device)
    if missing_from is not None:
        onehot = fn.one_hot(missing_class, num_classes=num_classes)
        if device == "gpu":
            missing, onehot, missing_class = missing.gpu(), onehot.gpu(), missing_class.gpu()
        targets = targets * fn.cast(1 - missing, dtype=types.FLOAT) + onehot * fn.cast(missing, dtype=types.FLOAT)
        labels = fn.cast(labels * (1 - missing) + missing_class * missing, dtype=types.INT32)
    return targets, labels
