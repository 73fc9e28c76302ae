"""Fuzz of the CPU operators: random shapes, dtypes, boxes, values and options through fn.relabel.label_pool and
fn.relabel.lookup, each output compared with the references (tests/reference.py, numpy indexing of the bank), each
invalid input expected to fail with a clear error naming the operator and the sample — never a crash.

Run as a child process by tests/test_faults.py (a crash then fails that test instead of killing pytest)::

    python tests/fuzz_ops.py --cases 10000 --seed 0 --bank-dir /tmp/x   # prints one JSON summary line

Valid cases are batched (one pipeline per operator configuration, up to 64 samples per run), so ten thousand of
them take seconds; every invalid case gets a fresh pipeline (an error invalidates a DALI pipeline).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/: reference, conftest helpers

import dali_relabel  # noqa: E402
from reference import slow_label_pool  # noqa: E402

BATCH = 64
SCORE_DTYPES, CLASS_DTYPES = (np.float16, np.float32), (np.int16, np.int32)
LABEL_TYPES = ("localized_multi", "localized_single", "global_multi", "global_single")


def random_map(rng, h, w, k, c, sdt, cdt):
    """A valid top-k map: distinct classes per cell, scores non-increasing along K (values of any scale)."""
    # k distinct classes per cell: a random base per cell plus k distinct offsets (cheap for any C).
    offsets = rng.choice(c, size=k, replace=False)
    classes = ((rng.integers(0, c, size=(h * w, 1)) + offsets) % c).reshape(h, w, k)
    scale = rng.choice([0.01, 1.0, 8.0, 30.0])
    scores = -np.sort(-rng.normal(scale=scale, size=(h, w, k)), axis=-1)
    if rng.random() < 0.1:
        scores[:] = scores[..., :1]  # ties along K
    return scores.astype(sdt), classes.astype(cdt)


def random_box(rng):
    """(start, end) float32 with start < end on both axes: random, tiny, full, touching borders."""
    kind = rng.integers(0, 4)
    while True:
        if kind == 0:
            a, b = np.sort(rng.uniform(0, 1, 2)), np.sort(rng.uniform(0, 1, 2))
        elif kind == 1:  # tiny
            y, x = rng.uniform(0, 0.999, 2)
            a, b = np.array([y, y + 1e-3]), np.array([x, x + 1e-3])
        elif kind == 2:
            a, b = np.array([0.0, 1.0]), np.array([0.0, 1.0])
        else:  # touching one border
            a, b = np.sort(rng.uniform(0, 1, 2)), np.sort(rng.uniform(0, 1, 2))
            a[rng.integers(0, 2)], b[rng.integers(0, 2)] = 0.0, 1.0
        start, end = np.array([a[0], b[0]], np.float32), np.array([a[1], b[1]], np.float32)
        if np.all(start < end):
            return start, end


def label_pool_pipeline(config: dict):
    from nvidia.dali import fn, pipeline_def

    @pipeline_def(batch_size=BATCH, num_threads=2, device_id=None, prefetch_queue_depth=1, exec_async=False,
                  exec_pipelined=False)
    def pipe():
        scores, classes = fn.external_source(name="scores"), fn.external_source(name="classes")
        start, end = fn.external_source(name="rel_start"), fn.external_source(name="rel_end")
        return fn.relabel.label_pool(scores, classes, rel_start=start, rel_end=end, **config)

    p = pipe()
    p.build()
    return p


def run_label_pool(p, samples) -> list[np.ndarray]:
    for i, name in enumerate(("scores", "classes", "rel_start", "rel_end")):
        p.feed_input(name, [np.ascontiguousarray(s[i]) for s in samples])
    (out,) = p.run()
    return [np.array(out[i]) for i in range(len(out))]


def random_config(rng) -> dict:
    label_type = str(rng.choice(LABEL_TYPES))
    return {"num_classes": int(rng.choice([1, 2, 5, 17, 64, 300])), "label_type": label_type,
            "temperature": float(rng.choice([1.0, 0.25, 3.0])), "transpose_box": bool(rng.integers(0, 2)),
            "output": "logits" if label_type.endswith("multi") and rng.random() < 0.25 else "probabilities"}


def check_output(out: np.ndarray, sample, config: dict) -> str | None:
    """None if ``out`` equals the reference (within float tolerance), else what differs."""
    scores, classes, start, end = sample
    # The reference's pooled logits z, then its own last step (slow_label_pool: one-hot of the first maximum, or
    # softmax(z / T)), so that z is computed once for both the target and the near-tie test.
    z = slow_label_pool(scores.astype(np.float64), classes, start.astype(np.float64), end.astype(np.float64),
                        config["num_classes"], transpose_box=config["transpose_box"], label_type=config["label_type"],
                        output="logits")
    if config["output"] == "logits":
        ref = z
    elif config["label_type"].endswith("single"):
        ref = np.eye(config["num_classes"])[np.argmax(z)]
    else:
        e = np.exp(z / config["temperature"] - (z / config["temperature"]).max())
        ref = e / e.sum()
    if out.shape != ref.shape or not np.all(np.isfinite(out)):
        return f"shape {out.shape} / non-finite output, reference {ref.shape}"
    if config["label_type"].endswith("single"):
        top = np.sort(z)[::-1]
        if np.array_equal(out, ref) or (len(top) > 1 and top[0] - top[1] <= 1e-5 * max(1.0, abs(top[0]))
                                        and z[int(np.argmax(out))] >= top[0] - 1e-5 * max(1.0, abs(top[0]))):
            return None  # equal, or a near-tie broken the other way
        return f"one-hot at {int(np.argmax(out))}, reference at {int(np.argmax(ref))}"
    atol = 1e-5 if config["output"] == "probabilities" else 1e-4 * max(1.0, float(np.abs(ref).max()))
    err = float(np.abs(out.astype(np.float64) - ref).max())
    return None if err <= atol else f"max error {err:.3g} > {atol:.3g}"


def fuzz_label_pool_valid(rng, cases: int, failures: list) -> int:
    done = 0
    while done < cases:
        config = random_config(rng)
        sdt, cdt = SCORE_DTYPES[rng.integers(0, 2)], CLASS_DTYPES[rng.integers(0, 2)]
        p = label_pool_pipeline(config)
        for _ in range(4):  # a few batches per configuration
            samples = []
            for _ in range(int(rng.integers(1, BATCH + 1))):
                c = config["num_classes"]
                # Mostly small maps: the float64 reference costs ~(H*W)^2 * distinct classes; large maps (up to the
                # 15x15 of ImageNet) only where few classes keep it cheap.
                side = 16 if c <= 5 and rng.random() < 0.1 else 7
                h, w, k = int(rng.integers(1, side)), int(rng.integers(1, side)), int(rng.integers(1, min(c, 5) + 1))
                samples.append((*random_map(rng, h, w, k, c, sdt, cdt), *random_box(rng)))
            for i, out in enumerate(run_label_pool(p, samples)):
                problem = check_output(out, samples[i], config)
                if problem:
                    failures.append(f"label_pool {config} {samples[i][0].dtype}/{samples[i][1].dtype} "
                                    f"shape {samples[i][0].shape} box {samples[i][2]}..{samples[i][3]}: {problem}")
            done += len(samples)
    return done


def corrupt(rng, sample, num_classes: int) -> tuple[tuple, str]:
    """A sample made invalid in one random way, and the kind."""
    scores, classes, start, end = (np.array(x) for x in sample)
    h, w, k = scores.shape
    y, x, j = int(rng.integers(0, h)), int(rng.integers(0, w)), int(rng.integers(0, k))
    kind = str(rng.choice(["nan", "inf", "class-high", "class-negative", "box-nan", "box-outside", "box-empty",
                           "box-reversed", "shape-mismatch", "empty-map", "not-3d"]))
    if kind == "nan":
        scores[y, x, j] = np.nan
    elif kind == "inf":
        scores[y, x, j] = -np.inf
    elif kind == "class-high":
        classes[y, x, j] = num_classes + int(rng.integers(0, 1000))
    elif kind == "class-negative":
        classes[y, x, j] = -int(rng.integers(1, 1000))
    elif kind == "box-nan":
        start[int(rng.integers(0, 2))] = np.nan
    elif kind == "box-outside":
        end[int(rng.integers(0, 2))] = np.float32(1.0 + rng.uniform(1e-3, 5))
    elif kind == "box-empty":
        axis = int(rng.integers(0, 2))
        end[axis] = start[axis]
    elif kind == "box-reversed":
        start, end = end, start
    elif kind == "shape-mismatch":
        classes = np.concatenate([classes, classes[:, :, :1]], axis=2)
    elif kind == "empty-map":
        scores, classes = scores[:0], classes[:0]
    else:
        scores, classes = scores[..., 0], classes[..., 0]
    return (scores, classes, start, end), kind


def fuzz_label_pool_invalid(rng, cases: int, failures: list) -> int:
    for _ in range(cases):
        config = {"num_classes": int(rng.choice([3, 10, 50])), "label_type": "localized_multi"}
        sdt, cdt = SCORE_DTYPES[rng.integers(0, 2)], CLASS_DTYPES[rng.integers(0, 2)]
        n = int(rng.integers(1, 5))
        c = config["num_classes"]
        dims = (int(rng.integers(1, 6)), int(rng.integers(1, 6)), int(rng.integers(1, min(c, 4) + 1)))
        samples = [(*random_map(rng, *dims, c, sdt, cdt), *random_box(rng)) for _ in range(n)]
        bad = int(rng.integers(0, n))
        samples[bad], kind = corrupt(rng, samples[bad], c)
        if kind == "not-3d":  # DALI requires one dimensionality per batch: all samples 2-D
            samples = [(s[..., 0], cl[..., 0], a, b) if s.ndim == 3 else (s, cl, a, b) for s, cl, a, b in samples]
        p = label_pool_pipeline(config)
        try:
            run_label_pool(p, samples)
        except Exception as e:
            text = str(e)
            expected = f"sample {bad}" if kind != "not-3d" else "sample 0"
            if "relabel.label_pool" not in text or expected not in text:
                failures.append(f"label_pool {kind} in sample {bad}: unclear error {text[:300]!r}")
            continue
        failures.append(f"label_pool {kind} in sample {bad} of {n}: accepted without an error")
    return cases


def fuzz_lookup(rng, cases: int, bank_dir: Path, failures: list) -> int:
    from nvidia.dali import fn, pipeline_def

    from dali_relabel import LabelStore

    done, bank_no = 0, 0
    while done < cases:
        n, c = int(rng.integers(1, 200)), int(rng.choice([7, 1000, 40000]))
        h, w, k = int(rng.integers(1, 16)), int(rng.integers(1, 16)), int(rng.integers(1, min(c, 6) + 1))
        maps = [random_map(rng, h, w, k, c, np.float32, np.int32) for _ in range(n)]
        store = LabelStore.create(bank_dir / f"s{bank_no}.zarr", keys=[f"c/{i}.jpg" for i in range(n)],
                                  num_classes=c, height=h, width=w, k=k, labels=rng.integers(-1, c, n),
                                  block_size=int(rng.integers(1, 64)),
                                  scores_dtype=str(rng.choice(["float16", "float32"])))
        for b in range(store.num_blocks):
            r = store.block_rows(b)
            store.write_block(b, np.stack([maps[i][0] for i in r]), np.stack([maps[i][1] for i in r]))
        bank = store.materialize(bank_dir / "banks", progress=False)
        bank_no += 1
        index_dtype, shape = [(np.int32, (1,)), (np.int32, ()), (np.int64, ()), (np.int64, (1,))][rng.integers(0, 4)]

        @pipeline_def(batch_size=BATCH, num_threads=2, device_id=None, prefetch_queue_depth=1, exec_async=False,
                      exec_pipelined=False)
        def pipe():
            return tuple(fn.relabel.lookup(row=fn.external_source(name="index"), bank=str(bank.path)))

        p = pipe()
        p.build()
        for _ in range(3):
            rows = rng.integers(0, n, int(rng.integers(1, BATCH + 1)))
            p.feed_input("index", [np.full(shape, r, index_dtype) for r in rows])
            s, cl, lb = (np.stack([np.array(t[i]) for i in range(len(t))]) for t in p.run())
            bits = np.uint16 if bank.scores.dtype == np.float16 else np.uint32  # bitwise: nothing rounded
            if not (s.dtype == bank.scores.dtype and np.array_equal(s.view(bits), bank.scores[rows].view(bits))
                    and np.array_equal(cl, bank.classes[rows]) and np.array_equal(lb.reshape(-1), bank.labels[rows])):
                failures.append(f"lookup bank {bank.path} rows {rows[:8]}...: differs from the bank's arrays")
            done += len(rows)
        for _ in range(2):  # an index out of range in a random sample: a clear error
            rows = rng.integers(0, n, int(rng.integers(1, 8)))
            bad = int(rng.integers(0, len(rows)))
            rows[bad] = int(rng.choice([n, n + int(rng.integers(0, 10 ** 6)), -1, -int(rng.integers(2, 10 ** 6))]))
            q = pipe()
            q.build()
            q.feed_input("index", [np.full(shape, r, index_dtype) for r in rows])
            try:
                q.run()
                failures.append(f"lookup index {rows[bad]} (bank of {n}) accepted without an error")
            except Exception as e:
                if "relabel.lookup" not in str(e) or f"sample {bad}" not in str(e):
                    failures.append(f"lookup index {rows[bad]}: unclear error {str(e)[:300]!r}")
            done += 1
    return done


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=10000, help="valid label_pool cases (batched)")
    ap.add_argument("--invalid", type=int, default=200, help="invalid label_pool cases (one pipeline each)")
    ap.add_argument("--lookup", type=int, default=1500, help="lookup cases")
    ap.add_argument("--seed", type=int, default=0, help="random seed")
    ap.add_argument("--bank-dir", required=True, help="where the lookup fuzz writes its stores and banks")
    args = ap.parse_args()
    dali_relabel.load_plugin()
    rng = np.random.default_rng(args.seed)
    failures: list[str] = []
    t0 = time.perf_counter()
    counts = {"label_pool_valid": fuzz_label_pool_valid(rng, args.cases, failures),
              "label_pool_invalid": fuzz_label_pool_invalid(rng, args.invalid, failures),
              "lookup": fuzz_lookup(rng, args.lookup, Path(args.bank_dir), failures)}
    print(json.dumps({"counts": counts, "failures": failures[:50], "num_failures": len(failures),
                      "seconds": round(time.perf_counter() - t0, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
