"""Loader throughput: DALI without labels vs DALI with ReLabel targets vs the official PyTorch-style loader.

All three read the same JPEGs (the demo dataset: real scikit-image photos composed at 500x375, q90), do
random-resized-crop to 224 + flip + normalize, use the same number of CPU threads / workers, and are
measured in the same run (epochs alternated, medians):

  dali_no_labels  DALI pipeline, images + hard labels only (the ceiling)
  dali_relabel    ReLabelLoader: the same pipeline + fn.relabel.lookup + fn.relabel.label_pool
  torch_official  torch DataLoader as in relabel_imagenet: PIL decode, RandomResizedCrop with coords,
                  per-image [2, K, H, W] .pt maps loaded in the workers, then per batch a dense
                  [B, C, H, W] scatter + torchvision roi_align + softmax (on the GPU with --device gpu)

    python benchmarks/loader_bench.py [--device cpu|gpu] [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import markdown_table, write_result

import dali_relabel
from dali_relabel.demo_dataset import build_demo_dataset
from dali_relabel.image_folder import ImageList
from dali_relabel.loader import ReLabelLoader
from dali_relabel.official import official_relabel_targets
from dali_relabel.store import LabelStore


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


def dali_relabel_epoch(images_root, labels, batch, threads, device, seed):
    loader = ReLabelLoader(images_root, labels, batch, device=device, num_threads=threads, seed=seed,
                           outputs=("images", "targets"))

    def epoch():
        n = 0
        for images, targets in loader:
            n += images.shape[0]
        return n

    return epoch


class OfficialDataset(torch.utils.data.Dataset):
    """relabel_imagenet's ImageFolderWithCoordsAndLabelMap, re-implemented: image, label, coords, map."""

    def __init__(self, root: Path, maps_root: Path):
        import torchvision.transforms as T

        self.imgs = ImageList.from_folder(root)
        self.root, self.maps_root = Path(root), Path(maps_root)
        self.rrc = T.RandomResizedCrop(224)
        self.post = T.Compose([T.RandomHorizontalFlip(), T.ToTensor(),
                               T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])

    def __len__(self):
        return len(self.imgs)

    def __getitem__(self, i):
        import torchvision.transforms.functional as F
        from PIL import Image

        key = self.imgs.keys[i]
        img = Image.open(self.root / key).convert("RGB")
        y, x, h, w = self.rrc.get_params(img, self.rrc.scale, self.rrc.ratio)
        coords = torch.tensor([y / img.height, x / img.width, (y + h) / img.height, (x + w) / img.width])
        img = self.post(F.resized_crop(img, y, x, h, w, [224, 224]))
        maps = torch.load(self.maps_root / (key.rsplit(".", 1)[0] + ".pt"))
        return img, self.imgs.labels[i], coords, maps


def export_official_maps(store: LabelStore, out: Path) -> None:
    """Writes the store as relabel_imagenet's per-image [2, K, H, W] float32 .pt files."""
    scores, classes = store.read(slice(0, store.num_samples))
    for key, s, c in zip(store.keys.tolist(), scores, classes):
        path = out / (key.rsplit(".", 1)[0] + ".pt")
        path.parent.mkdir(parents=True, exist_ok=True)
        t = torch.stack([torch.from_numpy(s.astype(np.float32)), torch.from_numpy(c.astype(np.float32))])
        torch.save(t.permute(0, 3, 1, 2).contiguous(), path)


def torch_official_epoch(images_root, maps_root, batch, workers, device, num_classes):
    ds = OfficialDataset(images_root, maps_root)
    dl = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers,
                                     pin_memory=device == "gpu", persistent_workers=workers > 0)
    dev = "cuda" if device == "gpu" else "cpu"

    def epoch():
        n = 0
        for images, labels, coords, maps in dl:
            images = images.to(dev, non_blocking=True)
            targets = official_relabel_targets(maps, coords.to(dev), num_classes,
                                               dense=_dense(maps, num_classes).to(dev))
            n += images.shape[0]
        if dev == "cuda":
            torch.cuda.synchronize()
        return n

    return epoch


def _dense(maps, num_classes):
    from dali_relabel.official import dense_label_maps

    return dense_label_maps(maps, num_classes)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2, help="DALI threads = DataLoader workers = torch threads")
    ap.add_argument("--images", type=int, default=320)
    ap.add_argument("--epochs", type=int, default=10, help="measured epochs per method (after one warm-up)")
    ap.add_argument("--quick", action="store_true", help="2 measured epochs")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    epochs = 2 if args.quick else args.epochs
    torch.set_num_threads(args.threads)

    data = build_demo_dataset(num_images=args.images)
    store = LabelStore.open(str(data.labels))
    maps_root = Path(tempfile.mkdtemp(prefix="relabel-official-maps-"))
    export_official_maps(store, maps_root)
    runners = {
        "dali_no_labels": dali_no_labels(data.images, args.batch, args.threads, args.device, 1),
        "dali_relabel": dali_relabel_epoch(data.images, data.labels, args.batch, args.threads, args.device, 1),
        "torch_official": torch_official_epoch(data.images, maps_root, args.batch, args.threads, args.device,
                                               store.num_classes),
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
              "images": len(store.keys), "image_size": [data.height, data.width], "jpeg_quality": 90,
              "epochs": epochs, "num_classes": store.num_classes, "map": [store.height, store.width, store.k]}
    path = write_result("loader_bench", {"device": args.device, "config": config, "rows": rows}, args.json)
    print(markdown_table(rows, [("method", "method", ""), ("img_per_s", "img/s", ".0f"),
                                ("vs_dali_no_labels", "÷ dali_no_labels", ".3f"),
                                ("vs_torch_official", "÷ torch_official", ".2f")]))
    print(f"\nwritten: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
