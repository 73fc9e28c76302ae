"""epochs.grouped_order: the shard epochs' order (tars in turn, each tar's samples together)."""

from __future__ import annotations

import hypothesis.strategies as st
import numpy as np
from hypothesis import given

from dali_relabel.loader.epochs import grouped_order


@given(st.lists(st.integers(0, 6), min_size=1, max_size=60), st.integers(0, 2**31), st.integers(0, 50))
def test_a_permutation_with_each_group_in_one_run(groups, seed, epoch):
    groups = np.array(groups)
    order = grouped_order(groups, seed=seed, epoch=epoch)
    assert sorted(order.tolist()) == list(range(len(groups)))
    runs = 1 + int((np.diff(groups[order]) != 0).sum())
    assert runs == len(np.unique(groups))
    assert np.array_equal(order, grouped_order(groups, seed=seed, epoch=epoch))


def test_both_the_group_order_and_the_order_within_groups_change_with_the_epoch():
    groups = np.repeat(np.arange(5), 8)
    orders = [grouped_order(groups, seed=7, epoch=e) for e in range(20)]
    group_sequences = {tuple(dict.fromkeys(groups[o].tolist())) for o in orders}
    within = {tuple(o[groups[o] == 0].tolist()) for o in orders}
    assert len(group_sequences) >= 10 and len(within) == 20
    # Every group leads some epoch: no tar is always read first.
    assert {int(groups[o[0]]) for o in orders} == set(range(5))
    assert not np.array_equal(grouped_order(groups, seed=8, epoch=0), orders[0])
