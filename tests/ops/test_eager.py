"""The label operators run eagerly (DALI dynamic mode) on torch tensors: BankPooling, pool_maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from bank_util import make_bank
from conftest import requires_gpu
from reference import random_box, random_label_map, slow_label_pool, slow_pooled_logits
from store_util import run_python

from dali_relabel.ops.eager import BankPooling, pool_maps


@pytest.fixture(scope="module")
def maps_and_bank(tmp_path_factory):
    rng = np.random.default_rng(2)
    maps = [random_label_map(rng, 15, 15, 5, 50, np.float16, np.int16) for _ in range(5)]
    return maps, make_bank(tmp_path_factory.mktemp("bank"), maps, 50)


def boxes_for(n, seed=0):
    rng = np.random.default_rng(seed)
    pairs = [random_box(rng) for _ in range(n)]
    return np.stack([a for a, _ in pairs]), np.stack([b for _, b in pairs])


def test_bank_pooling_gives_the_pooled_logits(maps_and_bank):
    maps, bank = maps_and_bank
    rows = np.array([4, 0, 0, 2, 3, 1, 4])
    starts, ends = boxes_for(len(rows))
    z = BankPooling(bank).logits(torch.from_numpy(rows), torch.from_numpy(starts), torch.from_numpy(ends))
    assert z.shape == (7, 50) and z.dtype == torch.float32 and z.device.type == "cpu"
    ref = np.stack([slow_pooled_logits(*maps[r], s, e, 50) for r, s, e in zip(rows, starts, ends)])
    np.testing.assert_allclose(z.numpy(), ref, rtol=1e-6, atol=1e-5)
    transposed = BankPooling(str(bank.path), transpose_box=True).logits(rows, starts, ends)
    ref_t = np.stack([slow_pooled_logits(*maps[r], s, e, 50, transpose_box=True) for r, s, e in zip(rows, starts, ends)])
    np.testing.assert_allclose(transposed.numpy(), ref_t, rtol=1e-6, atol=1e-5)
    assert BankPooling(bank).logits([], np.zeros((0, 2)), np.zeros((0, 2))).shape == (0, 50)


def test_bank_pooling_names_a_bad_row(maps_and_bank):
    _, bank = maps_and_bank
    starts, ends = boxes_for(3)
    with pytest.raises(IndexError, match=r"sample 1: row 5 is outside the bank .*, which holds 5 label maps \(rows 0..4\)"):
        BankPooling(bank).logits([0, 5, 1], starts, ends)


def test_pool_maps_on_host_maps(maps_and_bank):
    maps, _ = maps_and_bank
    starts, ends = boxes_for(5, seed=1)
    out = pool_maps([m[0] for m in maps], [m[1] for m in maps], starts, ends, num_classes=50, temperature=2.0)
    ref = np.stack([slow_label_pool(*m, s, e, 50, temperature=2.0) for m, s, e in zip(maps, starts, ends)])
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5, atol=1e-7)


def test_dynamic_mode_imported_before_the_plugin():
    """The dynamic API builds its op table at import; ops loaded later must still be reachable."""
    run_python("""
        import numpy as np
        import nvidia.dali.experimental.dynamic as ndd
        from dali_relabel.ops.eager import dynamic_api, pool_maps
        s, c = np.ones((2, 2, 1), np.float32), np.zeros((2, 2, 1), np.int32)
        out = pool_maps([s], [c], [[0, 0]], [[1, 1]], num_classes=2)
        assert dynamic_api() is ndd and abs(float(out[0, 0]) - np.e / (np.e + 1)) < 1e-6, out
    """)


@requires_gpu
def test_bank_pooling_on_the_gpu(maps_and_bank):
    maps, bank = maps_and_bank
    rows = np.array([4, 0, 2, 3, 1])
    starts, ends = boxes_for(len(rows), seed=3)
    pooling = BankPooling(bank)
    cpu = pooling.logits(rows, starts, ends)
    for memory in ("device", "host"):
        gpu = BankPooling(bank, bank_memory=memory).logits(rows, starts, ends, device="cuda")
        assert gpu.is_cuda
        np.testing.assert_allclose(gpu.cpu().numpy(), cpu.numpy(), rtol=1e-6, atol=1e-5)
    # On a side stream: the result is ordered on torch's current stream there.
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        z = pooling.logits(rows, starts, ends, device="cuda") * 2
    side.synchronize()
    np.testing.assert_allclose(z.cpu().numpy(), 2 * cpu.numpy(), rtol=1e-6, atol=2e-5)
