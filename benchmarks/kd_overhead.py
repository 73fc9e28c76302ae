"""Cost of a training iteration with ReLabel targets vs hard labels, the official ReLabel path, and online KD.

Every method trains the same student (same model, batch size, optimizer, mixed precision and
channels_last on the GPU) on the same JPEGs (the demo dataset's real photos at 500x375, replicated so
that no measured block crosses an epoch; label maps: ImageNet-like synthetic 15x15 top-5 maps over
C = 1000 classes), with the same random-resized-crop to 224 + flip + normalize, and the same number of
CPU threads / loader workers. One iteration = get the next batch (waiting for the loader when it is
slower than the model) + compute the targets + forward + loss + backward + optimizer step
(``dali_relabel.training.train_step``):

  baseline          hard labels. DALI pipeline ``relabel_train_pipeline(outputs=("images", "rows"))``
                    over a file list whose second column is the class label, so the pipeline has no
                    label ops at all (reader → crop window → decode the window → resize → flip/normalize);
                    loss = cross-entropy with class indices.
  relabel           this project: ``ReLabelLoader`` = the same pipeline + ``fn.relabel.lookup`` +
                    ``fn.relabel.label_pool`` (the soft target of each crop, computed in DALI: on the GPU
                    with --device gpu); loss = cross-entropy with the [B, 1000] probabilities.
  relabel_x4        (optional: --methods ...,relabel_x4) ReLabelLoader(crops_per_image=4) with B/4 images per
                    batch: the same B crops per iteration, each image decoded once for 4 crops, each crop with its
                    own box, flip and pooled target.
  relabel_official  relabel_imagenet's path: a torch DataLoader (PIL decode, RandomResizedCrop with its
                    coordinates, the image's [2, 5, 15, 15] .pt map loaded per image in the workers);
                    per iteration the loop scatters the maps into a dense [B, 1000, 15, 15] tensor on the
                    host, copies it to the device, and runs torchvision roi_align + softmax there
                    (benchmarks/official_loader.py). Its images come from PIL, as in the official code,
                    so its overhead includes the PIL loader's cost where that loader is the bottleneck.
  kd                online knowledge distillation: the baseline's DALI pipeline, plus a teacher forward
                    on the same crops each iteration (resized on the device to the teacher's native
                    resolution, no_grad, autocast on the GPU); loss = soft cross-entropy with the
                    teacher's softmax (= KL up to a constant). Random weights: only speed matters here.

Measurement: methods run in blocks (fresh loader, ``--warmup`` untimed iterations to reach a steady
state, ``--iters`` timed iterations between two device synchronizations, loader closed), the block order
rotates each round, and a method's ms/iter is the median over ``--rounds`` blocks. Loaders are closed
between blocks so that no method's background workers run while another is timed. overhead % =
ms/iter ÷ baseline's − 1. Also reported (``breakdown``): relabel_official's label work alone (dense
scatter + copy + roi_align + softmax on one batch, median of 7), to tell it apart from its loader's cost.

    python benchmarks/kd_overhead.py                      # GPU: ResNet-50 AMP, B=256, EfficientNet-B7@600 teacher
    python benchmarks/kd_overhead.py --device cpu --quick # ResNet-18, ResNet-50 teacher, B=8: minutes on 2 cores
    python benchmarks/kd_overhead.py --json out.json      # + out.png (bar chart)
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from bench_data import benchmark_data
from common import markdown_table, median_time, write_result
from official_loader import official_loader, official_targets
from torch import nn

import dali_relabel  # noqa: F401  (loads the plugin: fn.relabel.*)
from dali_relabel.loader import ReLabelLoader
from dali_relabel.training import teacher_targets, train_step

METHODS = ("baseline", "relabel", "relabel_official", "kd", "relabel_x4")
DEFAULT_METHODS = ("baseline", "relabel", "relabel_official", "kd")
CROP = 224
# Defaults per profile (each can be overridden). CPU: iterations take seconds, so the loader keeps up at once
# and one warm-up iteration per block suffices; EfficientNet-B7 at 600 px costs about a minute per batch there.
PROFILES = {
    "gpu": dict(student="resnet50", teacher="efficientnet_b7", batch=256, rounds=5, warmup=5, iters=10),
    "cpu": dict(student="resnet50", teacher="efficientnet_b7", batch=32, rounds=3, warmup=1, iters=3),
    "quick": dict(student="resnet18", teacher="resnet50", batch=8, rounds=5, warmup=2, iters=4),
}


class Source:
    """An endless stream of (images, targets) on the training device; close() stops its loader."""

    def __init__(self, batches, close=None):
        self._batches, self._close = batches, close

    def next(self):
        return next(self._batches)

    def close(self):
        self._batches.close()
        if self._close:
            self._close()


def endless(loader):
    while True:
        yield from loader


def hard_label_source(data, args, dev) -> Source:
    """The baseline pipeline: images + the file list's class label, no label ops."""
    from dali_relabel.config import AugmentConfig
    from dali_relabel.pipelines import FileReader, relabel_train_pipeline
    from nvidia.dali.plugin.base_iterator import LastBatchPolicy
    from nvidia.dali.plugin.pytorch import DALIGenericIterator

    # No bank: neither targets nor store labels are requested, so no label op is built.
    pipe = relabel_train_pipeline(
        batch_size=args.batch, num_threads=args.threads, device_id=0 if args.device == "gpu" else None,
        seed=args.seed, reader=FileReader(str(data.images), file_list=str(data.class_list), shuffle=True),
        augment=AugmentConfig(crop_size=CROP), device=args.device, outputs=("images", "rows"))
    pipe.build()
    it = DALIGenericIterator(pipe, ["images", "labels"], reader_name="Reader",
                             last_batch_policy=LastBatchPolicy.DROP, auto_reset=True)

    def batches():
        for b in endless(it):
            yield b[0]["images"], b[0]["labels"].reshape(-1).to(dev, torch.int64, non_blocking=True)

    return Source(batches())


