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
import os
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import zarr
import zarr.errors
from zarr.core.sync import sync
from zarr.storage import LocalStore

from ..errors import (InvalidArgument, StoreDamagedError, StoreExistsError, StoreIncompleteError, StoreMismatchError,
                      StoreNotFoundError, storage_error)
from ..fs import atomic_directory, file_lock, fsync_path
from . import format as fmt
from .creation import CreateRequest, create_request
from .format import block_digest
from .location import describe, inspect_destination, join_url, local_path, store_arg, try_open_group

if TYPE_CHECKING:
    from .bank import LabelBank

# Temporary objects (zarr's "*.partial") older than this were left by a killed writer (see remove_leftovers).
LEFTOVER_AGE_S = 600.0
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
        format_version: the store's format version (1 or 2; see docs/FORMAT.md).
        mode: "r" or "r+".
    """

    def __init__(self, group: zarr.Group, url: str, mode: str, *, attrs: dict | None = None,
                 identity: bytes | None = None):
        # ``attrs``/``identity``: a creator passes its own, so that the blocks it writes carry the identity of
        # the store it created even if a racing creator (possible on object stores) overwrote the metadata.
        self._group, self.url, self.mode = group, str(url), mode
        attrs = dict(group.attrs) if attrs is None else attrs
        try:
            self.num_samples: int = int(attrs["num_samples"])
            self.height: int = int(attrs["height"])
            self.width: int = int(attrs["width"])
            self.k: int = int(attrs["k"])
            self.num_classes: int = int(attrs["num_classes"])
            self.block_size: int = int(attrs["block_size"])
            self.num_blocks: int = int(attrs["num_blocks"])
        except (KeyError, TypeError, ValueError) as e:
            raise StoreDamagedError(f"LabelStore.open: the attributes of {url} (zarr.json) lack or garble "
                                    f"{e}: the store's metadata is damaged; restore the store from a copy or "
                                    f"create it again", url=str(url), object="zarr.json") from None
        self.format_version: int = int(attrs.get("format_version", 1))
        self.annotator: dict = attrs.get("annotator") or {}
        self.class_names: list[str] | None = attrs.get("class_names")
        self.class_dtype = fmt.class_dtype(self.num_classes)
        self._stored_identity: str | None = attrs.get("identity")
        self._identity = identity
        self._scores = self._array(fmt.SCORES)
        # The array's own dtype decides (stores of format version 1 have no scores_dtype attribute).
        try:
            self.scores_dtype: str = fmt.scores_dtype_name(self._scores.dtype)
        except ValueError as e:
            raise StoreDamagedError(f"LabelStore.open: {url}: {e}; the store was not written by a label store writer",
                                    url=self.url, object=f"{fmt.SCORES}/zarr.json") from None
        self.scores_numpy_dtype: np.dtype = fmt.scores_dtype(self.scores_dtype)
        self._classes = self._array(fmt.CLASSES)
        self._digests = self._array(fmt.BLOCK_DIGESTS)
        self._marker_bytes = int(self._digests.shape[1]) if self._digests.ndim == 2 else -1
        if self._digests.shape != (self.num_blocks, fmt.MARKER_BYTES.get(self.format_version, -1)):
            raise StoreDamagedError(
                f"LabelStore.open: {url}: '{fmt.BLOCK_DIGESTS}' has shape {self._digests.shape}, format version "
                f"{self.format_version} with {self.num_blocks} blocks needs "
                f"({self.num_blocks}, {fmt.MARKER_BYTES.get(self.format_version)}): the store's metadata is "
                f"damaged; restore the store from a copy", url=self.url, object=f"{fmt.BLOCK_DIGESTS}/zarr.json")
        self._keys: np.ndarray | None = None
        self._labels: np.ndarray | None = None
        self._key_index: dict[str, int] | None = None
        self._complete_cache = np.zeros(self.num_blocks, bool)  # blocks never become incomplete
        self._block_cache: tuple[int, np.ndarray, np.ndarray] | None = None

    def _array(self, name: str) -> zarr.Array:
        try:
            arr = self._group[name]
        except Exception as e:  # missing or undecodable metadata
            raise StoreDamagedError(
                f"LabelStore.open: {self.url}: the '{name}' array cannot be opened ({describe(e)}): its metadata "
                f"({name}/zarr.json) is missing or damaged; restore the store from a copy", url=self.url,
                object=f"{name}/zarr.json") from None
        if not isinstance(arr, zarr.Array):
            raise StoreDamagedError(f"LabelStore.open: {self.url}: '{name}' is not an array; the store is damaged",
                                    url=self.url, object=f"{name}/zarr.json")
        return arr

    # ------------------------------------------------------------------ creation and opening
    @classmethod
    def create(cls, url, *, keys: Sequence[str], num_classes: int, height: int, width: int, k: int,
               labels: Sequence[int] | np.ndarray | None = None, class_names: Sequence[str] | None = None,
               annotator: dict | None = None, block_size: int = 512, scores_dtype: str = fmt.DEFAULT_SCORES_DTYPE,
               exist_ok: bool = False) -> LabelStore:
        """Creates an empty store for ``len(keys)`` samples (or resumes one).

        Creation is atomic and exclusive on local file systems: the store is built in a temporary directory
        renamed into place, so of several processes creating the same store at once exactly one creates it;
        the others resume it when their settings are identical (``exist_ok``) and fail otherwise. An existing
        path must be an empty directory or a label store: nothing else is ever written into or replaced.

        Args:
            url: local path or fsspec URL (``file://``, ``memory://``, ``s3://``...).
            keys: image paths relative to the dataset root, with extension; unique, one per row; plain
                relative POSIX paths (no ``..``, ``.`` or empty component, not absolute, no control character).
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
            InvalidArgument, InvalidKeyError (ValueError): invalid arguments or keys.
            StoreMismatchError (ValueError, FileExistsError): (``exist_ok``) an existing store that differs —
                the message names the differing fields.
            StoreExistsError (FileExistsError): a store exists and ``exist_ok`` is False; or the path is a file
                or a non-empty directory that is not a label store.
            StoreWriteError (OSError): the location is full, read-only or not writable (the message names it).
        """
        request = create_request(url, keys=keys, num_classes=num_classes, height=height, width=width, k=k,
                                 labels=labels, class_names=class_names, annotator=annotator, block_size=block_size,
                                 scores_dtype=scores_dtype, exist_ok=exist_ok)
        local = local_path(url)
        if local is not None:
            return cls._create_local(local, request)
        return cls._create_remote(request)

    @classmethod
    def _create_local(cls, path: Path, req: CreateRequest) -> LabelStore:
        """Creates the store in a temp directory renamed into place: atomic, and exclusive (the rename fails if
        another process put a store there first)."""
        if path.is_symlink():
            path = path.resolve()
        state, example = inspect_destination(path)
        if state == "store":
            return cls._join(req, raced=False)
        if state == "file":
            raise StoreExistsError(f"LabelStore.create: {path} is a file, not a directory; a label store is a "
                                   f"directory: choose another path")
        if state == "foreign":
            raise StoreExistsError(f"LabelStore.create: {path} is a directory that is not a label store (it holds "
                                   f"{example!r}); nothing was written: choose a new or empty directory")
        if state == "partial" and not req.exist_ok:
            raise StoreExistsError(f"LabelStore.create: {path} holds a zarr group that is not a complete label store "
                                   f"(an interrupted creation?); pass exist_ok=True to finish it or delete it")
        if state == "empty" and os.path.ismount(path):
            # A mount point cannot be renamed onto: created in place, as on object stores (arrays first, the
            # attributes last; a racing creator with other settings is caught by the identity check).
            return cls._create_remote(req)
        try:
            # Replacing an interrupted creation (no block can have been written: writers need the finished
            # attributes) is done under a lock, so that it never moves aside a store another process just made.
            with file_lock(path.parent / f".{path.name}.create.lock") if state == "partial" else nullcontext():
                if state == "partial" and inspect_destination(path)[0] != "partial":
                    return cls._create_local(path, req)  # finished by another process meanwhile
                with atomic_directory(path, durable=True, replace=state == "partial", exclusive=True) as tmp:
                    group = zarr.open_group(LocalStore(tmp), mode="w", zarr_format=3)
                    cls._create_arrays(group, req.url, req.attrs["num_samples"], req.attrs["height"],
                                       req.attrs["width"], req.attrs["k"], req.attrs["num_classes"],
                                       req.attrs["block_size"], req.attrs["num_blocks"], req.key_bytes, req.labels,
                                       fmt.scores_dtype(req.attrs["scores_dtype"]))
                    group.attrs.put(req.attrs)
        except FileExistsError:
            return cls._join(req, raced=True)  # another process created it first
        except OSError as e:
            raise storage_error(e, doing=f"create the label store {path}", path=path.parent) from e
        return cls(zarr.open_group(LocalStore(path), mode="r+", zarr_format=3), req.url, "r+", attrs=req.attrs,
                   identity=req.identity)

    @classmethod
    def _create_remote(cls, req: CreateRequest) -> LabelStore:
        """Object stores and other fsspec URLs have no atomic rename: arrays first, the attributes last (their
        presence says that creation finished). Two creators racing here are caught by the identity check."""
        where = store_arg(req.url)
        group = try_open_group(where, "r+")
        if group is not None and group.attrs.get("format") == fmt.FORMAT_NAME:
            return cls._join(req, raced=False)
        if group is not None and not req.exist_ok and any(True for _ in group.members()):
            raise StoreExistsError(f"LabelStore.create: {req.url} holds a zarr group that is not a complete label "
                                   f"store (an interrupted creation?); pass exist_ok=True to finish it or delete it")
        if group is None:
            group = zarr.open_group(where, mode="a", zarr_format=3)
        a = req.attrs
        cls._create_arrays(group, req.url, a["num_samples"], a["height"], a["width"], a["k"], a["num_classes"],
                           a["block_size"], a["num_blocks"], req.key_bytes, req.labels,
                           fmt.scores_dtype(a["scores_dtype"]))
        group.attrs.put(a)
        if dict(zarr.open_group(where, mode="r", zarr_format=3).attrs).get("identity") != a["identity"]:
            return cls._join(req, raced=True)  # another creator's attributes won
        return cls(group, req.url, "r+", attrs=a, identity=req.identity)

    @classmethod
    def _join(cls, req: CreateRequest, *, raced: bool) -> LabelStore:
        """Opens the store that exists at ``req.url`` to resume it, if allowed and identical."""
        who = "another process created a label store at the same time" if raced else "a label store already exists"
        if not req.exist_ok:
            raise StoreExistsError(f"LabelStore.create: {who} at {req.url}; pass exist_ok=True to resume writing "
                                   f"it, or delete it first")
        store = cls.open(req.url, mode="r+")
        store._check_same(req.attrs, req.keys, req.labels if req.labels_given else None, req.class_names,
                          raced=raced)
        return store

    @staticmethod
    def _create_arrays(group: zarr.Group, url, n, h, w, k, c, block_size, n_blocks, key_bytes, labels,
                       sdt: np.dtype) -> None:
        """Creates the arrays (idempotent: an interrupted or concurrent creation writes the same)."""
        cdt = fmt.class_dtype(c)
        specs = {
            fmt.SCORES: dict(shape=(n, h, w, k), chunks=(block_size, h, w, k), dtype=sdt, fill_value=np.nan,
                             **fmt.scores_codecs(sdt.itemsize)),
            fmt.CLASSES: dict(shape=(n, h, w, k), chunks=(block_size, h, w, k), dtype=cdt, fill_value=-1,
                              **fmt.classes_codecs(cdt.itemsize)),
            fmt.LABELS: dict(shape=(n,), chunks=(min(n, 1 << 20),), dtype="<i4", fill_value=-1,
                             **fmt.small_array_codecs()),
            fmt.KEYS: dict(shape=key_bytes.shape, chunks=(min(n, 1 << 16), key_bytes.shape[1]), dtype="u1",
                           fill_value=0, **fmt.small_array_codecs()),
            fmt.BLOCK_DIGESTS: dict(shape=(n_blocks, fmt.MARKER_BYTES[fmt.FORMAT_VERSION]),
                                    chunks=(1, fmt.MARKER_BYTES[fmt.FORMAT_VERSION]), dtype="u1", fill_value=0,
                                    filters=[], compressors=None),
        }
        arrays = {}
        for name, spec in specs.items():
            try:
                arrays[name] = group.create_array(name, **spec)
            except zarr.errors.ContainsArrayError:
                existing = group[name]
                if existing.shape != spec["shape"] or existing.chunks != spec["chunks"] \
                        or np.dtype(existing.dtype) != np.dtype(spec["dtype"]):
                    raise StoreExistsError(
                        f"LabelStore.create: {url} holds an unfinished store whose '{name}' array has shape "
                        f"{existing.shape}, chunks {existing.chunks}, dtype {existing.dtype}; expected "
                        f"{spec['shape']}, {spec['chunks']}, {spec['dtype']}: delete it and create again") from None
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
            StoreNotFoundError (FileNotFoundError): nothing at ``url``, or not a zarr group.
            StoreDamagedError (ValueError): metadata that cannot be decoded (the message names the object).
            ValueError: ``url`` is not a (completely created) label store of a supported version.
        """
        if mode not in ("r", "r+"):
            raise InvalidArgument("mode", mode, "must be 'r' or 'r+'", where="LabelStore.open")
        try:
            group = try_open_group(store_arg(url), mode)
        except Exception as e:
            raise StoreDamagedError(f"LabelStore.open: {join_url(url, 'zarr.json')} cannot be read as zarr v3 "
                                    f"group metadata ({describe(e)}): the store's metadata is damaged; restore the "
                                    f"store from a copy", url=str(url), object="zarr.json") from None
        if group is None:
            local = local_path(url)
            why = ""
            if local is not None:
                why = (" (no such file or directory)" if not local.exists() else
                       " (a file, not a store directory)" if not local.is_dir() else
                       " (a serving bank directory, made from a store; `dali-relabel verify` checks banks)"
                       if (local / "bank.json").is_file() else " (a directory without zarr.json)")
            raise StoreNotFoundError(f"LabelStore.open: no label store at {url}{why}")
        attrs = group.attrs
        if attrs.get("format") != fmt.FORMAT_NAME:
            raise ValueError(f"LabelStore.open: {url} is a zarr group but not a complete label store (no "
                             f"format={fmt.FORMAT_NAME!r} attribute; an interrupted creation?): create it again "
                             f"with LabelStore.create(..., exist_ok=True)")
        if attrs.get("format_version") not in fmt.READABLE_VERSIONS:
            raise ValueError(f"LabelStore.open: {url} has format version {attrs.get('format_version')}, this "
                             f"dali_relabel reads versions {', '.join(map(str, fmt.READABLE_VERSIONS))}: upgrade "
                             f"dali_relabel")
        try:
            stored = fmt.scores_dtype_name(group[fmt.SCORES].dtype)
        except Exception:
            stored = None  # unknown dtype or undecodable metadata: named by the constructor
        said = attrs.get("scores_dtype", fmt.DEFAULT_SCORES_DTYPE)
        if stored is not None and (said != stored or attrs.get("format_version") < fmt.FORMAT_VERSION_FLOAT32
                                   and stored != "float16"):
            raise StoreDamagedError(f"LabelStore.open: {url} says scores_dtype={said!r} (format version "
                                    f"{attrs.get('format_version')}) but its scores array is {stored}: the store's "
                                    f"metadata is inconsistent; write it again", url=str(url), object="zarr.json")
        store = cls(group, url, mode)
        if mode == "r+":
            store.check_identity()  # a writer must not add blocks to a store whose metadata is mixed
            store.remove_leftovers()
        return store

    def remove_leftovers(self, min_age_s: float = LEFTOVER_AGE_S) -> list[str]:
        """Deletes the temporary objects (zarr's ``*.partial``) that writers killed mid-object left in a local store.

        Only those older than ``min_age_s``: a live writer's temporary object exists for the milliseconds its write
        takes, so it is never touched. Writers call this when they open the store (mode "r+").

        Returns:
            The deleted objects' keys.
        """
        local = self._group.store
        if not isinstance(local, LocalStore):
            return []
        root = Path(local.root) / self._group.path
        cutoff, removed = time.time() - min_age_s, []
        for name in fmt.ARRAYS:
            for path in (root / name).rglob("*.partial"):
                try:
                    if path.stat().st_mtime < cutoff:
                        path.unlink()
                        removed.append(path.relative_to(root).as_posix())
                except OSError:
                    pass  # gone meanwhile, or not ours to delete (read-only): harmless either way
        return removed

    def _check_same(self, attrs: dict, keys: list[str], labels: np.ndarray | None,
                    class_names: list[str] | None, raced: bool = False) -> None:
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
            who = "another process created a different store at the same time at" if raced else "the store at"
            raise StoreMismatchError(f"LabelStore.create(exist_ok=True): {who} {self.url}: it differs in "
                                     f"{', '.join(differ)}" + (f" ({details})" if details else "")
                                     + ": resume with the same arguments, or write a new store")

    # ------------------------------------------------------------------ identity
    @property
    def identity(self) -> bytes | None:
        """The store's identity (16 bytes, see ``format.store_identity``), derived from its metadata, keys and
        labels; None for format version 1 stores, which have none."""
        if self.format_version < 2:
            return None
        if self._identity is None:
            self._identity = fmt.store_identity(
                num_samples=self.num_samples, height=self.height, width=self.width, k=self.k,
                num_classes=self.num_classes, block_size=self.block_size, annotator=self.annotator,
                class_names=self.class_names, scores_dtype=self._scores.dtype, classes_dtype=self._classes.dtype,
                key_bytes=self._read_whole(fmt.KEYS), labels=self.labels)
        return self._identity

    @property
    def stored_identity(self) -> bytes | None:
        """The identity recorded at creation (the ``identity`` attribute); None for format version 1 stores."""
        try:
            return bytes.fromhex(self._stored_identity) if self._stored_identity else None
        except (TypeError, ValueError):
            return None

    def identity_problem(self) -> str | None:
        """Why the store's content disagrees with its ``identity`` attribute (metadata mixed by two creators, or
        damaged), or None."""
        if self.format_version < 2:
            return None
        if self.identity.hex() != self._stored_identity:
            return (f"the store's metadata, keys and labels (identity {self.identity.hex()}) do not match its "
                    f"'identity' attribute ({self._stored_identity}): two processes created it with different "
                    f"settings at once, or its metadata was modified")
        return None

    def check_identity(self) -> None:
        """Raises :class:`StoreDamagedError` when :meth:`identity_problem` finds one."""
        problem = self.identity_problem()
        if problem is not None:
            raise StoreDamagedError(f"LabelStore: {self.url}: {problem}; write a new store", url=self.url,
                                    object="zarr.json")

    # ------------------------------------------------------------------ metadata
    @property
    def keys(self) -> np.ndarray:
        """[N] str: image paths relative to the dataset root."""
        if self._keys is None:
            raw = self._read_whole(fmt.KEYS)
            try:
                self._keys = fmt.decode_keys(raw)
            except UnicodeDecodeError as e:
                raise self._damaged(fmt.KEYS, None, f"its bytes are not UTF-8 ({e})") from None
        return self._keys

    @property
    def labels(self) -> np.ndarray:
        """[N] int32: the original single labels (−1 unknown)."""
        if self._labels is None:
            self._labels = np.asarray(self._read_whole(fmt.LABELS), np.int32)
        return self._labels

    @property
    def zarr_group(self) -> zarr.Group:
        """The underlying zarr group (read it with any zarr v3 tool)."""
        return self._group

    def block_rows(self, block: int) -> range:
        """Rows of block ``block`` (the last block may be short)."""
        self._check_block(block, "block_rows")
        return range(block * self.block_size, min(self.num_samples, (block + 1) * self.block_size))

    def object_key(self, array: str, block: int = 0) -> str:
        """The key (path inside the store) of the chunk object of ``array`` holding block ``block``'s rows."""
        arr = self._group[array]
        chunk = (block * self.block_size // arr.chunks[0],) if array in (fmt.KEYS, fmt.LABELS) else (block,)
        return f"{array}/{arr.metadata.encode_chunk_key(chunk + (0,) * (arr.ndim - 1))}"

    def __len__(self) -> int:
        return self.num_samples

    def __repr__(self) -> str:
        return (f"LabelStore({self.url!r}, mode={self.mode!r}, N={self.num_samples}, H={self.height}, W={self.width}, "
                f"K={self.k}, C={self.num_classes}, blocks={int(self.completed_blocks().sum())}/{self.num_blocks})")

    # ------------------------------------------------------------------ reading objects, with their names
    def _damaged(self, array: str, block: int | None, problem: str) -> StoreDamagedError:
        obj = self.object_key(array, block) if block is not None else f"{array}/c/..."
        what = f"block {block}'s '{array}'" if block is not None else f"the '{array}' array"
        if array in (fmt.SCORES, fmt.CLASSES, fmt.BLOCK_DIGESTS) and block is not None:
            fix = (f"mark the block incomplete (dali-relabel verify --mark-incomplete {self.url}, or "
                   f"LabelStore.mark_incomplete) and rerun the writer to rewrite it, or restore the store from a copy")
        else:
            fix = "it is written once, at creation: restore the store from a copy, or create the store again"
        return StoreDamagedError(f"LabelStore: {what} in {self.url} (object {obj}) {problem}: the store is damaged; "
                                 f"{fix}", url=self.url, object=obj)

    def _read_whole(self, name: str) -> np.ndarray:
        try:
            return np.asarray(self._group[name][...])
        except Exception as e:
            raise self._damaged(name, None, f"cannot be decoded ({describe(e)})") from None

    def _read_chunk(self, name: str, arr: zarr.Array, block: int, rows: range) -> np.ndarray:
        try:
            return np.asarray(arr[rows.start:rows.stop])
        except Exception as e:
            raise self._damaged(name, block, f"cannot be decoded ({describe(e)})") from None

    def _object_exists(self, key: str) -> bool:
        try:
            return bool(sync(self._group.store.exists(f"{self._group.path}/{key}".lstrip("/"))))
        except Exception:
            return True  # unknown: say "holds no data" rather than "missing"

    # ------------------------------------------------------------------ completeness
    def _markers(self) -> tuple[np.ndarray, list[int]]:
        """(uint8 [num_blocks, marker bytes] markers, damaged blocks): a marker object damaged by a crash of the
        machine (zarr writes local objects atomically, so not of a process) counts as absent, and is listed."""
        try:
            return np.asarray(self._digests[...], np.uint8), []
        except Exception:
            rows, damaged = np.zeros(self._digests.shape, np.uint8), []
            for b in range(self.num_blocks):
                try:
                    rows[b] = self._digests[b]
                except Exception:
                    damaged.append(b)
            return rows, damaged

    def completed_blocks(self) -> np.ndarray:
        """bool [num_blocks]: which blocks are completely written."""
        if not self._complete_cache.all():
            self._complete_cache |= self._markers()[0].any(axis=1)
        return self._complete_cache.copy()

    @property
    def is_complete(self) -> bool:
        """True when every block is written."""
        return bool(self.completed_blocks().all())

    def block_digests(self) -> np.ndarray:
        """uint8 [num_blocks, 16]: each block's data digest (all zero for incomplete blocks)."""
        return self._markers()[0][:, :fmt.DIGEST_BYTES].copy()

    def block_markers(self) -> tuple[np.ndarray, list[int]]:
        """Every block's marker, ``uint8 [num_blocks, 16 or 32]`` (digest, then the writer's identity for format
        version 2; all zero: incomplete), and the blocks whose marker object is damaged (counted incomplete)."""
        return self._markers()

    def mark_incomplete(self, blocks) -> None:
        """Removes the markers of ``blocks``, so that the writer (annotate, import-naver) rewrites them on its
        next run. For blocks found damaged by ``verify``.

        Raises:
            PermissionError: the store is open read-only.
        """
        if self.mode != "r+":
            raise PermissionError(f"LabelStore.mark_incomplete: {self.url} is open read-only; open it with mode='r+'")
        for b in blocks:
            self._check_block(int(b), "mark_incomplete")
            try:
                self._digests[int(b)] = 0
            except OSError as e:
                raise storage_error(e, doing=f"mark block {b} of {self.url} incomplete", path=self.url) from e
        self._complete_cache[:] = False
        self._block_cache = None

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
            StoreWriteError (OSError): no space left, read-only or not writable (the message names the path).
        """
        if self.mode != "r+":
            raise PermissionError(f"LabelStore.write_block: {self.url} is open read-only; open it with mode='r+'")
        self._check_block(block, "write_block")
        rows = self.block_rows(block)
        scores, classes = self._validated_block(block, rows, scores, classes)
        marker = fmt.block_marker(block_digest(scores, classes),
                                  self.identity if self._marker_bytes > fmt.DIGEST_BYTES else None)
        sl = slice(rows.start, rows.stop)
        try:
            self._scores[sl] = scores
            self._classes[sl] = classes
            self._fsync_chunks(block)
            self._digests[block] = np.frombuffer(marker, np.uint8)
            self._fsync_objects([self.object_key(fmt.BLOCK_DIGESTS, block)])
        except OSError as e:
            raise storage_error(e, doing=f"write block {block} of the label store {self.url}", path=self.url,
                                then="blocks already complete are kept: rerun the same command to resume") from e
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
        self._fsync_objects([self.object_key(fmt.SCORES, block), self.object_key(fmt.CLASSES, block)])

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
            StoreIncompleteError (ValueError): a row in a block that is not completely written.
            StoreDamagedError (ValueError): a block marked complete whose data object is missing or cannot be
                decoded (the message names the block and the object).
        """
        if isinstance(rows, (int, np.integer)) and not isinstance(rows, bool):
            s, c = self.read(np.array([rows]))
            return s[0], c[0]
        if isinstance(rows, slice):
            rows = np.arange(*rows.indices(self.num_samples))
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

    def read_block(self, block: int, *, check_digest: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """The data of one complete block: ``[len(block_rows(b)), H, W, K]`` scores and classes.

        Args:
            block: the block.
            check_digest: compare the data with the block's digest (``verify`` reads without, to report
                the values of a block that fails it).

        Raises:
            StoreIncompleteError, StoreDamagedError: as :meth:`read`.
        """
        self._check_block(block, "read_block")
        self._require_complete(np.array([block]))
        return self._read_block(block, check_digest=check_digest)

    def _read_block(self, block: int, *, check_digest: bool = True) -> tuple[np.ndarray, np.ndarray]:
        # One decoded (and checked) block is kept: row-by-row reads would otherwise decode a chunk per row.
        if self._block_cache is None or self._block_cache[0] != block:
            rows = self.block_rows(block)
            scores = self._read_chunk(fmt.SCORES, self._scores, block, rows)
            classes = self._read_chunk(fmt.CLASSES, self._classes, block, rows)
            # A complete block holds finite scores and classes >= 0 (write_block checks): the fill values
            # (NaN, -1) mean that its object is missing, e.g. deleted, or never written by a foreign writer.
            for name, fill in ((fmt.SCORES, np.isnan(scores)), (fmt.CLASSES, classes < 0)):
                if fill.any():
                    key = self.object_key(name, block)
                    problem = ("is missing although the block is marked complete" if not self._object_exists(key)
                               else "holds fill values (NaN scores / class -1) although the block is marked complete")
                    raise self._damaged(name, block, problem)
            if not check_digest:
                return scores, classes
            # The digest also catches what decodes without an error: a truncated blosc object can decode to
            # garbage (its header promises more bytes than are there), a chunk rewritten behind the store's back.
            try:
                marker = np.asarray(self._digests[block], np.uint8).tobytes()
            except Exception as e:
                raise self._damaged(fmt.BLOCK_DIGESTS, block, f"cannot be decoded ({describe(e)})") from None
            if block_digest(scores, classes) != marker[:fmt.DIGEST_BYTES]:
                other = self.object_key(fmt.CLASSES, block)
                raise self._damaged(fmt.SCORES, block, f"or its 'classes' object ({other}) does not match the block's "
                                    "completion digest (modified or damaged after writing)")
            self._block_cache = (block, scores, classes)
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
            raise StoreIncompleteError(
                f"LabelStore.read: {len(missing)} requested block(s) of {self.url} are not completely written "
                f"(first: block {missing[0]}, rows {r.start}..{r.stop - 1}); finish writing them (see "
                f"completed_blocks())")

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
        # Independent of the format version (version 1 stores and version 2 stores of the same content share
        # their bank); float16 stores keep the hash (and bank name) they always had.
        identity = {"format": fmt.FORMAT_NAME, "version": 1, "n": self.num_samples,
                    "h": self.height, "w": self.width, "k": self.k, "c": self.num_classes,
                    "block_size": self.block_size, "classes": self.class_dtype.str}
        if self.scores_dtype != "float16":
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
            raise StoreIncompleteError(f"LabelStore.{where}: {self.url} is incomplete: {missing.size} of "
                                       f"{self.num_blocks} blocks not written (first: {missing[:5].tolist()}); finish "
                                       f"writing it")

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
            The :class:`~dali_relabel.store.bank.LabelBank` (``<cache_dir>/<content_hash()>.v<bank version>/``).
        """
        from .bank import materialize_store

        return materialize_store(self, cache_dir, progress=progress)


def resume_hint(url) -> str:
    """After a writer failed: "N of M blocks of <url> are complete and kept: rerun ... to resume", or "" when the
    store does not exist or holds no complete block (nothing to resume)."""
    try:
        store = LabelStore.open(url)
        done = int(store.completed_blocks().sum())
    except Exception:
        return ""
    if not done:
        return ""
    return (f"{done} of {store.num_blocks} blocks of {url} are complete and kept: rerun the same command to resume "
            f"after fixing the problem")
