"""What a label store holds and how it is stored: the facts ``dali-relabel info`` prints."""

from __future__ import annotations

from . import format as fmt
from .bank import bank_nbytes
from .label_store import LabelStore

# Bytes per sample of the official release's float32 data: [2, K, H, W] float32 (scores and classes).
_OFFICIAL_ITEM_BYTES = 2 * 4


def store_info(store: LabelStore) -> dict:
    """A JSON-serialisable description of the store: geometry, dtypes, arrays (shape, chunks, codecs, stored
    bytes), compression against the uncompressed serving bank and the official float32 layout, completeness,
    annotator."""
    stored = store.nbytes_stored()
    n, cells = store.num_samples, store.height * store.width * store.k
    maps = stored[fmt.SCORES] + stored[fmt.CLASSES]
    total = sum(stored.values())
    group = store.zarr_group
    arrays = {}
    for name in fmt.ARRAYS:
        meta = group[name].metadata.to_dict()
        arrays[name] = {"shape": list(group[name].shape), "dtype": str(group[name].dtype),
                        "chunks": list(group[name].chunks), "codecs": [c["name"] for c in meta["codecs"]],
                        "stored_bytes": stored[name]}
    done = store.completed_blocks()
    bank_bytes = bank_nbytes(store)
    map_bank_bytes = bank_bytes - 4 * n  # without the labels
    return {
        "url": store.url, "format_version": store.format_version, "num_samples": n, "height": store.height,
        "width": store.width, "k": store.k, "num_classes": store.num_classes,
        "scores_dtype": store.scores_dtype, "classes_dtype": str(store.class_dtype),
        "block_size": store.block_size, "arrays": arrays,
        "stored_bytes": total, "bytes_per_sample": total / n, "map_bytes_per_sample": maps / n,
        "bank_bytes": bank_bytes,
        "compression_ratio_vs_uncompressed": map_bank_bytes / max(maps, 1),
        "fraction_of_official_float32": maps / (n * cells * _OFFICIAL_ITEM_BYTES),
        "blocks_complete": int(done.sum()), "num_blocks": store.num_blocks, "complete": bool(done.all()),
        "labels_known": int((store.labels >= 0).sum()), "annotator": store.annotator,
        "class_names": None if store.class_names is None else len(store.class_names),
        "identity": None if store.identity is None else store.identity.hex(),
    }


__all__ = ["store_info"]
