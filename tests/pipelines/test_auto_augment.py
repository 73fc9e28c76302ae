"""pipelines/auto_augment.py chooses ops as timm does: the same distribution of op sequences, probabilities and
magnitudes as timm's RandAugment / AutoAugment (run as timm runs them, its ops replaced by recorders)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from timm_reference import dali_sequences, timm_sequences

N = 3000


def distribution(records, key) -> Counter:
    return Counter(key(r) for r in records)


def total_variation(a: Counter, b: Counter) -> float:
    na, nb = sum(a.values()), sum(b.values())
    return 0.5 * sum(abs(a[k] / na - b[k] / nb) for k in set(a) | set(b))


def assert_same_distribution(ours, timm, timm_again, key, what):
    """Ours is as close to timm's as two runs of timm with different seeds are to each other (up to 2×)."""
    tv = total_variation(distribution(ours, key), distribution(timm, key))
    baseline = total_variation(distribution(timm_again, key), distribution(timm, key))
    assert tv < 2 * baseline + 0.01, f"{what}: total variation {tv:.3f} vs {baseline:.3f} between timm runs"


def names(record):
    return tuple(op[0] for op in record)


@pytest.mark.parametrize("text", ["rand-m9-mstd0.5-inc1", "rand-m7-n3-p0.8", "rand-m9-n2-tweights-mstd0.5",
                                  "rand-m9-n1-t3a", "original-mstd0.5", "v0", "3a"])
def test_op_sequences_are_timms(text, monkeypatch):
    ours = dali_sequences(text, N, monkeypatch)
    timm = timm_sequences(text, N, monkeypatch, seed=1)
    timm_again = timm_sequences(text, N, monkeypatch, seed=2)
    assert_same_distribution(ours, timm, timm_again, len, "how many ops are applied")
    if text.startswith("rand"):
        for position in range(3):   # each position's op (among images that have one there)
            key = (lambda r, p=position: r[p][0] if len(r) > p else None)
            assert_same_distribution(ours, timm, timm_again, key, f"op at position {position}")
    else:   # AutoAugment: the applied ops' sequence as a whole (one sub-policy per image)
        assert_same_distribution(ours, timm, timm_again, names, "sequences of ops")
    # the magnitudes: the same mean and spread (ours recorded to 0.1)
    assert_same_moments(np.array([op[1] for r in ours for op in r]), np.array([op[1] for r in timm for op in r]))


def assert_same_moments(ours, ref):
    """Equal means and standard deviations within 4 standard errors (+ ours' recording step, 0.05)."""
    se_mean = np.sqrt(ours.var() / len(ours) + ref.var() / len(ref))
    assert abs(ours.mean() - ref.mean()) < 4 * se_mean + 0.05, (ours.mean(), ref.mean(), se_mean)
    se_std = np.sqrt(ours.var() / (2 * len(ours)) + ref.var() / (2 * len(ref)))
    assert abs(ours.std() - ref.std()) < 4 * se_std + 0.05, (ours.std(), ref.std(), se_std)


def test_weighted_choice_is_without_replacement(monkeypatch):
    for record in dali_sequences("rand-m9-n3-p1.0-tweights", 500, monkeypatch):
        assert len(set(names(record))) == len(record) == 3


def test_uniform_choice_is_with_replacement(monkeypatch):
    repeats = sum(len(set(names(r))) < len(r) for r in dali_sequences("rand-m9-n2-p1.0", 1000, monkeypatch))
    assert 40 < repeats < 110       # 1/15 of the images pick the same op twice


def test_magnitude_noise_and_bounds(monkeypatch):
    """mstd: Gaussian around M, clipped to [0, mmax]; mstd > 100: uniform in [0, M]; signs negated half the time."""
    for text, low, high in [("rand-m9-mstd2-p1.0", 0.0, 10.0), ("rand-m15-mmax12-mstd3-p1.0", 0.0, 12.0),
                            ("rand-m8-mstd101-p1.0", 0.0, 8.0)]:
        ours = [op for r in dali_sequences(text, 1500, monkeypatch) for op in r]
        timm = [op for r in timm_sequences(text, 1500, monkeypatch) for op in r]
        mags, ref = np.array([op[1] for op in ours]), np.array([op[1] for op in timm])
        assert mags.min() >= low and mags.max() <= high and np.isclose(ref.max(), high, atol=0.2) == \
            np.isclose(mags.max(), high, atol=0.2), text
        assert_same_moments(mags, ref)
        assert 0.45 < np.mean([op[2] for op in ours]) < 0.55
