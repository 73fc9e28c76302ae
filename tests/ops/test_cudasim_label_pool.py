"""fn.relabel.label_pool's CUDA backend (kernel + RunImpl, unmodified) run on the CPU by cudasim.

Every case runs both backends' real SetupImpl/RunImpl in the cudasim driver: the GPU output must
equal the CPU backend's to 1e-6 and the float64 reference (tests/reference.py) to the CPU tests'
tolerance; errors must carry the CPU backend's message word for word. See docs/CUDASIM.md.
"""

from __future__ import annotations

import functools
import itertools
import re

import numpy as np
import pytest
from label_pool_cases import (
    BAD_INPUT_IDS,
    BAD_INPUTS,
    MODES,
    SCORE_CLASS_DTYPES,
    assert_close,
    far_edge_batch,
    far_edge_non_square_batch,
    good_sample,
    make_batch,
    torchvision_reference,
    two_samples_with,
)
from reference import random_box, random_label_map, slow_label_pool, slow_pooled_logits

from cudasim import ops
from cudasim.harness import Session

pytestmark = pytest.mark.cudasim

# z[] in shared memory (10, 1000) and, for ImageNet-21k on a device without opt-in room, in global
# scratch: 21843 fits the H200's 227 KiB, so the matrix runs on a 64 KiB (T4-like) device too.
NUM_CLASSES = [10, 1000, 21843]
DTYPE_IDS = {d: f"{d[0].__name__}-{d[1].__name__}" for d in SCORE_CLASS_DTYPES}


def assert_gpu_equals_cpu(gpu: np.ndarray, cpu: np.ndarray) -> None:
    assert gpu.shape == cpu.shape and gpu.dtype == np.float32
    assert np.all(np.isfinite(gpu)), "the GPU output has non-finite values (an unwritten or NaN-filled element?)"
    assert np.abs(gpu.astype(np.float64) - cpu).max() <= 1e-6


def targets(z: np.ndarray, label_type: str, output: str, temperature: float = 1.0) -> np.ndarray:
    """label_pool's definition applied to float64 pooled logits z [C] (as in reference.slow_label_pool)."""
    if output == "logits":
        return z
    if label_type.endswith("single"):
        one_hot = np.zeros_like(z)
        one_hot[np.argmax(z)] = 1.0  # the first maximum, like torch.argmax
        return one_hot
    e = np.exp((z - z.max()) / temperature)
    return e / e.sum()


# --- the matrix: every mode x dtype pair x C ---------------------------------------------------------

MATRIX = list(itertools.product(MODES, SCORE_CLASS_DTYPES, NUM_CLASSES))


def _matrix_id(case) -> str:
    (label_type, output), dtypes, c = case
    return f"{label_type}-{output}-{DTYPE_IDS[dtypes]}-C{c}"


def _matrix_batch(dtypes, c):
    return make_batch(100 + c, 15, 15, 5, c, *dtypes, n_random=3)


@pytest.fixture(scope="module")
def matrix_run(cudasim_driver):
    s = Session()
    for case in MATRIX:
        (label_type, output), dtypes, c = case
        ops.label_pool_both(s, _matrix_id(case), _matrix_batch(dtypes, c), num_classes=c, label_type=label_type,
                            output=output)
    return s.execute(cudasim_driver)


@functools.cache
def _reference_logits(score_dtype, c: int, whole_map: bool) -> np.ndarray:
    """Float64 pooled logits [B, C] of the matrix batch (class dtype does not change them)."""
    scores, classes, starts, ends = _matrix_batch((score_dtype, np.int32), c)
    if whole_map:
        starts, ends = [(0.0, 0.0)] * len(scores), [(1.0, 1.0)] * len(scores)
    return np.stack([slow_pooled_logits(*sample, c) for sample in zip(scores, classes, starts, ends)])


