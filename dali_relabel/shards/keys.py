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

_AMBIGUOUS = -2


def strip_extension(key: str) -> str:
    """``key`` up to the first dot of its file name (webdataset's sample key of a member named ``key``)."""
    start = key.rfind("/") + 1
    dot = key.find(".", start)
    return key if dot < 0 else key[:dot]


def match_sample_keys(sample_keys: Sequence[str], store_keys: Sequence[str]) -> np.ndarray:
    """Store row of every sample key (-1: none), by the rules of the module.

    Raises:
        ValueError: a sample key matches several store keys (the message names them).
    """
    by_path: dict[str, int] = {}
    by_name: dict[str, int] = {}
    for row, key in enumerate(store_keys):
        stem = strip_extension(key)
        by_path[stem] = _AMBIGUOUS if stem in by_path else row
        name = stem[stem.rfind("/") + 1:]
        by_name[name] = _AMBIGUOUS if name in by_name else row
    rows = np.empty(len(sample_keys), np.int64)
    for i, key in enumerate(sample_keys):
        row = by_path.get(key, -1)
        if row == -1 and "/" not in key:
            row = by_name.get(key, -1)
        if row == _AMBIGUOUS:
            rule = by_path if key in by_path else by_name
            claims = [k for k in store_keys if (strip_extension(k) if rule is by_path
                                                else strip_extension(k).rsplit("/", 1)[-1]) == key]
            raise ValueError(f"shard sample key {key!r} matches several store keys ({', '.join(claims[:4])}): the "
                             f"shards' keys cannot tell them apart; write the shards with path keys "
                             f"(`dali-relabel shard`) or give the images unique file names")
        rows[i] = row
    return rows


__all__ = ["match_sample_keys", "strip_extension"]
