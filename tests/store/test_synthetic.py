"""The synthetic label-map generator: contract (shape, order, distinctness), determinism, realism."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dali_relabel.testing.synthetic import synthetic_label_maps


@pytest.mark.parametrize("h,w,k,c", [(15, 15, 5, 1000), (7, 12, 10, 1000), (1, 1, 5, 5), (3, 4, 20, 40000)])
def test_contract(h, w, k, c):
    s, cl = synthetic_label_maps(300, height=h, width=w, k=k, num_classes=c, seed=3)
    assert s.shape == cl.shape == (300, h, w, k)
    assert s.dtype == np.float16 and cl.dtype == (np.int16 if c <= 32768 else np.int32)
    assert np.isfinite(s).all()
    assert (np.diff(s.astype(np.float32), axis=-1) <= 0).all()
    assert cl.min() >= 0 and cl.max() < c
    srt = np.sort(cl, axis=-1)
    assert (srt[..., 1:] != srt[..., :-1]).all()


@settings(max_examples=15, deadline=None)
@given(start=st.integers(0, 700), n=st.integers(0, 300), split=st.integers(0, 300))
def test_rows_do_not_depend_on_how_the_range_is_split(start, n, split):
    split = min(split, n)
    s, c = synthetic_label_maps(n, height=4, width=3, k=2, num_classes=30, seed=9, start=start)
    s1, c1 = synthetic_label_maps(split, height=4, width=3, k=2, num_classes=30, seed=9, start=start)
    s2, c2 = synthetic_label_maps(n - split, height=4, width=3, k=2, num_classes=30, seed=9, start=start + split)
    np.testing.assert_array_equal(s, np.concatenate([s1, s2]))
    np.testing.assert_array_equal(c, np.concatenate([c1, c2]))


def test_float32_scores_are_the_same_maps_with_float32_precision():
    s16, c16 = synthetic_label_maps(300, seed=2)
    s32, c32 = synthetic_label_maps(300, seed=2, scores_dtype="float32")
    assert s32.dtype == np.float32
    np.testing.assert_array_equal(c32, c16)
    assert (np.diff(s32, axis=-1) <= 0).all()
    # float16 keeps 11 significant bits: the float16 maps are the float32 ones rounded (half an ulp at most).
    half_ulp = np.spacing(np.abs(s16)).astype(np.float32) / 2
    assert (np.abs(s32 - s16.astype(np.float32)) <= half_ulp * (1 + 1e-3)).all()
    assert (s32 != s16.astype(np.float32)).mean() > 0.9
    with pytest.raises(ValueError, match="scores_dtype must be 'float16' or 'float32', got 'int8'"):
        synthetic_label_maps(3, scores_dtype="int8")


def test_seed_changes_the_data():
    a, _ = synthetic_label_maps(20, seed=0)
    b, _ = synthetic_label_maps(20, seed=1)
    assert not np.array_equal(a, b)


def test_realistic_structure():
    s, c = synthetic_label_maps(512, seed=0)
    # A handful of classes per image (not hundreds), a few distinct winners per map.
    distinct = np.array([np.unique(c[i]).size for i in range(len(c))])
    winners = np.array([np.unique(c[i, ..., 0]).size for i in range(len(c))])
    assert 5 <= distinct.mean() <= 16 and distinct.max() <= 16
    assert 1 <= winners.mean() <= 8
    # Spatially smooth: neighbouring cells' top logit differ far less than random cell pairs.
    top = s[..., 0].astype(np.float32)
    neighbour = np.abs(np.diff(top, axis=2)).mean()
    shuffled = np.abs(top.reshape(len(top), -1) - np.random.default_rng(0).permuted(
        top.reshape(len(top), -1), axis=1)).mean()
    assert neighbour < 0.5 * shuffled
    # Neighbouring cells usually share their winning class.
    assert (c[:, :, 1:, 0] == c[:, :, :-1, 0]).mean() > 0.6
    # Logit magnitudes of a strong classifier: top-1 peaks well above the rest.
    assert 8 < s[..., 0].max(axis=(1, 2)).astype(np.float32).mean() < 16


def test_bad_arguments():
    with pytest.raises(ValueError, match="k <= num_classes"):
        synthetic_label_maps(2, k=6, num_classes=5)
    with pytest.raises(ValueError, match="must be >= 0"):
        synthetic_label_maps(-1)
