"""dali-relabel demo: one epoch of ReLabelLoader on a built-in multi-object dataset (or your data)."""

from __future__ import annotations

import argparse
import time

import numpy as np

HELP = "run ReLabelLoader for one epoch on a built-in multi-object dataset (or --images/--labels) and show targets"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", metavar="DIR", help="ImageFolder root or image list (default: the built-in demo "
                                                   "dataset)")
    p.add_argument("--labels", metavar="STORE", help="label store for --images")
    p.add_argument("--device", choices=("cpu", "gpu"), help="default: gpu if CUDA is available, else cpu")
    p.add_argument("--batch-size", type=int, default=32, help="samples per batch (default 32)")
    p.add_argument("--num-threads", type=int, default=2, help="DALI CPU threads (default 2)")
    p.add_argument("--crop-size", type=int, default=224, help="side of the random-resized crops in pixels "
                                                               "(default 224)")
    p.add_argument("--show", type=int, default=6, help="crops to print and draw")
    p.add_argument("--out", default="relabel_demo.png", help="figure of crops and their targets ('' to skip)")
    p.add_argument("--seed", type=int, default=0, help="pipeline seed: crops, flips and shuffling (default 0)")
    p.add_argument("--num-images", type=int, default=320, help="size of the built-in dataset")
    p.add_argument("--data-dir", help="where to build the built-in dataset (default: the dali_relabel cache)")


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from ..errors import UsageError
    from ..loader import ReLabelLoader
    from ..testing.demo_dataset import build_demo_dataset, crop_composition, owner_map

    if bool(args.images) != bool(args.labels):
        raise UsageError("give both --images and --labels, or neither (built-in dataset)")
    demo = None
    if args.images:
        images, labels = args.images, args.labels
    else:
        demo = build_demo_dataset(args.data_dir, num_images=args.num_images)
        images, labels = demo.images, demo.labels
        print(f"demo dataset: {len(demo.objects)} images, {len(demo.class_names)} classes, in {demo.root}")
    device = args.device or ("gpu" if torch.cuda.is_available() else "cpu")
    loader = ReLabelLoader(images, labels, args.batch_size, device=device, crop_size=args.crop_size,
                           outputs=("images", "targets", "keys", "boxes", "mirror"), seed=args.seed,
                           num_threads=args.num_threads)
    names = loader.store.class_names or [str(i) for i in range(loader.num_classes)]

    shown, seen = [], 0
    t0 = time.perf_counter()
    flipped = []
    for images_b, targets_b, keys_b, boxes_b, mirror_b in tqdm(loader, desc=f"epoch ({device})", unit="batch"):
        seen += len(keys_b)
        if len(shown) < args.show:
            take = min(args.show - len(shown), len(keys_b))
            shown += [(images_b[i].float().cpu(), targets_b[i].cpu(), keys_b[i], boxes_b[i].cpu().numpy())
                      for i in range(take)]
            flipped += [bool(mirror_b[i]) for i in range(take)]
    if device == "gpu":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    print(f"{seen} images in {elapsed:.2f} s: {seen / elapsed:.0f} img/s on {device} "
          f"(first epoch, includes pipeline warm-up)")

    rows = []
    for image, target, key, box in shown:
        line = ", ".join(f"{names[c]} {target[c]:.2f}" for c in top_classes(target.numpy(), 3))
        truth = ""
        if demo is not None:
            objects = demo.objects[key]
            comp = crop_composition(owner_map(objects, demo.height, demo.width), box, len(objects))
            # Largest share first; ties by class index, as top_classes breaks them.
            parts = sorted(((-f, o["class"]) for f, o in zip(comp, objects) if f > 0.005))
            truth = ", ".join(f"{names[c]} {-f:.0%}" for f, c in parts)
            truth += f", background {max(0.0, 1 - comp.sum()):.0%}"
        rows.append((key, box, line, truth))
        print(f"{key}  box (y0 x0 y1 x1) = {[round(float(v), 3) for v in box]}\n    target: {line}"
              + (f"\n    crop contains: {truth}" if truth else ""))
    if args.out and shown:
        _figure(shown, rows, names, args.out, image_root=_image_root(loader), flipped=flipped)
        print(f"figure: {args.out}")
    return 0


def top_classes(target: np.ndarray, k: int) -> list[int]:
    """The k classes of highest probability, highest first; ties go to the lower class index.

    One rule for the printed lines and the figure, so both show the same classes in the same order.
    """
    order = np.lexsort((np.arange(len(target)), -target))
    return [int(c) for c in order[:k]]


def _image_root(loader):
    """The directory the loader's keys are relative to (None if the images are not files under one root)."""
    from pathlib import Path

    root = getattr(loader.images, "root", None)
    return Path(root) if root is not None and Path(root).is_dir() else None


def _figure(shown, rows, names, path, image_root=None, flipped=None) -> None:
    """One row per crop: the whole image with the crop's box, the crop as trained on, its soft target."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle
    from PIL import Image

    from ..normalization import IMAGENET_MEAN, IMAGENET_STD

    n = len(shown)
    fig, axes = plt.subplots(n, 3, figsize=(11, 2.4 * n), gridspec_kw={"width_ratios": [1.3, 1, 1.4]}, squeeze=False)
    mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    flipped = flipped or [False] * n
    for (image, target, key, box), (_, _, _, truth), flip, (ax_full, ax_img, ax_bar) in zip(shown, rows, flipped,
                                                                                             axes):
        full = image_root / key if image_root is not None else None
        if full is not None and full.is_file():
            whole = np.asarray(Image.open(full).convert("RGB"))
            h, w = whole.shape[:2]
            ax_full.imshow(whole)
            y0, x0, y1, x1 = (float(v) for v in box)
            ax_full.add_patch(Rectangle((x0 * w, y0 * h), (x1 - x0) * w, (y1 - y0) * h, fill=False,
                                        edgecolor="yellow", linewidth=2))
            ax_full.set_title(key, fontsize=8)
        ax_full.axis("off")
        pixels = np.clip(image.permute(1, 2, 0).numpy() * std + mean, 0, 1)
        ax_img.imshow(pixels)
        ax_img.set_title("crop, flipped (as trained on)" if flip else "crop (as trained on)", fontsize=8)
        ax_img.axis("off")
        top = top_classes(target.numpy(), 5)[::-1]  # barh draws bottom-up: the largest on top
        ax_bar.barh([names[c] for c in top], target.numpy()[top], color="tab:blue")
        ax_bar.set_xlim(0, 1)
        title = ("soft target; crop contains: " + truth) if truth else "soft target"
        ax_bar.set_title("\n".join(textwrap.wrap(title, 60)), fontsize=7)
        ax_bar.tick_params(labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
