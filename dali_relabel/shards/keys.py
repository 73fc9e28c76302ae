"""Which label-store key a shard sample's ``__key__`` stands for.

A store's keys are image paths relative to the dataset root (``n01440764/n01440764_10026.JPEG``). A webdataset
sample's ``__key__`` is its member names up to the first dot of the file name. Two conventions are matched:

1. **Path keys** (what ``dali-relabel shard`` writes): the ``__key__`` is the store key without its extension
   (``n01440764/n01440764_10026`` + member ``.jpeg`` ↔ ``n01440764/n01440764_10026.JPEG``).
2. **Flat keys** (how ImageNet is usually sharded, e.g. webdataset's ``makeshards.py``, timm's
   ``imagenet-1k-wds``: ``__key__ = n01440764_10026``, members ``.jpg`` and ``.cls``): a ``__key__`` without
   ``/`` that matches no store key by rule 1 is the store key whose *file name* without extension it equals,
   when exactly one store key has that file name.

"Without extension" cuts at the first dot of the file name, as webdataset splits member names. A ``__key__``
that two store keys claim is an error naming both (rename, or shard with path keys).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import ShardError

_AMBIGUOUS = -2


def strip_extension(key: str) -> str:
    """``key`` up to the first dot of its file name (webdataset's sample key of a member named ``key``)."""
    start = key.rfind("/") + 1
    dot = key.find(".", start)
    return key if dot < 0 else key[:dot]


def match_sample_keys(sample_keys: Sequence[str], store_keys: Sequence[str]) -> np.ndarray:
    """Store row of every sample key (-1: none), by the rules of the module.

    Raises:
        ShardError: a sample key matches several store keys (the message names them).
    """
    stems = [strip_extension(k) for k in store_keys]
    by_path = _unique_index(stems)
    rows = np.fromiter((by_path.get(k, -1) for k in sample_keys), np.int64, len(sample_keys))
    flat = [i for i in np.flatnonzero(rows == -1).tolist() if "/" not in sample_keys[i]]
    if flat:   # rule 2, only for the keys rule 1 left
        by_name = _unique_index([s[s.rfind("/") + 1:] for s in stems])
        for i in flat:
            rows[i] = by_name.get(sample_keys[i], -1)
    bad = np.flatnonzero(rows == _AMBIGUOUS)
    if len(bad):
        key = sample_keys[bad[0]]
        claims = [k for k, s in zip(store_keys, stems) if key in (s, s[s.rfind("/") + 1:])]
        raise ShardError(f"shard sample key {key!r} matches several store keys ({', '.join(claims[:4])}): the "
                         f"shards' keys cannot tell them apart; write the shards with path keys "
                         f"(`dali-relabel shard`) or give the images unique file names")
    return rows


def _unique_index(names: list[str]) -> dict[str, int]:
    """name → its position; names that occur more than once → ``_AMBIGUOUS``."""
    index = dict(zip(names, range(len(names))))
    if len(index) != len(names):
        seen: set[str] = set()
        for name in names:
            if name in seen:
                index[name] = _AMBIGUOUS
            seen.add(name)
    return index


__all__ = ["match_sample_keys", "strip_extension"]
