"""A served bank holding given label maps, for tests that pool them through the operators."""

from __future__ import annotations

import numpy as np

from dali_relabel import LabelStore


def make_bank(root, maps, num_classes):
    """A ``LabelBank`` with the given ``(scores, classes)`` maps as rows 0..n-1 (store and cache under root)."""
    h, w, k = maps[0][0].shape
    store = LabelStore.create(str(root / "maps.zarr"), keys=[f"c/{i}.jpg" for i in range(len(maps))],
                              num_classes=num_classes, height=h, width=w, k=k, annotator={"model": "test"})
    store.write_block(0, np.stack([m[0] for m in maps]), np.stack([m[1] for m in maps]))
    return store.materialize(cache_dir=root / "cache")
