"""LabelStore: the portable, compressed store of top-k label maps (a zarr v3 group).

Layout and codecs: :mod:`dali_relabel.store.format` and ``docs/FORMAT.md``. The store is written
in whole blocks of ``block_size`` samples. Each block is one chunk of ``scores`` and one of
``classes``, and completes with its own marker object (row ``b`` of ``block_digests``, the
block's digest), written only after the data is stored (and fsynced, for local paths). So:

* a crash mid-write leaves the block without a marker: it is reported incomplete and rewritten
  on resume, and a store never reports incomplete data as complete;
* processes writing different blocks touch disjoint objects and need no coordination;
* the group attributes are written once, at creation, last: a store whose creation was
  interrupted is recognised (and finished by ``create(..., exist_ok=True)``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import zarr
import zarr.errors
from zarr.storage import LocalStore

from ..fs import fsync_path
from . import format as fmt
from .format import block_digest

if TYPE_CHECKING:
    from .bank import LabelBank

# Fields that must match for create(..., exist_ok=True) to resume an existing store.
_IDENTITY_FIELDS = ("num_samples", "height", "width", "k", "num_classes", "block_size", "scores_dtype", "annotator")


class LabelStore:
    """A zarr v3 label store: ``scores``/``classes`` [N, H, W, K], ``labels`` [N], ``keys`` [N].

    Create with :meth:`create`, open with :meth:`open`; do not call the constructor.

    Attributes:
        url: where the store lives (local path or fsspec URL), as given.
        num_samples, height, width, k, num_classes, block_size, num_blocks: the store's geometry.
        scores_dtype: "float16" or "float32", how the scores are stored (stores written before the choice
            existed are float16).
        annotator: description of the machine annotator (dict, may be empty).
        class_names: one name per class (e.g. WordNet ids) or None.
        mode: "r" or "r+".
    """

    def __init__(self, group: zarr.Group, url: str, mode: str):
        attrs = dict(group.attrs)
        self._group, self.url, self.mode = group, str(url), mode
        self.num_samples: int = attrs["num_samples"]
        self.height: int = attrs["height"]
        self.width: int = attrs["width"]
        self.k: int = attrs["k"]
        self.num_classes: int = attrs["num_classes"]
        self.block_size: int = attrs["block_size"]
        self.num_blocks: int = attrs["num_blocks"]
        self.annotator: dict = attrs.get("annotator") or {}
        self.class_names: list[str] | None = attrs.get("class_names")
        self.class_dtype = fmt.class_dtype(self.num_classes)
        self._scores = group[fmt.SCORES]
        # The array's own dtype decides (stores of format version 1 have no scores_dtype attribute).
        self.scores_dtype: str = fmt.scores_dtype_name(self._scores.dtype)
        self.scores_numpy_dtype: np.dtype = fmt.scores_dtype(self.scores_dtype)
        self._classes = group[fmt.CLASSES]
        self._digests = group[fmt.BLOCK_DIGESTS]
        self._keys: np.ndarray | None = None
        self._labels: np.ndarray | None = None
        self._key_index: dict[str, int] | None = None
        self._complete_cache = np.zeros(self.num_blocks, bool)  # blocks never become incomplete
        self._block_cache: tuple[int, np.ndarray, np.ndarray] | None = None

    # ------------------------------------------------------------------ creation and opening
    @classmethod
    def create(cls, url, *, keys: Sequence[str], num_classes: int, height: int, width: int, k: int,
               labels: Sequence[int] | np.ndarray | None = None, class_names: Sequence[str] | None = None,
               annotator: dict | None = None, block_size: int = 512, scores_dtype: str = fmt.DEFAULT_SCORES_DTYPE,
               exist_ok: bool = False) -> LabelStore:
        """Creates an empty store for ``len(keys)`` samples (or resumes one).

        Args:
            url: local path or fsspec URL (``file://``, ``memory://``, ``s3://``...).
            keys: image paths relative to the dataset root, with extension; unique, one per row.
            num_classes: C (class indices are in ``[0, C)``; int16 storage when C ≤ 32768, else int32).
            height: map rows H (image y).
            width: map columns W (image x).
            k: classes kept per cell.
            labels: the images' original single labels, int in ``[-1, C)`` (−1: unknown); default all −1.
            class_names: C names (e.g. WordNet ids), optional.
            annotator: JSON-serialisable description of the machine annotator (model, input size,
                resize policy...).
            block_size: samples per block (the unit of writing, chunking and completion).
            scores_dtype: "float16" (default: half the bytes; each logit rounded to 11 significant bits) or
                "float32" (keeps float32 logits exactly, e.g. the official release's).
            exist_ok: if a store is already at ``url``: open it read-write to resume when keys, shape,
                num_classes, k, block_size, scores_dtype and annotator (and labels/class_names, when
                given) are identical; otherwise raise.

        Returns:
            The store, open in mode "r+".

        Raises:
            ValueError: invalid arguments, or (``exist_ok``) an existing store that differs — the
                message names the differing fields.
            FileExistsError: a store exists and ``exist_ok`` is False.
        """
        keys = _check_keys(keys)
        n = len(keys)
        for name, value, low in (("num_classes", num_classes, 1), ("height", height, 1), ("width", width, 1),
                                 ("k", k, 1), ("block_size", block_size, 1)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
                raise ValueError(f"LabelStore.create: {name} must be an integer >= {low}, got {value!r}")
        if k > num_classes:
            raise ValueError(f"LabelStore.create: k ({k}) cannot exceed num_classes ({num_classes})")
        if scores_dtype not in fmt.SCORES_DTYPES:
            raise ValueError(f"LabelStore.create: scores_dtype must be one of {sorted(fmt.SCORES_DTYPES)}, got "
                             f"{scores_dtype!r}")
        labels_arr = _check_labels(labels, n, num_classes)
        if class_names is not None:
            class_names = [str(c) for c in class_names]
            if len(class_names) != num_classes:
                raise ValueError(f"LabelStore.create: {len(class_names)} class_names for num_classes={num_classes}")
        annotator = dict(annotator or {})
        try:
            annotator = json.loads(json.dumps(annotator))  # normalised, so that resume compares like with like
        except (TypeError, ValueError) as e:
            raise ValueError(f"LabelStore.create: annotator must be JSON-serialisable: {e}") from None

        n_blocks = -(-n // block_size)
        attrs = {
            "format": fmt.FORMAT_NAME, "format_version": fmt.format_version(scores_dtype),
            "num_samples": n, "height": int(height), "width": int(width), "k": int(k),
            "num_classes": int(num_classes), "scores_dtype": scores_dtype, "values": "logits",
            "layout": "scores/classes [N, H, W, K]: row = image y, column = image x, K sorted by descending score",
            "annotator": annotator, "class_names": class_names,
            "block_size": int(block_size), "num_blocks": n_blocks,
            "completeness": {"array": fmt.BLOCK_DIGESTS, "rule": fmt.COMPLETENESS_RULE},
            "keys_encoding": fmt.KEYS_ENCODING,
        }
        store_arg = _store_arg(url)
        group = _try_open_group(store_arg, "r+")
        if group is not None and group.attrs.get("format") == fmt.FORMAT_NAME:
            if not exist_ok:
                raise FileExistsError(f"LabelStore.create: a label store already exists at {url}; pass exist_ok=True "
                                      f"to resume writing it, or delete it first")
            store = cls(group, url, "r+")
            store._check_same(attrs, keys, None if labels is None else labels_arr, class_names)
            return store
        if group is not None and not exist_ok and any(True for _ in group.members()):
            raise FileExistsError(f"LabelStore.create: {url} holds a zarr group that is not a complete label store "
                                  f"(an interrupted creation?); pass exist_ok=True to finish it or delete it")
        if group is None:
            group = zarr.open_group(store_arg, mode="a", zarr_format=3)
        cls._create_arrays(group, url, n, int(height), int(width), int(k), int(num_classes), int(block_size),
                           n_blocks, keys, labels_arr, fmt.scores_dtype(scores_dtype))
        # The format attribute goes last: its presence says that creation finished.
        group.attrs.put(attrs)
        return cls(group, url, "r+")

    @staticmethod
    def _create_arrays(group: zarr.Group, url, n, h, w, k, c, block_size, n_blocks, keys, labels,
                       sdt: np.dtype) -> None:
        """Creates the arrays (idempotent: an interrupted or concurrent creation writes the same)."""
        cdt = fmt.class_dtype(c)
        key_bytes = fmt.encode_keys(keys)
        specs = {
            fmt.SCORES: dict(shape=(n, h, w, k), chunks=(block_size, h, w, k), dtype=sdt, fill_value=np.nan,
                             **fmt.scores_codecs(sdt.itemsize)),
            fmt.CLASSES: dict(shape=(n, h, w, k), chunks=(block_size, h, w, k), dtype=cdt, fill_value=-1,
                              **fmt.classes_codecs(cdt.itemsize)),
            fmt.LABELS: dict(shape=(n,), chunks=(min(n, 1 << 20),), dtype="<i4", fill_value=-1,
                             **fmt.small_array_codecs()),
            fmt.KEYS: dict(shape=key_bytes.shape, chunks=(min(n, 1 << 16), key_bytes.shape[1]), dtype="u1",
                           fill_value=0, **fmt.small_array_codecs()),
            fmt.BLOCK_DIGESTS: dict(shape=(n_blocks, fmt.DIGEST_BYTES), chunks=(1, fmt.DIGEST_BYTES), dtype="u1",
                                    fill_value=0, filters=[], compressors=None),
        }
        arrays = {}
        for name, spec in specs.items():
            try:
                arrays[name] = group.create_array(name, **spec)
            except zarr.errors.ContainsArrayError:
                existing = group[name]
                if existing.shape != spec["shape"] or existing.chunks != spec["chunks"] \
                        or np.dtype(existing.dtype) != np.dtype(spec["dtype"]):
                    raise ValueError(f"LabelStore.create: {url} holds an unfinished store whose '{name}' array has "
                                     f"shape {existing.shape}, chunks {existing.chunks}, dtype {existing.dtype}; "
                                     f"expected {spec['shape']}, {spec['chunks']}, {spec['dtype']}: delete it "
                                     f"and create again") from None
                arrays[name] = existing
        arrays[fmt.KEYS][...] = key_bytes
        arrays[fmt.LABELS][...] = labels

    @classmethod
    def open(cls, url, mode: str = "r") -> LabelStore:
        """Opens an existing store.

        Args:
            url: local path or fsspec URL.
            mode: "r" (read-only, default) or "r+" (read-write, to write blocks).

        Raises:
            FileNotFoundError: nothing at ``url``.
            ValueError: ``url`` is not a (completely created) label store of a supported version.
        """
        if mode not in ("r", "r+"):
            raise ValueError(f"LabelStore.open: mode must be 'r' or 'r+', got {mode!r}")
        group = _try_open_group(_store_arg(url), mode)
        if group is None:
            raise FileNotFoundError(f"LabelStore.open: no label store at {url}")
        attrs = group.attrs
        if attrs.get("format") != fmt.FORMAT_NAME:
            raise ValueError(f"LabelStore.open: {url} is a zarr group but not a complete label store (no "
                             f"format={fmt.FORMAT_NAME!r} attribute; an interrupted creation?): create it again "
                             f"with LabelStore.create(..., exist_ok=True)")
        if attrs.get("format_version") not in fmt.READABLE_VERSIONS:
            raise ValueError(f"LabelStore.open: {url} has format version {attrs.get('format_version')}, this "
                             f"dali_relabel reads versions {list(fmt.READABLE_VERSIONS)}: upgrade dali_relabel")
        try:
            stored = fmt.scores_dtype_name(group[fmt.SCORES].dtype)
        except ValueError as e:
            raise ValueError(f"LabelStore.open: {url}: {e}; the store was not written by a label store "
                             f"writer") from None
        said = attrs.get("scores_dtype", fmt.DEFAULT_SCORES_DTYPE)
        if said != stored or attrs.get("format_version") < fmt.format_version(stored):
            raise ValueError(f"LabelStore.open: {url} says scores_dtype={said!r} (format version "
                             f"{attrs.get('format_version')}) but its scores array is {stored}: the store's metadata "
                             f"is inconsistent; write it again")
        return cls(group, url, mode)

    def _check_same(self, attrs: dict, keys: list[str], labels: np.ndarray | None,
                    class_names: list[str] | None) -> None:
        differ = [f for f in _IDENTITY_FIELDS if getattr(self, f) != attrs[f]]
        if not np.array_equal(self.keys, np.asarray(keys, dtype=str)):
            differ.append("keys")
        if labels is not None and not np.array_equal(self.labels, labels):
            differ.append("labels")
        if class_names is not None and self.class_names != class_names:
            differ.append("class_names")
        if differ:
            details = "; ".join(f"{f}: existing {getattr(self, f)!r}, requested {attrs[f]!r}"
                                for f in differ if f in attrs)
            raise ValueError(f"LabelStore.create(exist_ok=True): the store at {self.url} differs in "
                             f"{', '.join(differ)}" + (f" ({details})" if details else "")
                             + ": resume with the same arguments, or write a new store")

    # ------------------------------------------------------------------ metadata
    @property
    def keys(self) -> np.ndarray:
        """[N] str: image paths relative to the dataset root."""
        if self._keys is None:
            self._keys = fmt.decode_keys(self._group[fmt.KEYS][...])
        return self._keys

    @property
    def labels(self) -> np.ndarray:
        """[N] int32: the original single labels (−1 unknown)."""
        if self._labels is None:
            self._labels = np.asarray(self._group[fmt.LABELS][...], np.int32)
        return self._labels

    @property
    def zarr_group(self) -> zarr.Group:
        """The underlying zarr group (read it with any zarr v3 tool)."""
        return self._group

    def block_rows(self, block: int) -> range:
        """Rows of block ``block`` (the last block may be short)."""
        self._check_block(block, "block_rows")
        return range(block * self.block_size, min(self.num_samples, (block + 1) * self.block_size))

    def __len__(self) -> int:
        return self.num_samples

    def __repr__(self) -> str:
        return (f"LabelStore({self.url!r}, mode={self.mode!r}, N={self.num_samples}, H={self.height}, W={self.width}, "
                f"K={self.k}, C={self.num_classes}, blocks={int(self.completed_blocks().sum())}/{self.num_blocks})")

    # ------------------------------------------------------------------ completeness
    def completed_blocks(self) -> np.ndarray:
        """bool [num_blocks]: which blocks are completely written."""
        todo = np.nonzero(~self._complete_cache)[0]
        if todo.size:
            try:
                rows = self._digests[...]
                self._complete_cache |= rows.any(axis=1)
            except Exception:
                # A marker object damaged by a crash of the machine (not the process: zarr writes local
                # objects atomically) must not hide the others: read them one by one, damaged = incomplete.
                for b in todo:
                    try:
                        self._complete_cache[b] = bool(self._digests[b].any())
                    except Exception:
                        pass
        return self._complete_cache.copy()

    @property
    def is_complete(self) -> bool:
        """True when every block is written."""
        return bool(self.completed_blocks().all())

    def block_digests(self) -> np.ndarray:
        """uint8 [num_blocks, 16]: each block's digest (all zero for incomplete blocks)."""
        return np.asarray(self._digests[...], np.uint8)

    # ------------------------------------------------------------------ writing
    def write_block(self, block: int, scores: np.ndarray, classes: np.ndarray) -> None:
        """Writes one whole block and then marks it complete.

        Safe to call from several processes at once for different blocks. Writing a complete block
        again replaces it (and its digest).

        Args:
            block: block index in ``[0, num_blocks)``.
            scores: ``[len(block_rows(block)), H, W, K]`` float logits, non-increasing along K, finite
                (stored as ``scores_dtype``, rounded to nearest; values outside its range are rejected).
            classes: same shape, integer class indices in ``[0, num_classes)``, distinct per cell.

        Raises:
            ValueError: wrong shape or invalid values; the message names the row, key and cell.
            PermissionError: the store is open read-only.
        """
        if self.mode != "r+":
            raise PermissionError(f"LabelStore.write_block: {self.url} is open read-only; open it with mode='r+'")
        self._check_block(block, "write_block")
        rows = self.block_rows(block)
        scores, classes = self._validated_block(block, rows, scores, classes)
        sl = slice(rows.start, rows.stop)
        self._scores[sl] = scores
        self._classes[sl] = classes
        self._fsync_chunks(block)
        digest = block_digest(scores, classes)
        self._digests[block] = np.frombuffer(digest, np.uint8)
        self._fsync_objects([f"{fmt.BLOCK_DIGESTS}/{self._digests.metadata.encode_chunk_key((block, 0))}"])
        self._complete_cache[block] = True
        if self._block_cache is not None and self._block_cache[0] == block:
            self._block_cache = None

    def _validated_block(self, block: int, rows: range, scores, classes) -> tuple[np.ndarray, np.ndarray]:
        where = f"LabelStore.write_block(block {block})"
        scores, classes = np.asarray(scores), np.asarray(classes)
        shape = (len(rows), self.height, self.width, self.k)
        for name, arr in (("scores", scores), ("classes", classes)):
            if arr.shape != shape:
                raise ValueError(f"{where}: {name} has shape {arr.shape}, expected {shape} "
                                 f"(rows {rows.start}..{rows.stop - 1}, [rows, H, W, K])")
        if not np.issubdtype(scores.dtype, np.floating):
            raise ValueError(f"{where}: scores must be floating point, got {scores.dtype}")
        if not np.issubdtype(classes.dtype, np.integer):
            raise ValueError(f"{where}: classes must be integers, got {classes.dtype}")
        with np.errstate(over="ignore"):
            stored = scores.astype(self.scores_numpy_dtype)
        bad = fmt.invalid_entries(stored, classes, self.num_classes)
        mask = bad["not-finite"]
        if mask.any():
            original = scores[mask][0]
            reason = "not finite" if not np.isfinite(original) else f"outside the {self.scores_dtype} range"
            self._fail(where, rows, mask, f"score {original} is {reason}", "store finite logits")
        mask = bad["class-range"]
        if mask.any():
            self._fail(where, rows, mask, f"class {classes[mask][0]} outside [0, {self.num_classes})",
                       "check num_classes and the annotator's class indices")
        if bad["unsorted"].any():
            self._fail(where, rows, bad["unsorted"], "scores not sorted in descending order",
                       "sort each cell by descending score (np.argsort(-scores, axis=-1))")
        if bad["duplicate-class"].any():
            self._fail(where, rows, bad["duplicate-class"], "a class appears twice in one cell",
                       "each cell's top-k classes must differ")
        return stored, classes.astype(self.class_dtype)

    def _fail(self, where: str, rows: range, bad: np.ndarray, problem: str, fix: str) -> None:
        i, y, x = (int(v) for v in np.argwhere(bad)[0][:3])
        row = rows.start + i
        raise ValueError(f"{where}: row {row} (key {str(self.keys[row])!r}), cell (y={y}, x={x}): {problem} "
                         f"[{int(bad.any(axis=(1, 2, 3)).sum()) if bad.ndim == 4 else 1} sample(s) affected]; {fix}")

    def _fsync_chunks(self, block: int) -> None:
        self._fsync_objects([f"{name}/{arr.metadata.encode_chunk_key((block, 0, 0, 0))}"
                             for name, arr in ((fmt.SCORES, self._scores), (fmt.CLASSES, self._classes))])

    def _fsync_objects(self, keys: list[str]) -> None:
        """Makes written objects durable on a local file system (remote object stores are once PUT returns)."""
        store = self._group.store
        if not isinstance(store, LocalStore):
            return
        root = Path(store.root) / self._group.path
        paths = [root / key for key in keys]
        for path in paths:
            fsync_path(path)
        for d in {path.parent for path in paths}:  # the rename that put the object in place
            fsync_path(d)

    # ------------------------------------------------------------------ reading
    def read(self, rows) -> tuple[np.ndarray, np.ndarray]:
        """Reads samples by row.

        Args:
            rows: an int (one sample), a slice, or an int array (any order, repeats allowed).

        Returns:
            ``(scores, classes)``: ``scores_dtype`` and int16/int32, ``[H, W, K]`` for an int, else
            ``[len(rows), H, W, K]``.

        Raises:
            IndexError: a row outside ``[-N, N)``.
            ValueError: a row in a block that is not completely written.
        """
        if isinstance(rows, (int, np.integer)) and not isinstance(rows, bool):
            s, c = self.read(np.array([rows]))
            return s[0], c[0]
        if isinstance(rows, slice):
            start, stop, step = rows.indices(self.num_samples)
            if step == 1:
                if stop <= start:
                    return self._empty()
                self._require_complete(np.arange(start // self.block_size, (stop - 1) // self.block_size + 1))
                return (np.asarray(self._scores[start:stop]), np.asarray(self._classes[start:stop]))
            rows = np.arange(start, stop, step)
        idx = np.asarray(rows)
        if idx.ndim != 1 or not (np.issubdtype(idx.dtype, np.integer) or idx.size == 0):
            raise TypeError(f"LabelStore.read: rows must be an int, a slice or a 1-D int array, got {rows!r}")
        idx = idx.astype(np.int64)
        out_of_range = (idx < -self.num_samples) | (idx >= self.num_samples)
        if out_of_range.any():
            raise IndexError(f"LabelStore.read: row {idx[out_of_range][0]} out of range for a store of "
                             f"{self.num_samples} samples ({self.url})")
        idx = np.where(idx < 0, idx + self.num_samples, idx)
        if idx.size == 0:
            return self._empty()
        blocks = idx // self.block_size
        self._require_complete(np.unique(blocks))
        scores = np.empty((idx.size, self.height, self.width, self.k), self.scores_numpy_dtype)
        classes = np.empty(scores.shape, self.class_dtype)
        for b in np.unique(blocks):
            sel = np.nonzero(blocks == b)[0]
            bs, bc = self._read_block(int(b))
            scores[sel], classes[sel] = bs[idx[sel] - b * self.block_size], bc[idx[sel] - b * self.block_size]
        return scores, classes

    def read_block(self, block: int) -> tuple[np.ndarray, np.ndarray]:
        """The data of one complete block: ``[len(block_rows(b)), H, W, K]`` scores and classes."""
        self._check_block(block, "read_block")
        self._require_complete(np.array([block]))
        return self._read_block(block)

    def _read_block(self, block: int) -> tuple[np.ndarray, np.ndarray]:
        # One decoded block is kept: row-by-row reads would otherwise decode a whole chunk per row.
        if self._block_cache is None or self._block_cache[0] != block:
            rows = self.block_rows(block)
            sl = slice(rows.start, rows.stop)
            self._block_cache = (block, np.asarray(self._scores[sl]), np.asarray(self._classes[sl]))
        return self._block_cache[1], self._block_cache[2]

    def _empty(self) -> tuple[np.ndarray, np.ndarray]:
        shape = (0, self.height, self.width, self.k)
        return np.empty(shape, self.scores_numpy_dtype), np.empty(shape, self.class_dtype)

    def _require_complete(self, blocks: np.ndarray) -> None:
        if self._complete_cache[blocks].all():
            return
        done = self.completed_blocks()
        missing = [int(b) for b in blocks if not done[b]]
        if missing:
            r = self.block_rows(missing[0])
            raise ValueError(f"LabelStore.read: {len(missing)} requested block(s) of {self.url} are not completely "
                             f"written (first: block {missing[0]}, rows {r.start}..{r.stop - 1}); finish writing "
                             f"them (see completed_blocks())")

    def _check_block(self, block: int, where: str) -> None:
        if not isinstance(block, (int, np.integer)) or not 0 <= block < self.num_blocks:
            raise IndexError(f"LabelStore.{where}: block {block!r} out of range [0, {self.num_blocks})")

    # ------------------------------------------------------------------ keys
    def row_of(self, key: str) -> int:
        """The row of one key. Raises KeyError naming it when absent."""
        return int(self.rows_of([key])[0])

    def rows_of(self, keys) -> np.ndarray:
        """int64 rows of several keys. Raises KeyError naming the missing ones."""
        if self._key_index is None:
            self._key_index = {k: i for i, k in enumerate(self.keys.tolist())}
        keys = [keys] if isinstance(keys, str) else list(keys)
        index = self._key_index
        missing = [k for k in keys if k not in index]
        if missing:
            shown = ", ".join(repr(k) for k in missing[:10])
            more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise KeyError(f"{len(missing)} key(s) not in label store {self.url}: {shown}{more} "
                           f"(keys are image paths relative to the dataset root, with extension)")
        return np.fromiter((index[k] for k in keys), np.int64, len(keys))

    # ------------------------------------------------------------------ identity, size, serving
    def content_hash(self) -> str:
        """Hex digest identifying the store's content (the serving bank's directory name).

        Derived from the geometry, dtypes, keys, labels and every block's digest, so it costs no
        pass over the data. Requires a complete store.
        """
        self._require_all_complete("content_hash")
        h = hashlib.blake2b(digest_size=16)
        identity = {"format": fmt.FORMAT_NAME, "version": fmt.FORMAT_VERSION, "n": self.num_samples,
                    "h": self.height, "w": self.width, "k": self.k, "c": self.num_classes,
                    "block_size": self.block_size, "classes": self.class_dtype.str}
        if self.scores_dtype != "float16":  # float16 stores keep the hash (and bank name) they always had
            identity["scores"] = self.scores_numpy_dtype.str
        h.update(json.dumps(identity).encode())
        h.update(self.block_digests().tobytes())
        h.update(np.ascontiguousarray(self.labels, "<i4").tobytes())
        h.update("\0".join(self.keys.tolist()).encode("utf-8"))
        return h.hexdigest()

    def _require_all_complete(self, where: str) -> None:
        done = self.completed_blocks()
        if not done.all():
            missing = np.nonzero(~done)[0]
            raise ValueError(f"LabelStore.{where}: {self.url} is incomplete: {missing.size} of {self.num_blocks} "
                             f"blocks not written (first: {missing[:5].tolist()}); finish writing it")

    def nbytes_stored(self) -> dict[str, int]:
        """Stored (compressed) bytes per array, metadata included."""
        return {name: int(self._group[name].nbytes_stored())
                for name in (fmt.SCORES, fmt.CLASSES, fmt.LABELS, fmt.KEYS, fmt.BLOCK_DIGESTS)}

    def materialize(self, cache_dir=None, *, progress: bool = True) -> LabelBank:
        """Decompresses the (complete) store once into a memory-mappable serving bank, or finds it.

        Args:
            cache_dir: directory holding banks; default ``$DALI_RELABEL_BANK_DIR``, else
                ``/dev/shm/dali_relabel`` when the bank fits there, else the user cache dir.
            progress: show a progress bar while decompressing.

        Returns:
            The :class:`~dali_relabel.store.bank.LabelBank` (``<cache_dir>/<content_hash()>/``).
        """
        from .bank import materialize_store

        return materialize_store(self, cache_dir, progress=progress)


def _store_arg(url):
    """zarr's store argument: local paths (and file:// URLs) become LocalStore, other URLs go to fsspec."""
    s = str(url)
    if s.startswith("file://"):
        s = s[len("file://"):]
    if "://" in s:
        return s
    return Path(s).expanduser()


def _try_open_group(store_arg, mode: str) -> zarr.Group | None:
    try:
        return zarr.open_group(store_arg, mode=mode, zarr_format=3)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, KeyError):
        return None


def _check_keys(keys) -> list[str]:
    if isinstance(keys, str):
        raise ValueError("LabelStore.create: keys must be a sequence of strings, not one string")
    keys = [k for k in keys]
    if not keys:
        raise ValueError("LabelStore.create: keys is empty; a store holds at least one sample")
    for i, key in enumerate(keys):
        if not isinstance(key, (str, np.str_)) or not key:
            raise ValueError(f"LabelStore.create: keys[{i}] = {key!r} is not a non-empty string")
        if "\0" in key or key.startswith("/") or "\\" in key:
            raise ValueError(f"LabelStore.create: keys[{i}] = {key!r} must be a relative path with '/' separators "
                             f"and no NUL character")
    keys = [str(k) for k in keys]
    if len(set(keys)) != len(keys):
        seen, dups = set(), []
        for key in keys:
            if key in seen:
                dups.append(key)
            seen.add(key)
        raise ValueError(f"LabelStore.create: {len(dups)} duplicate key(s), e.g. {dups[:5]}; keys must be unique")
    return keys


def _check_labels(labels, n: int, num_classes: int) -> np.ndarray:
    if labels is None:
        return np.full(n, -1, np.int32)
    arr = np.asarray(labels)
    if arr.shape != (n,) or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise ValueError(f"LabelStore.create: labels must be {n} integers (one per key), got shape {arr.shape} "
                         f"dtype {arr.dtype}")
    bad = (arr < -1) | (arr >= num_classes)
    if bad.any():
        i = int(np.nonzero(bad)[0][0])
        raise ValueError(f"LabelStore.create: labels[{i}] = {arr[i]} outside [-1, {num_classes}) (−1 means unknown)")
    return arr.astype(np.int32)
