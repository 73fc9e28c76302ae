"""dali-relabel verify: check a label store (and its image folder) or a serving bank; exit 1 on any problem."""

from __future__ import annotations

import argparse
from collections import Counter

HELP = ("check a label store: values, keys, identity, completeness; with --images, the images too; or a serving "
        "bank directory, every byte against its digests (exit 1 on problems)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="store path or URL, or a bank directory (one holding bank.json)")
    p.add_argument("--images", metavar="DIR", help="dataset root: every key must be an image under DIR, every image "
                                                   "there must have a key, and every image must decode (DALI CPU)")
    p.add_argument("--shards", metavar="SPEC", help="webdataset shards (a directory of .tar files, a brace pattern, "
                                                    "a shardindex.json): every sample must match a store key, every "
                                                    "key a sample, and every image must decode")
    p.add_argument("--no-decode", action="store_true", help="with --images/--shards, skip the decoding pre-scan")
    p.add_argument("--mark-incomplete", action="store_true",
                   help="mark the blocks found damaged or invalid as not written, so that rerunning the writer "
                        "(annotate, import-naver) with the same arguments rewrites them")
    p.add_argument("--max-print", type=int, default=1000, metavar="N",
                   help="print at most N problems (all are counted; default 1000)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from ..errors import UsageError
    from ..store import LabelStore
    from ..verify import REWRITABLE, is_bank, verify_bank, verify_store

    if is_bank(args.store):
        if args.images or args.shards:
            raise UsageError(f"{args.store} is a serving bank: --images/--shards check a label store's keys against "
                             f"a dataset; give the store instead")
        problems, what = verify_bank(args.store), "bank"
    else:
        store = LabelStore.open(args.store)
        problems = verify_store(store, images_dir=args.images, decode=not args.no_decode, progress=not args.quiet)
        if args.shards:
            from ..verify_shards import verify_shards

            problems += verify_shards(store, args.shards, decode=not args.no_decode, progress=not args.quiet)
        what = f"{store.num_samples} samples"
    for p in problems[:args.max_print]:
        print(p)
    if len(problems) > args.max_print:
        print(f"... {len(problems) - args.max_print} more problem(s) not printed (--max-print)")
    if not problems:
        checked = "".join(f" and {dataset}" for dataset in (args.images, args.shards) if dataset)
        print(f"OK: {args.store}{checked}: {what}, no problems")
        return 0
    counts = ", ".join(f"{n} {kind}" for kind, n in Counter(p.kind for p in problems).most_common())
    print(f"FAILED: {len(problems)} problem(s) in {args.store}: {counts}")
    rewritable = sorted({p.block for p in problems if p.block is not None and p.kind in REWRITABLE})
    if rewritable and args.mark_incomplete:
        LabelStore.open(args.store, mode="r+").mark_incomplete(rewritable)
        print(f"marked {len(rewritable)} block(s) incomplete ({', '.join(map(str, rewritable[:20]))}"
              f"{' ...' if len(rewritable) > 20 else ''}): rerun the writer with the same arguments to rewrite them")
    elif rewritable:
        print(f"{len(rewritable)} block(s) can be rewritten: rerun with --mark-incomplete, then rerun the writer with "
              f"the same arguments")
    return 1
