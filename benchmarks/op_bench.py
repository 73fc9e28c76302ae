"""Speed of fn.relabel.label_pool vs the official dense path, measured side by side in one run.

The operator's own cost inside a DALI pipeline is isolated as a slope: the same pipeline is timed with
R copies of the operator and with none (returning its inputs), runs alternated, medians taken, and
cost = (T_R - T_0) / R. The official path (relabel_imagenet: scatter the top-k maps into a dense
[B, C, H, W] tensor on the CPU, move it to the device, torchvision roi_align, softmax) is timed on the
same data, with torch limited to the same number of threads.

    python benchmarks/op_bench.py                 # B=256, K=5, C=1000, 15x15; CPU, and GPU if present
    python benchmarks/op_bench.py --quick         # fewer repeats
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np
import torch
from common import markdown_table, median_time, per_copy_seconds, write_result
from nvidia.dali import fn, pipeline_def

import dali_relabel
from dali_relabel.testing.official import dense_label_maps, official_relabel_targets


def random_maps(rng, batch, h, w, k, num_classes):
    """Top-k maps with a few objects per image: each cell's k classes come from an 8-class pool."""
    pools = np.stack([rng.choice(num_classes, 8, replace=False) for _ in range(batch)])
    pick = np.argsort(rng.random((batch, h * w, 8)), axis=-1)[..., :k]
    classes = np.take_along_axis(pools[:, None, :], pick, -1).reshape(batch, h, w, k)
    scores = -np.sort(-rng.normal(0, 3, (batch, h, w, k)), -1)
    return scores.astype(np.float16), classes.astype(np.int16)


