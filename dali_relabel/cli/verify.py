"""dali-relabel verify: check a label store (and its image folder); exit 1 on any problem."""

from __future__ import annotations

import argparse
from collections import Counter

HELP = "check a label store: values, keys, completeness; with --images, the images too (exit 1 on problems)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="store path or URL")
    p.add_argument("--images", metavar="DIR", help="dataset root: every key must be an image under DIR, every image "
                                                   "there must have a key, and every image must decode (DALI CPU)")
    p.add_argument("--shards", metavar="SPEC", help="webdataset shards (a directory of .tar files, a brace pattern, "
                                                    "a shardindex.json): every sample must match a store key, every "
                                                    "key a sample, and every image must decode")
    p.add_argument("--no-decode", action="store_true", help="with --images/--shards, skip the decoding pre-scan")
    p.add_argument("--max-print", type=int, default=1000, metavar="N",
                   help="print at most N problems (all are counted; default 1000)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from ..store import LabelStore
    from ..verify import verify_store

    store = LabelStore.open(args.store)
    problems = verify_store(store, images_dir=args.images, decode=not args.no_decode, progress=not args.quiet)
    if args.shards:
        from ..verify_shards import verify_shards

        problems += verify_shards(store, args.shards, decode=not args.no_decode, progress=not args.quiet)
    for p in problems[:args.max_print]:
        print(p)
    if len(problems) > args.max_print:
        print(f"... {len(problems) - args.max_print} more problem(s) not printed (--max-print)")
    if problems:
        counts = ", ".join(f"{n} {kind}" for kind, n in Counter(p.kind for p in problems).most_common())
        print(f"FAILED: {len(problems)} problem(s) in {args.store}: {counts}")
        return 1
    checked = "".join(f" and {what}" for what in (args.images, args.shards) if what)
    print(f"OK: {args.store}{checked}: {store.num_samples} samples, no problems")
    return 0
