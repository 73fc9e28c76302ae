"""Where a crop's time goes: decode, resize, normalize, labels, the copy into torch (CPU milliseconds per crop).

The training pipeline is rebuilt to stop after each stage, on the loader benchmark's data, and each variant is
timed by the process's CPU time (user + system, every DALI thread and the Python thread) per crop. The
pipelines run synchronously (``exec_async=False``, ``exec_pipelined=False``): no batch is computed in the
background while another pipeline is timed, and on a machine shared with other jobs CPU time counts this
process's work where wall time counts the neighbours' too. A stage's cost is the difference from the variant
before it; medians over rounds, the variants alternated within a round. Each stage's minor page faults and system
CPU time per crop are reported too: a large batch tensor (above glibc's 32 MB mmap threshold, e.g. 128 float32
crops of 224 px) gets fresh pages from the kernel every batch, and the ``copy`` stage then pays a page fault per
4 KB page (run with ``MALLOC_MMAP_THRESHOLD_=268435456 MALLOC_TRIM_THRESHOLD_=536870912`` to compare).

Stages (cumulative), for ``n`` crops per image and each resampler:

  read       reader, the headers (``peek_image_shape``), n crop windows and n flips
  decode     + decoding: the crop's window (n = 1) or the whole image (n > 1)
  resize     + every crop resized to ``size`` as uint8: ``fn.relabel.resized_crop(dtype=UINT8)`` (resampler
               "pillow", flip included) or one ``fn.resize`` per crop over its region of interest ("dali")
  normalize  + flip and normalize to float32 CHW: the same operator writing floats ("pillow"); the crops
               stacked + ``crop_mirror_normalize`` ("dali"; for n = 1 ``crop_mirror_normalize`` alone)
  labels     + ``fn.relabel.lookup`` + n ``fn.relabel.label_pool``
  copy       + the batch (images and targets) copied into torch tensors by ``DALIGenericIterator``
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

STAGES = ("read", "decode", "resize", "normalize", "labels", "copy")


def _pipeline(data, row_list: Path, bank: str, stage: str, resampler: str, n: int, batch: int, threads: int,
              size: int):
    from nvidia.dali import fn, pipeline_def, types

    from dali_relabel.config import AugmentConfig
    from dali_relabel.pipelines import (decode, decode_window, random_resized_crop_box, relabel_targets,
                                        resized_crops)
    from dali_relabel.pipelines.image import INTERP_TYPES

    augment = AugmentConfig(crop_size=size)
    mean, std = [255.0 * m for m in augment.mean], [255.0 * s for s in augment.std]
    upto = STAGES.index(stage)

    def _shape(node):       # a tiny output that still needs `node` computed
        return node.shape()

    @pipeline_def(batch_size=batch, num_threads=threads, device_id=None, seed=1, exec_async=False,
                  exec_pipelined=False, prefetch_queue_depth=1)
    def pipe():
        jpegs, rows = fn.readers.file(file_root=str(data.images), file_list=str(row_list),
                                      shuffle_after_epoch=True, pad_last_batch=True, name="Reader")
        boxes = [random_resized_crop_box(jpegs, seed=100 + k) for k in range(n)]
        flips = [fn.cast(fn.random.coin_flip(seed=200 + k), dtype=types.INT32) for k in range(n)]
        if upto == 0:
            return tuple(_shape(b[0]) for b in boxes) + tuple(_shape(f) for f in flips)
        image = decode_window(jpegs, boxes[0][0], boxes[0][1], device="cpu") if n == 1 else decode(jpegs, device="cpu")
        if upto == 1:
            return _shape(image), *(_shape(f) for f in flips)
        if resampler == "pillow":
            windows = {} if n == 1 else {"anchor": fn.stack(*(b[0] for b in boxes)),
                                         "shape": fn.stack(*(b[1] for b in boxes))}
            mirror = flips[0] if n == 1 else fn.stack(*flips)
            images = resized_crops(image, augment, mirror=mirror, normalized=upto >= 3, **windows)
        else:
            crops = []
            for anchor, shape, _, _ in (boxes if n > 1 else [(None, None, None, None)]):
                if anchor is None:
                    crops.append(fn.resize(image, size=[size, size], interp_type=INTERP_TYPES["bilinear"]))
                    continue
                start, extent = fn.cast(anchor, dtype=types.FLOAT), fn.cast(shape, dtype=types.FLOAT)
                crops.append(fn.resize(image, size=[size, size], roi_start=start, roi_end=start + extent,
                                       interp_type=INTERP_TYPES["bilinear"]))
            if upto == 2:
                return tuple(_shape(c) for c in crops)
            stacked = crops[0] if n == 1 else fn.stack(*crops, axis_name="F")
            images = fn.crop_mirror_normalize(stacked, dtype=types.FLOAT, output_layout="CHW" if n == 1 else "FCHW",
                                              mean=mean, std=std, **({"mirror": flips[0]} if n == 1 else {}))
        if upto <= 3:
            return (_shape(images),)
        starts, ends = [b[2] for b in boxes], [b[3] for b in boxes]
        targets, _ = relabel_targets(rows, starts if n > 1 else starts[0], ends if n > 1 else ends[0], bank=bank)
        if upto == 4:
            return _shape(images), _shape(targets)
        return images, targets

    p = pipe()
    p.build()
    return p


class _Timed:
    """One stage's pipeline, run for ``iters`` batches (the last stage through a torch iterator: the copy)."""

    def __init__(self, pipe, stage: str):
        if stage == "copy":
            from nvidia.dali.plugin.pytorch import DALIGenericIterator

            iterator = DALIGenericIterator(pipe, ["images", "targets"], reader_name="Reader", auto_reset=True)

            def endless():
                while True:
                    yield from iterator

            self.step = endless().__next__
        else:
            self.step = pipe.run

    def cpu_seconds(self, iters: int) -> float:
        return self.measure(iters)[0]

    def measure(self, iters: int) -> tuple[float, float, int]:
        """(CPU seconds, system CPU seconds, minor page faults) of ``iters`` batches (after one untimed)."""
        self.step()
        before, t0 = resource.getrusage(resource.RUSAGE_SELF), time.process_time()
        for _ in range(iters):
            self.step()
        seconds, after = time.process_time() - t0, resource.getrusage(resource.RUSAGE_SELF)
        return seconds, after.ru_stime - before.ru_stime, after.ru_minflt - before.ru_minflt


