"""fn.relabel.label_pool (CPU backend) against independent references, properties and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from label_pool_cases import (
    BAD_INPUT_IDS,
    BAD_INPUTS,
    SCORE_CLASS_DTYPES,
    assert_close,
    far_edge_batch,
    far_edge_non_square_batch,
    good_sample,
    make_batch,
    run_once,
    torchvision_reference,
    two_samples_with,
)
from reference import random_box, random_label_map, slow_label_pool

from dali_relabel.testing.official import official_coords, official_pooled_logits, official_relabel_targets
from dali_relabel.testing.synthetic import synthetic_label_maps


@pytest.mark.parametrize("h,w,k,num_classes", [
    (15, 15, 5, 1000),
    (15, 15, 1, 10),
    (7, 12, 10, 1000),
    (12, 7, 5, 21843),
    (3, 5, 10, 10),
    (1, 1, 5, 10),
])
@pytest.mark.parametrize("dtypes", SCORE_CLASS_DTYPES, ids=lambda d: f"{d[0].__name__}-{d[1].__name__}")
def test_matches_torchvision_and_slow_reference(label_pool_runner, h, w, k, num_classes, dtypes):
    scores, classes, starts, ends = make_batch(h * 1000 + w * 10 + k, h, w, k, num_classes, *dtypes)
    out = label_pool_runner(num_classes=num_classes)(scores, classes, starts, ends)
    assert out.shape == (len(scores), num_classes) and out.dtype == np.float32
    assert_close(out, torchvision_reference(scores, classes, starts, ends, num_classes))
    slow = np.stack([slow_label_pool(*sample, num_classes) for sample in zip(scores, classes, starts, ends)])
    assert_close(out, slow)


@pytest.mark.parametrize("temperature", [0.25, 2.0])
def test_temperature_matches_reference(label_pool_runner, temperature):
    scores, classes, starts, ends = make_batch(7, 15, 15, 5, 1000)
    out = label_pool_runner(num_classes=1000, temperature=temperature)(scores, classes, starts, ends)
    assert_close(out, torchvision_reference(scores, classes, starts, ends, 1000, temperature))


def test_mixed_map_shapes_in_one_batch(label_pool_runner):
    rng = np.random.default_rng(3)
    shapes = [(15, 15, 5), (7, 9, 3), (1, 4, 1), (20, 11, 8)]
    scores, classes, starts, ends = [], [], [], []
    for h, w, k in shapes:
        s, c = random_label_map(rng, h, w, k, 100)
        a, b = random_box(rng)
        scores.append(s), classes.append(c), starts.append(a), ends.append(b)
    out = label_pool_runner(num_classes=100)(scores, classes, starts, ends)
    slow = np.stack([slow_label_pool(*sample, 100) for sample in zip(scores, classes, starts, ends)])
    assert_close(out, slow)


def test_transpose_box_reproduces_the_official_code(label_pool_runner):
    """transpose_box=True equals relabel_imagenet's targets computed as it computes them (float32 maps, float32
    coordinates assembled the official way, float32 roi_align); the default pools the true box.

    Crops of a 125 x 125 image spanning whole cells, e.g. rows 42..92 (0.336 -> 0.736, six cells): the
    official float32 geometry takes 6 samples there, a float64 one 7 (this used to differ by ~1e-3).
    Thousands of random-resized crops: tests/ops/test_label_pool_official.py.
    """
    windows = [(42, 42, 50, 50), (42, 10, 50, 100), (0, 25, 125, 75), (17, 5, 58, 33), (100, 0, 25, 125)]
    sizes = [(125, 125)] * len(windows)
    coords = official_coords(windows, sizes)
    scores, classes = synthetic_label_maps(len(windows), num_classes=1000, seed=4)
    maps = torch.stack([torch.from_numpy(scores.astype(np.float32)), torch.from_numpy(classes.astype(np.float32))],
                       1).permute(0, 1, 4, 2, 3)
    logits = official_pooled_logits(maps, coords, 1000)
    official_run = torch.softmax(logits, 1).numpy()  # float32, as the official code
    official = torch.softmax(logits.double(), 1).numpy()
    starts = [np.ascontiguousarray(c) for c in coords[:, :2].numpy()]
    ends = [np.ascontiguousarray(c) for c in coords[:, 2:].numpy()]

    quirk = label_pool_runner(num_classes=1000, transpose_box=True)(list(scores), list(classes), starts, ends)
    assert np.abs(quirk - official).max() <= 1e-6
    assert np.abs(quirk - official_run).max() <= 3e-6  # + torch's float32 softmax rounding
    # The same box with a float64 geometry (torchvision in float64) is another target.
    float64_geometry = official_relabel_targets(maps.double(), coords.double(), 1000).numpy()
    assert np.abs(float64_geometry - official).max() > 1e-4
    # The default mode pools the true box: asymmetric boxes pool other cells than the official transposed ones.
    correct = label_pool_runner(num_classes=1000)(list(scores), list(classes), starts, ends)
    assert np.abs(correct - official).max() > 1e-3
    assert_close(correct, torchvision_reference(list(scores), list(classes), starts, ends, 1000))


def test_mirroring_map_and_box_is_consistent(label_pool_runner):
    """Mirroring both the map and the box leaves the target unchanged (RoIAlign symmetry).

    Except for boxes narrower than one map cell: aligned=False widens those to one cell from
    their left edge, which is not mirror-symmetric (torchvision does the same).
    """
    scores, classes, starts, ends = make_batch(5, 15, 15, 5, 1000)
    out = label_pool_runner(num_classes=1000)(scores, classes, starts, ends)
    f_starts = [np.array([s[0], 1 - e[1]], np.float32) for s, e in zip(starts, ends)]
    f_ends = [np.array([e[0], 1 - s[1]], np.float32) for s, e in zip(starts, ends)]
    flipped = label_pool_runner(num_classes=1000)([s[:, ::-1] for s in scores], [c[:, ::-1] for c in classes],
                                                  f_starts, f_ends)
    wide = np.array([(e[1] - s[1]) * 15 >= 1 for s, e in zip(starts, ends)])
    assert wide.sum() >= 6
    np.testing.assert_allclose(flipped[wide], out[wide], atol=1e-6, rtol=1e-5)
    assert np.abs(flipped[~wide] - out[~wide]).max() > 1e-4


@pytest.mark.parametrize("label_type", ["localized_single", "global_multi", "global_single"])
@pytest.mark.parametrize("h,w,k,num_classes", [(15, 15, 5, 1000), (7, 12, 3, 10)])
def test_label_types_match_reference(label_pool_runner, label_type, h, w, k, num_classes):
    scores, classes, starts, ends = make_batch(31 + h, h, w, k, num_classes)
    out = label_pool_runner(num_classes=num_classes, label_type=label_type)(scores, classes, starts, ends)
    ref = np.stack([slow_label_pool(*sample, num_classes, label_type=label_type)
                    for sample in zip(scores, classes, starts, ends)])
    assert_close(out, ref)
    if label_type == "global_multi":  # the whole-map RoIAlign is the mean over cells
        for s, c, o in zip(scores, classes, out):
            dense = np.zeros((num_classes, h, w))
            np.put_along_axis(dense, c.transpose(2, 0, 1).astype(np.int64), s.transpose(2, 0, 1), 0)
            z = dense.mean((1, 2))
            np.testing.assert_allclose(o, np.exp(z - z.max()) / np.exp(z - z.max()).sum(), rtol=1e-5, atol=1e-8)


def test_global_label_types_ignore_and_do_not_need_the_box():
    s, c, a, b = good_sample()
    with_box = run_once([s], [c], [a], [b], label_type="global_multi")
    other_box = run_once([s], [c], [np.array([0.0, 0.0], np.float32)], [np.array([0.1, 0.1], np.float32)],
                         label_type="global_multi")
    np.testing.assert_array_equal(with_box, other_box)

    from nvidia.dali import fn, pipeline_def

    @pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def no_box():
        return fn.relabel.label_pool(fn.external_source(lambda: [s], batch=True),
                                     fn.external_source(lambda: [c], batch=True), num_classes=10,
                                     label_type="global_single")

    p = no_box()
    p.build()
    np.testing.assert_array_equal(np.array(p.run()[0][0]), slow_label_pool(s, c, a, b, 10, label_type="global_single"))


@pytest.mark.parametrize("label_type", ["localized_multi", "global_multi"])
def test_logits_output_is_the_pooled_logits(label_pool_runner, label_type):
    scores, classes, starts, ends = make_batch(41, 15, 15, 5, 1000)
    out = label_pool_runner(num_classes=1000, label_type=label_type, output="logits", temperature=3.0)(
        scores, classes, starts, ends)
    ref = np.stack([slow_label_pool(*sample, 1000, label_type=label_type, output="logits")
                    for sample in zip(scores, classes, starts, ends)])
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-5)


def test_logits_are_linear_in_the_region():
    """Pooled logits of a box = area-weighted pooled logits of its halves.

    Exact when the halves' sample grids are the whole box's (cell-aligned edges, dyadic so that
    float32 corners are exact); in general RoIAlign's ceil(extent) grid makes it approximate.
    """
    s, c = random_label_map(np.random.default_rng(5), 8, 8, 3, 10)
    f = lambda *v: np.array(v, np.float32)  # noqa: E731
    whole = run_once([s], [c], [f(0.0, 0.25)], [f(0.5, 0.75)], output="logits")[0]
    top = run_once([s], [c], [f(0.0, 0.25)], [f(0.25, 0.75)], output="logits")[0]
    bottom = run_once([s], [c], [f(0.25, 0.25)], [f(0.5, 0.75)], output="logits")[0]
    np.testing.assert_allclose(whole, 0.5 * top + 0.5 * bottom, atol=1e-6)


@pytest.mark.parametrize("transpose_box", [False, True])
def test_boxes_at_the_far_edge_match_torchvision(label_pool_runner, transpose_box):
    scores, classes, starts, ends = far_edge_batch()
    out = label_pool_runner(num_classes=50, transpose_box=transpose_box)(scores, classes, starts, ends)
    if not transpose_box:
        assert_close(out, torchvision_reference(scores, classes, starts, ends, 50))
    ref = np.stack([slow_label_pool(*x, 50, transpose_box=transpose_box) for x in zip(scores, classes, starts, ends)])
    assert_close(out, ref)


def test_sample_exactly_on_the_far_edge_with_the_official_geometry(label_pool_runner):
    batch = far_edge_non_square_batch()
    out = label_pool_runner(num_classes=50, transpose_box=True, output="logits")(*batch)
    ref = np.stack([slow_label_pool(*x, 50, output="logits", transpose_box=True) for x in zip(*batch)])
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)


def test_softmax_when_every_class_is_touched():
    """num_classes == K and all logits near -120: no implicit zero logit, so the softmax's max must
    be the largest stored logit (starting it at 0 would underflow every term to 0: NaN)."""
    k = 5
    s = np.full((4, 4, k), -120.0, np.float32) + np.arange(k, dtype=np.float32) * 0.5
    c = np.broadcast_to(np.arange(k, dtype=np.int32), (4, 4, k)).copy()
    a, b = np.array([0.1, 0.2], np.float32), np.array([0.8, 0.9], np.float32)
    out = run_once([s], [c], [a], [b], num_classes=k)[0]
    assert np.all(np.isfinite(out)) and abs(out.sum() - 1) < 1e-6
    assert_close(out, slow_label_pool(s, c, a, b, k))


def test_ties_in_single_labels_go_to_the_lowest_class():
    s = np.zeros((2, 2, 2), np.float32)
    c = np.array([[[7, 3], [7, 3]], [[7, 3], [7, 3]]], np.int32)
    s[..., :] = 1.5  # classes 3 and 7 tie everywhere
    out = run_once([s], [c], [np.array([0, 0], np.float32)], [np.array([1, 1], np.float32)],
                   label_type="localized_single")[0]
    assert out.argmax() == 3 and out.sum() == 1
    neg = run_once([-s], [c], [np.array([0, 0], np.float32)], [np.array([1, 1], np.float32)],
                   label_type="localized_single")[0]
    assert neg.argmax() == 0  # all stored logits < 0: the first background class (logit 0) wins


# --- properties ---------------------------------------------------------------------------------

unit = st.floats(0.0, 1.0, allow_nan=False, width=32)


@st.composite
def samples(draw, num_classes=50, max_k=5):
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    k = draw(st.integers(1, max_k))
    seed = draw(st.integers(0, 2**32 - 1))
    s, c = random_label_map(np.random.default_rng(seed), h, w, k, num_classes, scale=draw(st.floats(0.1, 10)))
    y = sorted([draw(unit), draw(unit)])
    x = sorted([draw(unit), draw(unit)])
    assume(y[0] < y[1] and x[0] < x[1])
    return s, c, np.array([y[0], x[0]], np.float32), np.array([y[1], x[1]], np.float32)


PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def official_corner(draw):
    """A corner as the official code gets it, float32(i/H + h/H) for a pixel window, often on whole map cells."""
    side = draw(st.sampled_from([15, 30, 45, 125, 150, 375]) | st.integers(1, 600))
    i, h = sorted([draw(st.integers(0, side)), draw(st.integers(0, side))])
    return np.float32(i / side), np.float32(i / side + (h - i) / side)


@st.composite
def official_samples(draw, num_classes=50):
    h, w, k = draw(st.integers(1, 16)), draw(st.integers(1, 16)), draw(st.integers(1, 5))
    s, c = random_label_map(np.random.default_rng(draw(st.integers(0, 2**32 - 1))), h, w, k, num_classes)
    (y0, y1), (x0, x1) = draw(official_corner()), draw(official_corner())
    assume(y0 < y1 and x0 < x1)
    return s, c, np.array([y0, x0], np.float32), np.array([y1, x1], np.float32)


@PROPERTY
@given(batch=st.lists(official_samples(), min_size=1, max_size=8))
def test_property_official_mode_matches_the_slow_float32_geometry(label_pool_runner, batch):
    """transpose_box=True against the slow reference's official geometry (float32, every corner scaled by the
    map width), on maps of any shape and corners often on whole cells."""
    out = label_pool_runner(num_classes=50, transpose_box=True, output="logits")(*zip(*batch))
    slow = np.stack([slow_label_pool(*sample, 50, transpose_box=True, output="logits") for sample in batch])
    np.testing.assert_allclose(out, slow, rtol=1e-6, atol=1e-6)


@PROPERTY
@given(batch=st.lists(samples(), min_size=1, max_size=8))
def test_property_probabilities_match_slow_reference(label_pool_runner, batch):
    out = label_pool_runner(num_classes=50)(*zip(*batch))
    assert np.all(out > 0)
    np.testing.assert_allclose(out.sum(1), 1.0, atol=1e-5)
    slow = np.stack([slow_label_pool(*sample, 50) for sample in batch])
    assert_close(out, slow)


@PROPERTY
@given(sample=samples(), seed=st.integers(0, 2**32 - 1))
def test_property_invariant_to_permuting_k(label_pool_runner, sample, seed):
    s, c, a, b = sample
    rng = np.random.default_rng(seed)
    # An independent permutation of the K entries of every cell.
    perm = np.argsort(rng.random(s.shape), axis=-1)
    ps, pc = np.take_along_axis(s, perm, -1), np.take_along_axis(c, perm, -1)
    run = label_pool_runner(num_classes=50)
    out = run([s, ps], [c, pc], [a, a], [b, b])
    np.testing.assert_allclose(out[1], out[0], rtol=1e-6, atol=1e-9)


@PROPERTY
@given(sample=samples())
def test_property_low_temperature_approaches_one_hot(label_pool_runner, sample):
    s, c, a, b = sample
    logits = np.log(slow_label_pool(s, c, a, b, 50))  # log-softmax: logits up to a constant
    top2 = np.sort(logits)[-2:]
    assume(top2[1] - top2[0] > 0.05)  # a clear winner (ties have no one-hot limit)
    out = label_pool_runner(num_classes=50, temperature=1e-3)([s], [c], [a], [b])[0]
    assert out.argmax() == logits.argmax()
    assert out.max() > 0.99


# --- errors --------------------------------------------------------------------------------------

@pytest.mark.parametrize("changes,message", BAD_INPUTS, ids=BAD_INPUT_IDS)
def test_bad_input_names_the_sample_and_the_problem(changes, message):
    with pytest.raises(Exception, match=r"relabel\.label_pool: " + message):
        run_once(*two_samples_with(**changes))


def test_maps_must_be_3d():
    # DALI itself requires one dimensionality per batch, so this is reported for sample 0.
    a, b = np.array([0.1, 0.1], np.float32), np.array([0.5, 0.5], np.float32)
    with pytest.raises(Exception, match=r"relabel\.label_pool: sample 0: scores must be 3-D \[H, W, K\], got shape \[3, 4\]"):
        run_once([np.zeros((3, 4), np.float32)], [np.zeros((3, 4), np.int32)], [a], [b])


@pytest.mark.parametrize("scores_dtype,classes_dtype,message", [
    (np.int32, np.int32, r"scores must be float16 or float32, got int32; cast with fn.cast"),
    (np.float64, np.int32, r"scores must be float16 or float32, got double"),
    (np.float32, np.float32, r"classes must be int16 or int32, got float; cast with fn.cast"),
    (np.float32, np.int64, r"classes must be int16 or int32, got int64"),
])
def test_wrong_dtypes_are_rejected(scores_dtype, classes_dtype, message):
    s, c, a, b = good_sample()
    with pytest.raises(Exception, match=r"relabel\.label_pool: " + message):
        run_once([s.astype(scores_dtype)], [c.astype(classes_dtype)], [a], [b])


@pytest.mark.parametrize("op_args,message", [
    (dict(label_type="local"), "label_type must be one of localized_multi, localized_single, global_multi, "
                               "global_single; got 'local'"),
    (dict(output="probs"), "output must be 'probabilities' or 'logits', got 'probs'"),
    (dict(label_type="global_single", output="logits"), "output='logits' needs a multi-label label_type"),
    (dict(num_classes=0), "num_classes must be positive, got 0"),
    (dict(num_classes=-5), "num_classes must be positive, got -5"),
    (dict(temperature=0.0), "temperature must be a positive finite number, got 0"),
    (dict(temperature=float("inf")), "temperature must be a positive finite number, got inf"),
])
def test_bad_arguments_are_rejected(op_args, message):
    with pytest.raises(Exception, match=r"relabel\.label_pool: " + message):
        run_once(*[[x] for x in good_sample()], **op_args)


def test_localized_types_need_the_box():
    s, c, _, _ = good_sample()
    from nvidia.dali import fn, pipeline_def

    @pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def no_box():
        return fn.relabel.label_pool(fn.external_source(lambda: [s], batch=True),
                                     fn.external_source(lambda: [c], batch=True), num_classes=10)

    p = no_box()
    p.build()
    with pytest.raises(Exception, match=r"rel_start and rel_end are required: the crop's normalized \(y, x\) corners"):
        p.run()


def test_box_argument_must_be_two_floats():
    s, c, a, b = good_sample()
    with pytest.raises(Exception, match="rel_start"):
        run_once([s], [c], [np.array([0.1, 0.2, 0.3], np.float32)], [b])


def test_validate_false_ignores_invalid_entries():
    s, c, a, b = good_sample()
    bad_c, bad_s = c.copy(), s.copy()
    bad_c[1, 1, 0] = 99
    bad_s[2, 3, 1] = np.nan
    out = run_once([bad_s], [bad_c], [a], [b], validate=False)
    # Reference: the same map with the two invalid entries removed (score 0 adds nothing).
    clean_s = s.copy()
    clean_s[1, 1, 0] = 0
    clean_s[2, 3, 1] = 0
    assert_close(out[0], slow_label_pool(clean_s, c, a, b, 10))
