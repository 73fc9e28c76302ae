"""Loader throughput: DALI without labels vs DALI with ReLabel targets vs the official PyTorch-style loader.

All three read the same JPEGs (the demo dataset: real scikit-image photos composed at 500x375, q90), do
random-resized-crop to 224 + flip + normalize, use the same number of CPU threads / workers, and are
measured in the same run (epochs alternated, medians):

  dali_no_labels  DALI pipeline, images + hard labels only (the ceiling)
  dali_relabel    ReLabelLoader: the same pipeline + fn.relabel.lookup + fn.relabel.label_pool
  torch_official  torch DataLoader as in relabel_imagenet: PIL decode, RandomResizedCrop with coords,
                  per-image [2, K, H, W] .pt maps loaded in the workers, then per batch a dense
                  [B, C, H, W] scatter + torchvision roi_align + softmax (on the GPU with --device gpu)

The label maps are the demo's own (10 classes) unless ``--num-classes 1000`` asks for ImageNet-like
synthetic maps (the official path's dense [B, C, 15, 15] tensor grows with C; see bench_data.py).

    python benchmarks/loader_bench.py [--device cpu|gpu] [--quick] [--num-classes 1000] [--json PATH]
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
from common import markdown_table, write_result
from official_loader import official_loader, official_targets

import dali_relabel  # noqa: F401  (loads the plugin: fn.relabel.*)
from dali_relabel.image_folder import ImageList
from dali_relabel.loader import ReLabelLoader


def dali_no_labels(images_root, batch, threads, device, seed):
    """The ceiling: the same reader/crop/decode/resize/normalize pipeline with no label ops."""
    from nvidia.dali import fn, pipeline_def, types
    from nvidia.dali.plugin.pytorch import DALIGenericIterator

    from dali_relabel.pipelines import IMAGENET_MEAN, IMAGENET_STD, random_resized_crop_box

    imgs = ImageList.from_folder(images_root)
    list_path = Path(tempfile.mkdtemp()) / "list.txt"
    list_path.write_text("".join(f"{k} {label}\n" for k, label in zip(imgs.keys, imgs.labels)))

    @pipeline_def(batch_size=batch, num_threads=threads, device_id=0 if device == "gpu" else None, seed=seed)
    def pipe():
        jpegs, labels = fn.readers.file(file_root=str(images_root), file_list=str(list_path),
                                        shuffle_after_epoch=True, pad_last_batch=True, name="Reader")
        jpegs = fn.relabel.check_image(jpegs)
        anchor, shape, _, _ = random_resized_crop_box(jpegs)
        images = fn.decoders.image_slice(jpegs, anchor, shape, axis_names="HW",
                                         device="mixed" if device == "gpu" else "cpu", output_type=types.RGB)
        images = fn.resize(images, size=[224, 224])
        images = fn.crop_mirror_normalize(images, dtype=types.FLOAT, output_layout="CHW",
                                          mean=[m * 255 for m in IMAGENET_MEAN], std=[s * 255 for s in IMAGENET_STD],
                                          mirror=fn.random.coin_flip())
        return images, labels

    p = pipe()
    p.build()
    it = DALIGenericIterator(p, ["images", "labels"], reader_name="Reader", auto_reset=True)

    def epoch():
        n = 0
        for b in it:
            n += b[0]["images"].shape[0]
        return n

    return epoch


def dali_relabel_epoch(images_root, labels, batch, threads, device, seed, bank_dir, num_classes):
    loader = ReLabelLoader(images_root, labels, batch, device=device, num_threads=threads, seed=seed,
                           outputs=("images", "targets"), bank_dir=bank_dir, num_classes=num_classes)

    def epoch():
        n = 0
        for images, targets in loader:
            n += images.shape[0]
        return n

    return epoch


def torch_official_epoch(images_root, maps_root, batch, workers, device, num_classes):
    dl = official_loader(images_root, maps_root, batch, workers, pin_memory=device == "gpu")
    dev = "cuda" if device == "gpu" else "cpu"

    def epoch():
        n = 0
        for images, labels, coords, maps in dl:
            images = images.to(dev, non_blocking=True)
            official_targets(maps, coords, num_classes, dev)
            n += images.shape[0]
        if dev == "cuda":
            torch.cuda.synchronize()
        return n

    return epoch


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2, help="DALI threads = DataLoader workers = torch threads")
    ap.add_argument("--images", type=int, default=320)
    ap.add_argument("--epochs", type=int, default=10, help="measured epochs per method (after one warm-up)")
    ap.add_argument("--quick", action="store_true", help="2 measured epochs")
    ap.add_argument("--num-classes", type=int, default=None,
                    help="C of synthetic ImageNet-like maps (e.g. 1000); default: the demo's own 10-class maps")
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
    data = benchmark_data(work, num_images=args.images, num_classes=args.num_classes, data_dir=args.data_dir)
    runners = {
        "dali_no_labels": dali_no_labels(data.images, args.batch, args.threads, args.device, 1),
        "dali_relabel": dali_relabel_epoch(data.images, data.labels, args.batch, args.threads, args.device, 1,
                                           work / "bank", data.num_classes),
        "torch_official": torch_official_epoch(data.images, data.maps, args.batch, args.threads, args.device,
                                               data.num_classes),
    }
    for run in runners.values():  # warm-up epoch: workers, allocations, first decode
        run()
    rates = {name: [] for name in runners}
    for _ in range(epochs):
        for name, run in runners.items():  # alternate methods so drifts hit all of them alike
            t0 = time.perf_counter()
            n = run()
            rates[name].append(n / (time.perf_counter() - t0))
    rows = [{"method": name, "img_per_s": statistics.median(r), "runs": r} for name, r in rates.items()]
    base = {r["method"]: r["img_per_s"] for r in rows}
    for r in rows:
        r["vs_dali_no_labels"] = r["img_per_s"] / base["dali_no_labels"]
        r["vs_torch_official"] = r["img_per_s"] / base["torch_official"]
    config = {"device": args.device, "batch": args.batch, "threads_or_workers": args.threads,
              "images": data.num_images, "image_size": list(data.image_size), "jpeg_quality": 90,
              "epochs": epochs, "num_classes": data.num_classes, "map": list(data.map_shape),
              "maps": "demo ground truth" if args.num_classes is None else "synthetic"}
    path = write_result("loader_bench", {"device": args.device, "config": config, "rows": rows}, args.json)
    print(markdown_table(rows, [("method", "method", ""), ("img_per_s", "img/s", ".0f"),
                                ("vs_dali_no_labels", "÷ dali_no_labels", ".3f"),
                                ("vs_torch_official", "÷ torch_official", ".2f")]))
    print(f"\nwritten: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