@pytest.mark.parametrize("case", MATRIX, ids=_matrix_id)
def test_matches_cpu_backend_and_float64_reference(matrix_run, case):
    (label_type, output), dtypes, c = case
    cpu, gpu = ops.pair(matrix_run, _matrix_id(case))
    assert_gpu_equals_cpu(gpu, cpu)
    z = _reference_logits(dtypes[0], c, label_type.startswith("global"))
    ref = np.stack([targets(zi, label_type, output) for zi in z])
    if output == "logits":
        np.testing.assert_allclose(gpu, ref, rtol=1e-6, atol=1e-5)
    else:
        assert_close(gpu, ref)
    # Where z[] lived: shared memory for every C on the (default) H200 profile.
    (launch,) = matrix_run[f"{_matrix_id(case)}/gpu"].launches
    assert "kSharedZ = true" in launch.kernel and launch.dynamic_shared == (15 + 15 + c) * 8
    assert launch.block == (256, 1, 1) and launch.grid == (len(cpu), 1, 1)


def test_global_scratch_path_on_a_small_shared_memory_device(cudasim_driver):
    """On a device with 64 KiB of opt-in shared memory, C = 21843 takes the global z[] path."""
    s = Session().device("profile", "t4")
    for dtypes in SCORE_CLASS_DTYPES:
        for label_type, output in MODES:
            ops.label_pool_both(s, f"{DTYPE_IDS[dtypes]}-{label_type}-{output}",
                                make_batch(7, 12, 7, 5, 21843, *dtypes, n_random=2), num_classes=21843,
                                label_type=label_type, output=output)
    out = s.execute(cudasim_driver)
    for dtypes in SCORE_CLASS_DTYPES:
        for label_type, output in MODES:
            tag = f"{DTYPE_IDS[dtypes]}-{label_type}-{output}"
            cpu, gpu = ops.pair(out, tag)
            assert_gpu_equals_cpu(gpu, cpu)
            (launch,) = out[f"{tag}/gpu"].launches
            assert "kSharedZ = false" in launch.kernel and launch.dynamic_shared == (12 + 7) * 8
    batch = make_batch(7, 12, 7, 5, 21843, n_random=2)
    assert_close(ops.pair(out, "float32-int32-localized_multi-probabilities")[1],
                 torchvision_reference(*batch, 21843))


# --- options, shapes, boxes ---------------------------------------------------------------------------


@pytest.mark.parametrize("op_args", [dict(temperature=0.25), dict(temperature=2.0), dict(transpose_box=True),
                                     dict(validate=False), dict(transpose_box=True, label_type="localized_single")],
                         ids=lambda a: "-".join(f"{k}={v}" for k, v in a.items()))
def test_options_match_cpu_and_reference(cudasim_driver, op_args):
    batch = make_batch(17, 15, 15, 5, 1000)
    s = Session()
    ops.label_pool_both(s, "x", batch, num_classes=1000, **op_args)
    cpu, gpu = ops.pair(s.execute(cudasim_driver), "x")
    assert_gpu_equals_cpu(gpu, cpu)
    ref = np.stack([slow_label_pool(*sample, 1000, temperature=op_args.get("temperature", 1.0),
                                    transpose_box=op_args.get("transpose_box", False),
                                    label_type=op_args.get("label_type", "localized_multi"))
                    for sample in zip(*batch)])
    assert_close(gpu, ref)


def _random_shapes_batch(seed: int, n: int, max_side: int, max_k: int, c: int):
    rng = np.random.default_rng(seed)
    scores, classes, starts, ends = [], [], [], []
    for _ in range(n):
        h, w, k = rng.integers(1, max_side + 1), rng.integers(1, max_side + 1), rng.integers(1, max_k + 1)
        s, cl = random_label_map(rng, h, w, k, c)
        a, b = random_box(rng)
        scores.append(s), classes.append(cl), starts.append(a), ends.append(b)
    return scores, classes, starts, ends


