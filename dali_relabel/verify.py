"""Checks a label store's content (and, optionally, its image folder), listing every problem by key."""

from __future__ import annotations

import dataclasses
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from .image_folder import list_images
from .store import LabelStore
from .store import format as fmt
from .store.format import block_digest


@dataclasses.dataclass(frozen=True)
class Problem:
    """One finding: its kind (a short tag), the key it concerns (None for the store as a whole), what is wrong."""

    kind: str
    key: str | None
    message: str

    def __str__(self) -> str:
        return f"[{self.kind}] {self.key}: {self.message}" if self.key is not None else f"[{self.kind}] {self.message}"


def verify_store(store: LabelStore, *, images_dir=None, decode: bool = True, progress: bool = True) -> list[Problem]:
    """Runs every check.

    Store: each block complete and matching its digest; scores finite and sorted descending; classes
    in ``[0, C)`` and distinct per cell; labels in ``[-1, C)``; keys unique. With ``images_dir``:
    every key is an image file under it, every image under it has a key, and (``decode``) every
    image decodes with DALI's CPU decoder.

    Returns:
        The problems found (empty: all good).
    """
    from tqdm import tqdm

    problems: list[Problem] = []
    keys = store.keys.tolist()
    done = store.completed_blocks()
    digests = store.block_digests()
    bar = tqdm(total=store.num_samples, unit="sample", desc=f"verifying {store.url}", disable=not progress,
               file=sys.stderr)
    for b in range(store.num_blocks):
        rows = store.block_rows(b)
        if not done[b]:
            problems.append(Problem("incomplete", None, f"block {b} (rows {rows.start}..{rows.stop - 1}, keys "
                                                        f"{keys[rows.start]!r}..{keys[rows.stop - 1]!r}) is not written"))
        else:
            problems += _check_block(store, b, rows, digests[b].tobytes(), keys)
        bar.update(len(rows))
    bar.close()
    labels = store.labels
    for i in np.nonzero((labels < -1) | (labels >= store.num_classes))[0]:
        problems.append(Problem("label", keys[i], f"label {labels[i]} outside [-1, {store.num_classes})"))
    for key, count in Counter(keys).items():
        if count > 1:
            problems.append(Problem("duplicate-key", key, f"appears {count} times"))
    if images_dir is not None:
        problems += _check_images(keys, Path(images_dir), decode, progress)
    return problems


def _check_block(store: LabelStore, b: int, rows: range, digest: bytes, keys: list[str]) -> list[Problem]:
    out = []
    try:
        scores, classes = store.read_block(b)
    except Exception as e:
        return [Problem("unreadable", None, f"block {b} (rows {rows.start}..{rows.stop - 1}) cannot be read: {e}")]
    if block_digest(scores, classes) != digest:
        out.append(Problem("digest", None, f"block {b} (rows {rows.start}..{rows.stop - 1}) does not match its "
                                           f"completion digest (modified or damaged after writing)"))
    invalid = fmt.invalid_entries(scores, classes, store.num_classes)
    checks = (
        ("not-finite", "scores contain NaN or Inf"),
        ("class-range", f"class index outside [0, {store.num_classes})"),
        ("duplicate-class", "a class appears twice in one cell"),
        ("unsorted", "scores not in descending order"),
    )
    for kind, what in checks:
        bad = invalid[kind]
        for i in np.nonzero(bad.reshape(bad.shape[0], -1).any(axis=1))[0]:
            y, x = (int(v) for v in np.argwhere(bad[i])[0][:2])
            out.append(Problem(kind, keys[rows.start + i], f"{what} (first at cell y={y}, x={x})"))
    return out


def _check_images(keys: list[str], root: Path, decode: bool, progress: bool) -> list[Problem]:
    if not root.is_dir():
        return [Problem("images", None, f"{root} is not a directory")]
    on_disk = list_images(root)
    present = set(on_disk)
    key_set = set(keys)
    out = [Problem("missing-image", k, f"no image file {root / k}") for k in keys if k not in present]
    out += [Problem("unlabelled-image", f, "image has no label map in the store") for f in on_disk if f not in key_set]
    if decode:
        from .ops.image_check import undecodable_images

        paths = [root / f for f in on_disk]
        for path, reason in undecodable_images(paths, progress=progress):
            out.append(Problem("undecodable", Path(path).relative_to(root).as_posix(), reason))
    return out
