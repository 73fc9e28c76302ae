"""dali-relabel import-naver: convert the official relabel_imagenet .pt maps into a label store."""

from __future__ import annotations

import argparse
import json

HELP = "import the official relabel_imagenet label maps (<wnid>/<stem>.pt, [2, K, H, W]) into a label store"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--maps", required=True, metavar="DIR", help="root of the .pt tree (mirrors train/)")
    p.add_argument("--images", required=True, metavar="DIR", help="image root (ImageFolder layout, e.g. train/)")
    p.add_argument("--out", required=True, metavar="STORE", help="store path or URL to create (or resume)")
    p.add_argument("--layout", choices=["kyx", "kxy"], default="kyx",
                   help="axis order of each file's [K, ., .] planes: kyx = rows are image y (default; conv-output "
                        "layout, TokenLabeling's files), kxy = rows are image x (maps saved transposed)")
    p.add_argument("--allow-missing", action="store_true",
                   help="import matched pairs only when some images lack a map or some maps lack an image")
    p.add_argument("--workers", type=int, default=None, metavar="N", help="processes (default: CPUs, at most 8)")
    p.add_argument("--num-classes", type=int, default=None,
                   help="C (default: 1000 when the class folders are WordNet ids such as n01440764 — the official "
                        "release is ImageNet-1k — also for a subset of its folders; otherwise the larger of the "
                        "number of class folders and 1 + the largest class index in the maps, read before anything "
                        "is written)")
    p.add_argument("--scores-dtype", choices=["float32", "float16"], default=None,
                   help="how the store keeps the logits (default: as the .pt files hold them: float32 for the "
                        "official release, kept exactly; float16 halves the store and rounds each logit to 11 "
                        "significant bits)")
    p.add_argument("--block-size", type=int, default=512, help="samples per store block (default 512)")
    p.add_argument("--annotator", default=None, metavar="JSON",
                   help="annotator description stored in the store, a JSON object (default: the release's)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..errors import UsageError
    from ..store.label_store import resume_hint
    from ..store.naver_import import import_naver
    from . import describe, is_user_error

    annotator = None
    if args.annotator is not None:
        try:
            annotator = json.loads(args.annotator)
        except json.JSONDecodeError as e:
            raise UsageError(f"--annotator is not valid JSON: {e}") from None
        if not isinstance(annotator, dict):
            raise UsageError("--annotator must be a JSON object")
    try:
        report = import_naver(args.maps, args.images, args.out, layout=args.layout, allow_missing=args.allow_missing,
                              workers=args.workers, num_classes=args.num_classes,
                              scores_dtype=args.scores_dtype, block_size=args.block_size,
                              annotator=annotator, progress=not args.quiet)
    except Exception as e:
        hint = resume_hint(args.out)  # only when blocks were written: then rerunning resumes
        if not hint or not is_user_error(e) or getattr(args, "debug", False):
            raise
        raise UsageError(f"{describe(e, args.parser)}; {hint}") from e
    print(report.summary())
    return 0
