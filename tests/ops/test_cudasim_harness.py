"""cudasim itself: each check the simulator makes, proven on a self-test kernel with a known bug or
a known result (tests/cudasim/selftest/selftest_kernels.cu), and the source rewrite."""

from __future__ import annotations

import re

import numpy as np
import pytest

from cudasim import harness
from cudasim.harness import Session
from cudasim.rewrite import RewriteError, rewrite

pytestmark = pytest.mark.cudasim

SELFTEST = harness.SIM / "selftest" / "selftest_kernels.cu"
SOURCE = SELFTEST.read_text().splitlines()


def line_of(kernel: str, text: str, nth: int = 0) -> int:
    """1-based line of the nth line containing `text` after the definition of `kernel`."""
    start = next(i for i, line in enumerate(SOURCE) if re.search(rf"__global__ void .*\b{kernel}\(", line))
    return [i + 1 for i, line in enumerate(SOURCE) if i > start and text in line][nth]


def run(driver, *tests, device=None):
    s = Session()
    for key, value in (device or {}).items():
        s.device(key, value)
    for i, (name, *args) in enumerate(tests):
        s.selftest(f"t{i}", name, *args)
    return s.execute(driver, timeout=120)


def test_threads_of_a_block_run_concurrently_and_atomics_are_exact(cudasim_driver):
    out = run(cudasim_driver, ("atomics", 256, 3), ("atomics", 1024, 2))
    # sum of 0.5 * threadIdx.x over blocks; min of 1000 + (7919 t mod 997); block counts.
    np.testing.assert_array_equal(out["t0"].outputs[0][0], [3 * 0.5 * 255 * 256 / 2, 1000, 3 * 256])
    np.testing.assert_array_equal(out["t1"].outputs[0][0], [2 * 0.5 * 1023 * 1024 / 2, 1000, 2 * 1024])


def test_shared_memory_starts_as_nan(cudasim_driver):
    out = run(cudasim_driver, ("uninitialized_shared",))
    assert np.all(np.isnan(out["t0"].outputs[0][0]))  # the static and the dynamic part
    assert run(cudasim_driver, ("memory",))["t0"].outputs[0][0][0] != 0  # fresh cudaMalloc memory: NaN too


def test_divergent_barrier_is_reported_with_both_lines(cudasim_driver):
    r = run(cudasim_driver, ("divergent_barrier",))["t0"]
    first, second = line_of("DivergentBarrierKernel", "__syncthreads", 0), line_of("DivergentBarrierKernel",
                                                                                    "__syncthreads", 1)
    assert r.status == "fault"
    assert "divergent __syncthreads" in r.message
    assert f"32 threads at selftest/selftest_kernels.cu:{first} (first: thread (0, 0, 0))" in r.message
    assert f"32 threads at selftest/selftest_kernels.cu:{second} (first: thread (32, 0, 0))" in r.message
    assert "kernel {anonymous}::DivergentBarrierKernel launched at selftest/selftest_kernels.cu:" in r.message
    assert "block (0, 0, 0)" in r.message


def test_barrier_after_other_threads_returned_is_reported(cudasim_driver):
    r = run(cudasim_driver, ("barrier_after_return", 100))["t0"]
    line = line_of("BarrierAfterReturnKernel", "__syncthreads")
    assert r.status == "fault"
    assert re.search(rf"(__syncthreads at selftest/selftest_kernels.cu:{line} reached after \d+ of 128 threads had "
                     rf"returned|returned from the kernel while \d+ threads? wait at __syncthreads)", r.message)
    assert "every thread must reach every barrier" in r.message
    # Every thread reaching the barrier is fine.
    assert run(cudasim_driver, ("barrier_after_return", 128))["t0"].status == "ok"


def test_deadlock_is_reported_after_the_timeout(cudasim_driver):
    out = run(cudasim_driver, ("deadlock",), device={"deadlock_seconds": 1})
    r = out["t0"]
    line = line_of("DeadlockKernel", "__syncthreads")
    assert r.status == "fault"
    assert (f"deadlock: 1 of 64 threads waited 1 s at __syncthreads (1 thread at selftest/selftest_kernels.cu:{line}"
            in r.message)
    assert "the other 63 neither arrived nor returned" in r.message
    assert "stuck outside any barrier" in r.message  # the spinning threads cannot be stopped: the driver exits
    assert out.returncode == 70