def per_crop_breakdown(data, bank_dir: Path, *, crops=(1, 4), resamplers=("pillow", "dali"), batch: int = 32,
                       threads: int = 2, size: int = 224, rounds: int = 5, iters: int = 20) -> dict:
    """CPU ms per crop of each stage, for each (resampler, n): ``{"pillow_x4": {"stages": {...}, ...}, ...}``."""
    from dali_relabel.image_folder import ImageList
    from dali_relabel.store import LabelStore

    store = LabelStore.open(str(data.labels))
    bank = str(store.materialize(cache_dir=bank_dir, progress=False).path)
    keys = ImageList.from_folder(data.images).keys
    row_list = Path(bank_dir).parent / "crop_costs_rows.txt"
    row_list.write_text("".join(f"{k} {r}\n" for k, r in zip(keys, store.rows_of(keys).tolist())))
    variants = {(r, n, s): _Timed(_pipeline(data, row_list, bank, s, r, n, batch, threads, size), s)
                for r in resamplers for n in crops for s in STAGES}
    samples = {key: [] for key in variants}
    system = {key: [] for key in variants}
    faults = {key: [] for key in variants}
    for _ in range(rounds):
        for key, timed in variants.items():
            r, n, _ = key
            seconds, sys_seconds, minor = timed.measure(iters)
            samples[key].append(1e3 * seconds / (iters * batch * n))
            system[key].append(1e3 * sys_seconds / (iters * batch * n))
            faults[key].append(minor / (iters * batch * n))
    out = {}
    for r in resamplers:
        for n in crops:
            total = {s: statistics.median(samples[(r, n, s)]) for s in STAGES}
            # Stage costs from per-round differences (medians), so that slow rounds cancel within a round.
            def per_stage(values):
                stages = {}
                for i, s in enumerate(STAGES):
                    cur = values[(r, n, s)]
                    prev = values[(r, n, STAGES[i - 1])] if i else [0.0] * rounds
                    stages[s] = statistics.median(a - b for a, b in zip(cur, prev))
                return stages

            stages = per_stage(samples)
            out[f"{r}_x{n}"] = {"resampler": r, "crops_per_image": n, "cpu_ms_per_crop_cumulative": total,
                                "cpu_ms_per_crop": stages,
                                "share_pct": {s: 100 * v / total["copy"] for s, v in stages.items()},
                                "system_ms_per_crop": per_stage(system), "minor_faults_per_crop": per_stage(faults)}
    return out


