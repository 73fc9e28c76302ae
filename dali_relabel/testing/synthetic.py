"""Realistic synthetic top-k label maps, for tests and benchmarks (never for training).

A machine annotator's map of one image is spatially smooth: each object is a blob of high logits
for its class, surrounded by the same blob, weaker, for semantically close classes (ImageNet's
close classes, e.g. dog breeds, sit at neighbouring indices), over a broad low background of a
few generic classes. The generator builds exactly that, per image, for a fixed number of
candidate classes ("slots"), adds smooth and white noise, and keeps each cell's top-k:

* 1–4 objects (mostly one, as in ImageNet), Gaussian blobs with a random centre and extent,
  peak logit 6–13;
* up to 12 related or background classes: a related class shares an object's blob at 35–80% of
  its amplitude; a background class is a broad field of logit 1–4;
* noise: a random 4×4 field upsampled bilinearly (σ 0.6, spatially smooth) plus white noise
  (σ 0.1), as the real maps are smooth but not exactly so.

Values are logits (pre-softmax), float16 (or float32, as in the official release), sorted descending per
cell; classes are distinct within a cell (they are distinct within the image). The sequence is
deterministic in ``seed`` and the row: rows ``[start, start + n)`` are the same whatever ``n`` and
however the range is split, so independent writers can produce disjoint blocks of one data set.
"""

from __future__ import annotations

import numpy as np

from ..store.format import class_dtype

# Rows are generated in pages of this many samples, each from its own seeded generator, so that
# a row's value does not depend on how a caller splits the range.
_PAGE = 256
_SLOTS = 16  # candidate classes per image (objects + related + background)
_MAX_OBJECTS = 4
_OBJECT_COUNT_P = (0.55, 0.27, 0.12, 0.06)  # 1, 2, 3, 4 objects


