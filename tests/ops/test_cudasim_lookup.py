"""fn.relabel.lookup's CUDA backend (gather kernel, RunImpl, gpu_bank.cu's device copies and host
registrations, unmodified) run on the CPU by cudasim, against numpy indexing and the CPU backend."""

from __future__ import annotations

import os

import numpy as np
import pytest
from bank_util import write_bank

from cudasim import ops
from cudasim.harness import Session

pytestmark = pytest.mark.cudasim

KBLOCK, MAX_BLOCKS_PER_SAMPLE = 256, 64  # lookup_cuda.cu's launch shape


@pytest.fixture(scope="module")
def banks(tmp_path_factory):
    root = tmp_path_factory.mktemp("cudasim_banks")
    return {
        "int16": (root / "b16", write_bank(root / "b16", n=40, h=15, w=15, k=5, num_classes=1000,
                                           class_dtype=np.int16, seed=1)),
        "int32": (root / "b32", write_bank(root / "b32", n=9, h=7, w=3, k=4, num_classes=40000,
                                           class_dtype=np.int32, seed=2)),
        # 4096-byte rows: 1, 2, 4, 8 or 16 blocks per sample for copy words of 16, 8, 4, 2 or 1 bytes.
        "aligned": (root / "b16x", write_bank(root / "b16x", n=6, h=16, w=16, k=8, num_classes=50, seed=3)),
        "wide": (root / "wide", write_bank(root / "wide", n=3, h=64, w=64, k=40, num_classes=50000,
                                           class_dtype=np.int32, seed=4)),
    }


def assert_rows(result, arrays, rows):
    scores, classes, labels = (np.stack(o) for o in result.expect_ok())
    rows = np.asarray(rows)
    assert scores.dtype == np.float16 and classes.dtype == arrays["classes"].dtype and labels.dtype == np.int32
    np.testing.assert_array_equal(scores.view(np.uint16), arrays["scores"][rows].view(np.uint16))
    np.testing.assert_array_equal(classes, arrays["classes"][rows])
    np.testing.assert_array_equal(labels, arrays["labels"][rows])


def word_size(bits: int) -> int:
    """lookup_cuda.cu's copy unit: the largest power of two up to 16 dividing every address and size."""
    for unit in (16, 8, 4, 2):
        if bits % unit == 0:
            return unit
    return 1


