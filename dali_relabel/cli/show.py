"""dali-relabel show: an image with heatmaps of its label map's top classes, and the soft target of a box."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HELP = "draw an image with heatmaps of its top classes from the label map; with --box, the box's soft target"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="label store path or URL")
    p.add_argument("--images", required=True, metavar="DIR", help="image root the store's keys are relative to")
    p.add_argument("--key", required=True, help="the image's key in the store (relative path)")
    p.add_argument("--box", type=float, nargs=4, metavar=("Y0", "X0", "Y1", "X1"),
                   help="a crop box, normalized to the image: draw it and its pooled soft target")
    p.add_argument("--top", type=int, default=4, help="classes to draw heatmaps and bars for (default 4)")
    p.add_argument("--temperature", type=float, default=1.0, help="softmax temperature of the target")
    p.add_argument("-o", "--out", default="relabel_show.png", help="output PNG")


def cell_probabilities(scores: np.ndarray, classes: np.ndarray, num_classes: int) -> np.ndarray:
    """Per map cell, the softmax over all classes of its logits (unstored classes have logit 0): [C, H, W]."""
    h, w, _ = scores.shape
    dense = np.zeros((num_classes, h, w))
    rr, cc = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    for j in range(scores.shape[2]):
        np.add.at(dense, (classes[..., j].astype(np.int64), rr, cc), scores[..., j].astype(np.float64))
    e = np.exp(dense - dense.max(0, keepdims=True))
    return e / e.sum(0, keepdims=True)


def upsample(maps: np.ndarray, height: int, width: int) -> np.ndarray:
    """[n, h, w] → [n, height, width], bilinear with cell centres at pixel centres (RoIAlign's convention)."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(maps, np.float32))[None]
    return torch.nn.functional.interpolate(t, size=(height, width), mode="bilinear", align_corners=False)[0].numpy()


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    from ..ops.eager import pool_maps
    from ..store import LabelStore

    store = LabelStore.open(args.store)
    try:
        row = store.row_of(args.key)
    except KeyError as e:
        print(f"dali-relabel show: {e.args[0]}", file=sys.stderr)
        return 2
    path = Path(args.images) / args.key
    if not path.is_file():
        print(f"dali-relabel show: no image {path} (the key {args.key!r} relative to --images)", file=sys.stderr)
        return 2
    if args.box is not None:
        y0, x0, y1, x1 = args.box
        if not (0 <= y0 < y1 <= 1 and 0 <= x0 < x1 <= 1):
            print(f"dali-relabel show: --box {y0} {x0} {y1} {x1} must satisfy 0 <= y0 < y1 <= 1 and 0 <= x0 < x1 <= 1 "
                  f"(normalized to the image)", file=sys.stderr)
            return 2
    image = np.asarray(Image.open(path).convert("RGB"))
    scores, classes = store.read(row)
    names = store.class_names or [str(c) for c in range(store.num_classes)]
    top = max(1, min(args.top, store.num_classes))
    # Rank classes by the whole image's target (global pooling, the operator's).
    whole = pool_maps([scores], [classes], [[0, 0]], [[1, 1]], num_classes=store.num_classes,
                      label_type="global_multi")[0].numpy()
    ranked = np.argsort(-whole, kind="stable")[:top]
    probs = cell_probabilities(scores, classes, store.num_classes)[ranked]
    heat = upsample(probs, image.shape[0], image.shape[1])
    target = None
    if args.box is not None:
        target = pool_maps([scores], [classes], [args.box[:2]], [args.box[2:]], num_classes=store.num_classes,
                           temperature=args.temperature)[0].numpy()
    draw(image, heat, ranked, whole, names, args, target)
    print(f"{args.key}: top classes " + ", ".join(f"{names[c]} {whole[c]:.2f}" for c in ranked)
          + ("; box target: " + ", ".join(f"{names[c]} {target[c]:.2f}" for c in np.argsort(-target)[:top])
             if target is not None else ""))
    print(f"figure: {args.out}")
    return 0


def draw(image, heat, ranked, whole, names, args, target) -> None:
    import matplotlib.pyplot as plt

    fig = show_figure(image, heat, ranked, whole, names, args, target)
    fig.savefig(args.out, dpi=100)
    plt.close(fig)


HEATMAP_LABEL = "class probability per map cell"


def show_figure(image, heat, ranked, whole, names, args, target):
    """The figure: the image, a heatmap per top class (one colour bar for all, 0..1), the box's target bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    n = len(ranked) + 1 + (target is not None)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n + 0.8, 3.4), squeeze=False, layout="constrained")
    axes = axes[0]
    h, w = image.shape[:2]

    def box_patch():
        y0, x0, y1, x1 = args.box
        return Rectangle((x0 * w, y0 * h), (x1 - x0) * w, (y1 - y0) * h, fill=False, edgecolor="yellow", linewidth=2)

    axes[0].imshow(image)
    axes[0].set_title(args.key, fontsize=8)
    gray = image.mean(2)
    for ax, c, m in zip(axes[1:], ranked, heat):
        ax.imshow(gray, cmap="gray")
        shown = ax.imshow(m, cmap="jet", alpha=0.5, vmin=0, vmax=1)
        ax.set_title(f"{names[c]} (image {whole[c]:.2f})", fontsize=8)
    bar = fig.colorbar(shown, ax=list(axes[1:len(ranked) + 1]), shrink=0.85, pad=0.02)
    bar.set_label(HEATMAP_LABEL, fontsize=8)
    bar.ax.tick_params(labelsize=7)
    for ax in axes[:len(ranked) + 1]:
        ax.axis("off")
        if target is not None:
            ax.add_patch(box_patch())
    if target is not None:
        ax = axes[-1]
        order = np.argsort(-target, kind="stable")[:len(ranked)][::-1]
        ax.barh([names[c] for c in order], target[order], color="tab:blue")
        ax.set_xlim(0, 1)
        ax.set_title("soft target of the box", fontsize=8)
        ax.tick_params(labelsize=8)
    return fig
