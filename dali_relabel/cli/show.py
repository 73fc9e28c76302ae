"""dali-relabel show: an image with heatmaps of its label map's top classes, and the soft target of a box."""

from __future__ import annotations

import argparse

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


def run(args: argparse.Namespace) -> int:
    from ..label_view import label_view
    from ..store import LabelStore

    view = label_view(LabelStore.open(args.store), args.key, args.images, box=args.box, top=args.top,
                      temperature=args.temperature)
    draw(view, args.out)
    names, top = view.names, len(view.ranked)
    print(f"{args.key}: top classes " + ", ".join(f"{names[c]} {view.whole[c]:.2f}" for c in view.ranked)
          + ("; box target: " + ", ".join(f"{names[c]} {view.target[c]:.2f}" for c in np.argsort(-view.target)[:top])
             if view.target is not None else ""))
    print(f"figure: {args.out}")
    return 0


def draw(view, out: str) -> None:
    """Writes :func:`show_figure` of ``view`` (a :class:`~dali_relabel.label_view.LabelView`) to the PNG ``out``."""
    import matplotlib.pyplot as plt

    fig = show_figure(view)
    fig.savefig(out, dpi=100)
    plt.close(fig)


HEATMAP_LABEL = "class probability per map cell"


def show_figure(view):
    """The figure: the image, a heatmap per ranked class (one colour bar for all, 0..1), and (with a box) the box's
    target as bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    image, heat, ranked, whole, names, target = view.image, view.heat, view.ranked, view.whole, view.names, view.target
    n = len(ranked) + 1 + (target is not None)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n + 0.8, 3.4), squeeze=False, layout="constrained")
    axes = axes[0]
    h, w = image.shape[:2]

    def box_patch():
        y0, x0, y1, x1 = view.box
        return Rectangle((x0 * w, y0 * h), (x1 - x0) * w, (y1 - y0) * h, fill=False, edgecolor="yellow", linewidth=2)

    axes[0].imshow(image)
    axes[0].set_title(view.key, fontsize=8)
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
