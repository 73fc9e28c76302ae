"""The simulator catches GPU bugs: mutants of the label_pool kernel and its launch code, applied to a
temporary copy of the source, are each reported, while the unmodified code is clean.

Each mutant is one textual change (its original text must occur exactly once, so a change of the
kernel that moves it fails here loudly). Each is built into its own cudasim driver (only the mutated
file is recompiled; objects are cached by content) and runs a small case list on both backends; what
counts as caught depends on the bug: a wrong GPU output, a simulator fault (divergent barrier,
shared memory overrun, cub misuse), a CUDA launch error, or a ThreadSanitizer report.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import re

import numpy as np
import pytest
from label_pool_cases import far_edge_non_square_batch
from reference import random_box, random_label_map, slow_label_pool

from cudasim import harness, ops
from cudasim.harness import CSRC, Session

pytestmark = pytest.mark.cudasim

KERNEL = "label_pool/cuda/label_pool_cuda.cu"
CPU = "label_pool/cpu/label_pool_cpu.cc"


@dataclasses.dataclass(frozen=True)
class Mutant:
    name: str
    file: str
    old: str
    new: str
    caught_by: str  # a substring of one of the detections (see `detections`)
    variant: str = "plain"  # "tsan" when only ThreadSanitizer can see it

    def source(self) -> str:
        text = (CSRC / self.file).read_text()
        assert text.count(self.old) == 1, f"mutant {self.name}: its text no longer occurs once in {self.file}"
        return text.replace(self.old, self.new)


MUTANTS = [
    Mutant("init barrier dropped", KERNEL,
           "  for (int j = tid; j < num_classes; j += kBlock) z[j] = 0.0;\n  __syncthreads();\n",
           "  for (int j = tid; j < num_classes; j += kBlock) z[j] = 0.0;\n\n", "ThreadSanitizer", "tsan"),
    Mutant("broadcast barrier dropped", KERNEL,
           "  if (tid == 0) broadcast = z_max;\n  __syncthreads();\n", "  if (tid == 0) broadcast = z_max;\n\n",
           "ThreadSanitizer", "tsan"),
    Mutant("atomicAdd -> +=", KERNEL, "atomicAdd(&z[cls], entry_contribution(rw, cw, score));",
           "z[cls] += entry_contribution(rw, cw, score);", "ThreadSanitizer", "tsan"),
    Mutant("dynamic shared memory one element short", KERNEL,
           "const size_t shared_z = weights + static_cast<size_t>(b.num_classes) * sizeof(double);",
           "const size_t shared_z = weights + static_cast<size_t>(b.num_classes - 1) * sizeof(double);",
           "dynamic shared memory written past its end"),
    Mutant("block-reduce result used outside thread 0", KERNEL, "  z_max = broadcast;\n", "\n", "wrong output"),
    Mutant("barrier under a thread-dependent branch", KERNEL, "  __syncthreads();  // reduce_tmp is reused",
           "  if (tid < 128) __syncthreads();  // reduce_tmp is reused", "divergent __syncthreads"),
    Mutant("64 KiB of dynamic shared memory without opt-in", KERNEL,
           "    AllowDynamicShared(LabelPoolKernel<Score, Class, true>, shared_z, max_shared_z);\n", "\n",
           "cudaErrorInvalidValue"),
    Mutant("BlockReduce<256> kernel launched with 128 threads", KERNEL,
           "LabelPoolKernel<Score, Class, true><<<b.n, kBlock, shared_z, b.stream>>>(",
           "LabelPoolKernel<Score, Class, true><<<b.n, kBlock / 2, shared_z, b.stream>>>(",
           "cub::BlockReduce for 256 threads used at label_pool/cuda/label_pool_cuda.cu"),
    # The budget bug this harness found: 48 KiB for the dynamic part alone, no opt-in.
    Mutant("the old shared-memory budget", KERNEL,
           "  const size_t max_shared_z = MaxDynamicShared(LabelPoolKernel<Score, Class, true>, b.device);\n"
           "  if (shared_z <= max_shared_z) {\n"
           "    AllowDynamicShared(LabelPoolKernel<Score, Class, true>, shared_z, max_shared_z);\n",
           "  const size_t max_shared_z = 48 * 1024;\n  if (shared_z <= max_shared_z) {\n\n",
           "cudaErrorInvalidValue"),
    # The official (float32) geometry's far-edge rule: a sample exactly on the edge still counts. Reachable
    # there (rows are scaled by W: H = 7, W = 15, corner 7/15) but not in the default float64 geometry,
    # where `p > size` -> `p >= size` is an equivalent mutant (every sample is at least 6e-8 inside).
    Mutant("official geometry: a sample on the far edge dropped", "label_pool/label_pool_math.h",
           "if (p < -1.0f || p > static_cast<float>(size)) continue;",
           "if (p < -1.0f || p >= static_cast<float>(size)) continue;", "differs from the reference"),
    # Survivors of the CPU backend's mutation pass (issue #17), killed by the cases below.
    Mutant("softmax max starts at 0 when every class is touched", CPU,
           "double z_max = background > 0 ? 0.0 : -std::numeric_limits<double>::infinity();",
           "double z_max = 0.0;", "cpu: wrong output"),
    Mutant("float16 finiteness mask 0x7c00 -> 0x7e00", CPU, "return (bits & 0x7c00u) != 0x7c00u;",
           "return (bits & 0x7e00u) != 0x7e00u;", "cpu: not the expected error"),
]


def cases(s: Session) -> dict[str, dict]:
    """The case list every mutant runs; returns tag -> expectation ("error": regex of the message)."""
    rng = np.random.default_rng(0)

    def batch(n, h, w, k, c, score_dtype=np.float32):
        maps = [random_label_map(rng, h, w, k, c, score_dtype) for _ in range(n)]
        boxes = [random_box(rng) for _ in range(n)]
        return [m[0] for m in maps], [m[1] for m in maps], [b[0] for b in boxes], [b[1] for b in boxes]

    expect = {}
    ops.label_pool_both(s, "multi", batch(3, 15, 15, 5, 1000), num_classes=1000)
    ops.label_pool_both(s, "single", batch(2, 15, 15, 5, 1000, np.float16), num_classes=1000,
                        label_type="localized_single")
    ops.label_pool_both(s, "C8000", batch(2, 15, 15, 5, 8000), num_classes=8000)  # z[] needs opt-in
    ops.label_pool_both(s, "C6114", batch(2, 15, 15, 5, 6114), num_classes=6114)  # the old bug's range
    k = 5  # every class touched, logits near -120
    touched = ([np.full((4, 4, k), -120.0, np.float32) + np.arange(k, dtype=np.float32) * 0.5],
               [np.broadcast_to(np.arange(k, dtype=np.int32), (4, 4, k)).copy()],
               [np.array([0.1, 0.2], np.float32)], [np.array([0.8, 0.9], np.float32)])
    ops.label_pool_both(s, "touched", touched, num_classes=k)
    edge = far_edge_non_square_batch()
    ops.label_pool_both(s, "edge", edge, num_classes=50, output="logits", transpose_box=True)
    expect["edge"] = {"reference": np.stack([slow_label_pool(*x, 50, output="logits", transpose_box=True)
                                             for x in zip(*edge)])}
    for value in (np.inf, -np.inf):
        scores = np.ones((3, 4, 2), np.float16)
        scores[1, 2, 0] = value
        bad = ([scores], [np.zeros((3, 4, 2), np.int32)], [np.array([0.1, 0.1], np.float32)],
               [np.array([0.9, 0.9], np.float32)])
        tag = f"f16{value}"
        ops.label_pool_both(s, tag, bad, num_classes=10)
        expect[tag] = {"error": r"sample 0: score at \(row 1, col 2, k 0\) is not finite"}
    return expect


def detections(out: harness.RunOutput, expect: dict[str, dict]) -> list[str]:
    """Everything in `out` that shows a bug (empty for correct code)."""
    found = [f"ThreadSanitizer: {r.splitlines()[1] if len(r.splitlines()) > 1 else r}" for r in out.tsan_reports]
    tags = sorted({t.rsplit("/", 1)[0] for t in out.results})
    for tag in tags:
        cpu, gpu = out[f"{tag}/cpu"], out[f"{tag}/gpu"]
        if "reference" in expect.get(tag, {}):
            for side, r in (("cpu", cpu), ("gpu", gpu)):
                if r.status != "ok" or np.abs(ops.stacked(r) - expect[tag]["reference"]).max() > 1e-6:
                    found.append(f"{side}: {tag} differs from the reference")
            continue
        if tag in expect:
            for side, r in (("cpu", cpu), ("gpu", gpu)):
                if r.status != "error" or not re.search(expect[tag]["error"], r.message):
                    found.append(f"{side}: not the expected error in {tag}: {r.status} {r.message[:200]}")
            continue
        for side, r in (("cpu", cpu), ("gpu", gpu)):
            if r.status != "ok":
                found.append(f"{side} {r.status} in {tag}: {r.message}")
        if cpu.status == "ok":
            c = ops.stacked(cpu)
            if not (np.all(np.isfinite(c)) and np.allclose(c.sum(1), 1, atol=1e-5)):
                found.append(f"cpu: wrong output in {tag}")
        if cpu.status == gpu.status == "ok":
            g, c = ops.stacked(gpu), ops.stacked(cpu)
            if not np.all(np.isfinite(g)) or np.abs(g.astype(np.float64) - c).max() > 1e-6:
                found.append(f"gpu: wrong output in {tag}")
    return found


def run_cases(driver: harness.Binary) -> list[str]:
    s = Session()
    expect = cases(s)
    return detections(s.execute(driver, timeout=600), expect)


@pytest.fixture(scope="module")
def mutant_drivers(cudasim_driver, cudasim_tsan_driver):
    """Every mutant's driver (one changed file each; the unmodified drivers fill the object cache first)."""
    workers = max(1, min(4, os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        futures = {m.name: pool.submit(harness.build, m.variant, {m.file: m.source()}) for m in MUTANTS}
        return {name: f.result() for name, f in futures.items()}


def test_unmodified_code_is_clean(cudasim_driver, cudasim_tsan_driver):
    assert run_cases(cudasim_driver) == []
    assert run_cases(cudasim_tsan_driver) == []


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_mutant_is_caught(mutant_drivers, mutant):
    found = run_cases(mutant_drivers[mutant.name])
    assert found, f"mutant '{mutant.name}' survived"
    assert any(mutant.caught_by in f for f in found), f"mutant '{mutant.name}' was caught otherwise: {found}"