def test_mixed_map_shapes_in_one_batch(cudasim_driver):
    """Samples of different [H, W, K] in one launch (the CPU tests' shapes, and 48 random ones)."""
    rng = np.random.default_rng(3)
    fixed = [(15, 15, 5), (7, 9, 3), (1, 4, 1), (20, 11, 8)]
    scores, classes = zip(*[random_label_map(rng, h, w, k, 100) for h, w, k in fixed])
    starts, ends = zip(*[random_box(rng) for _ in fixed])
    s = Session()
    ops.label_pool_both(s, "fixed", (scores, classes, starts, ends), num_classes=100)
    random_batch = _random_shapes_batch(9, 48, 20, 8, 1000)
    ops.label_pool_both(s, "random", random_batch, num_classes=1000)
    out = s.execute(cudasim_driver)
    cpu, gpu = ops.pair(out, "fixed")
    assert_gpu_equals_cpu(gpu, cpu)
    assert_close(gpu, np.stack([slow_label_pool(*x, 100) for x in zip(scores, classes, starts, ends)]))
    cpu, gpu = ops.pair(out, "random")
    assert_gpu_equals_cpu(gpu, cpu)
    (launch,) = out["random/gpu"].launches
    max_h, max_w = max(x.shape[0] for x in random_batch[0]), max(x.shape[1] for x in random_batch[0])
    assert launch.dynamic_shared == (max_h + max_w + 1000) * 8  # sized by the largest map


