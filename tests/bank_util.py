"""Served banks for tests: from given label maps (through LabelStore), or written directly with numpy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from reference import random_label_map

from dali_relabel import LabelStore


def make_bank(root, maps, num_classes):
    """A ``LabelBank`` with the given ``(scores, classes)`` maps as rows 0..n-1 (store and cache under root)."""
    h, w, k = maps[0][0].shape
    store = LabelStore.create(str(root / "maps.zarr"), keys=[f"c/{i}.jpg" for i in range(len(maps))],
                              num_classes=num_classes, height=h, width=w, k=k, annotator={"model": "test"})
    store.write_block(0, np.stack([m[0] for m in maps]), np.stack([m[1] for m in maps]))
    return store.materialize(cache_dir=root / "cache")


def write_bank(path: Path, *, n: int = 12, h: int = 4, w: int = 5, k: int = 3, num_classes: int = 50,
               class_dtype=np.int16, score_dtype=np.float16, seed: int = 0) -> dict[str, np.ndarray]:
    """Writes a bank directory (scores/classes/labels .npy + bank.json) with numpy; returns its arrays."""
    rng = np.random.default_rng(seed)
    maps = [random_label_map(rng, h, w, k, num_classes, score_dtype, class_dtype) for _ in range(n)]
    scores = np.stack([m[0] for m in maps]) if n else np.zeros((0, h, w, k), score_dtype)
    classes = np.stack([m[1] for m in maps]) if n else np.zeros((0, h, w, k), class_dtype)
    labels = rng.integers(-1, num_classes, size=n).astype(np.int32)
    path.mkdir(parents=True, exist_ok=True)
    np.save(path / "scores.npy", scores)
    np.save(path / "classes.npy", classes)
    np.save(path / "labels.npy", labels)
    info = {"format": "dali_relabel.bank", "version": 1, "num_samples": n, "height": h, "width": w, "k": k,
            "num_classes": num_classes}
    (path / "bank.json").write_text(json.dumps(info, indent=1))
    return {"scores": scores, "classes": classes, "labels": labels}
