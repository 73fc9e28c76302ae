"""dali-relabel crop-stats: how often random-resized crops miss the labelled object (the paper's motivation)."""

from __future__ import annotations

import argparse
import json

HELP = ("IoU between random-resized crops and the object box: histogram PNG and the fractions IoU < 0.5 and "
        "IoU = 0 (the paper's motivation figure); with label maps, the ReLabel target's confidence against that IoU "
        "(its 'confidence of supervision' figure)")


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
    p.add_argument("--labels", metavar="STORE", help="label store of the --images: also draw the confidence of "
                                                     "supervision (the demo dataset uses its own store)")
    p.add_argument("--temperature", type=float, default=1.0, help="softmax temperature of the targets (default 1)")
    p.add_argument("--bins", type=int, default=10, help="IoU bins of the confidence curve (default 10)")
    p.add_argument("-o", "--out", default="crop_iou.png", help="histogram PNG")
    p.add_argument("--confidence-out", default="crop_confidence.png", metavar="PNG",
                   help="confidence-of-supervision PNG: target max probability against crop IoU (2-D histogram and "
                        "the mean per IoU bin)")
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
    if args.labels and not args.images:
        raise UsageError("--labels goes with --images and --boxes (the built-in demo dataset uses its own label "
                         "store)")
    if args.bins < 1:
        raise UsageError(f"--bins must be >= 1, got {args.bins}")
    if not args.temperature > 0:
        raise UsageError(f"--temperature must be > 0, got {args.temperature}")
    if args.images:
        images = args.images
        boxes = load_boxes(args.boxes, images)
        source = f"{images} with boxes from {args.boxes}"
        labels = args.labels
    else:
        from ..testing.demo_dataset import build_demo_dataset

        demo = build_demo_dataset(args.data_dir, num_images=args.num_images, progress=not args.quiet)
        images, boxes, labels = demo.images, demo.labelled_boxes(), demo.labels
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
    if labels:
        summary["confidence"] = confidence(stats, labels, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)
    return 0


def confidence(stats, labels, args: argparse.Namespace) -> dict:
    """The confidence of supervision (:func:`~dali_relabel.crop_stats.confidence_summary`): drawn and printed."""
    from ..crop_stats import confidence_summary, plot_confidence
    from ..store import LabelStore

    conf, out = confidence_summary(stats, LabelStore.open(str(labels)), temperature=args.temperature, bins=args.bins)
    title = f"confidence of supervision: {conf.shape[0]} images x {conf.shape[1]} crops, T={args.temperature:g}"
    plot_confidence(stats.iou, conf, args.confidence_out, bins=args.bins, title=title)
    text = lambda v: "—" if v is None else f"{v:.3f}"  # noqa: E731
    print(f"ReLabel target confidence (max probability): mean {out['mean_confidence_all']:.3f}; "
          f"{text(out['mean_confidence_iou_below_0.5'])} for crops with IoU < 0.5, "
          f"{text(out['mean_confidence_iou_from_0.5'])} for IoU >= 0.5")
    print(f"confidence of supervision: {args.confidence_out}")
    return out


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
