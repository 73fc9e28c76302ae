"""fn.relabel.lookup: gathers label maps from a serving bank (CPU; GPU tests skip without CUDA).

Banks are written directly with numpy (bank_util.write_bank: np.save + bank.json, the format in FORMAT),
independently of dali_relabel.LabelBank, and every output is compared with numpy indexing. The
operator reads only the three .npy files; bank.json is the Python LabelBank's.
"""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path

import numpy as np
import pytest
from bank_util import write_bank
from conftest import LabelPoolRunner, requires_gpu
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nvidia.dali import fn, pipeline_def
from reference import random_box

# --- bank files -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bank16(tmp_path_factory):
    path = tmp_path_factory.mktemp("bank16")
    return path, write_bank(path, n=40, h=15, w=15, k=5, num_classes=1000, class_dtype=np.int16, seed=1)


@pytest.fixture(scope="module")
def bank32(tmp_path_factory):
    path = tmp_path_factory.mktemp("bank32")
    return path, write_bank(path, n=9, h=7, w=3, k=4, num_classes=40000, class_dtype=np.int32, seed=2)


@pytest.fixture(scope="module")
def bank_f32(tmp_path_factory):
    """float32 scores (a store of the official float32 release), whose values float16 would round."""
    path = tmp_path_factory.mktemp("bank_f32")
    arrays = write_bank(path, n=11, h=15, w=15, k=5, num_classes=1000, class_dtype=np.int16,
                        score_dtype=np.float32, seed=3)
    assert (arrays["scores"].astype(np.float16).astype(np.float32) != arrays["scores"]).mean() > 0.99
    return path, arrays


# --- running the operator -------------------------------------------------------------------------


def lookup_pipeline(bank: Path, batch_size: int, device: str = "cpu", **op_args):
    """A built pipeline: external source "index" -> lookup -> (scores, classes, label)."""

    @pipeline_def(batch_size=batch_size, num_threads=2, device_id=0 if device == "gpu" else None,
                  prefetch_queue_depth=1, exec_async=False, exec_pipelined=False)
    def pipe():
        index = fn.external_source(name="index")
        return tuple(fn.relabel.lookup(row=index, bank=str(bank), device=device, **op_args))

    p = pipe()
    p.build()
    return p


