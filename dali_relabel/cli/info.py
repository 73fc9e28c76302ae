"""dali-relabel info: what a label store holds, how it is stored, how complete it is."""

from __future__ import annotations

import argparse
import json

HELP = "print a label store's size, layout, compression and completeness"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="store path or URL (file://, memory://, s3://...)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def run(args: argparse.Namespace) -> int:
    from ..store import LabelStore
    from ..store.info import store_info

    info = store_info(LabelStore.open(args.store))
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    print(f"store        {info['url']}  (format version {info['format_version']})")
    print(f"samples      {info['num_samples']}  (labels known: {info['labels_known']})")
    print(f"maps         H={info['height']} W={info['width']} K={info['k']}  num_classes={info['num_classes']}  "
          f"scores {info['scores_dtype']}, classes {info['classes_dtype']}")
    print(f"blocks       {info['blocks_complete']}/{info['num_blocks']} complete ({info['block_size']} samples each)"
          + ("" if info["complete"] else "  INCOMPLETE"))
    for name, a in info["arrays"].items():
        print(f"  {name:<14}{str(a['shape']):<22}{a['dtype']:<8}chunks {str(a['chunks']):<22}"
              f"{'+'.join(a['codecs']):<30}{a['stored_bytes']:>14,} B")
    print(f"stored       {info['stored_bytes']:,} B = {info['bytes_per_sample']:.1f} B/sample "
          f"(maps {info['map_bytes_per_sample']:.1f} B/sample); serving bank {info['bank_bytes']:,} B")
    print(f"compression  {info['compression_ratio_vs_uncompressed']:.2f}x vs uncompressed "
          f"{info['scores_dtype']}+{info['classes_dtype']}; "
          f"{100 * info['fraction_of_official_float32']:.1f}% of the official float32 layout")
    print(f"annotator    {json.dumps(info['annotator'])}")
    print(f"class names  {info['class_names'] or 'none'}")
    return 0
