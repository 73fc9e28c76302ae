"""Where a crop's time goes: decode, resize, normalize, labels, the copy into torch (CPU milliseconds per crop).

The training pipeline is rebuilt to stop after each stage, on the loader benchmark's data, and each variant is
timed by the process's CPU time (user + system, every DALI thread and the Python thread) per crop. The
pipelines run synchronously (``exec_async=False``, ``exec_pipelined=False``): no batch is computed in the
background while another pipeline is timed, and on a machine shared with other jobs CPU time counts this
process's work where wall time counts the neighbours' too. A stage's cost is the difference from the variant
before it; medians over rounds, the variants alternated within a round.

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

import statistics
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
        self.step()
        t0 = time.process_time()
        for _ in range(iters):
            self.step()
        return time.process_time() - t0


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
    for _ in range(rounds):
        for key, timed in variants.items():
            r, n, _ = key
            samples[key].append(1e3 * timed.cpu_seconds(iters) / (iters * batch * n))
    out = {}
    for r in resamplers:
        for n in crops:
            total = {s: statistics.median(samples[(r, n, s)]) for s in STAGES}
            # Stage costs from per-round differences (medians), so that slow rounds cancel within a round.
            stages = {}
            for i, s in enumerate(STAGES):
                cur = samples[(r, n, s)]
                prev = samples[(r, n, STAGES[i - 1])] if i else [0.0] * rounds
                stages[s] = statistics.median(a - b for a, b in zip(cur, prev))
            out[f"{r}_x{n}"] = {"resampler": r, "crops_per_image": n, "cpu_ms_per_crop_cumulative": total,
                                "cpu_ms_per_crop": stages,
                                "share_pct": {s: 100 * v / total["copy"] for s, v in stages.items()}}
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


__all__ = ["STAGES", "breakdown_table", "per_crop_breakdown"]
