"""The CUDA backends under ThreadSanitizer (and, on request, AddressSanitizer + UBSan) in cudasim.

The threads of a simulated block are real OS threads, so ThreadSanitizer sees a data race between
two CUDA threads of a block, e.g. a plain `+=` where an atomicAdd is needed, even when the plain
build computes the right result by lucky timing. A quick list of cases (every label_pool mode and
z[] placement, lookup's gather from a device copy and from host memory) must run race-free.

AddressSanitizer + UBSan (exact-size dynamic shared memory, per-sample tensors, the CPU backends'
bounds) is slower to build; set DALI_RELABEL_CUDASIM_ASAN=1 to run it.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from bank_util import write_bank
from label_pool_cases import MODES, SCORE_CLASS_DTYPES, make_batch, two_samples_with

from cudasim import harness, ops
from cudasim.harness import Session

pytestmark = pytest.mark.cudasim


def quick_list(bank) -> Session:
    """A few cases covering every kernel code path; small batches (sanitizers are slow)."""
    s = Session()
    for i, (label_type, output) in enumerate(MODES):
        batch = [x[:3] for x in make_batch(i, 15, 15, 5, 1000, *SCORE_CLASS_DTYPES[i % 4])]
        ops.label_pool_both(s, f"{label_type}-{output}", batch, num_classes=1000, label_type=label_type, output=output)
    ops.label_pool_both(s, "C21843", [x[:2] for x in make_batch(9, 12, 7, 5, 21843)], num_classes=21843)
    ops.label_pool_both(s, "bad-class", two_samples_with(classes=np.full((3, 4, 2), 12, np.int32)), num_classes=10)
    path, _ = bank
    for memory in ("device", "host"):
        ops.lookup(s, f"lookup-{memory}", "gpu", path, [3, 0, 7], bank_memory=memory)
    return s


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    path = tmp_path_factory.mktemp("tsan_bank") / "bank"
    return path, write_bank(path, n=8, h=6, w=5, k=3, num_classes=100, seed=5)


def _check_quick_list(out: harness.RunOutput) -> None:
    for (label_type, output) in MODES:
        cpu, gpu = ops.pair(out, f"{label_type}-{output}")
        assert np.abs(gpu.astype(np.float64) - cpu).max() <= 1e-6
    cpu, gpu = ops.pair(out, "C21843")
    assert np.abs(gpu.astype(np.float64) - cpu).max() <= 1e-6
    assert out["bad-class/gpu"].message == out["bad-class/cpu"].message != ""
    for memory in ("device", "host"):
        out[f"lookup-{memory}"].expect_ok()


def test_quick_list_is_race_free_under_thread_sanitizer(cudasim_tsan_driver, bank):
    out = quick_list(bank).execute(cudasim_tsan_driver, timeout=600)
    assert not out.tsan_reports, "ThreadSanitizer:\n" + "\n".join(out.tsan_reports)[:8000]
    assert out.returncode == 0, out.stderr[-4000:]
    _check_quick_list(out)
    # The other T4-like device places z[] of 21843 classes in global memory: race-free too.
    s = Session().device("profile", "t4")
    ops.label_pool_both(s, "global", [x[:2] for x in make_batch(9, 12, 7, 5, 21843)], num_classes=21843)
    out = s.execute(cudasim_tsan_driver, timeout=600)
    assert not out.tsan_reports and out.returncode == 0, out.stderr[-4000:]
    assert "kSharedZ = false" in out["global/gpu"].launches[0].kernel


def test_thread_sanitizer_reports_a_plain_increment_by_every_thread(cudasim_tsan_driver):
    """The positive control: a self-test kernel with `counter += 1` in every thread."""
    out = Session().selftest("race", "racy_counter").execute(cudasim_tsan_driver, timeout=300)
    assert out.tsan_reports and "RacyCounterKernel" in out.tsan_reports[0]
    assert "selftest/selftest_kernels.cu" in out.tsan_reports[0]  # pointing at the .cu source line
    assert out.returncode == 66


@pytest.mark.skipif(os.environ.get("DALI_RELABEL_CUDASIM_ASAN") != "1",
                    reason="AddressSanitizer + UBSan build: set DALI_RELABEL_CUDASIM_ASAN=1 (slow)")
def test_quick_list_is_clean_under_address_and_undefined_behaviour_sanitizers(bank):
    driver = harness.build("asan")
    out = quick_list(bank).execute(driver, timeout=600)
    assert out.returncode == 0 and "ERROR: AddressSanitizer" not in out.stderr and "runtime error" not in out.stderr, \
        out.stderr[-6000:]
    _check_quick_list(out)
    # An exact-size dynamic shared memory buffer: ASan sees a write one element past it.
    out = Session().selftest("overrun", "shared_overrun", 100, 100).execute(driver, timeout=300)
    assert "ERROR: AddressSanitizer: heap-buffer-overflow" in out.stderr