def test_sample_exactly_on_the_far_edge_with_the_official_geometry(cudasim_driver):
    batch = far_edge_non_square_batch()
    s = Session()
    ops.label_pool_both(s, "edge", batch, num_classes=50, output="logits", transpose_box=True)
    cpu, gpu = ops.pair(s.execute(cudasim_driver), "edge")
    assert_gpu_equals_cpu(gpu, cpu)
    ref = np.stack([slow_label_pool(*x, 50, output="logits", transpose_box=True) for x in zip(*batch)])
    np.testing.assert_allclose(gpu, ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("op_args", [dict(), dict(transpose_box=True)], ids=["default", "transpose_box"])
def test_boxes_at_the_far_edge_match_torchvision(cudasim_driver, op_args):
    batch = far_edge_batch()
    s = Session()
    ops.label_pool_both(s, "edge", batch, num_classes=50, output="logits", **op_args)
    cpu, gpu = ops.pair(s.execute(cudasim_driver), "edge")
    assert_gpu_equals_cpu(gpu, cpu)
    ref = np.stack([slow_label_pool(*x, 50, output="logits", **op_args) for x in zip(*batch)])
    np.testing.assert_allclose(gpu, ref, rtol=1e-6, atol=1e-6)
    if not op_args:
        probs = torchvision_reference(*batch, 50)
        np.testing.assert_allclose(targets(gpu[0].astype(np.float64), "localized_multi", "probabilities"), probs[0],
                                   rtol=1e-5, atol=1e-7)


def test_softmax_when_every_class_is_touched(cudasim_driver):
    """num_classes == K, all logits near -120: no implicit zeros, so max(z) is the max of the stored
    logits; starting it at 0 would underflow every exp to 0 (kills that mutant, both backends)."""
    k = 5
    scores = [np.full((4, 4, k), -120.0, np.float32) + np.arange(k, dtype=np.float32) * 0.5]
    classes = [np.broadcast_to(np.arange(k, dtype=np.int32), (4, 4, k)).copy()]
    starts, ends = [np.array([0.1, 0.2], np.float32)], [np.array([0.8, 0.9], np.float32)]
    s = Session()
    ops.label_pool_both(s, "touched", (scores, classes, starts, ends), num_classes=k)
    cpu, gpu = ops.pair(s.execute(cudasim_driver), "touched")
    for out in (cpu, gpu):
        assert np.all(np.isfinite(out)) and abs(out.sum() - 1) < 1e-6
    assert_gpu_equals_cpu(gpu, cpu)
    assert_close(gpu, slow_label_pool(scores[0], classes[0], starts[0], ends[0], k)[None])


def test_cpu_backend_in_the_simulator_equals_dali(cudasim_driver, label_pool_runner):
    """The DALI stand-ins run the CPU backend exactly as DALI does (so the comparisons above are fair)."""
    batch = make_batch(5, 15, 15, 5, 1000, np.float16, np.int16)
    s = Session()
    ops.label_pool(s, "cpu", "cpu", *batch, num_classes=1000, temperature=0.5)
    sim = ops.stacked(s.execute(cudasim_driver)["cpu"])
    np.testing.assert_array_equal(sim, label_pool_runner(num_classes=1000, temperature=0.5)(*batch))


# --- validation and errors -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def errors_run(cudasim_driver):
    s = Session()
    for (changes, _), name in zip(BAD_INPUTS, BAD_INPUT_IDS):
        ops.label_pool_both(s, name, two_samples_with(**changes), num_classes=10)
    return s.execute(cudasim_driver)


@pytest.mark.parametrize("name,message", [(n, m) for (_, m), n in zip(BAD_INPUTS, BAD_INPUT_IDS)],
                         ids=BAD_INPUT_IDS)
def test_bad_input_fails_with_the_cpu_backends_message(errors_run, name, message):
    cpu, gpu = errors_run[f"{name}/cpu"], errors_run[f"{name}/gpu"]
    assert cpu.status == "error" and gpu.status == "error", (cpu, gpu)
    assert gpu.message == cpu.message
    assert re.search(r"^relabel\.label_pool: " + message, gpu.message), gpu.message


def test_bad_arguments_fail_like_on_the_cpu(cudasim_driver):
    s = Session()
    sample = [[x] for x in good_sample()]
    cases = {"label_type": dict(label_type="local"), "output": dict(output="probs"),
             "single-logits": dict(label_type="global_single", output="logits"), "zero-classes": dict(num_classes=0),
             "temperature": dict(temperature=0.0)}
    for name, args in cases.items():
        ops.label_pool_both(s, name, sample, **{"num_classes": 10, **args})
    bad_dtype = [[x.astype(np.float64) if i == 0 else x] for i, x in enumerate(good_sample())]
    ops.label_pool_both(s, "dtype", bad_dtype, num_classes=10)
    for backend in ("cpu", "gpu"):
        ops.label_pool(s, f"nobox/{backend}", backend, sample[0], sample[1], num_classes=10)
    out = s.execute(cudasim_driver)
    for name in [*cases, "dtype", "nobox"]:
        cpu, gpu = out[f"{name}/cpu"], out[f"{name}/gpu"]
        assert cpu.status == gpu.status == "error" and gpu.message == cpu.message
        assert gpu.message.startswith("relabel.label_pool: ")
    assert "scores must be float16 or float32, got double" in out["dtype/gpu"].message
    assert "rel_start and rel_end are required" in out["nobox/gpu"].message


def test_validate_false_ignores_invalid_entries(cudasim_driver):
    s, c, a, b = good_sample()
    bad_c, bad_s = c.copy(), s.copy()
    bad_c[1, 1, 0] = 99
    bad_c[0, 2, 1] = -3
    bad_s[2, 3, 1] = np.nan
    bad_s[0, 0, 0] = np.inf
    session = Session()
    ops.label_pool_both(session, "v", ([bad_s], [bad_c], [a], [b]), num_classes=10, validate=False)
    cpu, gpu = ops.pair(session.execute(cudasim_driver), "v")
    assert_gpu_equals_cpu(gpu, cpu)
    clean = s.copy()
    clean[1, 1, 0] = clean[0, 2, 1] = clean[2, 3, 1] = clean[0, 0, 0] = 0  # score 0 adds nothing
    assert_close(gpu[0], slow_label_pool(clean, c, a, b, 10))


# --- the shared-memory budget at its boundaries -----------------------------------------------------------


def _budget_batch(c: int):
    """Two samples whose largest map is 15 x 15 (so row + column weights take 30 doubles)."""
    rng = np.random.default_rng(c)
    maps = [random_label_map(rng, 15, 15, 5, c), random_label_map(rng, 9, 4, 3, c)]
    boxes = [random_box(rng) for _ in maps]
    return [m[0] for m in maps], [m[1] for m in maps], [x[0] for x in boxes], [x[1] for x in boxes]


STATIC_SHARED = ops.LABEL_POOL_STATIC_SHARED
H200_OPTIN, T4_OPTIN, DEFAULT_LIMIT = 232448, 65536, 48 * 1024


def _classes_at(limit: int) -> int:
    """The largest C whose z[] (plus 30 weights) fits `limit` bytes of shared memory per block."""
    return (limit - STATIC_SHARED) // 8 - 30


@pytest.mark.parametrize("profile,limit", [("h200", H200_OPTIN), ("t4", T4_OPTIN)])
def test_shared_z_up_to_the_devices_opt_in_limit(cudasim_driver, profile, limit):
    """One class below, at and above the largest z[] that fits: shared, shared, global; all correct."""
    top = _classes_at(limit)
    s = Session().device("profile", profile)
    for c in (top - 1, top, top + 1):
        ops.label_pool_both(s, f"C{c}", _budget_batch(c), num_classes=c)
    out = s.execute(cudasim_driver)
    for c in (top - 1, top, top + 1):
        cpu, gpu = ops.pair(out, f"C{c}")
        assert_gpu_equals_cpu(gpu, cpu)
        (launch,) = out[f"C{c}/gpu"].launches
        shared = c <= top
        assert (f"kSharedZ = {str(shared).lower()}" in launch.kernel), (c, launch)
        assert launch.dynamic_shared == (30 + c) * 8 if shared else 30 * 8
        assert launch.status == "cudaSuccess"
    assert (30 + top) * 8 + STATIC_SHARED <= limit < (30 + top + 1) * 8 + STATIC_SHARED


def test_opt_in_above_48_kib_and_the_old_budget_bug(cudasim_driver):
    """z[] up to 48 KiB minus the static part launches without opt-in; one class more needs it.

    The old RunImpl budgeted 48 KiB for the dynamic part alone, so max_h + max_w + C between 6123 and
    6144 launched 176 B over the default limit (cudaErrorInvalidValue on a GPU): C = 6114 here.
    """
    no_opt_in = _classes_at(DEFAULT_LIMIT)
    s = Session()
    for c in (no_opt_in, no_opt_in + 1, 6114):
        s.stats()
        ops.label_pool_both(s, f"C{c}", _budget_batch(c), num_classes=c)
    s.stats()
    out = s.execute(cudasim_driver)
    for c in (no_opt_in, no_opt_in + 1, 6114):
        cpu, gpu = ops.pair(out, f"C{c}")
        assert_gpu_equals_cpu(gpu, cpu)
        (launch,) = out[f"C{c}/gpu"].launches
        assert "kSharedZ = true" in launch.kernel and launch.status == "cudaSuccess"
    assert (30 + no_opt_in) * 8 + STATIC_SHARED <= DEFAULT_LIMIT < (31 + no_opt_in) * 8 + STATIC_SHARED


def test_opt_in_is_requested_only_above_the_default_limit(cudasim_driver):
    no_opt_in = _classes_at(DEFAULT_LIMIT)
    counts = []
    for c in (no_opt_in, no_opt_in + 1):
        s = Session()
        ops.label_pool(s, "gpu", "gpu", *_budget_batch(c), num_classes=c)
        s.stats()
        out = s.execute(cudasim_driver)
        out["gpu"].expect_ok()
        counts.append(out.stats["func_set_attribute"])
    assert counts == [0, 1]


def test_maps_too_large_for_shared_memory_fail_clearly(cudasim_driver):
    """Row and column weights live in shared memory: maps beyond the device's limit are refused."""
    rng = np.random.default_rng(2)
    small_device = 4096  # bytes of opt-in shared memory: weights of up to 490 rows + columns
    fits = random_label_map(rng, 250, 200, 1, 10)
    too_big = random_label_map(rng, 300, 200, 1, 10)
    box = ([np.array([0.1, 0.2], np.float32)], [np.array([0.7, 0.9], np.float32)])
    s = Session().device("shared_optin", small_device)
    ops.label_pool_both(s, "fits", ([fits[0]], [fits[1]], *box), num_classes=10)
    ops.label_pool(s, "too-big", "gpu", [too_big[0]], [too_big[1]], *box, num_classes=10)
    out = s.execute(cudasim_driver)
    cpu, gpu = ops.pair(out, "fits")
    assert_gpu_equals_cpu(gpu, cpu)
    r = out["too-big"]
    assert r.status == "error"
    assert r.message == ("relabel.label_pool: label maps of up to 300 x 200 cells are too large for the GPU backend: "
                         f"their RoIAlign weights need 4000 bytes of shared memory and this GPU allows "
                         f"{small_device - STATIC_SHARED} per block. Use the CPU backend, or smaller maps.")
