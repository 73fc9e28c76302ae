"""timm's augmentations on DALI: what they cost, and against timm's own PIL DataLoader doing the same.

All methods read the same JPEGs (the demo dataset's photos composed at 500x375, q90), random-resized-crop to 224,
flip, normalize, with the same number of DALI threads / DataLoader workers, measured in the same run (methods
alternated per round; each epoch timed after its first batches; ratios are medians of per-round ratios):

  relabel          ReLabelLoader, no timm augmentations (the reference)
  relabel_timm     ReLabelLoader via dali_relabel.timm.create_loader with DeiT's recipe but mstd:
                   auto_augment="rand-m9-inc1", re_prob=0.25, re_mode="pixel", bicubic
  timm_pil         timm.data.create_loader with the same arguments (PIL in DataLoader workers, hard labels)

(DeiT's string is "rand-m9-mstd0.5-inc1"; its magnitude noise reaches 10, where timm's PosterizeIncreasing asks
PIL for 0 bits, which Pillow >= 11 refuses with an exception: timm_pil would crash within an epoch. Without
the noise the two do the same work.)

    python benchmarks/augment_bench.py [--device cpu|gpu] [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
from pathlib import Path

import torch
from bench_data import benchmark_data
from common import markdown_table, write_result
from loader_bench import steady_rate

from dali_relabel.loader import ReLabelLoader
from dali_relabel.timm import create_loader

RECIPE = dict(auto_augment="rand-m9-inc1", re_prob=0.25, re_mode="pixel", interpolation="bicubic")
SKIP_BATCHES = 4


def relabel_epoch(data, batch, threads, device, bank_dir):
    loader = ReLabelLoader(data.images, data.labels, batch, device=device, num_threads=threads, seed=1,
                           bank_dir=bank_dir, interpolation="bicubic")
    return lambda: (images.shape[0] for images, _ in loader)


def relabel_timm_epoch(data, batch, threads, device, bank_dir):
    loader = create_loader(data.images, store=data.labels, input_size=224, batch_size=batch, is_training=True,
                           num_workers=threads, device="cuda" if device == "gpu" else "cpu", seed=1,
                           bank_dir=bank_dir, **RECIPE)
    return lambda: (images.shape[0] for images, _ in loader)


def timm_pil_epoch(data, batch, threads, device):
    from timm.data import create_dataset
    from timm.data import create_loader as timm_create_loader

    dataset = create_dataset("", root=str(data.images), is_training=True)
    cuda = device == "gpu"
    loader = timm_create_loader(dataset, input_size=224, batch_size=batch, is_training=True, num_workers=threads,
                                device=torch.device("cuda" if cuda else "cpu"), use_prefetcher=cuda,
                                persistent_workers=True, **RECIPE)
    return lambda: (images.shape[0] for images, _ in loader)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2, help="DALI threads = DataLoader workers")
    ap.add_argument("--images", type=int, default=640, help="epoch size (copies of the 320 demo images)")
    ap.add_argument("--epochs", type=int, default=5, help="measured epochs per method (after one warm-up)")
    ap.add_argument("--quick", action="store_true", help="2 measured epochs")
    ap.add_argument("--data-dir", help="where the demo dataset is built or found (default: the cache)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="augment-bench-"))
    try:
        return measure(args, 2 if args.quick else args.epochs, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure(args, epochs: int, work: Path) -> int:
    data = benchmark_data(work, num_images=args.images, num_classes=None, data_dir=args.data_dir)
    runners = {
        "relabel": relabel_epoch(data, args.batch, args.threads, args.device, work / "bank"),
        "relabel_timm": relabel_timm_epoch(data, args.batch, args.threads, args.device, work / "bank"),
        "timm_pil": timm_pil_epoch(data, args.batch, args.threads, args.device),
    }
    sync = torch.cuda.synchronize if args.device == "gpu" else None
    for run in runners.values():      # warm-up epoch
        for _ in run():
            pass
    rates = {name: [] for name in runners}
    load_before = os.getloadavg()
    for _ in range(epochs):
        for name, run in runners.items():
            rates[name].append(steady_rate(run(), SKIP_BATCHES, sync))
    load_after = os.getloadavg()
    rows = [{"method": name, "img_per_s": statistics.median(r), "runs": r} for name, r in rates.items()]
    for r in rows:
        for ref in ("relabel", "timm_pil"):
            r[f"vs_{ref}"] = statistics.median(a / b for a, b in zip(rates[r["method"]], rates[ref]))
    config = {"device": args.device, "batch": args.batch, "threads_or_workers": args.threads,
              "images": data.num_images, "image_size": list(data.image_size), "crop": 224, "epochs": epochs,
              "recipe": RECIPE, "timing": f"steady state: each epoch timed after its first {SKIP_BATCHES} batches",
              # the machine may be shared: its 1/5/15-minute load averages before and after the measured epochs
              "load_average_before": list(load_before), "load_average_after": list(load_after),
              "cores": os.cpu_count()}
    path = write_result("augment_bench", {"device": args.device, "config": config, "rows": rows}, args.json)
    print(markdown_table(rows, [("method", "method", ""), ("img_per_s", "img/s", ".0f"),
                                ("vs_relabel", "÷ relabel", ".2f"), ("vs_timm_pil", "÷ timm_pil", ".2f")]))
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
