"""``dali-relabel verify STORE --shards SPEC``: every sample of some webdataset shards has a label map.

Checks, each problem named by the sample (``<tar>:<member>``) or the store key: the shards and their index files
are readable and agree (each damaged or truncated shard is named, the others still checked); every sample has an
image member and matches exactly one store key (``dali_relabel.shards.keys``); no store key is matched twice, and
(reported too) none is in no shard; a ``.cls`` label agrees with the store's label; every image decodes with DALI's
CPU decoder (``decode``).
"""

from __future__ import annotations

import numpy as np

from .errors import ShardError
from .shards import ShardSet, match_sample_keys
from .store import LabelStore
from .verify import Problem


def verify_shards(store: LabelStore, spec, *, decode: bool = True, progress: bool = True) -> list[Problem]:
    """The problems of the shards ``spec`` names against ``store`` (empty: all good).

    A damaged shard (truncated, a broken header, a stale index) is one problem; the others are still checked.

    Raises:
        ShardsNotFoundError: ``spec`` names no existing shard. ShardError: ``spec`` is not a shard specification
            (e.g. a JSON file that is not a wids shard index).
    """
    damaged: list[str] = []
    try:
        shards = ShardSet.open(spec, progress=progress, damaged=damaged)
    except ShardError as e:   # (ShardsNotFoundError, a wrong specification, raises: nothing to check)
        return [Problem("damaged-shard", None, m) for m in damaged] + [Problem("shards", None, str(e))]
    problems = [Problem("damaged-shard", None, m) for m in damaged]
    problems += [Problem("no-image", key, "shard sample has no image member") for key in shards.skipped]
    store_keys = store.keys.tolist()
    try:
        rows = match_sample_keys(shards.sample_keys, store_keys)
    except ShardError as e:
        return problems + [Problem("ambiguous-key", None, str(e))]
    where = [shards.location(i) for i in range(len(shards))]
    problems += [Problem("missing-map", where[i], f"sample key {shards.sample_keys[i]!r} matches no store key")
                 for i in np.flatnonzero(rows < 0)]
    values, counts = np.unique(rows[rows >= 0], return_counts=True)
    for row in values[counts > 1].tolist():
        places = [where[i] for i in np.flatnonzero(rows == row)]
        problems.append(Problem("duplicate-sample", store_keys[row], f"in the shards {len(places)} times: "
                                                                     f"{', '.join(places[:3])}"))
    unsharded = np.setdiff1d(np.arange(len(store_keys)), values)
    problems += [Problem("unsharded-key", store_keys[r], "store key is in no shard") for r in unsharded.tolist()]
    problems += _check_labels(shards, rows, store, where)
    if decode:
        from .ops.image_check import undecodable_members

        for name, reason in undecodable_members(where, shards.read_image, progress=progress):
            problems.append(Problem("undecodable", name, reason))
    return problems


def _check_labels(shards: ShardSet, rows: np.ndarray, store: LabelStore, where: list[str]) -> list[Problem]:
    try:
        labels = np.asarray(shards.labels)
    except ShardError as e:
        return [Problem("label", None, str(e))]
    stored = store.labels
    out = []
    for i in np.flatnonzero((rows >= 0) & (labels >= 0)).tolist():
        if stored[rows[i]] >= 0 and stored[rows[i]] != labels[i]:
            out.append(Problem("label-mismatch", where[i], f".cls says {labels[i]}, the store says "
                                                            f"{stored[rows[i]]}"))
    return out


__all__ = ["verify_shards"]
