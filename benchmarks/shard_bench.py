"""Webdataset shards vs an ImageFolder of the same images: the training loader's img/s, and the reader's alone.

The same JPEGs (bench_data.py: the demo's 500x375 photos, replicated) are read two ways, alternately, in the same
run: as an ImageFolder tree (``fn.readers.file``, one file per image) and as webdataset tar shards written from it
by ``dali-relabel shard`` (``fn.readers.webdataset`` reading the loader's per-epoch index files, tar by tar):

  loader    ReLabelLoader: read + decode + random-resized-crop to 224 + flip + normalize + ReLabel targets (C=1000)
  reader    the reader alone (encoded bytes to the host, nothing decoded): what the storage layout changes

Each epoch is timed in its steady state (after its first 4 batches): images/s of wall time, and the process's CPU
time per image (all DALI threads; what each image costs, which a machine shared with other jobs disturbs less than
it disturbs wall time). Ratios shards ÷ folder are medians of the per-round ratios. The images are local (page cache): the numbers say what the shard path costs or saves in
CPU work; on network storage, where one read per image is what hurts, shards read whole files in turn instead.

    python benchmarks/shard_bench.py [--images 2560] [--rounds 7] [--shard-size 256] [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_data import benchmark_data
from common import markdown_table, write_result

from dali_relabel import ReLabelLoader
from dali_relabel.shards.writer import write_shards

SKIP_BATCHES = 4


def steady_rate(batch_sizes, skip: int = SKIP_BATCHES) -> tuple[float, float]:
    """``(images/s, CPU ms per image)`` of one epoch after its first ``skip`` batches. The CPU time is the whole
    process's (all DALI threads), so it says what each image costs however loaded the machine is."""
    n, t0, c0 = 0, None, None
    for i, size in enumerate(batch_sizes):
        if i == skip - 1:
            t0, c0 = time.perf_counter(), time.process_time()
        elif i >= skip:
            n += size
    if t0 is None or n == 0:
        raise ValueError(f"an epoch needs more than {skip} batches; use more --images")
    return n / (time.perf_counter() - t0), 1e3 * (time.process_time() - c0) / n


def loader_epochs(images, labels, args, bank_dir):
    loader = ReLabelLoader(images, labels, args.batch, device="cpu", num_threads=args.threads, seed=1,
                           outputs=("images", "targets"), bank_dir=bank_dir,
                           num_classes=1000)
    return lambda: (images.shape[0] for images, _ in loader)


def reader_epochs(loader: ReLabelLoader, args):
    """The loader's own reader of each epoch (the same files or index files, the same order), alone."""
    from nvidia.dali import pipeline_def

    from dali_relabel.loader.readers import epoch_reader

    state = {"epoch": 0}

    def epoch():
        plan = loader.plan(state["epoch"])
        state["epoch"] += 1
        with tempfile.TemporaryDirectory() as tmp:
            reader = epoch_reader(loader.data, plan.samples, skip=0, directory=Path(tmp))

            @pipeline_def(batch_size=args.batch, num_threads=args.threads, device_id=None)
            def read():
                jpegs, rows = reader()
                return jpegs, rows

            pipe = read()
            pipe.build()
        n = len(plan.samples)
        for i in range(-(-n // args.batch)):
            pipe.run()    # the encoded images, on the host
            yield min(args.batch, n - i * args.batch)

    return epoch


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", type=int, default=2560, help="images (copies of the demo's 320)")
    ap.add_argument("--shard-size", type=int, default=256, help="images per shard")
    ap.add_argument("--rounds", type=int, default=7, help="measured rounds (each: one epoch of every method)")
    ap.add_argument("--quick", action="store_true", help="640 images, 2 rounds")
    ap.add_argument("--data-dir", help="where the demo dataset is built or found (default: the cache)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    if args.quick:
        args.images, args.rounds = 640, 2
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="shard-bench-"))
    try:
        return measure(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure(args, work: Path) -> int:
    data = benchmark_data(work, num_images=args.images, num_classes=1000, data_dir=args.data_dir,
                          official_maps=False)
    report = write_shards(data.images, work / "shards", max_count=args.shard_size, progress=False)
    print(f"{report.samples} images → {len(report.shards)} shards in {report.seconds:.1f} s", file=sys.stderr)
    folder = loader_epochs(data.images, data.labels, args, work / "bank")
    shards = loader_epochs(work / "shards", data.labels, args, work / "bank")
    probes = {name: ReLabelLoader(src, data.labels, args.batch, device="cpu", num_threads=args.threads, seed=1,
                                  bank_dir=work / "bank", num_classes=1000) for name, src in (("folder", data.images),
                                                                           ("shards", work / "shards"))}
    runners = {"loader/folder": folder, "loader/shards": shards,
               "reader/folder": reader_epochs(probes["folder"], args),
               "reader/shards": reader_epochs(probes["shards"], args)}
    for run in runners.values():   # warm-up: page cache, first pipelines
        for _ in run():
            pass
    rates = {name: [] for name in runners}
    cpu = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, run in runners.items():
            rate, ms = steady_rate(run())
            rates[name].append(rate)
            cpu[name].append(ms)
    rows = []
    for what in ("loader", "reader"):
        a, b = rates[f"{what}/shards"], rates[f"{what}/folder"]
        ratios = [x / y for x, y in zip(a, b)]
        cpu_ratios = [x / y for x, y in zip(cpu[f"{what}/shards"], cpu[f"{what}/folder"])]
        rows.append({"what": what, "folder_img_per_s": statistics.median(b), "shards_img_per_s": statistics.median(a),
                     "shards_vs_folder": statistics.median(ratios),
                     "quartiles": statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios,
                     "folder_cpu_ms_per_img": statistics.median(cpu[f"{what}/folder"]),
                     "shards_cpu_ms_per_img": statistics.median(cpu[f"{what}/shards"]),
                     "cpu_shards_vs_folder": statistics.median(cpu_ratios),
                     "cpu_quartiles": statistics.quantiles(cpu_ratios, n=4) if len(cpu_ratios) > 1 else cpu_ratios,
                     "runs": {"folder": b, "shards": a, "folder_cpu_ms": cpu[f"{what}/folder"],
                              "shards_cpu_ms": cpu[f"{what}/shards"]}})
    config = {"device": "cpu", "batch": args.batch, "threads": args.threads, "images": data.num_images,
              "image_size": list(data.image_size), "jpeg_quality": 90, "num_classes": 1000,
              "shards": len(report.shards), "shard_size": args.shard_size, "rounds": args.rounds,
              "shard_write_seconds": report.seconds, "shard_bytes": report.bytes,
              "timing": f"steady state: each epoch timed after its first {SKIP_BATCHES} batches; methods alternated",
              "storage": "local disk, page cache warm (the images are symbolic links to the same files)"}
    path = write_result("shard_bench", {"device": "cpu", "config": config, "rows": rows}, args.json)
    print(markdown_table(rows, [("what", "what", ""), ("folder_img_per_s", "ImageFolder img/s", ".0f"),
                                ("shards_img_per_s", "shards img/s", ".0f"),
                                ("shards_vs_folder", "shards ÷ folder (img/s)", ".3f"),
                                ("folder_cpu_ms_per_img", "ImageFolder CPU ms/img", ".3f"),
                                ("shards_cpu_ms_per_img", "shards CPU ms/img", ".3f"),
                                ("cpu_shards_vs_folder", "shards ÷ folder (CPU/img)", ".3f")]))
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
