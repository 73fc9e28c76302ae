"""Checks a label store's content (and, optionally, its image folder) or a serving bank, listing every problem."""

from __future__ import annotations

import dataclasses
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from .errors import DaliRelabelError
from .image_folder import key_problem, list_images
from .store import LabelStore
from .store import format as fmt
from .store.format import block_digest

# Problems that rewriting the block cures: mark_incomplete() + rerunning the writer.
REWRITABLE = ("damaged", "damaged-marker", "digest", "identity", "not-finite", "class-range", "duplicate-class",
              "unsorted")


@dataclasses.dataclass(frozen=True)
class Problem:
    """One finding: its kind (a short tag), the key it concerns (None for the store as a whole), what is wrong,
    and the block concerned (None if not a block's)."""

    kind: str
    key: str | None
    message: str
    block: int | None = None

    def __str__(self) -> str:
        return f"[{self.kind}] {self.key}: {self.message}" if self.key is not None else f"[{self.kind}] {self.message}"


def verify_store(store: LabelStore, *, images_dir=None, decode: bool = True, progress: bool = True) -> list[Problem]:
    """Runs every check.

    Store: the metadata agrees with the store's identity; every block is complete, was written for this store
    (its marker's identity, format version 2) and matches its digest; its objects exist and decode; scores
    finite and sorted descending; classes in ``[0, C)`` and distinct per cell; labels in ``[-1, C)``; keys
    unique plain relative paths. With ``images_dir``: every key is an image file under it, every image under it
    has a key, no symbolic link was skipped, and (``decode``) every image decodes with DALI's CPU decoder.

    Returns:
        The problems found (empty: all good). Blocks with a problem of a kind in :data:`REWRITABLE` can be
        marked incomplete (``LabelStore.mark_incomplete``) so that the writer rewrites them.
    """
    from tqdm import tqdm

    problems: list[Problem] = []
    try:
        keys = store.keys.tolist()
    except DaliRelabelError as e:
        problems.append(Problem("damaged", None, str(e)))
        keys = None
    try:
        labels = store.labels
    except DaliRelabelError as e:
        problems.append(Problem("damaged", None, str(e)))
        labels = None
    if keys is not None and labels is not None:
        identity = store.identity_problem()
        if identity is not None:
            problems.append(Problem("identity", None, f"{identity}; write a new store"))
    names = keys if keys is not None else [f"<row {i}>" for i in range(store.num_samples)]
    markers, damaged_markers = store.block_markers()
    done = markers.any(axis=1)
    # Blocks are compared with the identity the store was created with (its attribute): if the metadata was
    # changed or mixed since, that is one problem (above), not one per block.
    own = store.stored_identity
    bar = tqdm(total=store.num_samples, unit="sample", desc=f"verifying {store.url}", disable=not progress,
               file=sys.stderr)
    for b in range(store.num_blocks):
        rows = store.block_rows(b)
        span = f"block {b} (rows {rows.start}..{rows.stop - 1})"
        if b in damaged_markers:
            problems.append(Problem("damaged-marker", None, f"{span}: its marker object "
                                    f"{store.object_key(fmt.BLOCK_DIGESTS, b)} cannot be decoded, so the block counts "
                                    f"as not written; rerun the writer to rewrite it", b))
        elif not done[b]:
            problems.append(Problem("incomplete", None, f"block {b} (rows {rows.start}..{rows.stop - 1}, keys "
                                                        f"{names[rows.start]!r}..{names[rows.stop - 1]!r}) is not "
                                                        f"written"))
        else:
            marker = markers[b].tobytes()
            if own is not None and len(marker) > fmt.DIGEST_BYTES and marker[fmt.DIGEST_BYTES:] != own:
                problems.append(Problem("identity", None, f"{span} was written for another store (identity "
                                        f"{marker[fmt.DIGEST_BYTES:].hex()}, this store's is {own.hex()}): writers "
                                        f"with different settings mixed their blocks; mark it incomplete and rerun "
                                        f"the writer with this store's settings", b))
            problems += _check_block(store, b, rows, marker[:fmt.DIGEST_BYTES], names)
        bar.update(len(rows))
    bar.close()
    if labels is not None:
        for i in np.nonzero((labels < -1) | (labels >= store.num_classes))[0]:
            problems.append(Problem("label", names[i], f"label {labels[i]} outside [-1, {store.num_classes})"))
    if keys is not None:
        for key, count in Counter(keys).items():
            if count > 1:
                problems.append(Problem("duplicate-key", key, f"appears {count} times"))
        for key in keys:
            problem = key_problem(key)
            if problem is not None:
                problems.append(Problem("bad-key", repr(key), f"the key {problem}; it will not be resolved (a key "
                                                             f"never names a file outside the dataset root)"))
        if images_dir is not None:
            problems += _check_images(keys, Path(images_dir), decode, progress)
    return problems


def _check_block(store: LabelStore, b: int, rows: range, digest: bytes, keys: list[str]) -> list[Problem]:
    out = []
    try:
        scores, classes = store.read_block(b, check_digest=False)  # compared below: reported as "digest"
    except DaliRelabelError as e:
        return [Problem("damaged", None, str(e), b)]
    except Exception as e:
        return [Problem("damaged", None, f"block {b} (rows {rows.start}..{rows.stop - 1}) cannot be read: {e}", b)]
    if block_digest(scores, classes) != digest:
        out.append(Problem("digest", None, f"block {b} (rows {rows.start}..{rows.stop - 1}) does not match its "
                                           f"completion digest (modified or damaged after writing)", b))
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
            out.append(Problem(kind, keys[rows.start + i], f"{what} (first at cell y={y}, x={x})", b))
    return out


def _check_images(keys: list[str], root: Path, decode: bool, progress: bool) -> list[Problem]:
    if not root.is_dir():
        return [Problem("images", None, f"{root} is not a directory")]
    skipped: list[str] = []
    try:
        on_disk = list_images(root, skipped)
    except DaliRelabelError as e:
        return [Problem("images", None, str(e))]
    present = set(on_disk)
    key_set = set(keys)
    out = [Problem("skipped-link", None, f"{root}/{line}") for line in skipped]
    out += [Problem("missing-image", k, f"no image file {root / k}") for k in keys
            if k not in present and key_problem(k) is None]
    out += [Problem("unlabelled-image", f, "image has no label map in the store") for f in on_disk if f not in key_set]
    if decode:
        from .ops.image_check import undecodable_images

        paths = [root / f for f in on_disk]
        for path, reason in undecodable_images(paths, progress=progress):
            out.append(Problem("undecodable", Path(path).relative_to(root).as_posix(), reason))
    return out


def verify_bank(path) -> list[Problem]:
    """Checks a serving bank directory: ``bank.json``, and every file's size and full digest against it."""
    from .store.bank import check_bank_files, read_bank_meta

    path = Path(path)
    try:
        meta = read_bank_meta(path)
    except DaliRelabelError as e:
        return [Problem("bank", None, str(e))]
    return [Problem("bank", None, f"{p}; LabelStore.materialize() rebuilds the bank")
            for p in check_bank_files(path, meta, full=True)]


def is_bank(path) -> bool:
    """Whether ``path`` is a bank directory (holds bank.json) rather than a store."""
    return (Path(path) / "bank.json").is_file()