@pytest.mark.parametrize("index,expected", [(100, "written past its end: bytes 400..403 of a buffer of 400 bytes"),
                                            (-1, "written before its start: byte -4"), (99, None)])
def test_dynamic_shared_memory_overrun_is_reported(cudasim_driver, index, expected):
    r = run(cudasim_driver, ("shared_overrun", 100, index))["t0"]
    if expected is None:
        assert r.status == "ok"
    else:
        assert r.status == "fault" and f"dynamic shared memory {expected}" in r.message
        assert "SharedOverrunKernel" in r.message and "block (0, 0, 0)" in r.message


LAUNCHES = [
    # grid.x grid.y block.x block.y block.z dynamic opt-in -> launch status
    ((1, 1, 1024, 1, 1, 0, -1), "cudaErrorLaunchOutOfResources"),  # __launch_bounds__(256)
    ((1, 1, 256, 1, 1, 0, -1), "cudaSuccess"),
    ((1, 1, 1025, 1, 1, 0, -1), "cudaErrorInvalidConfiguration"),
    ((1, 1, 2, 2, 65, 0, -1), "cudaErrorInvalidConfiguration"),
    ((1, 65536, 32, 1, 1, 0, -1), "cudaErrorInvalidConfiguration"),
    ((1, 65535, 1, 1, 1, 0, -1), "cudaSuccess"),
    ((1, 1, 32, 1, 1, 48 * 1024, -1), "cudaSuccess"),
    ((1, 1, 32, 1, 1, 48 * 1024 + 4, -1), "cudaErrorInvalidValue"),  # over 48 KiB without opt-in
    ((1, 1, 32, 1, 1, 64 * 1024, 64 * 1024), "cudaSuccess"),  # with it
    ((1, 1, 32, 1, 1, 64 * 1024 + 4, 64 * 1024), "cudaErrorInvalidValue"),  # over what was opted in
    ((1, 1, 32, 1, 1, 232448, 232448), "cudaSuccess"),  # the H200's whole opt-in limit
]


@pytest.mark.parametrize("config,status", LAUNCHES, ids=[f"{c}-{s}" for c, s in LAUNCHES])
def test_launch_checks(cudasim_driver, config, status):
    r = run(cudasim_driver, ("launch", *config))["t0"]
    (launch,) = r.launches
    assert launch.status == status
    assert r.status == ("ok" if status == "cudaSuccess" else "error")
    if status != "cudaSuccess":
        assert r.message == status  # cudaGetLastError() returned it, as after a failed launch on a GPU


def test_opt_in_beyond_the_device_limit_is_refused(cudasim_driver):
    r = run(cudasim_driver, ("launch", 1, 1, 32, 1, 1, 0, 232449))["t0"]
    assert r.status == "error" and r.message == "cudaErrorInvalidValue" and not r.launches
    r = run(cudasim_driver, ("launch", 1, 1, 32, 1, 1, 65536, 65536), device={"profile": "t4"})["t0"]
    assert r.status == "ok"
    r = run(cudasim_driver, ("launch", 1, 1, 32, 1, 1, 0, 65537), device={"profile": "t4"})["t0"]
    assert r.status == "error" and r.message == "cudaErrorInvalidValue"


def test_block_reduce_result_is_defined_in_thread_0_only(cudasim_driver):
    values = run(cudasim_driver, ("block_sum", 256))["t0"].outputs[0][0]
    assert values[0] == 255 * 256 / 2
    assert np.all(np.isnan(values[1:]))


def test_block_reduce_in_a_block_of_another_size_is_reported(cudasim_driver):
    r = run(cudasim_driver, ("block_sum", 128))["t0"]
    line = line_of("BlockSumKernel", "Reduce(storage)")
    assert r.status == "fault"
    assert (f"cub::BlockReduce for 256 threads used at selftest/selftest_kernels.cu:{line} in a block of 128 threads"
            in r.message)


def test_host_memory_passed_to_a_kernel_is_reported(cudasim_driver):
    r = run(cudasim_driver, ("host_pointer",))["t0"]
    assert r.status == "fault"
    assert re.search(r"argument 0 \(float\* = 0x[0-9a-f]+\) of \{anonymous\}::EmptyKernel launched at "
                     r"selftest/selftest_kernels.cu:\d+ is host memory", r.message)