def relabel_source(data, args, work: Path) -> Source:
    loader = ReLabelLoader(data.images, data.labels, args.batch, device=args.device, num_threads=args.threads,
                           seed=args.seed, outputs=("images", "targets"), last_batch="drop",
                           num_classes=data.num_classes, bank_dir=work / "bank")
    return Source(endless(loader))


def relabel_x4_source(data, args, work: Path) -> Source:
    """4 crops per decoded image, B/4 images per batch: B crops per iteration, as the other methods."""
    loader = ReLabelLoader(data.images, data.labels, args.batch // 4, device=args.device, num_threads=args.threads,
                           seed=args.seed, outputs=("images", "targets"), last_batch="drop", crops_per_image=4,
                           num_classes=data.num_classes, bank_dir=work / "bank")
    return Source(endless(loader))


def official_source(data, args, dev) -> Source:
    # Not persistent: closing the generator drops the DataLoader's iterator, which stops the workers (blocks
    # never cross an epoch, so workers are not restarted while timed).
    loader = official_loader(data.images, data.maps, args.batch, args.threads, pin_memory=args.device == "gpu",
                             drop_last=True, persistent_workers=False)

    def batches():
        for images, _, coords, maps in endless(loader):
            yield images.to(dev, non_blocking=True), official_targets(maps, coords, data.num_classes, dev)

    return Source(batches())


def kd_source(data, args, dev, teacher: nn.Module, teacher_res: int) -> Source:
    hard = hard_label_source(data, args, dev)

    def batches():
        while True:
            images, _ = hard.next()
            yield images, teacher_targets(teacher, images, size=teacher_res, temperature=args.kd_temperature,
                                          amp=args.amp, channels_last=args.channels_last)

    return Source(batches(), close=hard.close)


