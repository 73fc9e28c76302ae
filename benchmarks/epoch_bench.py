"""What the loader contract costs: starting an epoch, breaking out of one, resuming half-way.

ReLabelLoader builds a DALI pipeline per epoch (the order and the generators' seed come from (seed, epoch,
rank)), and resumes an epoch at batch ``b`` by replaying the generators through ``b`` batches of a tiny
placeholder image. This measures, on the loader benchmark's data (500x375 JPEGs, crops to 224):

  batch            seconds per batch in the steady state (the unit of the other figures)
  epoch_start      iter() → first batch after a complete epoch (a new pipeline, built while the previous
                   epoch yielded its last batch); reference: the same for a persistent DALI pipeline whose
                   reader reshuffles itself (the loader's design before the contract: no rebuild, but no
                   control of order, break or resume)
  break_restart    iter() → first batch after a break 10 batches into an epoch (drops the old pipeline
                   with its prefetched batches, builds the next epoch's)
  resume(b)        new loader + load_state_dict(state after batch b - 1) → first batch, for b at 0, 1/4,
                   1/2, 3/4 and the end of an epoch; per skipped batch: (resume(b) - resume(0)) / b, against
                   a real batch (a resume that decoded the skipped batches would cost 1.0 per batch)

Each figure is the median of ``--repeats`` measurements.

    python benchmarks/epoch_bench.py [--device cpu|gpu] [--images 1280] [--batch 32] [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from bench_data import benchmark_data
from common import markdown_table, write_result

from dali_relabel import ReLabelLoader

warnings.filterwarnings("ignore", message=".*class folders hold no images")


def loader(data, args, work: Path) -> ReLabelLoader:
    return ReLabelLoader(data.images, data.labels, args.batch, device=args.device, num_threads=args.threads, seed=1,
                         outputs=("images", "targets"), bank_dir=work / "bank", num_classes=data.num_classes)


def sync(args):
    if args.device == "gpu":
        torch.cuda.synchronize()


def first_batch_seconds(iterator, args) -> float:
    t0 = time.perf_counter()
    next(iterator)
    sync(args)
    return time.perf_counter() - t0


def steady_batch_seconds(ld, args, skip: int = 4) -> float:
    """Median seconds per batch over epochs, after each epoch's first `skip` batches."""
    times = []
    for _ in range(2):
        it = iter(ld)
        for i in range(len(ld)):
            t0 = time.perf_counter()
            next(it)
            sync(args)
            if i >= skip:
                times.append(time.perf_counter() - t0)
        for _ in it:
            pass
    return statistics.median(times)


def epoch_start(ld, args) -> float:
    """iter() → first batch, right after a complete epoch."""
    for _ in ld:
        pass
    it = iter(ld)
    seconds = first_batch_seconds(it, args)
    for _ in it:
        pass
    return seconds


def persistent_epoch_start(data, args) -> float:
    """The same for one persistent DALI pipeline (DALI's reader reshuffles; the iterator auto-resets)."""
    from dali_relabel.pipelines import FileReader, relabel_train_pipeline
    from nvidia.dali.plugin.base_iterator import LastBatchPolicy
    from nvidia.dali.plugin.pytorch import DALIGenericIterator

    pipe = relabel_train_pipeline(batch_size=args.batch, num_threads=args.threads,
                                  device_id=0 if args.device == "gpu" else None, seed=1,
                                  reader=FileReader(str(data.images), file_list=str(data.class_list), shuffle=True),
                                  device=args.device, outputs=("images", "rows"))
    pipe.build()
    it = DALIGenericIterator(pipe, ["images", "labels"], reader_name="Reader",
                             last_batch_policy=LastBatchPolicy.PARTIAL, auto_reset=True)
    def drain():  # to the end of the epoch (next() only: iter() on a DALI iterator mid-epoch warns)
        while True:
            try:
                next(it)
            except StopIteration:
                return   # the iterator resets itself for the next epoch

    samples = []
    drain()   # warm-up epoch
    for _ in range(args.repeats):
        samples.append(first_batch_seconds(it, args))
        drain()
    return statistics.median(samples)


def break_restart(ld, args, after: int = 10) -> float:
    it = iter(ld)
    for _ in range(after):
        next(it)
    return first_batch_seconds(iter(ld), args)


def resume(data, args, work: Path, state: dict) -> float:
    ld = loader(data, args, work)
    t0 = time.perf_counter()
    ld.load_state_dict(state)
    next(iter(ld))
    sync(args)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", type=int, default=1280, help="epoch size (copies of the 320 demo images)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="3 repeats, 640 images")
    ap.add_argument("--data-dir", help="where the demo dataset is built or found (default: the cache)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeats, args.images = 3, 640
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="epoch-bench-"))
    try:
        return measure(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure(args, work: Path) -> int:
    data = benchmark_data(work, num_images=args.images, num_classes=1000, data_dir=args.data_dir)
    ld = loader(data, args, work)
    steps = len(ld)
    batch = steady_batch_seconds(ld, args)
    starts = [epoch_start(ld, args) for _ in range(args.repeats)]
    breaks = [break_restart(ld, args) for _ in range(args.repeats)]
    persistent = persistent_epoch_start(data, args)
    # States after batch b - 1 (the next batch is b) of epoch 1, from one uninterrupted epoch.
    marks = sorted({0, steps // 4, steps // 2, 3 * steps // 4, steps - 1})
    ld.set_epoch(1)
    states = {0: ld.state_dict()}
    for b, _ in enumerate(ld, start=1):
        if b in marks:
            states[b] = ld.state_dict()
    resumes = {b: statistics.median(resume(data, args, work, states[b]) for _ in range(args.repeats)) for b in marks}
    rows = [{"what": "batch (steady state)", "seconds": batch, "batches": 1.0},
            {"what": "epoch start, persistent pipeline (reference)", "seconds": persistent,
             "batches": persistent / batch},
            {"what": "epoch start, pipeline per epoch", "seconds": statistics.median(starts),
             "batches": statistics.median(starts) / batch},
            {"what": "restart after a break at batch 10", "seconds": statistics.median(breaks),
             "batches": statistics.median(breaks) / batch}]
    per_skipped = {}
    for b in marks:
        rows.append({"what": f"resume at batch {b} of {steps}", "seconds": resumes[b], "batches": resumes[b] / batch})
        if b:
            per_skipped[b] = (resumes[b] - resumes[0]) / b / batch
    per_batch = statistics.median(per_skipped.values())
    config = {"device": args.device, "batch": args.batch, "threads": args.threads, "images": data.num_images,
              "image_size": list(data.image_size), "crop": 224, "num_classes": data.num_classes,
              "steps_per_epoch": steps, "repeats": args.repeats}
    payload = {"device": args.device, "config": config, "rows": rows,
               "resume_cost_per_skipped_batch": per_batch, "resume_cost_per_skipped_batch_by_b": per_skipped,
               "epoch_start_overhead_batches": (statistics.median(starts) - persistent) / batch,
               "raw": {"epoch_start": starts, "break_restart": breaks, "resume": resumes}}
    path = write_result("epoch_bench", payload, args.json, tag="quick" if args.quick else None)
    print(markdown_table(rows, [("what", "what", ""), ("seconds", "seconds", ".4f"),
                                ("batches", "÷ one batch", ".2f")]))
    print(f"\nresume: {per_batch:.3f} of a real batch per skipped batch (median over b); a new epoch costs "
          f"{payload['epoch_start_overhead_batches']:.2f} batches more than a persistent pipeline's")
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
