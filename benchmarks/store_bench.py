"""Label store benchmark: compression (codec choice), write, import and materialize speed, RAM.

Every figure comes with a reference measured in the same run:
* codecs: bytes/sample of candidate zarr v3 codec settings on synthetic maps, vs the official layout
  (float32 [2, K, H, W] per image: 9,000 B of data per 15×15×5 sample; the release is a 12 GB tar)
  and the uncompressed fp16+int16 maps; the chosen setting's projection for ImageNet (1,281,167 images);
* write: LabelStore.write_block samples/s vs torch.save of one official .pt per sample;
* import: import-naver samples/s (1 and 2 workers) vs merely torch.load-ing the same .pt files;
* materialize: seconds and peak RAM (fresh process) for a 128k-sample store vs np.save of the same
  arrays from RAM (the copy floor), projected to ImageNet;
* sizes: whole float16 and float32 stores (LabelStore, every array and metadata, bytes on disk) vs the
  official float32 data (9,000 B per 15×15×5 sample; ImageNet: the 12 GB release), on (1) the synthetic
  maps with float32 precision and (2) maps the annotator makes from the demo dataset's real photos
  (scikit-image's photos pasted on textures), with two annotators: a ResNet-18 trained here for 8 epochs
  on the demo photos (10 classes; confident, object-aligned maps: the closest to a real annotator without
  downloading weights) and a randomly initialised ImageNet ResNet-18 (1000 classes, weak noisy logits).

    python benchmarks/store_bench.py            # full (128k-sample store; ~25 min on 2 cores)
    python benchmarks/store_bench.py --quick    # small sizes, a few minutes
    python benchmarks/store_bench.py --only sizes
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, write_result  # noqa: E402

IMAGENET = 1_281_167
OFFICIAL_TAR_BYTES = 12e9  # "12 GB" (relabel_imagenet release)
H, W, K, C = 15, 15, 5, 1000
OFFICIAL_DATA_BYTES = 2 * K * H * W * 4  # float32 [2, K, H, W]

SIZES = {  # quick, full
    "codecs": (4096, 16384), "write": (8192, 32768), "write_ref": (500, 2000), "import": (2048, 8192),
    "materialize": (16384, 131072), "demo": (96, 320),
}


def synthetic(n: int, seed: int = 0):
    from dali_relabel.testing.synthetic import synthetic_label_maps

    out_s, out_c = [], []
    for start in range(0, n, 8192):
        s, c = synthetic_label_maps(min(8192, n - start), seed=seed, start=start)
        out_s.append(s)
        out_c.append(c)
    return np.concatenate(out_s), np.concatenate(out_c)


# ------------------------------------------------------------------------------------------------ codecs
def codec_candidates():
    from zarr.codecs import BloscCodec, TransposeCodec, ZstdCodec

    t = [TransposeCodec(order=(0, 3, 1, 2))]

    def blosc(level, shuffle, typesize):
        return [BloscCodec(cname="zstd", clevel=level, shuffle=shuffle, typesize=typesize)]

    scores = {
        "NHWK blosc-zstd5 shuffle": ([], blosc(5, "shuffle", 2)),
        "NKHW blosc-zstd5 shuffle (chosen)": (t, blosc(5, "shuffle", 2)),
        "NKHW blosc-zstd5 bitshuffle": (t, blosc(5, "bitshuffle", 2)),
        "NKHW blosc-zstd9 shuffle": (t, blosc(9, "shuffle", 2)),
        "NKHW blosc-zstd3 shuffle": (t, blosc(3, "shuffle", 2)),
        "NKHW zstd9": (t, [ZstdCodec(level=9)]),
    }
    classes = {
        "NHWK blosc-zstd3 noshuffle (chosen)": ([], blosc(3, "noshuffle", 2)),
        "NHWK blosc-zstd5 shuffle": ([], blosc(5, "shuffle", 2)),
        "NHWK blosc-zstd9 noshuffle": ([], blosc(9, "noshuffle", 2)),
        "NKHW blosc-zstd3 noshuffle": (t, blosc(3, "noshuffle", 2)),
        "NKHW blosc-zstd5 shuffle": (t, blosc(5, "shuffle", 2)),
        "NHWK zstd9": ([], [ZstdCodec(level=9)]),
    }
    return scores, classes


def measure_codec(arr: np.ndarray, filters, compressors, chunk: int, repeats: int, shard: int | None = None) -> dict:
    import zarr
    from zarr.storage import MemoryStore

    enc, dec, size = [], [], 0
    for _ in range(repeats):
        store = MemoryStore()
        a = zarr.create_array(store, shape=arr.shape, dtype=arr.dtype, chunks=(chunk, *arr.shape[1:]),
                              shards=None if shard is None else (shard, *arr.shape[1:]), filters=filters,
                              compressors=compressors, zarr_format=3)
        t0 = time.perf_counter()
        a[...] = arr
        enc.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        back = a[...]
        dec.append(time.perf_counter() - t0)
        assert np.array_equal(back.view(np.uint16 if back.dtype == np.float16 else back.dtype),
                              arr.view(np.uint16 if arr.dtype == np.float16 else arr.dtype))
        size = sum(len(v) for k, v in store._store_dict.items() if not k.endswith("zarr.json"))
    n = arr.shape[0]
    return {"bytes_per_sample": size / n, "encode_samples_per_s": n / statistics.median(enc),
            "decode_samples_per_s": n / statistics.median(dec)}


def drop_mantissa_bits(x: np.ndarray, bits: int) -> np.ndarray:
    """Round-to-nearest-even float16 to 10 - bits mantissa bits (for the lossy comparison only)."""
    u = x.view(np.uint16).astype(np.uint32)
    keep = (u >> bits) & 1
    u = (u + (1 << (bits - 1)) - 1 + keep) & ~np.uint32((1 << bits) - 1)
    return u.astype(np.uint16).view(np.float16)


def bench_codecs(n: int, repeats: int) -> dict:
    scores, classes = synthetic(n, seed=11)
    s_cands, c_cands = codec_candidates()
    rows = []
    for name, (filters, comp) in s_cands.items():
        rows.append({"array": "scores", "setting": name, **measure_codec(scores, filters, comp, 512, repeats)})
    for name, (filters, comp) in c_cands.items():
        rows.append({"array": "classes", "setting": name, **measure_codec(classes, filters, comp, 512, repeats)})
    chosen_s, chosen_c = s_cands["NKHW blosc-zstd5 shuffle (chosen)"], c_cands["NHWK blosc-zstd3 noshuffle (chosen)"]
    for chunk in (128, 2048):
        rows.append({"array": "scores", "setting": f"chosen, {chunk}-sample chunks",
                     **measure_codec(scores, *chosen_s, chunk, repeats)})
        rows.append({"array": "classes", "setting": f"chosen, {chunk}-sample chunks",
                     **measure_codec(classes, *chosen_c, chunk, repeats)})
    rows.append({"array": "scores", "setting": "chosen, shards of 512 with 64-sample chunks",
                 **measure_codec(scores, *chosen_s, 64, repeats, shard=512)})
    lossy = []
    for bits in (2, 3, 4):
        rounded = drop_mantissa_bits(scores, bits)
        err = np.abs(rounded.astype(np.float32) - scores.astype(np.float32))
        lossy.append({"array": "scores", "setting": f"chosen, {bits} low mantissa bits dropped (lossy, NOT used)",
                      "max_abs_error": float(err.max()), **measure_codec(rounded, *chosen_s, 512, repeats)})
    return {"samples": n, "rows": rows, "lossy": lossy}


def bench_store_size(n: int, workdir: Path) -> dict:
    """The real thing: a LabelStore written through the API, all arrays and metadata counted."""
    from dali_relabel import LabelStore

    scores, classes = synthetic(n, seed=11)
    url = workdir / "size.zarr"
    store = LabelStore.create(url, keys=[f"n{i // 1300:08d}/n{i // 1300:08d}_{i}.JPEG" for i in range(n)],
                              labels=np.arange(n) // 1300 % C, num_classes=C, height=H, width=W, k=K)
    for b in range(store.num_blocks):
        r = store.block_rows(b)
        store.write_block(b, scores[r.start:r.stop], classes[r.start:r.stop])
    stored = store.nbytes_stored()
    on_disk = sum(p.stat().st_size for p in url.rglob("*") if p.is_file())
    maps = stored["scores"] + stored["classes"]
    per_sample = on_disk / n
    shutil.rmtree(url)
    return {
        "samples": n, "stored_bytes_by_array": stored, "bytes_per_sample_all": per_sample,
        "bytes_per_sample_maps": maps / n,
        "official_float32_data_bytes_per_sample": OFFICIAL_DATA_BYTES,
        "uncompressed_fp16_int16_bytes_per_sample": H * W * K * 4,
        "imagenet_projection_bytes": per_sample * IMAGENET,
        "imagenet_fraction_of_official_12GB": per_sample * IMAGENET / OFFICIAL_TAR_BYTES,
        "fraction_of_official_float32_data": per_sample / OFFICIAL_DATA_BYTES,
    }


# ------------------------------------------------------------------------------------------------ write
def bench_write(n: int, n_ref: int, repeats: int, workdir: Path) -> dict:
    import torch

    from dali_relabel import LabelStore

    scores, classes = synthetic(n, seed=5)
    keys = [f"c/{i}.JPEG" for i in range(n)]
    times = []
    for r in range(repeats):
        url = workdir / f"write{r}.zarr"
        t0 = time.perf_counter()
        store = LabelStore.create(url, keys=keys, num_classes=C, height=H, width=W, k=K)
        for b in range(store.num_blocks):
            rows = store.block_rows(b)
            store.write_block(b, scores[rows.start:rows.stop], classes[rows.start:rows.stop])
        times.append(time.perf_counter() - t0)
        shutil.rmtree(url)
    official = [np.stack([s.transpose(2, 0, 1), c.transpose(2, 0, 1)]).astype(np.float32)
                for s, c in zip(scores[:n_ref], classes[:n_ref])]
    ref_times, pt_bytes = [], 0
    for r in range(repeats):
        d = workdir / f"pt{r}"
        d.mkdir()
        t0 = time.perf_counter()
        for i, m in enumerate(official):
            torch.save(torch.from_numpy(m), d / f"{i}.pt")
        ref_times.append(time.perf_counter() - t0)
        pt_bytes = sum(p.stat().st_size for p in d.iterdir())
        shutil.rmtree(d)
    store_rate, ref_rate = n / statistics.median(times), n_ref / statistics.median(ref_times)
    return {"samples": n, "store_write_samples_per_s": store_rate, "official_pt_save_samples_per_s": ref_rate,
            "ratio_store_vs_pt_save": store_rate / ref_rate, "official_pt_file_bytes_per_sample": pt_bytes / n_ref}


# ------------------------------------------------------------------------------------------------ import
def bench_import(n: int, repeats: int, workdir: Path) -> dict:
    import torch

    from dali_relabel.store.naver_import import import_naver

    scores, classes = synthetic(n, seed=7)
    release, small = workdir / "release", workdir / "release_small"
    small_n = 1024  # two blocks: one per worker, to measure the workers' start-up (spawn, import torch)
    per_class = 256
    for i in range(n):
        wnid = f"n{i // per_class:08d}"
        m = np.stack([scores[i].transpose(2, 0, 1), classes[i].transpose(2, 0, 1)]).astype(np.float32)
        for root in (release, small) if i < small_n else (release,):
            (root / "maps" / wnid).mkdir(parents=True, exist_ok=True)
            (root / "train" / wnid).mkdir(parents=True, exist_ok=True)
            torch.save(torch.from_numpy(m), root / "maps" / wnid / f"{wnid}_{i}.pt")
            (root / "train" / wnid / f"{wnid}_{i}.JPEG").touch()  # only names matter to the importer
    paths = sorted((release / "maps").rglob("*.pt"))
    load_times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for p in paths:
            torch.load(p, map_location="cpu", weights_only=True)
        load_times.append(time.perf_counter() - t0)
    out = {"samples": n, "torch_load_only_samples_per_s": n / statistics.median(load_times)}
    medians = {}
    for workers, root, count in ((1, release, n), (2, release, n), (2, small, small_n)):
        times = []
        for r in range(repeats):
            url = workdir / f"import{workers}_{r}.zarr"
            t0 = time.perf_counter()
            import_naver(root / "maps", root / "train", url, num_classes=C, workers=workers, progress=False)
            times.append(time.perf_counter() - t0)
            shutil.rmtree(url)
        medians[workers, count] = statistics.median(times)
    out["import_1_workers_samples_per_s"] = n / medians[1, n]
    out["import_2_workers_samples_per_s"] = n / medians[2, n]  # including the workers' start-up
    out["import_2_workers_startup_seconds_approx"] = medians[2, small_n] - small_n / out["import_1_workers_samples_per_s"]
    out["import_2_workers_steady_samples_per_s"] = (n - small_n) / (medians[2, n] - medians[2, small_n])
    out["imagenet_projection_seconds_1_worker"] = IMAGENET / out["import_1_workers_samples_per_s"]
    out["ratio_import_1_worker_vs_torch_load"] = out["import_1_workers_samples_per_s"] / out[
        "torch_load_only_samples_per_s"]
    shutil.rmtree(release)
    shutil.rmtree(small)
    return out


# ------------------------------------------------------------------------------------------------ materialize
CHILD = r"""
import json, sys, time
import numpy as np
from pathlib import Path
def rss():
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096
def peak_rss():
    # VmHWM, not getrusage: ru_maxrss survives exec and would report the parent's peak.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