def time_block(factory, step, warmup: int, iters: int, sync) -> tuple[float, float]:
    """One block: a fresh loader, ``warmup`` untimed iterations, ``iters`` timed ones -> (ms/iter, last loss)."""
    source = factory()
    try:
        for _ in range(warmup):
            images, targets = source.next()
            step(images, targets)
        sync()
        t0 = time.perf_counter()
        for _ in range(iters):
            images, targets = source.next()
            loss = step(images, targets)
        sync()
        ms = (time.perf_counter() - t0) / iters * 1e3
    finally:
        source.close()
        del source
        gc.collect()
    return ms, loss.item()


def official_label_work_ms(data, args, dev, sync, repeats: int = 7) -> float:
    """Median ms of the official per-iteration label work alone, on one batch from its loader."""
    loader = official_loader(data.images, data.maps, args.batch, 0, pin_memory=False)
    _, _, coords, maps = next(iter(loader))
    official_targets(maps, coords, data.num_classes, dev)  # warm-up
    return 1e3 * median_time(lambda: official_targets(maps, coords, data.num_classes, dev), repeats, sync=sync)


def warm_up(step, teacher, teacher_res, args, dev, num_classes: int) -> None:
    """First-use costs outside the timed blocks: allocator, kernel selection (cudnn autotuning), both losses."""
    g = torch.Generator(device=dev).manual_seed(0)
    images = torch.randn(args.batch, 3, CROP, CROP, device=dev, generator=g)
    hard = torch.randint(0, num_classes, (args.batch,), device=dev, generator=g)
    soft = torch.softmax(torch.randn(args.batch, num_classes, device=dev, generator=g), 1)
    for targets in (hard, hard, soft, soft):
        step(images, targets)
    if teacher is not None:
        for _ in range(2 if dev.type == "cuda" else 1):  # a B7@600 forward takes a minute on a 2-core CPU
            teacher_targets(teacher, images, size=teacher_res, amp=args.amp, channels_last=args.channels_last)
    if dev.type == "cuda":
        torch.cuda.synchronize()