def run(p, indices) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Feeds a list of per-sample index arrays; returns stacked (scores, classes, label)."""
    p.feed_input("index", indices)
    outs = []
    for out in p.run():
        if hasattr(out, "as_cpu"):
            out = out.as_cpu()
        outs.append(np.stack([np.array(out[i]) for i in range(len(out))]))
    return tuple(outs)


def as_index(rows, dtype=np.int32, shape=(1,)):
    return [np.full(shape, r, dtype) for r in rows]


def assert_rows(out, arrays, rows):
    scores, classes, label = out
    rows = np.asarray(rows)
    assert scores.dtype == arrays["scores"].dtype and classes.dtype == arrays["classes"].dtype
    assert label.dtype == np.int32
    assert scores.shape == (len(rows), *arrays["scores"].shape[1:]) and label.shape == (len(rows),)
    # Bitwise equality (scores compared as raw bytes, so NaN-free or not, nothing is rounded).
    np.testing.assert_array_equal(scores.view(np.uint8), arrays["scores"][rows].view(np.uint8))
    np.testing.assert_array_equal(classes, arrays["classes"][rows])
    np.testing.assert_array_equal(label, arrays["labels"][rows])


# --- values ---------------------------------------------------------------------------------------

INDEX_KINDS = [(np.int32, (1,)), (np.int32, ()), (np.int64, ()), (np.int64, (1,))]


@pytest.mark.parametrize("index_dtype,index_shape", INDEX_KINDS, ids=lambda x: getattr(x, "__name__", str(x)))
@pytest.mark.parametrize("bank_name", ["bank16", "bank32", "bank_f32"])
def test_values_equal_numpy_indexing(request, bank_name, index_dtype, index_shape):
    path, arrays = request.getfixturevalue(bank_name)
    n = len(arrays["labels"])
    rng = np.random.default_rng(n)
    rows = [0, n - 1, *rng.integers(0, n, size=10), 0, n - 1]  # first/last row, repeats
    p = lookup_pipeline(path, batch_size=len(rows))
    assert_rows(run(p, as_index(rows, index_dtype, index_shape)), arrays, rows)
    # The same pipeline again with other rows and a smaller batch.
    rows = list(rng.permutation(n)[:5])
    assert_rows(run(p, as_index(rows, index_dtype, index_shape)), arrays, rows)


@pytest.fixture(scope="module")
def bank16_pipeline(bank16):
    return lookup_pipeline(bank16[0], batch_size=32)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.integers(0, 39), min_size=1, max_size=32))
def test_property_any_batch_of_rows(bank16, bank16_pipeline, rows):
    assert_rows(run(bank16_pipeline, as_index(rows)), bank16[1], rows)


def test_constant_index_selects_one_row_for_every_sample(bank32):
    path, arrays = bank32

    @pipeline_def(batch_size=3, num_threads=1, device_id=None)
    def pipe():
        return tuple(fn.relabel.lookup(row=7, bank=str(path)))

    p = pipe()
    p.build()
    out = [np.stack([np.array(t) for t in o]) for o in p.run()]
    assert_rows(out, arrays, [7, 7, 7])


def test_bank_memory_argument_is_accepted_on_cpu(bank32):
    path, arrays = bank32
    p = lookup_pipeline(path, batch_size=2, bank_memory="host")
    assert_rows(run(p, as_index([8, 1])), arrays, [8, 1])


def test_pipelines_share_one_mapping_per_process(tmp_path):
    """Two pipelines on one bank map its files once; the mapping goes with the last of them."""
    arrays = write_bank(tmp_path / "shared", n=5)

    def mappings():
        text = Path("/proc/self/maps").read_text()
        return sum(line.endswith(str(tmp_path / "shared" / "scores.npy")) for line in text.splitlines())

    assert mappings() == 0
    a = lookup_pipeline(tmp_path / "shared", batch_size=2)
    b = lookup_pipeline(tmp_path / ".." / tmp_path.name / "shared", batch_size=3)  # same bank, other spelling
    assert mappings() == 1
    assert_rows(run(a, as_index([4, 0])), arrays, [4, 0])
    assert_rows(run(b, as_index([1, 2, 3])), arrays, [1, 2, 3])
    del a
    gc.collect()
    assert mappings() == 1
    del b
    gc.collect()
    assert mappings() == 0


def test_a_bank_replaced_at_the_same_path_is_read_afresh(tmp_path):
    """Atomic replacement (new files) must not be served from the old process-wide mapping."""
    path = tmp_path / "bank"
    old = write_bank(path, n=6, seed=1)
    p_old = lookup_pipeline(path, batch_size=2)
    new = write_bank(tmp_path / "tmp", n=6, seed=2)
    os.rename(path, tmp_path / "retired")
    os.rename(tmp_path / "tmp", path)
    p_new = lookup_pipeline(path, batch_size=2)
    assert_rows(run(p_new, as_index([0, 5])), new, [0, 5])
    assert_rows(run(p_old, as_index([0, 5])), old, [0, 5])  # the old mapping stays valid


# --- with label_pool and the file reader ------------------------------------------------------------


@pytest.mark.parametrize("bank_name", ["bank16", "bank_f32"])
def test_lookup_feeds_label_pool_in_one_cpu_pipeline(request, bank_name):
    """lookup -> label_pool equals label_pool fed with the numpy-gathered maps (float16 and float32 scores)."""
    path, arrays = request.getfixturevalue(bank_name)
    n = len(arrays["labels"])
    rng = np.random.default_rng(5)
    rows = [0, n - 1, *rng.integers(0, n, size=14)]
    boxes = [random_box(rng) for _ in rows]
    starts, ends = [b[0] for b in boxes], [b[1] for b in boxes]

    @pipeline_def(batch_size=len(rows), num_threads=2, device_id=None, prefetch_queue_depth=1, exec_async=False,
                  exec_pipelined=False)
    def pipe():
        index = fn.external_source(name="index")
        start = fn.external_source(name="rel_start")
        end = fn.external_source(name="rel_end")
        scores, classes, label = fn.relabel.lookup(row=index, bank=str(path))
        return fn.relabel.label_pool(scores, classes, rel_start=start, rel_end=end, num_classes=1000), label

    p = pipe()
    p.build()
    p.feed_input("index", as_index(rows))
    p.feed_input("rel_start", starts)
    p.feed_input("rel_end", ends)
    targets, labels = p.run()
    targets = np.stack([np.array(t) for t in targets])
    expected = LabelPoolRunner("cpu", max_batch=len(rows), num_classes=1000)(
        list(arrays["scores"][rows]), list(arrays["classes"][rows]), starts, ends)
    np.testing.assert_array_equal(targets, expected)
    np.testing.assert_array_equal(np.stack([np.array(x) for x in labels]), arrays["labels"][rows])


def test_file_reader_labels_as_index(tmp_path, bank16):
    """fn.readers.file(file_list=...) labels (int32 [1]) index the bank: each image gets its row."""
    from PIL import Image

    path, arrays = bank16
    images = tmp_path / "images"
    (images / "n01").mkdir(parents=True)
    rng = np.random.default_rng(0)
    # File i maps to bank row rows[i] (not the file order, and a row may be shared).
    rows = [17, 0, 39, 5, 17, 23]
    names = [f"n01/img_{i}.jpg" for i in range(len(rows))]
    for i, name in enumerate(names):
        pixels = np.full((8 + i, 10, 3), 40 * i, np.uint8) + rng.integers(0, 10, (8 + i, 10, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / name, quality=90)
    (tmp_path / "list.txt").write_text("".join(f"{n} {r}\n" for n, r in zip(names, rows)))

    @pipeline_def(batch_size=3, num_threads=2, device_id=None)
    def pipe():
        jpegs, index = fn.readers.file(file_root=str(images), file_list=str(tmp_path / "list.txt"),
                                       random_shuffle=False, name="reader")
        image = fn.decoders.image(jpegs, device="cpu")
        scores, classes, label = fn.relabel.lookup(row=index, bank=str(path))
        return image.shape(), index, scores, classes, label

    p = pipe()
    p.build()
    seen = []
    for _ in range(2):  # one epoch: 6 files, batch 3
        shapes, index, scores, classes, label = (np.stack([np.array(t) for t in o]) for o in p.run())
        got_rows = index.reshape(-1)
        seen += list(got_rows)
        assert index.dtype == np.int32
        assert_rows((scores, classes, label), arrays, got_rows)
        # The decoded image heights identify the files: file i is 8 + i pixels high.
        np.testing.assert_array_equal(got_rows, [rows[h - 8] for h in shapes[:, 0]])
    assert seen == rows


# --- errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("rows,message", [
    ([3, 40, 1], r"sample 1: row 40 is out of range for the bank .*bank16.*, which holds 40 samples "
                 r"\(valid rows are 0\.\.39\); check that the rows"),
    ([0, 1, -1], r"sample 2: row -1 is out of range for the bank .* which holds 40 samples"),
    ([2**31 - 1, 0, 0], r"sample 0: row 2147483647 is out of range .* which holds 40 samples"),
])
def test_index_out_of_range_names_sample_index_and_bank_size(bank16, rows, message):
    p = lookup_pipeline(bank16[0], batch_size=3)
    with pytest.raises(Exception, match=r"relabel\.lookup: " + message):
        run(p, as_index(rows))


def test_int64_index_beyond_int32_is_out_of_range(bank16):
    p = lookup_pipeline(bank16[0], batch_size=1)
    with pytest.raises(Exception, match=r"sample 0: row 4294967296 is out of range .* holds 40 samples"):
        run(p, as_index([2**32], np.int64, ()))


@pytest.mark.parametrize("index,message", [
    ([np.array([1.0], np.float32)], r"row must be int32 or int64, got float; cast it with fn\.cast"),
    ([np.array([1], np.uint8)], r"row must be int32 or int64, got uint8"),
    ([np.array([1, 2], np.int32)], r"sample 0: row must be a scalar row number of shape \[\] or \[1\], got shape \[2\]"),
])
def test_bad_index_argument(bank16, index, message):
    p = lookup_pipeline(bank16[0], batch_size=1)
    with pytest.raises(Exception, match=r"relabel\.lookup: " + message):
        run(p, index)


def test_index_is_the_deprecated_name_of_row(bank32):
    path, arrays = bank32

    @pipeline_def(batch_size=2, num_threads=1, device_id=None)
    def pipe():
        return tuple(fn.relabel.lookup(index=fn.external_source(name="index"), bank=str(path)))

    with pytest.warns(DeprecationWarning, match=r"The argument `index` is a deprecated alias for `row`"):
        p = pipe()
    p.build()
    assert_rows(run(p, as_index([8, 1])), arrays, [8, 1])


def test_bad_bank_memory_value(bank16):
    with pytest.raises(Exception, match=r'relabel\.lookup: bank_memory must be "device" or "host", got "gpu"'):
        lookup_pipeline(bank16[0], batch_size=1, bank_memory="gpu")


def npy_bytes(array: np.ndarray, tmp: Path) -> bytes:
    np.save(tmp / "x.npy", array)
    return (tmp / "x.npy").read_bytes()


def corrupt_cases():
    """(name, how to break a good bank directory, expected message)."""

    def remove(name):
        return lambda d, a: (d / name).unlink()

    def write(name, data):
        return lambda d, a: (d / name).write_bytes(data(d, a) if callable(data) else data)

    def save(name, array):
        return lambda d, a: np.save(d / name, array(a))

    def truncate(name, drop):
        return lambda d, a: (d / name).write_bytes((d / name).read_bytes()[:-drop])

    F16, F32 = "float16 \\('<f2'\\)", "float32 \\('<f4'\\)"
    I16, I32 = "int16 \\('<i2'\\)", "int32 \\('<i4'\\)"
    return [
        ("missing-scores", remove("scores.npy"), r"bank/scores\.npy: missing; the bank directory is incomplete"),
        ("missing-classes", remove("classes.npy"), r"bank/classes\.npy: missing"),
        ("missing-labels", remove("labels.npy"), r"bank/labels\.npy: missing"),
        ("empty-scores", write("scores.npy", b""), r"bank/scores\.npy: not a \.npy file \(too short\)"),
        ("not-npy", write("classes.npy", b"PK\x03\x04 this is a zip file"),
         r"bank/classes\.npy: not a \.npy file \(bad magic bytes\)"),
        ("npy-version", write("labels.npy", b"\x93NUMPY\x09\x00" + b"\x00" * 20),
         r"bank/labels\.npy: unsupported \.npy format version 9\.0"),
        ("truncated-header", write("scores.npy", lambda d, a: (d / "scores.npy").read_bytes()[:40]),
         r"bank/scores\.npy: truncated \.npy header"),
        ("garbled-header", write("scores.npy", lambda d, a: (d / "scores.npy").read_bytes().replace(b"'shape'", b"'shapf'")),
         r"bank/scores\.npy: corrupt \.npy header \(unexpected key 'shapf'"),
        ("truncated-data", truncate("scores.npy", 7),
         r"bank/scores\.npy: holds \d+ bytes of array data but shape \(12, 4, 5, 3\) of float16 needs 1440 "
         r"\(the file is truncated\)"),
        ("trailing-data", lambda d, a: open(d / "classes.npy", "ab").write(b"\0" * 4),
         r"bank/classes\.npy: holds 1444 bytes .* needs 1440 \(the file is longer than its header says\)"),
        ("scores-float64", save("scores.npy", lambda a: a["scores"].astype(np.float64)),
         rf"bank/scores\.npy: dtype '<f8', expected {F16} or {F32}"),
        ("scores-big-endian", save("scores.npy", lambda a: a["scores"].astype(">f2")),
         rf"bank/scores\.npy: dtype '>f2', expected {F16} or {F32}"),
        ("classes-int64", save("classes.npy", lambda a: a["classes"].astype(np.int64)),
         rf"bank/classes\.npy: dtype '<i8', expected {I16} or {I32}"),
        ("labels-int64", save("labels.npy", lambda a: a["labels"].astype(np.int64)),
         rf"bank/labels\.npy: dtype '<i8', expected {I32}"),
        ("fortran", save("scores.npy", lambda a: np.asfortranarray(a["scores"])),
         r"bank/scores\.npy: the array is stored in Fortran order; the bank needs C order"),
        ("scores-3d", save("scores.npy", lambda a: a["scores"].reshape(12, 20, 3)),
         r"bank/scores\.npy: shape \(12, 20, 3\) has 3 dimensions, expected 4 \[N, H, W, K\]"),
        ("scores-empty-k", lambda d, a: [np.save(d / f"{x}.npy", a[x][..., :0]) for x in ("scores", "classes")],
         r"bank/scores\.npy: shape \(12, 4, 5, 0\) \[N, H, W, K\] is empty \(H, W and K must be >= 1\)"),
        ("scores-empty-h", lambda d, a: [np.save(d / f"{x}.npy", a[x][:, :0]) for x in ("scores", "classes")],
         r"bank/scores\.npy: shape \(12, 0, 5, 3\) \[N, H, W, K\] is empty"),
        # Cross-file consistency: scores.npy fixes [N, H, W, K]; classes and labels must agree with it.
        ("classes-k", save("classes.npy", lambda a: a["classes"][:, :, :, :2]),
         r"bank/classes\.npy: shape \(12, 4, 5, 2\) disagrees with scores\.npy shape \(12, 4, 5, 3\) "
         r"\(both are \[N, H, W, K\]\); recreate the bank with LabelStore\.materialize\(\)\."),
        ("classes-transposed", save("classes.npy", lambda a: np.ascontiguousarray(a["classes"].transpose(0, 2, 1, 3))),
         r"bank/classes\.npy: shape \(12, 5, 4, 3\) disagrees with scores\.npy shape \(12, 4, 5, 3\)"),
        ("classes-fewer-samples", save("classes.npy", lambda a: a["classes"][:11]),
         r"bank/classes\.npy: shape \(11, 4, 5, 3\) disagrees with scores\.npy shape \(12, 4, 5, 3\)"),
        ("scores-fewer-samples", save("scores.npy", lambda a: a["scores"][:11]),
         r"bank/classes\.npy: shape \(12, 4, 5, 3\) disagrees with scores\.npy shape \(11, 4, 5, 3\)"),
        ("labels-short", save("labels.npy", lambda a: a["labels"][:11]),
         r"bank/labels\.npy: shape \(11,\) disagrees with scores\.npy, which holds N=12 samples \(labels is \[N\]\); "
         r"recreate the bank with LabelStore\.materialize\(\)\."),
        ("labels-long", save("labels.npy", lambda a: np.concatenate([a["labels"], a["labels"][:1]])),
         r"bank/labels\.npy: shape \(13,\) disagrees with scores\.npy, which holds N=12 samples"),
        ("labels-2d", save("labels.npy", lambda a: a["labels"][:, None]),
         r"bank/labels\.npy: shape \(12, 1\) has 2 dimensions, expected 1 \[N\]"),
        ("arrays-of-an-empty-bank", lambda d, a: [np.save(d / f"{x}.npy", a[x][:0]) for x in ("scores", "classes")],
         r"bank/labels\.npy: shape \(12,\) disagrees with scores\.npy, which holds N=0 samples"),
    ]


@pytest.mark.parametrize("case", corrupt_cases(), ids=lambda c: c[0])
def test_broken_bank_names_the_file_and_the_problem(tmp_path, case):
    _, breaker, message = case
    arrays = write_bank(tmp_path / "bank")
    breaker(tmp_path / "bank", arrays)
    with pytest.raises(Exception, match=r"relabel\.lookup: .*" + message):
        lookup_pipeline(tmp_path / "bank", batch_size=1)


def test_operator_reads_only_the_npy_files(tmp_path):
    """bank.json is the Python LabelBank's: without it, or with metadata that disagrees with the
    arrays (int16 classes and num_classes > 32768 included), the operator serves the arrays."""
    arrays = write_bank(tmp_path / "no_json", n=4)
    (tmp_path / "no_json" / "bank.json").unlink()
    assert_rows(run(lookup_pipeline(tmp_path / "no_json", batch_size=2), as_index([3, 0])), arrays, [3, 0])
    arrays = write_bank(tmp_path / "odd_json", n=4)
    (tmp_path / "odd_json" / "bank.json").write_text('{"num_samples": 99, "num_classes": 40000, "k": "x"')
    assert_rows(run(lookup_pipeline(tmp_path / "odd_json", batch_size=2), as_index([1, 2])), arrays, [1, 2])


def test_bank_directory_missing_or_not_a_directory(tmp_path):
    with pytest.raises(Exception, match=r"relabel\.lookup: bank directory '.*nowhere' does not exist; create a "
                                        r"bank with LabelStore\.materialize\(\)"):
        lookup_pipeline(tmp_path / "nowhere", batch_size=1)
    (tmp_path / "file").write_text("x")
    with pytest.raises(Exception, match=r"relabel\.lookup: bank '.*file' is not a directory"):
        lookup_pipeline(tmp_path / "file", batch_size=1)


def test_empty_bank_rejects_every_row(tmp_path):
    write_bank(tmp_path / "empty", n=0)
    p = lookup_pipeline(tmp_path / "empty", batch_size=1)
    with pytest.raises(Exception, match=r"sample 0: row 0 is out of range .* which holds 0 samples"):
        run(p, as_index([0]))


# --- GPU ----------------------------------------------------------------------------------------------


@requires_gpu
@pytest.mark.parametrize("bank_memory", ["device", "host"])
@pytest.mark.parametrize("bank_name", ["bank16", "bank32", "bank_f32"])
def test_gpu_equals_cpu(request, bank_name, bank_memory):
    path, arrays = request.getfixturevalue(bank_name)
    n = len(arrays["labels"])
    rng = np.random.default_rng(3)
    cpu = lookup_pipeline(path, batch_size=16)
    # int32 [1] (the file reader's labels) and int64 []; one pipeline each (external_source fixes its dtype).
    kinds = [(np.int32, (1,)), (np.int64, ())]
    gpus = [lookup_pipeline(path, batch_size=16, device="gpu", bank_memory=bank_memory) for _ in kinds]
    for batch in ([0, n - 1, *rng.integers(0, n, 14)], list(rng.integers(0, n, 3))):
        want = run(cpu, as_index(batch))
        for gpu, (dtype, shape) in zip(gpus, kinds):
            got = run(gpu, as_index(batch, dtype, shape))
            for g, w in zip(got, want):
                assert g.dtype == w.dtype and g.shape == w.shape
                np.testing.assert_array_equal(g.view(np.uint8), w.view(np.uint8))
            assert_rows(got, arrays, batch)


def gpu_free_bytes() -> int:
    import torch

    free, _ = torch.cuda.mem_get_info(0)
    return free


def write_big_bank(path: Path) -> dict[str, np.ndarray]:
    """A ~400 MB bank (random values; distinct classes do not matter to lookup): large enough
    that a device copy stands out from DALI's own allocations in the GPU's free memory."""
    rng = np.random.default_rng(0)
    n, h, w, k = 2048, 64, 64, 8
    scores = rng.standard_normal((n, h, w, k), dtype=np.float32).astype(np.float16)
    classes = rng.integers(0, 50000, (n, h, w, k), dtype=np.int32)
    write_bank(path, n=1)  # bank.json etc., then the real arrays
    arrays = {"scores": scores, "classes": classes, "labels": rng.integers(-1, 50000, n, dtype=np.int32)}
    for name, array in arrays.items():
        np.save(path / f"{name}.npy", array)
    meta = json.loads((path / "bank.json").read_text())
    meta.update(num_samples=n, height=h, width=w, k=k, num_classes=50000)
    (path / "bank.json").write_text(json.dumps(meta))
    return arrays


@requires_gpu
def test_gpu_pipelines_share_one_device_copy(tmp_path):
    """A second pipeline on the same GPU reuses the first one's copy; the last one frees it."""
    arrays = write_big_bank(tmp_path / "big")
    bank_bytes = sum(a.nbytes for a in arrays.values())
    rows = [0, 2047, 1000, 5]
    gc.collect()
    free0 = gpu_free_bytes()
    a = lookup_pipeline(tmp_path / "big", batch_size=4, device="gpu")
    assert_rows(run(a, as_index(rows)), arrays, rows)
    free1 = gpu_free_bytes()
    assert free0 - free1 >= bank_bytes  # the first pipeline made the copy
    b = lookup_pipeline(tmp_path / "big", batch_size=4, device="gpu")
    assert_rows(run(b, as_index(rows[::-1])), arrays, rows[::-1])
    free2 = gpu_free_bytes()
    assert free1 - free2 < bank_bytes // 2, f"second pipeline used {(free1 - free2) / 2**20:.0f} MiB more"
    del a
    gc.collect()
    assert_rows(run(b, as_index(rows)), arrays, rows)  # b still holds the copy
    del b
    gc.collect()
    assert gpu_free_bytes() - free2 >= bank_bytes * 0.9  # freed with the last holder


@requires_gpu
def test_gpu_host_memory_makes_no_device_copy(tmp_path):
    arrays = write_big_bank(tmp_path / "big")
    bank_bytes = sum(a.nbytes for a in arrays.values())
    rows = [2047, 0, 77]
    gc.collect()
    free0 = gpu_free_bytes()
    p = lookup_pipeline(tmp_path / "big", batch_size=3, device="gpu", bank_memory="host")
    assert_rows(run(p, as_index(rows)), arrays, rows)
    q = lookup_pipeline(tmp_path / "big", batch_size=3, device="gpu", bank_memory="host")
    assert_rows(run(q, as_index(rows[::-1])), arrays, rows[::-1])
    assert free0 - gpu_free_bytes() < bank_bytes // 2


@requires_gpu
@pytest.mark.parametrize("bank_memory", ["device", "host"])
def test_gpu_index_out_of_range(bank16, bank_memory):
    p = lookup_pipeline(bank16[0], batch_size=2, device="gpu", bank_memory=bank_memory)
    with pytest.raises(Exception, match=r"relabel\.lookup: sample 1: index 40 is out of range .* holds 40 samples"):
        run(p, as_index([0, 40]))
