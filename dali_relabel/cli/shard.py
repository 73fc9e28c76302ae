"""dali-relabel shard: write an ImageFolder as webdataset tar shards with DALI's index files."""

from __future__ import annotations

import argparse

HELP = ("write an ImageFolder (or image list) as webdataset .tar shards with DALI index files and a wids "
        "shardindex.json, shuffled; resumable (docs/SHARDS.md)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", metavar="DIR", help="ImageFolder root (<DIR>/<class>/<image>), a folder of images, or "
                                                   "an image list file")
    p.add_argument("--out", metavar="DIR", required=True,
                   help="output directory (new or empty; an unfinished run with the same arguments resumes)")
    p.add_argument("--max-count", type=int, default=1000, metavar="N", help="images per shard (default 1000)")
    p.add_argument("--max-size", type=float, default=1024.0, metavar="MB",
                   help="a shard ends before it would exceed this many MiB (default 1024)")
    p.add_argument("--seed", type=int, default=0, help="seed of the shuffle before cutting (default 0)")
    p.add_argument("--no-shuffle", action="store_true",
                   help="keep the listing's order (shards then hold whole classes: a poor order to train from)")
    p.add_argument("--prefix", default="shard", help="shard names: <prefix>-000000.tar, ... (default 'shard')")
    p.add_argument("--index-only", action="store_true",
                   help="write only the missing DALI index files (<name>.idx) next to the .tar files in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..errors import UsageError
    from ..shards.writer import write_missing_indexes, write_shards

    if args.index_only:
        if args.images:
            raise UsageError("--index-only writes the missing index files of the .tar files already in --out; it "
                             "reads no --images (drop one of the two)")
        written = write_missing_indexes(args.out)
        print(f"wrote {len(written)} index files in {args.out}")
        return 0
    if not args.images:
        raise UsageError("--images DIR is required (or --index-only)")
    if not args.max_size > 0:
        raise UsageError(f"--max-size must be > 0 (MiB), got {args.max_size}")
    report = write_shards(args.images, args.out, max_count=args.max_count, max_bytes=int(args.max_size * (1 << 20)),
                          seed=args.seed, shuffle=not args.no_shuffle, prefix=args.prefix, progress=not args.quiet)
    kept = f" ({report.kept} kept from an earlier run)" if report.kept else ""
    print(f"{report.samples} images in {len(report.shards)} shards in {report.out}: {report.shards[0]} .. "
          f"{report.shards[-1]}, {report.bytes / 2**20:.1f} MiB, {report.seconds:.1f} s{kept}")
    print(f"train on them: ReLabelLoader('{report.out}', STORE, batch_size) (each sample's key maps to its store key)")
    return 0