def build_model(name: str) -> tuple[nn.Module, int | None, float | None]:
    """(random-init model with 1000 classes, native resolution, GFLOPs at it) from torchvision or ``timm:<name>``."""
    if name.startswith("timm:"):
        import timm

        model = timm.create_model(name[5:], pretrained=False, num_classes=1000)
        return model, int(model.pretrained_cfg["input_size"][-1]), None
    import torchvision

    weights = torchvision.models.get_model_weights(name).DEFAULT  # metadata only: nothing is downloaded
    model = torchvision.models.get_model(name, weights=None, num_classes=1000)
    return model, int(weights.transforms().crop_size[0]), weights.meta.get("_ops")


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cpu", "gpu"), default="gpu" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="the quick profile (see PROFILES)")
    ap.add_argument("--student", help="torchvision model")
    ap.add_argument("--teacher", help="torchvision model or timm:<name>")
    ap.add_argument("--teacher-res", type=int, help="teacher input side (default: the teacher's native resolution)")
    ap.add_argument("--kd-temperature", type=float, default=1.0)
    ap.add_argument("--batch", type=int)
    ap.add_argument("--rounds", type=int, help="blocks per method (median over them)")
    ap.add_argument("--warmup", type=int, help="untimed iterations per block")
    ap.add_argument("--iters", type=int, help="timed iterations per block")
    ap.add_argument("--threads", type=int, default=min(8, len(os.sched_getaffinity(0))),
                    help="DALI threads = DataLoader workers (= torch threads on cpu)")
    ap.add_argument("--amp", action=argparse.BooleanOptionalAction, help="mixed precision (default: on gpu)")
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, help="default: on gpu")
    ap.add_argument("--images", type=int, help="default: enough that no block crosses an epoch (>= 320)")
    ap.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                    help=f"comma-separated, from {', '.join(METHODS)} (baseline required; default: all but relabel_x4)")
    ap.add_argument("--data-dir", help="where the demo dataset is built or found (default: the cache)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", help="result file (default benchmarks/results/kd_overhead-<date>-<device>[-quick].json)")
    ap.add_argument("--chart", metavar="JSON", help="only (re)draw the chart of an existing result file, next to it")
    args = ap.parse_args(argv)
    if args.chart:
        return args
    gpu = args.device == "gpu"
    defaults = {**PROFILES["quick" if args.quick else args.device], "amp": gpu, "channels_last": gpu}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.images is None:
        args.images = max(320, args.batch * (args.warmup + args.iters + 1))
    args.methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    bad = [m for m in args.methods if m not in METHODS]
    if bad or "baseline" not in args.methods:
        ap.error(f"--methods: choose from {', '.join(METHODS)}, including baseline (got {bad or args.methods})")
    if gpu and not torch.cuda.is_available():
        ap.error("--device gpu: no CUDA GPU visible; use --device cpu")
    if "relabel_x4" in args.methods and args.batch % 4:
        ap.error(f"relabel_x4 needs a batch divisible by 4 (B/4 images x 4 crops), got --batch {args.batch}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.chart:
        result = json.loads(Path(args.chart).read_text())
        chart = draw_chart(result["rows"], result["config"], result["device"], Path(args.chart).with_suffix(".png"))
        print(f"written: {chart}" if chart else "no chart")
        return 0 if chart else 1
    work = Path(tempfile.mkdtemp(prefix="kd-overhead-"))
    try:
        return run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args, work: Path) -> int:
    t_start = time.perf_counter()
    gpu = args.device == "gpu"
    dev = torch.device("cuda" if gpu else "cpu")
    if gpu:
        torch.backends.cudnn.benchmark = True
    else:
        torch.set_num_threads(args.threads)
    sync = torch.cuda.synchronize if gpu else (lambda: None)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format

    data = benchmark_data(work, num_images=args.images, data_dir=args.data_dir,
                          official_maps="relabel_official" in args.methods)
    torch.manual_seed(args.seed)
    student, _, student_gflops = build_model(args.student)
    student = student.to(dev, memory_format=memory_format).train()
    optimizer = torch.optim.SGD(student.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    scaler = torch.amp.GradScaler(dev.type) if args.amp else None
    criterion = nn.CrossEntropyLoss()
    teacher, teacher_res, teacher_gflops = (None, None, None)
    if "kd" in args.methods:
        teacher, native, teacher_gflops = build_model(args.teacher)
        teacher = teacher.to(dev, memory_format=memory_format).eval()
        teacher_res = args.teacher_res or native
    factories = {
        "baseline": lambda: hard_label_source(data, args, dev),
        "relabel": lambda: relabel_source(data, args, work),
        "relabel_official": lambda: official_source(data, args, dev),
        "kd": lambda: kd_source(data, args, dev, teacher, teacher_res),
        "relabel_x4": lambda: relabel_x4_source(data, args, work),
    }

    step = functools.partial(train_step, student, criterion=criterion, optimizer=optimizer, scaler=scaler,
                             channels_last=args.channels_last)
    warm_up(step, teacher, teacher_res, args, dev, data.num_classes)

    samples: dict[str, list[float]] = {m: [] for m in args.methods}
    nonfinite = {m: 0 for m in args.methods}
    for r in range(args.rounds):
        order = args.methods[r % len(args.methods):] + args.methods[:r % len(args.methods)]
        for method in order:
            ms, loss = time_block(factories[method], step, args.warmup, args.iters, sync)
            samples[method].append(ms)
            nonfinite[method] += not math.isfinite(loss)
            print(f"round {r + 1}/{args.rounds} {method:16s} {ms:9.1f} ms/iter", file=sys.stderr, flush=True)
    if any(nonfinite.values()):
        warnings.warn(f"non-finite training losses (blocks per method): {nonfinite}; the timings still stand, "
                      f"but AMP skipped optimizer steps in those blocks")

    breakdown = {}
    if "relabel_official" in args.methods:  # how much of relabel_official is label work rather than its loader
        breakdown["official_label_work_ms"] = official_label_work_ms(data, args, dev, sync)

    medians = {m: statistics.median(s) for m, s in samples.items()}
    rows = [{"method": m, "ms_per_iter": medians[m], "overhead_pct": (medians[m] / medians["baseline"] - 1) * 100}
            for m in args.methods]
    config = {
        "quick": args.quick, "student": args.student, "student_gflops": student_gflops, "batch": args.batch,
        "crop": CROP, "amp": args.amp, "channels_last": args.channels_last, "optimizer": "SGD(momentum=0.9)",
        "teacher": args.teacher if teacher is not None else None, "teacher_res": teacher_res,
        "teacher_gflops_native": teacher_gflops, "kd_temperature": args.kd_temperature,
        "threads_or_workers": args.threads, "images": data.num_images, "image_size": list(data.image_size),
        "num_classes": data.num_classes, "map": list(data.map_shape), "maps": "synthetic (dali_relabel.testing.synthetic)",
        "rounds": args.rounds, "warmup": args.warmup, "iters": args.iters, "seed": args.seed,
        "wall_s": round(time.perf_counter() - t_start, 1),
        # A shared machine's other jobs slow every method alike but widen the spread; say how loaded it was.
        "load_average_after": list(os.getloadavg()),
    }
    path = write_result("kd_overhead", {"device": args.device, "config": config, "rows": rows,
                                        "samples_ms": samples, "breakdown": breakdown,
                                        "nonfinite_loss_blocks": nonfinite}, args.json,
                        tag="quick" if args.quick else None)
    chart = draw_chart(rows, config, args.device, path.with_suffix(".png"))
    for row in rows:
        row["img_per_s"] = args.batch / row["ms_per_iter"] * 1e3
    print(f"\nwritten: {path}" + (f", {chart}" if chart else ""))
    print(f"{args.device}: student {args.student} B={args.batch}, teacher {config['teacher']}@{teacher_res}, "
          f"median of {args.rounds} blocks x {args.iters} iterations")
    if breakdown:
        print(f"relabel_official's label work alone (dense scatter + copy + roi_align + softmax): "
              f"{breakdown['official_label_work_ms']:.1f} ms/iter")
    print()
    print(markdown_table(rows, [("method", "method", ""), ("ms_per_iter", "ms/iter", ".1f"),
                                ("overhead_pct", "overhead vs baseline", "+.1f"), ("img_per_s", "img/s", ".1f")]))
    return 0


def draw_chart(rows: list[dict], config: dict, device: str, path: Path) -> Path | None:
    """Horizontal bars of ms/iter per method, labelled with the overhead; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no chart", file=sys.stderr)
        return None
    colors = {"baseline": "#7f7f7f", "relabel": "#2ca02c", "relabel_official": "#ff7f0e", "kd": "#d62728",
              "relabel_x4": "#1f77b4"}
    fig, ax = plt.subplots(figsize=(7, 2.6))
    names = [r["method"] for r in rows][::-1]
    values = [r["ms_per_iter"] for r in rows][::-1]
    ax.barh(names, values, color=[colors[n] for n in names])
    for name, value, row in zip(names, values, rows[::-1]):
        label = f" {value:.0f} ms" + ("" if name == "baseline" else f"  ({row['overhead_pct']:+.1f}%)")
        ax.text(value, name, label, va="center", fontsize=9)
    ax.set_xlim(0, max(values) * 1.35)
    ax.set_xlabel("ms per training iteration (lower is better)")
    teacher = f", KD teacher {config['teacher']}@{config['teacher_res']}" if config["teacher"] else ""
    ax.set_title(f"{device}: {config['student']} B={config['batch']}{' AMP' if config['amp'] else ''}{teacher}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


if __name__ == "__main__":
    sys.exit(main())
