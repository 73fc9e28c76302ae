"""Test cases shared by the CPU and GPU label_pool tests."""

from __future__ import annotations

import numpy as np
import torch
from reference import random_box, random_label_map

from dali_relabel.testing.official import roi_align_targets

# Boxes that exercise the border rules of RoIAlign: smaller than a cell, the full image,
# touching each border, degenerate-thin, plus random ones.
SPECIAL_BOXES = [
    ((0.40, 0.52), (0.41, 0.53)),
    ((0.0, 0.0), (1.0, 1.0)),
    ((0.0, 0.0), (0.3, 0.25)),
    ((0.7, 0.6), (1.0, 1.0)),
    ((0.0, 0.5), (1.0, 0.5001)),
    ((0.999, 0.0), (1.0, 0.001)),
]

SCORE_CLASS_DTYPES = [(np.float32, np.int32), (np.float16, np.int16), (np.float16, np.int32), (np.float32, np.int16)]

# label_type x output: every mode the operator has.
MODES = [("localized_multi", "probabilities"), ("localized_single", "probabilities"),
         ("global_multi", "probabilities"), ("global_single", "probabilities"),
         ("localized_multi", "logits"), ("global_multi", "logits")]


# The RoIAlign border rules at the far edge (rel = 1.0): boxes touching it, thinner than a cell,
# and as close to empty as float32 allows. (With the default float64 geometry no sample lands
# exactly on p == size, so label_pool_math.h's `p > size` and `p >= size` agree there; with the
# official float32 geometry one can: far_edge_non_square_batch.)
FAR_EDGE_BOXES = [
    ((0.99999994, 0.99999994), (1.0, 1.0)),
    ((0.9999, 0.0), (1.0, 1.0)),
    ((0.0, 0.9999), (1.0, 1.0)),
    ((0.5, 0.5), (1.0, 1.0)),
    ((0.96, 0.9), (1.0, 1.0)),
    ((1 - 1 / 15, 1 - 1 / 15), (1.0, 1.0)),  # exactly the last cell
    ((0.0, 0.0), (1.0, 0.99999994)),
]


def far_edge_batch(h: int = 15, w: int = 15, k: int = 5, c: int = 50):
    """Maps with FAR_EDGE_BOXES, float32."""
    rng = np.random.default_rng(21)
    maps = [random_label_map(rng, h, w, k, c) for _ in FAR_EDGE_BOXES]
    starts = [np.array(a, np.float32) for a, _ in FAR_EDGE_BOXES]
    ends = [np.array(b, np.float32) for _, b in FAR_EDGE_BOXES]
    return [m[0] for m in maps], [m[1] for m in maps], starts, ends


def far_edge_non_square_batch():
    """transpose_box's float32 geometry scales both axes by W: on a 7 x 15 map a row sample lands
    exactly on the far edge (p == 7) for a corner at 7/15 (after the axis swap: the x corner)."""
    rng = np.random.default_rng(22)
    edge = np.float32(7 / 15)
    boxes = [((0.2, edge), (0.8, edge + np.float32(0.001))), ((0.2, edge), (0.8, 1.0)), ((0.0, edge), (1.0, 0.6)),
             ((0.3, 0.0), (0.4, 1.0))]
    maps = [random_label_map(rng, 7, 15, 4, 50) for _ in boxes]
    return ([m[0] for m in maps], [m[1] for m in maps], [np.array(a, np.float32) for a, _ in boxes],
            [np.array(b, np.float32) for _, b in boxes])


def make_batch(seed: int, h: int, w: int, k: int, num_classes: int, score_dtype=np.float32, class_dtype=np.int32,
               n_random: int = 6):
    rng = np.random.default_rng(seed)
    boxes = [(np.array(a, np.float32), np.array(b, np.float32)) for a, b in SPECIAL_BOXES]
    boxes += [random_box(rng) for _ in range(n_random)]
    maps = [random_label_map(rng, h, w, k, num_classes, score_dtype, class_dtype) for _ in boxes]
    scores, classes = zip(*maps)
    starts, ends = zip(*boxes)
    return list(scores), list(classes), list(starts), list(ends)


def torchvision_reference(scores, classes, starts, ends, num_classes, temperature=1.0) -> np.ndarray:
    """torchvision roi_align on the dense float64 map (dali_relabel.testing.official.roi_align_targets)."""
    out = roi_align_targets(torch.from_numpy(np.stack(scores).astype(np.float64)),
                          torch.from_numpy(np.stack(classes).astype(np.int64)),
                          torch.from_numpy(np.stack(starts).astype(np.float64)),
                          torch.from_numpy(np.stack(ends).astype(np.float64)), num_classes, temperature)
    return out.numpy()