from dali_relabel import LabelStore
store = LabelStore.open(sys.argv[1])
mode = sys.argv[3]
if mode == "reference":
    s, c = store.read(slice(None))  # the data in RAM: the copy below is the floor for any materialize
    before = rss()
    t0 = time.perf_counter()
    out = Path(sys.argv[2]) / "copy"
    out.mkdir(parents=True)
    np.save(out / "scores.npy", s)
    np.save(out / "classes.npy", c)
    seconds = time.perf_counter() - t0
else:
    before = rss()
    t0 = time.perf_counter()
    bank = store.materialize(sys.argv[2], progress=False)
    seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "rss_before": before,
                  "peak_rss": peak_rss()}))
"""


def bench_materialize(n: int, repeats: int, workdir: Path) -> dict:
    from dali_relabel import LabelStore

    url = workdir / "mat.zarr"
    store = LabelStore.create(url, keys=[f"c/{i}.JPEG" for i in range(n)], num_classes=C, height=H, width=W, k=K)
    from dali_relabel.testing.synthetic import synthetic_label_maps

    for b in range(store.num_blocks):
        r = store.block_rows(b)
        store.write_block(b, *synthetic_label_maps(len(r), seed=3, start=r.start))
    shm = Path("/dev/shm")
    base = Path(tempfile.mkdtemp(dir=shm if shm.is_dir() else workdir, prefix="store_bench_"))
    results = {"bank": [], "reference": []}
    try:
        for _ in range(repeats):
            for mode in ("bank", "reference"):
                target = base / mode
                proc = subprocess.run([sys.executable, "-c", CHILD, str(url), str(target), mode], capture_output=True,
                                      text=True, check=True)
                results[mode].append(json.loads(proc.stdout.strip().splitlines()[-1]))
                shutil.rmtree(target)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    med = {m: statistics.median(r["seconds"] for r in results[m]) for m in results}
    peak = max(r["peak_rss"] - r["rss_before"] for r in results["bank"])
    bank_bytes = n * H * W * K * 4 + 4 * n
    return {
        "samples": n, "bank_dir": "tmpfs (/dev/shm)" if shm.is_dir() else "disk", "bank_bytes": bank_bytes,
        "materialize_seconds": med["bank"], "materialize_samples_per_s": n / med["bank"],
        "reference_np_save_seconds": med["reference"], "ratio_materialize_vs_np_save": med["bank"] / med["reference"],
        "peak_rss_increase_bytes": peak,
        "peak_rss_total_bytes": max(r["peak_rss"] for r in results["bank"]),
        "imagenet_projection_seconds": med["bank"] * IMAGENET / n,
        "imagenet_bank_bytes": IMAGENET * H * W * K * 4 + 4 * IMAGENET,
        "note": "peak RSS does not grow with N: the bank is written block by block (one 512-sample block in RAM)",
    }


# ------------------------------------------------------------------------------------------------ sizes
def store_bytes(scores: np.ndarray, classes: np.ndarray, num_classes: int, scores_dtype: str, workdir: Path) -> dict:
    """A whole LabelStore of these maps (float32 logits, stored as ``scores_dtype``): bytes on disk."""
    from dali_relabel import LabelStore

    n, h, w, k = scores.shape
    url = workdir / f"size-{scores_dtype}.zarr"
    store = LabelStore.create(url, keys=[f"n{i // 1300:08d}/n{i // 1300:08d}_{i}.JPEG" for i in range(n)],
                              labels=np.arange(n) // 1300 % num_classes, num_classes=num_classes, height=h, width=w,
                              k=k, scores_dtype=scores_dtype)
    for b in range(store.num_blocks):
        r = store.block_rows(b)
        store.write_block(b, scores[r.start:r.stop], classes[r.start:r.stop])
    stored = store.nbytes_stored()
    on_disk = sum(p.stat().st_size for p in url.rglob("*") if p.is_file())
    shutil.rmtree(url)
    per_sample = on_disk / n
    official = 2 * k * h * w * 4  # the official [2, K, H, W] float32 per image
    return {"scores_dtype": scores_dtype, "bytes_per_sample": per_sample,
            "scores_bytes_per_sample": stored["scores"] / n, "classes_bytes_per_sample": stored["classes"] / n,
            "fraction_of_official_float32_data": per_sample / official,
            "imagenet_projection_bytes": per_sample * IMAGENET,
            "imagenet_fraction_of_official_12GB": per_sample * IMAGENET / OFFICIAL_TAR_BYTES}


def map_statistics(scores: np.ndarray, classes: np.ndarray) -> dict:
    """What makes maps compress: logit range, spatial smoothness, class stability between neighbouring cells."""
    top = scores[..., 0].astype(np.float64)
    return {"top_logit_median": float(np.median(top)), "top_logit_p99": float(np.percentile(top, 99)),
            "top1_gap_median": float(np.median(scores[..., 0] - scores[..., 1])),
            "mean_abs_top_logit_step_between_columns": float(np.abs(np.diff(top, axis=2)).mean()),
            "top1_class_same_as_right_neighbour": float((classes[:, :, 1:, 0] == classes[:, :, :-1, 0]).mean()),
            "distinct_classes_per_map": float(np.mean([len(np.unique(c)) for c in classes]))}


def train_demo_classifier(images: Path, out: Path, epochs: int, size: int = 224, seed: int = 0) -> dict:
    """A ResNet-18 (10 classes) trained from scratch on the demo photos (folder labels, random-resized crops,
    label smoothing 0.1 as ImageNet recipes use, which keeps the logits in an annotator's range)."""
    import torch
    import torchvision
    from PIL import Image

    torch.manual_seed(seed)
    from dali_relabel.image_folder import ImageList

    listing = ImageList.from_folder(images)  # the annotator's listing (empty class folders keep their index)
    pics = [Image.open(images / key).convert("RGB") for key in listing.keys]
    labels = torch.tensor(listing.labels)
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    aug = torchvision.transforms.Compose([
        torchvision.transforms.RandomResizedCrop(size, scale=(0.3, 1.0)), torchvision.transforms.RandomHorizontalFlip(),
        torchvision.transforms.ToTensor()])
    model = torchvision.models.resnet18(num_classes=len(listing.classes))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)
    steps_per_epoch = -(-len(pics) // 32)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 0.1, total_steps=epochs * steps_per_epoch)
    t0 = time.perf_counter()
    model.train()
    for _ in range(epochs):
        correct = 0
        for idx in torch.randperm(len(pics)).split(32):
            x = torch.stack([(aug(pics[i]) - mean) / std for i in idx.tolist()])
            logits = model(x)
            loss = torch.nn.functional.cross_entropy(logits, labels[idx], label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            correct += int((logits.argmax(1) == labels[idx]).sum())
    torch.save(model.state_dict(), out)
    return {"model": "torchvision resnet18, 10 classes, from scratch", "epochs": epochs, "train_size": size,
            "last_epoch_train_accuracy": correct / len(pics), "train_seconds": time.perf_counter() - t0}


def annotated_maps(images: Path, workdir: Path, name: str, **annotate_args) -> tuple[np.ndarray, np.ndarray, float]:
    """The annotator's float32 maps of the demo images (15×15 at 475 px), and its seconds."""
    from dali_relabel import LabelStore
    from dali_relabel.annotate import annotate

    url = workdir / f"annotated-{name}.zarr"
    t0 = time.perf_counter()
    annotate(images=str(images), model="torchvision:resnet18", out=str(url), size=475, topk=K, batch_size=16,
             device="cpu", scores_dtype="float32", progress=False, **annotate_args)
    seconds = time.perf_counter() - t0
    scores, classes = LabelStore.open(url).read(slice(None))
    shutil.rmtree(url)
    return scores, classes, seconds


def bench_sizes(n_synthetic: int, n_demo: int, train_epochs: int, workdir: Path) -> dict:
    from dali_relabel.testing.demo_dataset import build_demo_dataset
    from dali_relabel.testing.synthetic import synthetic_label_maps

    out: dict = {}
    scores, classes = synthetic_label_maps(n_synthetic, seed=11, scores_dtype="float32")
    out["synthetic"] = {"samples": n_synthetic, "num_classes": C, "maps": map_statistics(scores, classes),
                        **{dt: store_bytes(scores, classes, C, dt, workdir) for dt in ("float16", "float32")}}
    print("sizes, synthetic:", json.dumps(out["synthetic"]))

    demo = build_demo_dataset(workdir / "demo", num_images=n_demo, progress=False)
    weights = workdir / "demo_resnet18.pt"
    training = train_demo_classifier(demo.images, weights, train_epochs)
    print("trained:", json.dumps(training))
    classes_demo = len(demo.class_names)
    for name, args, about, num_classes in (
            ("demo_trained_resnet18", dict(weights=str(weights), num_classes=classes_demo), training, classes_demo),
            ("demo_random_init_resnet18", dict(random_init=True), {"model": "torchvision resnet18, 1000 classes, "
                                                                             "random init (seeded)"}, C)):
        scores, classes, seconds = annotated_maps(demo.images, workdir, name, **args)
        out[name] = {"samples": len(scores), "num_classes": num_classes,
                     "annotator": {**about, "annotate_seconds": seconds}, "maps": map_statistics(scores, classes),
                     **{dt: store_bytes(scores, classes, num_classes, dt, workdir) for dt in ("float16", "float32")}}
        print(f"sizes, {name}:", json.dumps(out[name]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (CI-friendly)")
    ap.add_argument("--only", default="codecs,write,import,materialize,sizes", help="comma-separated sections")
    ap.add_argument("--train-epochs", type=int, default=None,
                    help="sizes: epochs of the demo classifier (default 8; --quick 2)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None, help="result JSON path (default benchmarks/results/...)")
    args = ap.parse_args()
    pick = 0 if args.quick else 1
    sections = args.only.split(",")
    results: dict = {"mode": "quick" if args.quick else "full", "repeats": args.repeats,
                     "geometry": {"height": H, "width": W, "k": K, "num_classes": C}}
    with tempfile.TemporaryDirectory(prefix="store_bench_") as tmp:
        work = Path(tmp)
        if "codecs" in sections:
            results["codecs"] = bench_codecs(SIZES["codecs"][pick], args.repeats)
            results["store_size"] = bench_store_size(SIZES["codecs"][pick], work)
            print(markdown_table(results["codecs"]["rows"] + results["codecs"]["lossy"], [
                ("array", "array", "s"), ("setting", "setting", "s"), ("bytes_per_sample", "B/sample", ".0f"),
                ("encode_samples_per_s", "encode samples/s", ",.0f"),
                ("decode_samples_per_s", "decode samples/s", ",.0f"), ("max_abs_error", "max abs error", ".4f")]))
            size = results["store_size"]
            print(f"\nstore: {size['bytes_per_sample_all']:.0f} B/sample (maps {size['bytes_per_sample_maps']:.0f}); "
                  f"ImageNet {size['imagenet_projection_bytes'] / 1e9:.2f} GB = "
                  f"{100 * size['imagenet_fraction_of_official_12GB']:.1f}% of the official 12 GB")
        if "write" in sections:
            results["write"] = bench_write(SIZES["write"][pick], SIZES["write_ref"][pick], args.repeats, work)
            print("write:", json.dumps(results["write"]))
        if "import" in sections:
            results["import"] = bench_import(SIZES["import"][pick], args.repeats, work)
            print("import:", json.dumps(results["import"]))
        if "materialize" in sections:
            results["materialize"] = bench_materialize(SIZES["materialize"][pick], args.repeats, work)
            print("materialize:", json.dumps(results["materialize"]))
        if "sizes" in sections:
            epochs = args.train_epochs if args.train_epochs is not None else (2 if args.quick else 8)
            results["sizes"] = bench_sizes(SIZES["codecs"][pick], SIZES["demo"][pick], epochs, work)
            print(markdown_table([{"maps": name, "scores": r[dt]["scores_dtype"],
                                   "B/sample": r[dt]["bytes_per_sample"],
                                   "% official float32": 100 * r[dt]["fraction_of_official_float32_data"],
                                   "ImageNet GB": r[dt]["imagenet_projection_bytes"] / 1e9}
                                  for name, r in results["sizes"].items() for dt in ("float16", "float32")], [
                ("maps", "maps", "s"), ("scores", "scores", "s"), ("B/sample", "B/sample", ".0f"),
                ("% official float32", "% of official float32", ".1f"), ("ImageNet GB", "ImageNet GB", ".2f")]))
    path = write_result("store_bench", results, args.out, tag="quick" if args.quick else None)
    print(f"results: {path}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
