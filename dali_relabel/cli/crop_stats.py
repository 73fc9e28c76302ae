"""dali-relabel crop-stats: how often random-resized crops miss the labelled object (the paper's motivation)."""

from __future__ import annotations

import argparse
import json

HELP = ("IoU between random-resized crops and the object box: histogram PNG and the fractions IoU < 0.5 and "
        "IoU = 0 (the paper's motivation figure)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", metavar="DIR", help="image directory the box keys are relative to (default: the "
                                                    "built-in demo dataset, whose object boxes are known)")
    p.add_argument("--boxes", metavar="JSON", help="object boxes per image: {key: [[y0, x0, y1, x1], ...]} normalized "
                                                   "(entries may also be {\"box\": [...]}); a crop's IoU is its best "
                                                   "over the listed boxes. Required with --images")
    p.add_argument("--crops", type=int, default=100, help="random crops per image (default 100, as in the paper)")
    p.add_argument("--area", type=float, nargs=2, default=(0.08, 1.0), metavar=("MIN", "MAX"),
                   help="crop area range, as in training (default 0.08 1)")
    p.add_argument("--aspect", type=float, nargs=2, default=(3 / 4, 4 / 3), metavar=("MIN", "MAX"),
                   help="crop aspect ratio range, as in training (default 3/4 4/3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random crops (default 0)")
    p.add_argument("--max-images", type=int, metavar="N", help="use the first N images (sorted keys)")
    p.add_argument("--num-images", type=int, default=320, help="size of the built-in demo dataset")
    p.add_argument("--data-dir", help="where to build the built-in dataset (default: the dali_relabel cache)")
    p.add_argument("-o", "--out", default="crop_iou.png", help="histogram PNG")
    p.add_argument("--json", metavar="FILE", help="also write the statistics as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from ..crop_stats import crop_iou_stats, load_boxes

    from ..errors import UsageError

    if args.images and not args.boxes:
        raise UsageError("--images needs --boxes (object boxes per image, JSON); without --images the built-in demo "
                         "dataset and its known boxes are used")
    if args.crops < 1:
        raise UsageError(f"--crops must be >= 1, got {args.crops}")
    if args.images:
        images = args.images
        boxes = load_boxes(args.boxes, images)
        source = f"{images} with boxes from {args.boxes}"
    else:
        from ..testing.demo_dataset import build_demo_dataset

        demo = build_demo_dataset(args.data_dir, num_images=args.num_images, progress=not args.quiet)
        images, boxes = demo.images, demo.labelled_boxes()
        source = f"demo dataset {demo.root} (labelled object's box)"
    if args.max_images:
        boxes = {k: boxes[k] for k in sorted(boxes)[:args.max_images]}
    stats = crop_iou_stats(images, boxes, crops=args.crops, area=tuple(args.area), aspect=tuple(args.aspect),
                           seed=args.seed, progress=not args.quiet)
    summary = {**stats.summary(), "source": source, "area": list(args.area), "aspect": list(args.aspect),
               "seed": args.seed}
    print(f"{summary['images']} images x {summary['crops_per_image']} random-resized crops ({source})")
    print(f"IoU < 0.5: {stats.fraction_below_half:.1%}   IoU = 0: {stats.fraction_zero:.1%}   "
          f"mean IoU {summary['mean_iou']:.3f}   (paper, ImageNet val: 76.5% and 8%)")
    histogram(stats, args.out, title=f"{summary['images']} images x {summary['crops_per_image']} crops")
    print(f"histogram: {args.out}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)
    return 0


def histogram(stats, path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.hist(stats.iou.ravel(), bins=np.linspace(0, 1, 21), color="tab:blue", edgecolor="white",
            weights=np.full(stats.iou.size, 100 / stats.iou.size))
    ax.axvline(0.5, color="tab:red", linestyle="--", linewidth=1)
    ax.set_xlabel("IoU of the random-resized crop with the object box")
    ax.set_ylabel("% of crops")
    ax.set_xlim(0, 1)
    ax.set_title(title, fontsize=10)
    ax.text(0.97, 0.95, f"IoU < 0.5: {stats.fraction_below_half:.1%}\nIoU = 0: {stats.fraction_zero:.1%}",
            transform=ax.transAxes, ha="right", va="top", fontsize=10,
            bbox=dict(boxstyle="round", facecolor="white", alpha=0.8))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
