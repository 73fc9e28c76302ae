"""fn.relabel.label_pool on the GPU: the same cases as on the CPU, compared with the CPU backend.

Runs where DALI sees a CUDA GPU and the plugin has its CUDA backend; skipped with the reason otherwise.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import requires_gpu
from label_pool_cases import (
    BAD_INPUT_IDS,
    BAD_INPUTS,
    SCORE_CLASS_DTYPES,
    good_sample,
    make_batch,
    run_once,
    torchvision_reference,
    two_samples_with,
)
from reference import random_box, random_label_map

pytestmark = requires_gpu


@pytest.mark.parametrize("h,w,k,num_classes", [
    (15, 15, 5, 1000),     # z[] in shared memory
    (15, 15, 1, 10),
    (7, 12, 10, 1000),
    (12, 7, 5, 21843),     # z[] in global scratch (too large for 48 KiB of shared memory)
    (3, 5, 10, 10),
    (1, 1, 5, 10),
])
@pytest.mark.parametrize("dtypes", SCORE_CLASS_DTYPES, ids=lambda d: f"{d[0].__name__}-{d[1].__name__}")
def test_gpu_matches_cpu(label_pool_runner, h, w, k, num_classes, dtypes):
    batch = make_batch(h * 1000 + w * 10 + k, h, w, k, num_classes, *dtypes)
    gpu = label_pool_runner("gpu", num_classes=num_classes)(*batch)
    cpu = label_pool_runner("cpu", num_classes=num_classes)(*batch)
    np.testing.assert_allclose(gpu, cpu, rtol=1e-5, atol=1e-6)
    assert np.abs(gpu - cpu).max() <= 1e-6
    np.testing.assert_allclose(gpu, torchvision_reference(*batch, num_classes), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("op_args", [dict(temperature=0.3), dict(transpose_box=True), dict(validate=False)])
def test_gpu_matches_cpu_with_options(label_pool_runner, op_args):
    batch = make_batch(17, 15, 15, 5, 1000)
    gpu = label_pool_runner("gpu", num_classes=1000, **op_args)(*batch)
    cpu = label_pool_runner("cpu", num_classes=1000, **op_args)(*batch)
    assert np.abs(gpu - cpu).max() <= 1e-6


def test_gpu_large_batch_mixed_shapes(label_pool_runner):
    rng = np.random.default_rng(9)
    scores, classes, starts, ends = [], [], [], []
    for i in range(64):
        h, w, k = rng.integers(1, 20), rng.integers(1, 20), rng.integers(1, 8)
        s, c = random_label_map(rng, h, w, k, 1000)
        a, b = random_box(rng)
        scores.append(s), classes.append(c), starts.append(a), ends.append(b)
    gpu = label_pool_runner("gpu", num_classes=1000)(scores, classes, starts, ends)
    cpu = label_pool_runner("cpu", num_classes=1000)(scores, classes, starts, ends)
    assert np.abs(gpu - cpu).max() <= 1e-6


@pytest.mark.parametrize("changes,message", BAD_INPUTS, ids=BAD_INPUT_IDS)
def test_gpu_bad_input_names_the_sample_and_the_problem(changes, message):
    with pytest.raises(Exception, match=r"relabel\.label_pool: " + message):
        run_once(*two_samples_with(**changes), device="gpu")


def test_gpu_validate_false_ignores_invalid_entries():
    s, c, a, b = good_sample()
    bad = c.copy()
    bad[1, 1, 0] = 99
    gpu = run_once([s], [bad], [a], [b], device="gpu", validate=False)
    cpu = run_once([s], [bad], [a], [b], validate=False)
    assert np.abs(gpu - cpu).max() <= 1e-6


@pytest.mark.parametrize("op_args", [
    dict(label_type="localized_single"), dict(label_type="global_multi"), dict(label_type="global_single"),
    dict(output="logits"), dict(label_type="global_multi", output="logits"),
], ids=lambda a: "-".join(f"{v}" for v in a.values()))
@pytest.mark.parametrize("num_classes", [1000, 21843])
def test_gpu_label_types_and_logits_match_cpu(label_pool_runner, op_args, num_classes):
    batch = make_batch(23, 15, 15, 5, num_classes)
    gpu = label_pool_runner("gpu", num_classes=num_classes, **op_args)(*batch)
    cpu = label_pool_runner("cpu", num_classes=num_classes, **op_args)(*batch)
    np.testing.assert_allclose(gpu, cpu, rtol=1e-6, atol=1e-6)
