"""dali-relabel info: what a label store holds, how it is stored, how complete it is."""

from __future__ import annotations

import argparse
import json

HELP = "print a label store's size, layout, compression and completeness"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="store path or URL (file://, memory://, s3://...)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def store_info(store) -> dict:
    """A dict describing the store (what `info` prints)."""
    from ..store import format as fmt

    stored = store.nbytes_stored()
    n, cells = store.num_samples, store.height * store.width * store.k
    raw = cells * (store.scores_numpy_dtype.itemsize + store.class_dtype.itemsize)
    maps = stored[fmt.SCORES] + stored[fmt.CLASSES]
    total = sum(stored.values())
    group = store.zarr_group
    arrays = {}
    for name in (fmt.SCORES, fmt.CLASSES, fmt.LABELS, fmt.KEYS, fmt.BLOCK_DIGESTS):
        meta = group[name].metadata.to_dict()
        arrays[name] = {"shape": list(group[name].shape), "dtype": str(group[name].dtype),
                        "chunks": list(group[name].chunks), "codecs": [c["name"] for c in meta["codecs"]],
                        "stored_bytes": stored[name]}
    done = store.completed_blocks()
    return {
        "url": store.url, "num_samples": n, "height": store.height, "width": store.width, "k": store.k,
        "num_classes": store.num_classes, "scores_dtype": store.scores_dtype, "classes_dtype": str(store.class_dtype),
        "block_size": store.block_size, "arrays": arrays,
        "stored_bytes": total, "bytes_per_sample": total / n, "map_bytes_per_sample": maps / n,
        "compression_ratio_vs_uncompressed": raw * n / max(maps, 1),
        "fraction_of_official_float32": maps / (n * 2 * cells * 4),
        "blocks_complete": int(done.sum()), "num_blocks": store.num_blocks, "complete": bool(done.all()),
        "labels_known": int((store.labels >= 0).sum()), "annotator": store.annotator,
        "class_names": None if store.class_names is None else len(store.class_names),
    }


def run(args: argparse.Namespace) -> int:
    from ..store import LabelStore

    info = store_info(LabelStore.open(args.store))
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    print(f"store        {info['url']}")
    print(f"samples      {info['num_samples']}  (labels known: {info['labels_known']})")
    print(f"maps         H={info['height']} W={info['width']} K={info['k']}  num_classes={info['num_classes']}  "
          f"scores {info['scores_dtype']}, classes {info['classes_dtype']}")
    print(f"blocks       {info['blocks_complete']}/{info['num_blocks']} complete ({info['block_size']} samples each)"
          + ("" if info["complete"] else "  INCOMPLETE"))
    for name, a in info["arrays"].items():
        print(f"  {name:<14}{str(a['shape']):<22}{a['dtype']:<8}chunks {str(a['chunks']):<22}"
              f"{'+'.join(a['codecs']):<30}{a['stored_bytes']:>14,} B")
    print(f"stored       {info['stored_bytes']:,} B = {info['bytes_per_sample']:.1f} B/sample "
          f"(maps {info['map_bytes_per_sample']:.1f} B/sample)")
    print(f"compression  {info['compression_ratio_vs_uncompressed']:.2f}x vs uncompressed "
          f"{info['scores_dtype']}+{info['classes_dtype']}; "
          f"{100 * info['fraction_of_official_float32']:.1f}% of the official float32 layout")
    print(f"annotator    {json.dumps(info['annotator'])}")
    print(f"class names  {info['class_names'] or 'none'}")
    return 0
