"""The epoch plans (dali_relabel.loader.epochs): partition across ranks, equal steps, policies, seeds."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dali_relabel.loader.epochs import epoch_order, plan_epoch, steps_per_epoch


def plans(n, b, w, policy, epoch=0, seed=7, shuffle=True, base_order=None):
    return [plan_epoch(num_samples=n, batch_size=b, epoch=epoch, seed=seed, shuffle=shuffle, rank=r, world_size=w,
                       last_batch=policy, base_order=base_order) for r in range(w)]


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 200), b=st.integers(1, 17), w=st.integers(1, 5), epoch=st.integers(0, 3))
def test_partial_epochs_read_every_image_once_in_equal_steps(n, b, w, epoch):
    ps = plans(n, b, w, "partial", epoch)
    valid = Counter(int(s) for p in ps for s in p.samples[p.valid])
    assert valid == Counter(range(n))                                        # each image exactly once
    assert {p.num_batches for p in ps} == {steps_per_epoch(n, b, w, "partial")}   # ranks stay in step
    assert steps_per_epoch(n, b, w, "partial") == -(-n // (w * b))
    padding = sum(int((~p.valid).sum()) for p in ps)
    rest = n % (w * b)
    assert padding == (w - rest if 0 < rest < w else 0)                      # padding only when unavoidable
    for p in ps:                                                             # padding only in the last batch
        assert p.valid[: (p.num_batches - 1) * b].all() and (~p.valid).sum() <= 1


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 200), b=st.integers(1, 17), w=st.integers(1, 5))
def test_fill_completes_every_batch_and_drop_keeps_only_full_ones(n, b, w):
    fill = plans(n, b, w, "fill")
    assert all(len(p.samples) == p.num_batches * b for p in fill)
    assert Counter(int(s) for p in fill for s in p.samples[p.valid]) == Counter(range(n))
    drop = plans(n, b, w, "drop")
    full = n // (w * b)
    assert all(p.num_batches == full and len(p.samples) == full * b and p.valid.all() for p in drop)
    dropped = set(range(n)) - {int(s) for p in drop for s in p.samples}
    assert len(dropped) == n - full * w * b


def test_the_order_depends_on_seed_and_epoch_only():
    a = epoch_order(1000, seed=1, epoch=0, shuffle=True)
    assert np.array_equal(a, epoch_order(1000, seed=1, epoch=0, shuffle=True))
    assert not np.array_equal(a, epoch_order(1000, seed=2, epoch=0, shuffle=True))
    assert not np.array_equal(a, epoch_order(1000, seed=1, epoch=1, shuffle=True))
    assert sorted(a) == list(range(1000))
    base = np.arange(1000)[::-1]
    assert np.array_equal(epoch_order(1000, seed=1, epoch=3, shuffle=False, base_order=base), base)


@pytest.mark.parametrize("w", [2, 3])
def test_ranks_read_interleaved_positions_of_one_order(w):
    """Step s of all ranks covers positions [s·W·B, (s+1)·W·B) of the epoch's single order."""
    n, b = 50, 4
    order = epoch_order(n, seed=7, epoch=2, shuffle=True)
    ps = plans(n, b, w, "partial", epoch=2)
    for step in range(ps[0].num_batches):
        got = sorted(int(s) for p in ps for s in p.samples[p.batch(step)][p.valid[p.batch(step)]])
        assert got == sorted(order[step * w * b:(step + 1) * w * b].tolist())
