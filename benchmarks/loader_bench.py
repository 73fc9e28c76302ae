"""Loader throughput: DALI without labels vs DALI with ReLabel targets vs the official PyTorch-style loader.

All three read the same JPEGs (the demo dataset: real scikit-image photos composed at 500x375, q90), do
random-resized-crop to 224 + flip + normalize, use the same number of CPU threads / workers, and are
measured in the same run (epochs alternated; each epoch timed in its steady state, after its first batches;
ratios are medians of the per-round ratios):

  dali_no_labels  the training pipeline without its label ops, hard labels only (the ceiling)
  dali_relabel    ReLabelLoader: the same pipeline + fn.relabel.lookup + fn.relabel.label_pool
  torch_official  torch DataLoader as in relabel_imagenet: PIL decode, RandomResizedCrop with coords,
                  per-image [2, K, H, W] .pt maps loaded in the workers, then per batch a dense
                  [B, C, H, W] scatter + torchvision roi_align + softmax (on the GPU with --device gpu)

The label maps are ImageNet-like synthetic maps (C = 1000: the official path's dense [B, C, 15, 15] tensor
grows with C; see bench_data.py), or the demo's own 10-class maps with ``--num-classes 0``. The label ops'
own cost is also measured precisely, as a slope between pipelines with and without them.

    python benchmarks/loader_bench.py [--device cpu|gpu] [--quick] [--num-classes C] [--json PATH]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from bench_data import benchmark_data
from common import markdown_table, per_copy_seconds, write_result
from official_loader import official_loader, official_targets

import dali_relabel  # noqa: F401  (loads the plugin: fn.relabel.*)
from dali_relabel.image_folder import ImageList
from dali_relabel.loader import ReLabelLoader
from dali_relabel.store import LabelStore


def dali_no_labels(images_root, class_list, batch, threads, device, seed):
    """The ceiling: the training pipeline without its label ops (hard labels from a class file list)."""
    from dali_relabel.pipelines import FileReader, relabel_train_pipeline
    from nvidia.dali.plugin.pytorch import DALIGenericIterator

    p = relabel_train_pipeline(batch_size=batch, num_threads=threads, device_id=0 if device == "gpu" else None,
                               seed=seed, reader=FileReader(str(images_root), file_list=str(class_list), shuffle=True),
                               device=device, outputs=("images", "rows"))
    p.build()
    it = DALIGenericIterator(p, ["images", "labels"], reader_name="Reader", auto_reset=True)
    return lambda: (b[0]["images"].shape[0] for b in it)


def dali_relabel_epoch(images_root, labels, batch, threads, device, seed, bank_dir, num_classes):
    loader = ReLabelLoader(images_root, labels, batch, device=device, num_threads=threads, seed=seed,
                           outputs=("images", "targets"), bank_dir=bank_dir, num_classes=num_classes)
    return lambda: (images.shape[0] for images, targets in loader)


def torch_official_epoch(images_root, maps_root, batch, workers, device, num_classes):
    dl = official_loader(images_root, maps_root, batch, workers, pin_memory=device == "gpu")
    dev = "cuda" if device == "gpu" else "cpu"

    def epoch():
        for images, labels, coords, maps in dl:
            images = images.to(dev, non_blocking=True)
            official_targets(maps, coords, num_classes, dev)
            yield images.shape[0]

    return epoch


def steady_rate(batches, skip: int, sync=None) -> float:
    """Images/s of one epoch after its first `skip` batches.

    Skipping the start leaves out what the previous method's loader may still do in the background
    (DALI prefetches the next epoch as soon as one ends) and this loader's own prefetched batches, so
    every method is measured in its steady state.
    """
    n, t0 = 0, None
    for i, size in enumerate(batches):
        if i == skip - 1:
            if sync:
                sync()
            t0 = time.perf_counter()
        elif i >= skip:
            n += size
    if sync:
        sync()
    if t0 is None or n == 0:
        raise ValueError(f"an epoch needs more than {skip} batches; use more --images")
    return n / (time.perf_counter() - t0)


def label_ops_cost(data, batch, threads, device, bank_dir, copies=8, rounds=7, iters=40) -> dict:
    """The label ops' own per-batch cost inside the pipeline, as a slope: the reader + crop-box part of the
    pipeline with `copies` label branches vs with none (end-to-end epochs are too noisy to resolve it)."""
    from dali_relabel.config import TargetConfig
    from dali_relabel.pipelines import random_resized_crop_box, relabel_targets
    from nvidia.dali import fn, pipeline_def

    store = LabelStore.open(str(data.labels))
    bank = str(store.materialize(cache_dir=bank_dir, progress=False).path)
    imgs = ImageList.from_folder(data.images)
    file_list = Path(bank_dir).parent / "rows.txt"
    file_list.write_text("".join(f"{k} {r}\n" for k, r in zip(imgs.keys, store.rows_of(imgs.keys).tolist())))

    def build(n):
        @pipeline_def(batch_size=batch, num_threads=threads, device_id=0 if device == "gpu" else None, seed=1)
        def pipe():
            jpegs, rows = fn.readers.file(file_root=str(data.images), file_list=str(file_list),
                                          shuffle_after_epoch=True, pad_last_batch=True)
            _, _, start, end = random_resized_crop_box(jpegs)
            if n == 0:
                return start, end, rows
            return tuple(relabel_targets(rows, start, end, bank=bank, device=device,
                                         config=TargetConfig(temperature=1.0 + 1e-6 * i))[0] for i in range(n))

        p = pipe()
        p.build()
        for _ in range(10):
            p.run()
        return p

    without, with_ops = build(0), build(copies)
    return {"ms_per_batch": 1e3 * per_copy_seconds(with_ops, without, copies, rounds, iters), "copies": copies,
            "method": "(T(pipeline with R label branches) - T(without)) / R, medians over rounds"}


SKIP_BATCHES = 4  # per epoch, before timing starts (see steady_rate)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2, help="DALI threads = DataLoader workers = torch threads")
    ap.add_argument("--images", type=int, default=1280, help="epoch size (copies of the 320 demo images)")
    ap.add_argument("--epochs", type=int, default=10, help="measured epochs per method (after one warm-up)")
    ap.add_argument("--quick", action="store_true", help="2 measured epochs")
    ap.add_argument("--num-classes", type=int, default=1000,
                    help="C of synthetic ImageNet-like maps (default 1000); 0: the demo's own 10-class maps")
    ap.add_argument("--data-dir", help="where the demo dataset is built or found (default: the cache)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    epochs = 2 if args.quick else args.epochs
    torch.set_num_threads(args.threads)

    work = Path(tempfile.mkdtemp(prefix="loader-bench-"))
    try:
        return measure(args, epochs, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure(args, epochs: int, work: Path) -> int:
    data = benchmark_data(work, num_images=args.images, num_classes=args.num_classes or None, data_dir=args.data_dir)
    runners = {
        "dali_no_labels": dali_no_labels(data.images, data.class_list, args.batch, args.threads, args.device, 1),
        "dali_relabel": dali_relabel_epoch(data.images, data.labels, args.batch, args.threads, args.device, 1,
                                           work / "bank", data.num_classes),
        "torch_official": torch_official_epoch(data.images, data.maps, args.batch, args.threads, args.device,
                                               data.num_classes),
    }
    sync = torch.cuda.synchronize if args.device == "gpu" else None
    for run in runners.values():  # warm-up epoch: workers, allocations, first decode
        for _ in run():
            pass
    rates = {name: [] for name in runners}
    for _ in range(epochs):
        for name, run in runners.items():  # alternate methods so drifts hit all of them alike
            rates[name].append(steady_rate(run(), SKIP_BATCHES, sync))
    rows = [{"method": name, "img_per_s": statistics.median(r), "runs": r} for name, r in rates.items()]
    # Ratios: median over rounds of the ratio within a round (methods ran back to back), which cancels
    # the slow drifts of a shared machine better than a ratio of medians.
    for r in rows:
        for ref in ("dali_no_labels", "torch_official"):
            ratios = [a / b for a, b in zip(rates[r["method"]], rates[ref])]
            r[f"vs_{ref}"] = statistics.median(ratios)
            r[f"vs_{ref}_quartiles"] = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios
    label_ops = label_ops_cost(data, args.batch, args.threads, args.device, work / "bank")
    relabel_batch_ms = args.batch / next(r["img_per_s"] for r in rows if r["method"] == "dali_relabel") * 1e3
    label_ops["pct_of_batch"] = 100 * label_ops["ms_per_batch"] / relabel_batch_ms
    config = {"device": args.device, "batch": args.batch, "threads_or_workers": args.threads,
              "images": data.num_images, "image_size": list(data.image_size), "jpeg_quality": 90,
              "epochs": epochs, "num_classes": data.num_classes, "map": list(data.map_shape),
              "maps": "synthetic" if args.num_classes else "demo ground truth",
              "timing": f"steady state: each epoch timed after its first {SKIP_BATCHES} batches"}
    path = write_result("loader_bench", {"device": args.device, "config": config, "rows": rows,
                                         "label_ops": label_ops}, args.json)
    print(markdown_table(rows, [("method", "method", ""), ("img_per_s", "img/s", ".0f"),
                                ("vs_dali_no_labels", "÷ dali_no_labels", ".3f"),
                                ("vs_torch_official", "÷ torch_official", ".2f")]))
    print(f"\nlabel ops (lookup + label_pool) alone: {label_ops['ms_per_batch']:.3f} ms per batch of {args.batch} = "
          f"{label_ops['pct_of_batch']:.2f}% of dali_relabel's time per batch")
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