def test_copies_are_checked_like_on_a_gpu(cudasim_driver):
    values = run(cudasim_driver, ("memory",))["t0"].outputs[0][0]
    invalid = 1  # cudaErrorInvalidValue
    # fresh, good copy, reversed direction, one element too many, past the end, last error twice, bad free
    assert np.isnan(values[0])
    np.testing.assert_array_equal(values[1:], [0, invalid, invalid, invalid, invalid, 0, invalid])


def test_kernel_attributes_follow_ptxas_layout(cudasim_driver):
    """Static shared memory as ptxas lays it out: declaration order, natural alignment, padded to 16
    bytes when the kernel has dynamic shared memory; __launch_bounds__ as maxThreadsPerBlock."""
    values = run(cudasim_driver, ("attributes",))["t0"].outputs[0][0]
    np.testing.assert_array_equal(values, [32, 48 * 1024 - 32, 1024, 0, 256])


def test_racy_kernel_runs_in_the_plain_build(cudasim_driver):
    """A plain += by every thread is a race the plain build may not see (ThreadSanitizer does:
    test_cudasim_tsan.py); it still runs to completion."""
    r = run(cudasim_driver, ("racy_counter",))["t0"]
    assert r.status == "ok" and 1 <= r.outputs[0][0][0] <= 256


# --- the rewrite ------------------------------------------------------------------------------------------

KERNEL = """#include <x>
template <typename T>
__global__ void __launch_bounds__(128) K(const T *in, T *out, int n) {
  extern __shared__ __align__(16) T dyn[];
  using U = int;
  __shared__ union {
    int a;
    double b;
  } u;  // "a comment with __shared__ and <<<x>>>"
  __shared__ float tile[4][8];
  const int i = threadIdx.x;
  out[i] = in[i] + dyn[0] + u.b + tile[0][0];
}
void Launch(const float *in, float *out, int n, cudaStream_t s) {
  K<float><<<dim3(n / 128, 1),
             128, 64 * sizeof(float), s>>>(in, out,
                                            n);
}
"""


def test_rewrite_keeps_every_line_where_it_was():
    out = rewrite(KERNEL, "k.cu")
    head, body = out.split("\n", 2)[:2], out.split("\n", 2)[2]
    assert head == ["#include <cudasim/core.h>", '#line 1 "k.cu"']
    assert body.count("\n") == KERNEL.count("\n")
    lines = body.splitlines()
    assert "KernelEntry(128, __PRETTY_FUNCTION__, true)" in lines[2]
    assert "T *const dyn = ::cudasim::detail::dynamic_shared<T>(__FILE__, __LINE__);" in lines[3]
    assert lines[5].strip().startswith("static union {")
    assert "static_shared(&u, sizeof(u), alignof(decltype(u))" in lines[8]
    assert "static_shared(&tile, sizeof(tile)" in lines[9] and "discovery_return()) return;" in lines[9]
    assert lines[10].strip() == "const int i = threadIdx.x;"  # untouched
    assert lines[14].startswith('  ::cudasim::launch(K<float>, ::cudasim::LaunchSite{__FILE__, __LINE__, "K<float>"}, '
                                'dim3(n / 128, 1),')
    assert lines[15].strip() == "128, 64 * sizeof(float), s)(in, out,"
    assert '"a comment with __shared__ and <<<x>>>"' in lines[8]  # comments and strings are left alone


@pytest.mark.parametrize("source,message", [
    ("__global__ void K(int *p) {\n  int x = p[0];\n  __shared__ int s;\n  s = x;\n}\n",
     "k.cu:2: kernel K: put the __shared__ declarations first"),
    ("__global__ void K(int *p) {\n  __shared__ int a, b;\n}\n", "k.cu:2: kernel K: one variable per __shared__"),
    ("__device__ void f() {\n  __shared__ int s;\n}\n", "k.cu:2: __shared__ outside a kernel body"),
    ("__global__ void K(int *p) {\n  if (p) { __shared__ int s; }\n}\n",
     "k.cu:2: __shared__ outside a kernel body's leading declarations"),
    ("__global__ void K(int *p) {\n  int y = 0; if (p) { y = 1; }  __shared__ int s;\n}\n",
     "k.cu:2: kernel K: __shared__ must start a declaration directly in the kernel body"),
])
def test_rewrite_refuses_what_it_cannot_simulate(source, message):
    with pytest.raises(RewriteError, match=re.escape(message)):
        rewrite(source, "k.cu")