def expected_grid(arrays, n: int, misalign: int) -> tuple[int, int, int]:
    """The gather launch's grid: enough 256-thread blocks per sample for the longer row (in copy
    words), at most 64; one row of blocks per sample. Every base address is 16-byte aligned here
    (cudaMalloc, the .npy data), but for the outputs' `misalign`."""
    elements = int(np.prod(arrays["scores"].shape[1:]))
    score_bytes, class_bytes = 2 * elements, arrays["classes"].itemsize * elements
    words = max(score_bytes // word_size(score_bytes | misalign), class_bytes // word_size(class_bytes | misalign))
    return (min(max(-(-words // KBLOCK), 1), MAX_BLOCKS_PER_SAMPLE), n, 1)


@pytest.mark.parametrize("bank_memory", ["device", "host"])
@pytest.mark.parametrize("bank_name", ["int16", "int32", "aligned"])
def test_gather_equals_numpy_indexing_and_the_cpu_backend(cudasim_driver, banks, bank_name, bank_memory):
    path, arrays = banks[bank_name]
    n = len(arrays["labels"])
    rng = np.random.default_rng(n)
    batches = [[0, n - 1, *rng.integers(0, n, 10), 0, n - 1], list(rng.permutation(n)[:3])]
    s = Session()
    s.op("gpu", ops.LOOKUP, "gpu", bank=str(path), row=ops.TensorArg, bank_memory=bank_memory)
    s.op("cpu", ops.LOOKUP, "cpu", bank=str(path), row=ops.TensorArg)
    kinds = [(np.int32, (1,)), (np.int64, ())]
    for b, rows in enumerate(batches):
        for dtype, shape in kinds:
            ops.lookup(s, f"gpu{b}-{dtype.__name__}", "gpu", path, rows, dtype, shape, op_id="gpu")
        ops.lookup(s, f"cpu{b}", "cpu", path, rows, op_id="cpu")
    out = s.execute(cudasim_driver)
    for b, rows in enumerate(batches):
        assert_rows(out[f"cpu{b}"], arrays, rows)
        for dtype, _ in kinds:
            r = out[f"gpu{b}-{dtype.__name__}"]
            assert_rows(r, arrays, rows)
            (launch,) = r.launches
            assert "GatherKernel" in launch.kernel and launch.block == (KBLOCK, 1, 1)
            assert launch.grid == expected_grid(arrays, len(rows), 0)


@pytest.mark.parametrize("misalign", [1, 2, 4, 8, 16])
def test_every_copy_width(cudasim_driver, banks, misalign):
    """Outputs at addresses aligned to 1..16 bytes select each CopyWords width (uint8 .. uint4)."""
    path, arrays = banks["aligned"]
    rows = [5, 0, 3, 3]
    s = Session()
    ops.lookup(s, "gpu", "gpu", path, rows, misalign=(misalign, misalign))  # scores, classes (labels stay aligned)
    r = s.execute(cudasim_driver)["gpu"]
    assert_rows(r, arrays, rows)
    assert r.launches[0].grid == expected_grid(arrays, len(rows), misalign) == (16 // misalign, len(rows), 1)


def test_long_rows_use_at_most_64_blocks_per_sample(cudasim_driver, banks):
    path, arrays = banks["wide"]
    rows = [2, 0]
    s = Session()
    ops.lookup(s, "gpu", "gpu", path, rows)
    r = s.execute(cudasim_driver)["gpu"]
    assert_rows(r, arrays, rows)
    assert r.launches[0].grid == (MAX_BLOCKS_PER_SAMPLE, 2, 1)  # 64*64*40 int32 = 40960 uint4 words


def test_device_copy_is_made_once_and_freed_with_the_last_operator(cudasim_driver, banks):
    path, arrays = banks["int16"]
    bank_bytes = sum(a.nbytes for a in arrays.values())
    s = Session().stats()
    s.op("a", ops.LOOKUP, "gpu", bank=str(path), row=ops.TensorArg)
    s.op("b", ops.LOOKUP, "gpu", bank=str(path), row=ops.TensorArg)
    ops.lookup(s, "a1", "gpu", path, [1, 2], op_id="a")
    s.stats()
    ops.lookup(s, "b1", "gpu", path, [3], op_id="b")
    s.stats()
    s.destroy("a")
    ops.lookup(s, "b2", "gpu", path, [39, 0], op_id="b")
    s.stats()
    s.destroy("b")
    s.stats()
    out = s.execute(cudasim_driver)
    for tag, rows in [("a1", [1, 2]), ("b1", [3]), ("b2", [39, 0])]:
        assert_rows(out[tag], arrays, rows)
    live = [st["device_bytes"] for st in out.stats_history]  # outputs and scratch are freed after each run
    assert live == [0, bank_bytes, bank_bytes, bank_bytes, 0]  # one copy for both; freed with the last


def test_host_memory_is_registered_once_and_unregistered_with_the_last_operator(cudasim_driver, banks):
    path, arrays = banks["int32"]
    file_bytes = sum((path / f"{name}.npy").stat().st_size for name in ("scores", "classes", "labels"))
    s = Session()
    s.op("a", ops.LOOKUP, "gpu", bank=str(path), row=ops.TensorArg, bank_memory="host")
    s.op("b", ops.LOOKUP, "gpu", bank=str(path), row=ops.TensorArg, bank_memory="host")
    ops.lookup(s, "a1", "gpu", path, [8, 1], op_id="a")
    ops.lookup(s, "b1", "gpu", path, [0], op_id="b")
    s.stats()
    s.destroy("a")
    s.stats()
    s.destroy("b")
    s.stats()
    out = s.execute(cudasim_driver)
    assert_rows(out["a1"], arrays, [8, 1])
    assert_rows(out["b1"], arrays, [0])
    assert [st["registered_bytes"] for st in out.stats_history] == [file_bytes, file_bytes, 0]
    assert out.stats["registrations"] == 3  # the three files, once for both operators
    assert out.stats["pinned_bytes"] == 0 and out.stats["device_bytes"] == 0 and "warning" not in out.stderr


@pytest.mark.parametrize("device", [{"host_register_read_only": 0}, {"host_register_fails": 1}],
                         ids=["read-only-unsupported", "registration-refused"])
def test_host_memory_falls_back_to_a_pinned_copy(cudasim_driver, banks, device):
    path, arrays = banks["int32"]
    s = Session()
    for key, value in device.items():
        s.device(key, value)
    ops.lookup(s, "a", "gpu", path, [4, 4, 0], bank_memory="host")
    s.stats()
    out = s.execute(cudasim_driver)
    assert_rows(out["a"], arrays, [4, 4, 0])
    assert out.stats["pinned_bytes"] >= sum(a.nbytes for a in arrays.values())
    assert "relabel.lookup: warning: cannot page-lock the memory-mapped" in out.stderr
    assert "using a private pinned copy" in out.stderr


def test_a_bank_larger_than_the_gpu_fails_clearly_and_leaves_no_cuda_error(cudasim_driver, banks):
    path, arrays = banks["int16"]
    s = Session().device("memory", 100_000)  # smaller than the bank's ~140 kB
    ops.lookup(s, "device", "gpu", path, [1])
    ops.lookup(s, "host", "gpu", path, [1, 2], bank_memory="host")  # then a launch: no stale error
    ops.label_pool(s, "pool", "gpu", [arrays["scores"][0]], [arrays["classes"][0]],
                   [np.array([0.1, 0.1], np.float32)], [np.array([0.9, 0.9], np.float32)], num_classes=1000)
    out = s.execute(cudasim_driver)
    r = out["device"]
    assert r.status == "error"
    assert r.message.startswith(f"relabel.lookup: cannot copy the bank {os.path.realpath(path)} (")
    assert "cudaErrorMemoryAllocation: out of memory" in r.message
    assert r.message.endswith('Use bank_memory="host" to leave the bank in host memory and read it over the bus.')
    assert_rows(out["host"], arrays, [1, 2])
    out["pool"].expect_ok()


def test_row_errors_match_the_cpu_backend(cudasim_driver, banks, tmp_path):
    path, _ = banks["int16"]
    empty = tmp_path / "empty"
    write_bank(empty, n=0)
    s = Session()
    for backend in ("cpu", "gpu"):
        ops.lookup(s, f"range/{backend}", backend, path, [3, 40, 1])
        ops.lookup(s, f"negative/{backend}", backend, path, [0, -1], np.int64, ())
        ops.lookup(s, f"empty/{backend}", backend, empty, [0])
        s.op(f"op:float/{backend}", ops.LOOKUP, backend, bank=str(path), row=ops.TensorArg)
        s.run(f"float/{backend}", f"op:float/{backend}", arg_inputs={"row": [np.array([1.0], np.float32)]})
    out = s.execute(cudasim_driver)
    for name in ("range", "negative", "empty", "float"):
        cpu, gpu = out[f"{name}/cpu"], out[f"{name}/gpu"]
        assert cpu.status == gpu.status == "error" and gpu.message == cpu.message, name
    assert "sample 1: row 40 is out of range for the bank" in out["range/gpu"].message
    assert "which holds 0 samples" in out["empty/gpu"].message
    assert "row must be int32 or int64, got float" in out["float/gpu"].message
