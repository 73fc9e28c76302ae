"""Annotator throughput vs the same model's forward pass alone, same batch, size and device, same run.

The annotator (``dali_relabel.annotate.runner``: DALI decode + resize + normalize, dense forward, top-k, store writes)
should reach ≥ 90% of what the classifier's own forward pass does on ready-made input tensors. Both are
measured alternately, ``--repeats`` times; the result is the median of the per-repeat ratios. Also measured,
for the breakdown: the dense (fully convolutional) forward alone.

Images: ImageNet-like JPEGs (≈500×375, quality 90) cut from the photos shipped with scikit-image, written to a
temporary folder. Annotator time is its loop time (the first batch's decode included; model loading and store
creation excluded, they do not grow with the dataset); the end-to-end time is reported too.

    python benchmarks/annotate_bench.py                                   # CPU: resnet18 at 224, batch 32
    python benchmarks/annotate_bench.py --device cuda --model torchvision:efficientnet_b7 --size 475 --amp

Writes ``benchmarks/results/annotate-<date>-<cpu|gpu>.json`` (date, machine, commit, settings, all samples).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import write_result

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "retina", "cat")


def source_photos(rng: np.random.Generator) -> tuple[list, str]:
    """scikit-image's shipped photos; where scikit-image is missing (the GPU machine), smooth random images."""
    from PIL import Image

    try:
        import skimage.data

        return [Image.fromarray(getattr(skimage.data, n)()).convert("RGB") for n in PHOTOS], \
            "scikit-image photos"
    except ImportError:
        photos = []
        for _ in range(8):
            coarse = (rng.random((12, 16, 3)) * 255).astype(np.uint8)
            smooth = np.asarray(Image.fromarray(coarse).resize((640, 480), Image.BICUBIC), np.float32)
            texture = rng.normal(0, 12, smooth.shape)   # JPEG-relevant detail, like a photo's
            photos.append(Image.fromarray(np.clip(smooth + texture, 0, 255).astype(np.uint8)))
        return photos, "generated smooth images with noise (scikit-image not installed)"


def make_images(root: Path, n: int, seed: int = 0) -> str:
    """``n`` JPEGs of about 500×375 (either orientation), random crops of source photos, in 4 class folders.

    Returns:
        What the source photos were.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    photos, source = source_photos(rng)
    for i in range(n):
        photo = photos[i % len(photos)]
        w, h = photo.size
        aspect = rng.uniform(0.75, 1.333)
        cw = int(min(w, h * aspect) * rng.uniform(0.6, 1.0))
        ch = int(min(h, cw / aspect))
        x, y = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
        out = (500, 375) if cw >= ch else (375, 500)
        path = root / f"class{i % 4}" / f"img{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        photo.crop((x, y, x + cw, y + ch)).resize(out, Image.BILINEAR).save(path, quality=90)
    return source + ", ~500x375 JPEG q90"


def forward_seconds(module: torch.nn.Module, *, n: int, batch: int, size: int, device: torch.device,
                    amp: bool) -> float:
    """Seconds for ``n`` images through ``module`` on a ready-made random batch (one warm-up batch first)."""
    x = torch.randn(batch, 3, size, size, device=device)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    from dali_relabel.training import amp_dtype

    autocast = torch.autocast(device.type, dtype=amp_dtype(device.type), enabled=amp)
    with torch.inference_mode(), autocast:
        module(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(n // batch):
            module(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="torchvision:resnet18")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--images", type=int, default=256, help="images per measurement (a multiple of the batch)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--amp", action="store_true")
    ap.add_argument("--resize", default="squash")
    ap.add_argument("--num-threads", type=int, help="DALI threads (default: the annotator's)")
    ap.add_argument("--out", help="result file (default benchmarks/results/annotate-<date>-<cpu|gpu>.json)")
    args = ap.parse_args()
    if args.images % args.batch_size:
        ap.error("--images must be a multiple of --batch-size (the forward pass runs whole batches)")

    import dali_relabel  # noqa: F401  (plugin)
    from dali_relabel.annotate.dense import to_dense
    from dali_relabel.annotate.models import load_model
    from dali_relabel.annotate.runner import annotate

    load_before = list(os.getloadavg())
    device = torch.device(args.device)
    net = load_model(args.model, random_init=True).module.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False   # as the annotator
        net.to(memory_format=torch.channels_last)
    dense = to_dense(net)
    n, b = args.images, args.batch_size
    work = Path(tempfile.mkdtemp(prefix="annotate_bench_"))
    try:
        source = make_images(work / "images", n)

        def run_annotator(tag: str) -> tuple[float, float]:
            out = work / f"store-{tag}"
            t = time.perf_counter()
            report = annotate(images=str(work / "images"), model=args.model, out=str(out), random_init=True,
                              size=args.size, topk=5, batch_size=b, device=args.device, amp=args.amp,
                              resize=args.resize, block_size=max(512, b), num_threads=args.num_threads,
                              progress=False)
            total = time.perf_counter() - t
            assert report.complete and report.images == n
            shutil.rmtree(out)
            return report.loop_s, total

        run_annotator("warmup")   # DALI and allocator warm-up, not counted
        samples = {"forward": [], "dense_forward": [], "annotate_loop": [], "annotate_total": []}
        for r in range(args.repeats):   # alternated, so that load drifts hit both sides alike
            samples["forward"].append(forward_seconds(net, n=n, batch=b, size=args.size, device=device, amp=args.amp))
            loop, total = run_annotator(str(r))
            samples["annotate_loop"].append(loop)
            samples["annotate_total"].append(total)
            samples["dense_forward"].append(forward_seconds(dense, n=n, batch=b, size=args.size, device=device,
                                                            amp=args.amp))
            print(f"repeat {r}: " + ", ".join(f"{k} {n / v[-1]:.1f} img/s" for k, v in samples.items())
                  + f", ratio {samples['forward'][-1] / samples['annotate_loop'][-1]:.3f}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rate = {k: n / statistics.median(v) for k, v in samples.items()}
    # Each repeat's annotator run against the forward pass measured just before it: load from other processes
    # drifts slowly, so paired ratios are steadier than a ratio of medians. The median of those is the result.
    paired = [f / a for f, a in zip(samples["forward"], samples["annotate_loop"])]
    ratio = statistics.median(paired)
    result = {
        "settings": {"model": args.model, "size": args.size, "batch_size": b, "images": n, "repeats": args.repeats,
                     "device": args.device, "amp": args.amp, "resize": args.resize, "num_threads": args.num_threads,
                     "weights": "random init", "image_source": source},
        "seconds": samples,
        "median_img_per_s": rate,
        "ratio_annotate_to_forward": ratio,
        "ratio_annotate_to_forward_per_repeat": paired,
        "ratio_of_median_rates": rate["annotate_loop"] / rate["forward"],
        "ratio_annotate_total_to_forward": rate["annotate_total"] / rate["forward"],
        "ratio_dense_forward_to_forward": rate["dense_forward"] / rate["forward"],
        "goal": "ratio_annotate_to_forward >= 0.9",
        "load_average_before_after": [load_before, list(os.getloadavg())],   # other processes on the machine
    }
    out = write_result("annotate", result, args.out)
    print("median img/s: " + ", ".join(f"{k} {v:.1f}" for k, v in rate.items()))
    print(f"annotator / forward = {ratio:.3f} (median of per-repeat ratios; goal >= 0.9; end to end "
          f"{result['ratio_annotate_total_to_forward']:.3f})"
          f" -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
