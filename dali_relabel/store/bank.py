"""LabelBank: the serving copy of a label store, uncompressed and memory-mapped.

``<cache>/<content hash>/`` holds ``scores.npy`` (float16 or float32 [N, H, W, K], as in the store),
``classes.npy`` (int16 or int32 [N, H, W, K]), ``labels.npy`` (int32 [N]) — plain C-order ``.npy`` files, so the
``fn.relabel.lookup`` operator (and anything else) can map them — plus ``keys.json`` and
``bank.json`` (format, geometry, dtypes, content hash, annotator, class names).

A bank is created once per machine and shared: the directory name is the store's
:meth:`~dali_relabel.store.LabelStore.content_hash`; the one process that builds it holds a file
lock and writes into a temporary directory renamed into place when complete, so N ranks asking
at once end with one intact copy (in ``/dev/shm`` by default: one copy of RAM per node) that all
of them map. A bank directory that exists is always complete.

Environment variable: ``DALI_RELABEL_BANK_DIR`` — where banks live (overrides the default choice).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..fs import atomic_directory, cache_root, file_lock
from . import format as fmt
from .format import block_digest

if TYPE_CHECKING:
    from .label_store import LabelStore

BANK_FORMAT = "dali_relabel.bank"
BANK_VERSION = 1
ENV_BANK_DIR = "DALI_RELABEL_BANK_DIR"
SHM_DIR = Path("/dev/shm/dali_relabel")
# /dev/shm is RAM: leave this much (and 10%) free beyond the bank before choosing it.
_SHM_MARGIN_BYTES = 512 << 20


class LabelBank:
    """A materialized bank, memory-mapped read-only.

    Attributes:
        path: the bank directory.
        num_samples, height, width, k, num_classes: geometry.
        scores: np.memmap float16 or float32 [N, H, W, K] (the store's scores dtype).
        classes: np.memmap int16/int32 [N, H, W, K].
        labels: np.memmap int32 [N].
        meta: the parsed ``bank.json``.
    """

    def __init__(self, path: Path, meta: dict, scores: np.ndarray, classes: np.ndarray, labels: np.ndarray):
        self.path, self.meta = path, meta
        self.num_samples: int = meta["num_samples"]
        self.height: int = meta["height"]
        self.width: int = meta["width"]
        self.k: int = meta["k"]
        self.num_classes: int = meta["num_classes"]
        self.scores, self.classes, self.labels = scores, classes, labels
        self.scores_dtype: str = "float32" if scores.dtype == np.float32 else "float16"
        self._keys: list[str] | None = None

    @classmethod
    def open(cls, path) -> LabelBank:
        """Maps an existing bank directory.

        Raises:
            FileNotFoundError: no bank there.
            ValueError: the directory is not a bank of a supported version, or its files disagree with
                ``bank.json`` (the message says which).
        """
        path = Path(path)
        meta_path = path / "bank.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"LabelBank.open: {path} is not a label bank (no bank.json)")
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != BANK_FORMAT or meta.get("version") != BANK_VERSION:
            raise ValueError(f"LabelBank.open: {meta_path} is format {meta.get('format')!r} version "
                             f"{meta.get('version')!r}; expected {BANK_FORMAT!r} version {BANK_VERSION}")
        shape = (meta["num_samples"], meta["height"], meta["width"], meta["k"])
        arrays = {}
        # Banks written before float32 scores existed already record scores_dtype "<f2".
        scores_dtype = meta.get("scores_dtype", "<f2")
        if scores_dtype not in ("<f2", "<f4"):
            raise ValueError(f"LabelBank.open: {meta_path} says scores_dtype {scores_dtype!r}; a bank holds float16 "
                             f"('<f2') or float32 ('<f4') scores: delete {path} and materialize again")
        for name, dtype, want in (("scores", scores_dtype, shape), ("classes", meta["classes_dtype"], shape),
                                  ("labels", "<i4", shape[:1])):
            arr = np.load(path / f"{name}.npy", mmap_mode="r")
            if arr.shape != want or arr.dtype != np.dtype(dtype) or not arr.flags.c_contiguous:
                raise ValueError(f"LabelBank.open: {path / (name + '.npy')} holds {arr.dtype} {arr.shape}, bank.json "
                                 f"says {np.dtype(dtype)} {want}: the bank is damaged; delete {path} and materialize "
                                 f"again")
            arrays[name] = arr
        return cls(path, meta, arrays["scores"], arrays["classes"], arrays["labels"])

    @property
    def keys(self) -> list[str]:
        """The store's keys (image paths), row order."""
        if self._keys is None:
            self._keys = json.loads((self.path / "keys.json").read_text())
        return self._keys

    def __len__(self) -> int:
        return self.num_samples

    def __repr__(self) -> str:
        return (f"LabelBank({str(self.path)!r}, N={self.num_samples}, H={self.height}, W={self.width}, K={self.k}, "
                f"C={self.num_classes}, scores={self.scores_dtype})")


def bank_nbytes(store: LabelStore) -> int:
    """Bytes a store's bank takes (data files; headers and keys are small)."""
    cells = store.num_samples * store.height * store.width * store.k
    return cells * (store.scores_numpy_dtype.itemsize + store.class_dtype.itemsize) + 4 * store.num_samples


def default_bank_dirs() -> list[Path]:
    """Where banks are looked for, in order: ``$DALI_RELABEL_BANK_DIR`` alone if set, else /dev/shm then the
    user cache dir."""
    env = os.environ.get(ENV_BANK_DIR)
    if env:
        return [Path(env).expanduser()]

    dirs = [SHM_DIR] if SHM_DIR.parent.is_dir() and os.access(SHM_DIR.parent, os.W_OK) else []
    return dirs + [cache_root() / "banks"]


def materialize_store(store: LabelStore, cache_dir=None, *, progress: bool = True) -> LabelBank:
    """Finds or builds the bank of a complete store (see :meth:`LabelStore.materialize`)."""
    key = store.content_hash()  # also checks completeness
    candidates = [Path(cache_dir).expanduser()] if cache_dir is not None else default_bank_dirs()
    existing = _find(candidates, key)
    if existing is not None:
        return existing
    # The lock lives in the first candidate whatever the final location, so that ranks deciding at
    # once agree on one builder (and the others then find its result).
    lock_dir = candidates[0]
    lock_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(lock_dir / f".{key}.lock"):
        existing = _find(candidates, key)  # built by another process while this one waited for the lock
        if existing is not None:
            return existing
        target = _choose_dir(candidates, bank_nbytes(store))
        return _build(store, target / key, key, progress)


def _find(candidates: list[Path], key: str) -> LabelBank | None:
    """The bank ``key`` in the first candidate directory holding it (a bank directory that exists is complete)."""
    for d in candidates:
        if (d / key / "bank.json").is_file():
            return LabelBank.open(d / key)
    return None


def _choose_dir(candidates: list[Path], nbytes: int) -> Path:
    """The first candidate with room for the bank (plus a margin, as /dev/shm is RAM); else the last."""
    for d in candidates[:-1]:
        if _free_bytes(d) >= nbytes * 1.1 + _SHM_MARGIN_BYTES:
            return d
    return candidates[-1]


def _free_bytes(path: Path) -> int:
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        st = os.statvfs(path)
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize


def _write_header(f, dtype: str, shape: tuple[int, ...]) -> None:
    np.lib.format.write_array_header_1_0(f, {"descr": np.dtype(dtype).str, "fortran_order": False,
                                             "shape": tuple(int(s) for s in shape)})


def _build(store: LabelStore, final: Path, key: str, progress: bool) -> LabelBank:
    """Decompresses block by block into a temp dir (RAM use: one block), checks each block's digest, renames.

    Durable before visible: every file and the directory are fsynced before the rename, so a machine
    crash cannot leave a bank directory that exists but is incomplete.
    """
    from tqdm import tqdm

    # A directory without bank.json is a damaged bank (e.g. its bank.json was deleted): replaced.
    with atomic_directory(final, durable=True, replace=final.exists() and not (final / "bank.json").is_file()) as tmp:
        shape = (store.num_samples, store.height, store.width, store.k)
        digests = store.block_digests()
        started = time.perf_counter()
        with open(tmp / "scores.npy", "wb") as fs, open(tmp / "classes.npy", "wb") as fc:
            _write_header(fs, store.scores_numpy_dtype.str, shape)
            _write_header(fc, store.class_dtype.str, shape)
            bar = tqdm(total=store.num_samples, unit="sample", desc=f"materializing {store.url}", disable=not progress,
                       file=sys.stderr)
            for b in range(store.num_blocks):
                scores, classes = store.read_block(b)
                if block_digest(scores, classes) != digests[b].tobytes():
                    r = store.block_rows(b)
                    raise ValueError(f"materialize: block {b} (rows {r.start}..{r.stop - 1}) of {store.url} does not "
                                     f"match its completion digest: the store was modified or damaged; rewrite that "
                                     f"block")
                fs.write(np.ascontiguousarray(scores, store.scores_numpy_dtype).data)
                fc.write(np.ascontiguousarray(classes).data)
                bar.update(scores.shape[0])
            bar.close()
        np.save(tmp / "labels.npy", np.ascontiguousarray(store.labels, "<i4"))
        (tmp / "keys.json").write_text(json.dumps(store.keys.tolist(), ensure_ascii=False))
        meta = {"format": BANK_FORMAT, "version": BANK_VERSION, "num_samples": store.num_samples,
                "height": store.height, "width": store.width, "k": store.k, "num_classes": store.num_classes,
                "scores_dtype": store.scores_numpy_dtype.str, "classes_dtype": store.class_dtype.str,
                "content_hash": key,
                "values": "logits", "source": store.url, "annotator": store.annotator,
                "class_names": store.class_names, "store_format_version": fmt.FORMAT_VERSION,
                "materialize_seconds": round(time.perf_counter() - started, 3)}
        (tmp / "bank.json").write_text(json.dumps(meta, indent=1))
    return LabelBank.open(final)