def synthetic_label_maps(n: int, *, height: int = 15, width: int = 15, k: int = 5, num_classes: int = 1000,
                         seed: int = 0, start: int = 0, scores_dtype: str = "float16") -> tuple[np.ndarray, np.ndarray]:
    """Rows ``[start, start + n)`` of a seeded sequence of synthetic top-k label maps.

    Args:
        n: number of samples.
        height: map rows H (image y).
        width: map columns W.
        k: classes kept per cell (``k <= num_classes``).
        num_classes: C; class indices are in ``[0, C)``.
        seed: selects the sequence.
        start: first row of the sequence to return.
        scores_dtype: "float16" or "float32" (the same maps with float32 precision: the float16 values are
            these rounded).

    Returns:
        ``(scores, classes)``: ``scores`` ``[n, H, W, K]`` logits (``scores_dtype``), non-increasing along K;
        ``classes`` ``[n, H, W, K]`` int16 (int32 when ``num_classes > 32768``), distinct per cell.
    """
    if n < 0 or start < 0:
        raise ValueError(f"synthetic_label_maps: n ({n}) and start ({start}) must be >= 0")
    if height < 1 or width < 1 or k < 1 or k > num_classes:
        raise ValueError(f"synthetic_label_maps: need height, width >= 1 and 1 <= k <= num_classes; got "
                         f"height={height}, width={width}, k={k}, num_classes={num_classes}")
    if scores_dtype not in ("float16", "float32"):
        raise ValueError(f"synthetic_label_maps: scores_dtype must be 'float16' or 'float32', got {scores_dtype!r}")
    scores = np.empty((n, height, width, k), scores_dtype)
    classes = np.empty((n, height, width, k), class_dtype(num_classes))
    first_page, end = start // _PAGE, start + n
    for page in range(first_page, (end + _PAGE - 1) // _PAGE):
        lo, hi = max(start, page * _PAGE), min(end, (page + 1) * _PAGE)
        if lo >= hi:
            continue
        s, c = _page(page, seed, height, width, k, num_classes, np.dtype(scores_dtype))
        scores[lo - start:hi - start] = s[lo - page * _PAGE:hi - page * _PAGE]
        classes[lo - start:hi - start] = c[lo - page * _PAGE:hi - page * _PAGE]
    return scores, classes


def _distinct_classes(rng: np.random.Generator, wanted: np.ndarray, num_classes: int) -> np.ndarray:
    """Makes each row's classes distinct, keeping the wanted ones where possible. [P, S] int64."""
    p, s = wanted.shape
    if num_classes <= 2 * s:
        # Few classes: a random permutation per row (duplicates would be the rule, not the exception).
        return np.argsort(rng.random((p, num_classes)), axis=1)[:, :s]
    out = wanted % num_classes
    for _ in range(100):
        order = np.sort(out, axis=1)
        dup_rows = np.nonzero((order[:, 1:] == order[:, :-1]).any(axis=1))[0]
        if dup_rows.size == 0:
            return out
        for r in dup_rows:  # rare: only rows that drew a duplicate
            _, first = np.unique(out[r], return_index=True)
            dup = np.setdiff1d(np.arange(s), first)
            out[r, dup] = rng.integers(0, num_classes, dup.size)
    raise AssertionError("could not draw distinct classes")  # pragma: no cover (probability ~0)


def _page(page: int, seed: int, h: int, w: int, k: int, num_classes: int,
          dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, page, 0x5E1AB])
    p, s = _PAGE, min(max(_SLOTS, k), num_classes)
    n_obj = rng.choice(np.arange(1, _MAX_OBJECTS + 1), size=p, p=_OBJECT_COUNT_P)

    # Objects: centre (cells), extent (std. dev., cells), peak logit; the first object dominates.
    obj_cy = rng.uniform(0, h - 1, (p, _MAX_OBJECTS))
    obj_cx = rng.uniform(0, w - 1, (p, _MAX_OBJECTS))
    obj_sy = rng.uniform(0.1, 0.4, (p, _MAX_OBJECTS)) * h
    obj_sx = rng.uniform(0.1, 0.4, (p, _MAX_OBJECTS)) * w
    obj_amp = rng.uniform(6.0, 10.0, (p, _MAX_OBJECTS))
    obj_amp[:, 0] += rng.uniform(0.0, 3.0, p)
    obj_class = rng.integers(0, num_classes, (p, _MAX_OBJECTS))

    # Slots: the first n_obj are the objects; each other slot is related to a random object
    # (60%) or a background class.
    slot = np.arange(s)[None, :]
    is_object = slot < np.minimum(n_obj, s)[:, None]
    parent = np.where(is_object, slot, (rng.random((p, s)) * n_obj[:, None]).astype(np.int64))
    related = ~is_object & (rng.random((p, s)) < 0.6)
    rows = np.arange(p)[:, None]

    jitter = rng.uniform(-1.0, 1.0, (2, p, s))
    spread = rng.uniform(0.7, 1.3, (2, p, s))
    cy = obj_cy[rows, parent] + np.where(is_object, 0.0, jitter[0])
    cx = obj_cx[rows, parent] + np.where(is_object, 0.0, jitter[1])
    sy = obj_sy[rows, parent] * np.where(is_object, 1.0, spread[0])
    sx = obj_sx[rows, parent] * np.where(is_object, 1.0, spread[1])
    amp = obj_amp[rows, parent] * np.where(is_object, 1.0, rng.uniform(0.35, 0.8, (p, s)))
    base = rng.uniform(-1.0, 1.5, (p, s))

    background = ~is_object & ~related
    cy = np.where(background, rng.uniform(0, h - 1, (p, s)), cy)
    cx = np.where(background, rng.uniform(0, w - 1, (p, s)), cx)
    sy = np.where(background, rng.uniform(0.5, 1.5, (p, s)) * h, sy)
    sx = np.where(background, rng.uniform(0.5, 1.5, (p, s)) * w, sx)
    amp = np.where(background, rng.uniform(0.0, 2.0, (p, s)), amp)
    base = np.where(background, rng.uniform(1.0, 4.0, (p, s)), base)

    # Close classes sit at neighbouring indices (ImageNet's fine-grained groups).
    offset = rng.integers(1, 26, (p, s)) * rng.choice([-1, 1], (p, s))
    wanted = np.where(is_object, obj_class[rows, parent],
                      np.where(related, obj_class[rows, parent] + offset, rng.integers(0, num_classes, (p, s))))
    cls = _distinct_classes(rng, wanted, num_classes)

    y = np.arange(h, dtype=np.float64)[None, None, :, None]
    x = np.arange(w, dtype=np.float64)[None, None, None, :]
    blob = np.exp(-0.5 * (((y - cy[..., None, None]) / sy[..., None, None]) ** 2
                          + ((x - cx[..., None, None]) / sx[..., None, None]) ** 2))
    logits = base[..., None, None] + amp[..., None, None] * blob              # [P, S, H, W]
    coarse = rng.normal(0.0, 0.6, (p, s, 4, 4))
    logits += np.einsum("yi,psij,xj->psyx", _upsample_matrix(h), coarse, _upsample_matrix(w))
    logits += rng.normal(0.0, 0.1, logits.shape)

    logits = logits.transpose(0, 2, 3, 1)                                        # [P, H, W, S]
    order = np.argsort(-logits, axis=-1, kind="stable")[..., :k]
    scores = np.take_along_axis(logits, order, axis=-1).astype(dtype)
    classes = np.take_along_axis(np.broadcast_to(cls[:, None, None, :], logits.shape), order, axis=-1)
    return scores, classes.astype(class_dtype(num_classes))


def _upsample_matrix(size: int, coarse: int = 4) -> np.ndarray:
    """[size, coarse] bilinear interpolation weights from a coarse grid spanning the map."""
    pos = np.linspace(0.0, coarse - 1.0, size)
    lo = np.minimum(np.floor(pos).astype(int), coarse - 2)
    frac = pos - lo
    m = np.zeros((size, coarse))
    m[np.arange(size), lo] = 1.0 - frac
    m[np.arange(size), lo + 1] = frac
    return m