def assert_close(out, ref, atol=1e-5, rtol=1e-5):
    # atol is the stated contract; rtol additionally guards the tiny probabilities of large C.
    np.testing.assert_allclose(out, ref, rtol=rtol, atol=min(atol, 1e-8))
    assert np.abs(out - ref).max() <= atol


def run_once(scores, classes, starts, ends, device="cpu", **op_args):
    """Fresh pipeline (an error invalidates a DALI pipeline)."""
    from conftest import LabelPoolRunner

    op_args.setdefault("num_classes", 10)
    return LabelPoolRunner(device, max_batch=4, **op_args)(scores, classes, starts, ends)


def good_sample(h=3, w=4, k=2):
    s, c = random_label_map(np.random.default_rng(0), h, w, k, 10)
    return s, c, np.array([0.1, 0.2], np.float32), np.array([0.9, 0.8], np.float32)


def two_samples_with(score_dtype=np.float32, **changes):
    """Batch of two good samples (scores of ``score_dtype``) where sample 1 has the given field replaced."""
    first, second = list(good_sample()), list(good_sample())
    first[0], second[0] = first[0].astype(score_dtype), second[0].astype(score_dtype)
    names = ["scores", "classes", "start", "end"]
    for key, value in changes.items():
        second[names.index(key)] = value
    return [list(x) for x in zip(first, second)]


def _f16_scores_with(entry: int, value: float) -> np.ndarray:
    return np.where(np.arange(24).reshape(3, 4, 2) == entry, value, 1).astype(np.float16)


# Bad inputs (sample 1 of two) and the message each must produce, on both backends.
BAD_INPUTS = [
    (dict(classes=np.zeros((3, 4, 3), np.int32)),
     r"sample 1: classes shape \[3, 4, 3\] differs from scores shape \[3, 4, 2\]"),
    (dict(scores=np.zeros((0, 4, 2), np.float32), classes=np.zeros((0, 4, 2), np.int32)),
     r"sample 1: empty label map \[0, 4, 2\]"),
    (dict(classes=np.full((3, 4, 2), 3, np.int32) + np.eye(1, 24, 13, dtype=np.int32).reshape(3, 4, 2) * 7),
     r"sample 1: class index 10 at \(row 1, col 2, k 1\) is outside \[0, num_classes=10\)"),
    (dict(classes=np.full((3, 4, 2), -1, np.int32)),
     r"sample 1: class index -1 at \(row 0, col 0, k 0\) is outside \[0, num_classes=10\)"),
    (dict(scores=np.where(np.arange(24).reshape(3, 4, 2) == 5, np.nan, 1).astype(np.float32)),
     r"sample 1: score at \(row 0, col 2, k 1\) is not finite"),
    (dict(scores=np.full((3, 4, 2), -np.inf, np.float32)),
     r"sample 1: score at \(row 0, col 0, k 0\) is not finite"),
    (dict(start=np.array([0.5, 0.5], np.float32), end=np.array([0.9, 0.5], np.float32)),
     r"sample 1: empty crop box on the x axis .* rel_start must be < rel_end"),
    (dict(start=np.array([0.6, 0.1], np.float32), end=np.array([0.5, 0.9], np.float32)),
     r"sample 1: empty crop box on the y axis"),
    (dict(start=np.array([-0.1, 0.1], np.float32)),
     r"sample 1: crop box .* leaves the image on the y axis; corners are normalized \(y, x\) in \[0, 1\]"),
    (dict(end=np.array([0.9, 1.01], np.float32)), r"sample 1: crop box .* leaves the image on the x axis"),
    (dict(end=np.array([np.nan, 0.5], np.float32)), r"sample 1: crop box corner is not finite"),
    # float16 maps: the finiteness check reads the bits (exponent all ones = inf or NaN).
    (dict(score_dtype=np.float16, scores=_f16_scores_with(5, np.inf)),
     r"sample 1: score at \(row 0, col 2, k 1\) is not finite \(inf\)"),
    (dict(score_dtype=np.float16, scores=_f16_scores_with(9, -np.inf)),
     r"sample 1: score at \(row 1, col 0, k 1\) is not finite \(-inf\)"),
    (dict(score_dtype=np.float16, scores=_f16_scores_with(22, np.nan)),
     r"sample 1: score at \(row 2, col 3, k 0\) is not finite \(nan\)"),
]
BAD_INPUT_IDS = ["shape-mismatch", "empty", "class-too-big", "class-negative", "nan", "inf", "empty-x", "empty-y",
                 "below-0", "above-1", "nan-box", "f16-inf", "f16-neg-inf", "f16-nan"]