def rrc_boxes(rng, batch, img_h=375, img_w=500, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """Normalized (y0, x0), (y1, x1) of random-resized-crop boxes (torchvision's sampling)."""
    starts, ends = np.zeros((batch, 2), np.float32), np.zeros((batch, 2), np.float32)
    for i in range(batch):
        for _ in range(10):
            area = img_h * img_w * rng.uniform(*scale)
            r = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
            w, h = int(round(math.sqrt(area * r))), int(round(math.sqrt(area / r)))
            if 0 < w <= img_w and 0 < h <= img_h:
                y, x = rng.integers(0, img_h - h + 1), rng.integers(0, img_w - w + 1)
                break
        else:
            h, w, y, x = img_h, img_w, 0, 0
        starts[i] = (y / img_h, x / img_w)
        ends[i] = ((y + h) / img_h, (x + w) / img_w)
    return starts, ends


def op_pipeline(data, copies, device, threads, num_classes, validate):
    scores, classes, starts, ends = data

    @pipeline_def(batch_size=len(scores), num_threads=threads, device_id=0 if device == "gpu" else None,
                  prefetch_queue_depth=2)
    def pipe():
        # Whole [B, ...] arrays from zero-argument callbacks: the cheapest way to feed DALI.
        s = fn.external_source(lambda: scores, batch=True)
        c = fn.external_source(lambda: classes, batch=True)
        a = fn.external_source(lambda: starts, batch=True)
        b = fn.external_source(lambda: ends, batch=True)
        if device == "gpu":
            s, c = s.gpu(), c.gpu()
        if copies == 0:
            return s, c
        # Distinct temperatures keep the copies distinct operators.
        return tuple(fn.relabel.label_pool(s, c, rel_start=a, rel_end=b, num_classes=num_classes,
                                           temperature=1.0 + 1e-6 * i, validate=validate) for i in range(copies))

    p = pipe()
    p.build()
    return p


def time_op(data, device, threads, num_classes, validate, copies, rounds, iters):
    """Per-batch seconds of one label_pool, as the slope between pipelines with `copies` and 0 ops."""
    with_op = op_pipeline(data, copies, device, threads, num_classes, validate)
    without = op_pipeline(data, 0, device, threads, num_classes, validate)
    for p in (with_op, without):  # warm-up: allocations, first-iteration setup
        for _ in range(5):
            p.run()
    return per_copy_seconds(with_op, without, copies, rounds, iters)


def time_official(maps_topk, coords, num_classes, device, rounds):
    """The official per-batch path: dense scatter on the CPU, copy to device, roi_align + softmax there."""
    sync = torch.cuda.synchronize if device == "cuda" else None

    def step():
        dense = dense_label_maps(maps_topk, num_classes).to(device)
        return official_relabel_targets(None, coords.to(device), num_classes, dense=dense)

    step()
    return median_time(step, repeats=rounds, inner=1, sync=sync)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--num-classes", type=int, default=1000)
    ap.add_argument("--size", type=int, default=15, help="label map height = width")
    ap.add_argument("--threads", type=int, default=2, help="DALI threads = torch threads")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-gpu", action="store_true")
    ap.add_argument("--json", help="result file (default benchmarks/results/op_bench-<date>-<cpu|gpu>.json)")
    args = ap.parse_args(argv)

    rounds, iters, copies = (3, 10, 4) if args.quick else (7, 20, 8)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    b, k, c, s = args.batch, args.k, args.num_classes, args.size
    scores, classes = random_maps(rng, b, s, s, k, c)
    starts, ends = rrc_boxes(rng, b)
    data = (scores, classes, starts, ends)
    # The same maps in the official layout: [B, 2, K, H, W] float32, coords (y0, x0, y1, x1).
    maps_topk = torch.stack([torch.from_numpy(scores.astype(np.float32)),
                             torch.from_numpy(classes.astype(np.float32))], 1).permute(0, 1, 4, 2, 3).contiguous()
    coords = torch.from_numpy(np.concatenate([starts, ends], 1))

    rows = []
    print(f"label_pool vs official dense path: B={b}, K={k}, C={c}, {s}x{s}, {args.threads} threads", file=sys.stderr)
    official_cpu = time_official(maps_topk, coords, c, "cpu", rounds)
    rows.append({"method": "official_dense", "device": "cpu", "ms_per_batch": official_cpu * 1e3})
    t = time_op(data, "cpu", args.threads, c, True, copies, rounds, iters)
    rows.append({"method": "label_pool", "device": "cpu", "ms_per_batch": t * 1e3, "speedup": official_cpu / t})

    gpu = not args.no_gpu and torch.cuda.is_available() and dali_relabel.loaded_plugin().with_cuda
    if gpu:
        official_gpu = time_official(maps_topk, coords, c, "cuda", rounds)
        rows.append({"method": "official_dense", "device": "gpu", "ms_per_batch": official_gpu * 1e3})
        for validate in (True, False):
            t = time_op(data, "gpu", args.threads, c, validate, copies, rounds, iters)
            rows.append({"method": f"label_pool (validate={validate})", "device": "gpu", "ms_per_batch": t * 1e3,
                         "speedup": official_gpu / t})
    for r in rows:
        r["samples_per_s"] = b / (r["ms_per_batch"] / 1e3)
        r["us_per_batch"] = r["ms_per_batch"] * 1e3

    config = {"batch": b, "k": k, "num_classes": c, "map": [s, s], "threads": args.threads, "rounds": rounds,
              "iters": iters, "copies": copies, "quick": args.quick,
              "method": "label_pool cost = (T(pipeline with R ops) - T(without)) / R, medians over rounds"}
    path = write_result("op_bench", {"config": config, "rows": rows}, args.json)
    print(markdown_table(rows, [("method", "method", ""), ("device", "device", ""),
                                ("us_per_batch", "µs / batch", ".1f"), ("samples_per_s", "samples/s", ",.0f"),
                                ("speedup", "× official", ".0f")]))
    print(f"\nwritten: {path}")
    return 0


if __name__ == "__main__":
    t0 = time.time()
    rc = main()
    print(f"({time.time() - t0:.0f} s)", file=sys.stderr)
    sys.exit(rc)