def breakdown_table(breakdown: dict) -> str:
    """Markdown: one row per (resampler, n), CPU ms per crop of each stage and its share."""
    head = "| variant | " + " | ".join(STAGES) + " | total |"
    rule = "|" + "---|" * (len(STAGES) + 2)
    rows = []
    for name, b in breakdown.items():
        cells = [f"{b['cpu_ms_per_crop'][s]:.3f} ({b['share_pct'][s]:.0f}%)" for s in STAGES]
        rows.append(f"| {name} | " + " | ".join(cells) + f" | {b['cpu_ms_per_crop_cumulative']['copy']:.3f} |")
    return "\n".join([head, rule, *rows])


def faults_table(breakdown: dict) -> str:
    """Markdown: one row per (resampler, n), minor page faults / system ms per crop of each stage."""
    head = "| variant | " + " | ".join(STAGES) + " |"
    rule = "|" + "---|" * (len(STAGES) + 1)
    rows = [f"| {name} | " + " | ".join(f"{b['minor_faults_per_crop'][s]:.0f} / {b['system_ms_per_crop'][s]:.3f}"
                                        for s in STAGES) + " |"
            for name, b in breakdown.items() if "minor_faults_per_crop" in b]
    return "\n".join([head, rule, *rows])


def main(argv=None) -> int:
    """The breakdown alone, on the loader benchmark's data: ``python benchmarks/crop_costs.py [--json PATH]``."""
    from bench_data import benchmark_data
    from common import write_result

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32, help="images per batch")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--crops", default="1,4", help="crops per image to break down")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--iters", type=int, default=20, help="batches per measurement")
    ap.add_argument("--images", type=int, default=1280)
    ap.add_argument("--data-dir", help="where the demo dataset is built or found (default: the cache)")
    ap.add_argument("--tag", help="suffix of the default result file name")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    crops = tuple(int(c) for c in args.crops.split(","))
    work = Path(tempfile.mkdtemp(prefix="crop-costs-"))
    try:
        load_before = os.getloadavg()
        data = benchmark_data(work, num_images=args.images, data_dir=args.data_dir, official_maps=False)
        breakdown = per_crop_breakdown(data, work / "bank", crops=crops, batch=args.batch, threads=args.threads,
                                       rounds=args.rounds, iters=args.iters)
        load_after = os.getloadavg()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    malloc_env = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}
    config = {"device": "cpu", "batch": args.batch, "threads": args.threads, "crops": list(crops), "size": 224,
              "rounds": args.rounds, "iters": args.iters, "malloc_env": malloc_env,
              "load_average_before": list(load_before), "load_average_after": list(load_after)}
    path = write_result("crop_costs", {"device": "cpu", "config": config, "crop_cost_breakdown": breakdown},
                        args.json, tag=args.tag)
    print("CPU ms per crop, by stage (share of the total):\n" + breakdown_table(breakdown))
    print("\nminor page faults / system ms per crop, by stage:\n" + faults_table(breakdown))
    print(f"\nload average (1, 5, 15 min): before {' '.join(f'{v:.1f}' for v in load_before)}, after "
          f"{' '.join(f'{v:.1f}' for v in load_after)} on {os.cpu_count()} CPUs; malloc env {malloc_env or 'none'}")
    print(f"written: {path}")
    return 0


__all__ = ["STAGES", "breakdown_table", "faults_table", "per_crop_breakdown"]


if __name__ == "__main__":
    sys.exit(main())
