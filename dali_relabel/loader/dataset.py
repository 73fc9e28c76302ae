"""The loaders' dataset: the images, matched to their label maps in a store (or to their folder labels).

Everything here runs once, at construction, and fails early with a message that names the images and says what
to do: images without maps, class folders that disagree with the store, files that are not images.
"""

from __future__ import annotations

import dataclasses
import sys
import warnings

import numpy as np

from ..image_folder import IMAGE_EXTENSIONS, ImageList, is_inside
from ..shards import ShardSet, is_shard_spec
from ..store import LabelStore
from .epochs import epoch_order, grouped_order

MISSING = ("error", "onehot")


@dataclasses.dataclass
class LabeledImages:
    """Images and what the pipelines read for each: a store row, or (without a store) the class label.

    Attributes:
        images: the image listing (keys relative to ``images.root``), or webdataset shards (a ``ShardSet``: keys
            are the store keys the samples match).
        store: the label store, or None (evaluation on folder labels).
        reader_rows: [N] int64 per image, what the reader hands the pipeline: the store row; ``M + label`` for
            an image without a map under ``missing="onehot"`` (``M`` = store size; see ``relabel_targets``);
            the folder label without a store.
        rows: [N] int64 store row per image, -1 without a map (or without a store).
        num_classes: C.
        num_missing: images without a label map (one-hot targets).
    """

    images: ImageList | ShardSet
    store: LabelStore | None
    reader_rows: np.ndarray
    rows: np.ndarray
    num_classes: int
    num_missing: int = 0

    def __len__(self) -> int:
        return len(self.images)

    @property
    def keys(self) -> list[str]:
        return self.images.keys

    def store_order(self) -> np.ndarray:
        """The images in store-row order (images without a map last, by class); listing order without a store."""
        if self.store is None:
            return np.arange(len(self))
        return np.argsort(self.reader_rows, kind="stable")

    @property
    def sharded(self) -> bool:
        """Whether the images are webdataset shards."""
        return isinstance(self.images, ShardSet)

    def epoch_order(self, *, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
        """The epoch's order of all images. Shards: tar by tar (the tars' order and each tar's samples shuffled
        from ``(seed, epoch)``), their stored order without ``shuffle``; images: a permutation, or store order."""
        if self.sharded:
            if not shuffle:
                return np.arange(len(self))
            return grouped_order(self.images.tar_ids, seed=seed, epoch=epoch)
        return epoch_order(len(self), seed=seed, epoch=epoch, shuffle=shuffle, base_order=self.store_order())

    def layout_lines(self) -> list[str]:
        """What decides the epochs besides the arguments: the keys (and, for shards, each one's tar)."""
        return self.images.layout_lines() if self.sharded else self.keys

    @classmethod
    def match(cls, owner: str, images, store, *, missing: str = "error", num_classes: int | None = None,
              need_labels: bool = False) -> LabeledImages:
        """Lists ``images`` and matches each to its map in ``store`` (a path, URL or ``LabelStore``; or None).

        ``images``: an ImageFolder root, an image list file, or webdataset shards (a directory of ``.tar`` files,
        ``train-{000000..000127}.tar``, a glob, a wids ``shardindex.json``, or a list of tar paths; their samples
        match store keys as ``dali_relabel.shards.keys`` describes).

        Raises:
            FileNotFoundError: no images. KeyError: images without a map and ``missing="error"``.
            ValueError: class counts or labels disagree (the message says how to proceed).
        """
        listing = ShardSet.open(images) if is_shard_spec(images) else ImageList.from_path(images)
        if not len(listing):
            raise FileNotFoundError(f"{images}: no images (extensions {', '.join(IMAGE_EXTENSIONS)})")
        _report_skipped(listing)
        if store is None:
            return cls._folder_labels(owner, listing, num_classes, need_labels)
        store = store if isinstance(store, LabelStore) else LabelStore.open(str(store))
        if isinstance(listing, ShardSet):
            listing = listing.with_store_keys(store.keys.tolist())
        elif is_inside(store.url, listing.root):  # else reported as a class count or class order problem
            raise ValueError(f"{owner}: the label store {store.url} is inside the image folder {listing.root}, where "
                             f"ImageFolder counts it as a class folder (shifting the labels); move it out")
        num_classes = _check_classes(listing, store, num_classes)
        reader_rows = _match_rows(listing, store, missing)
        rows = np.where(reader_rows < store.num_samples, reader_rows, -1)
        _check_labels(listing, store, reader_rows, need_labels)
        return cls(listing, store, reader_rows, rows, num_classes, int((rows < 0).sum()))

    @classmethod
    def _folder_labels(cls, owner, listing: ImageList, num_classes, need_labels) -> LabeledImages:
        labels = np.asarray(listing.labels, np.int64)
        if need_labels and (labels < 0).any():
            bad = [listing.keys[i] for i in np.flatnonzero(labels < 0)[:3]]
            raise ValueError(f"{owner}: the labels output needs a class for every image; {int((labels < 0).sum())} "
                             f"images of {listing.root} have none (e.g. {', '.join(bad)}): list them with a label "
                             f"('<path> <label>') or give a store")
        if num_classes is None:
            num_classes = len(listing.classes) if listing.classes is not None else int(labels.max()) + 1
        if labels.max() >= num_classes:
            raise ValueError(f"{owner}: num_classes={num_classes} but {listing.root} has labels up to "
                             f"{int(labels.max())}")
        return cls(listing, None, np.maximum(labels, 0), np.full(len(labels), -1), num_classes)


def _report_skipped(imgs: ImageList | ShardSet) -> None:
    if imgs.skipped:
        what = (f"samples of the shards {imgs.root} have no image member" if isinstance(imgs, ShardSet) else
                f"files under {imgs.root} are not images DALI decodes")
        warnings.warn(f"{len(imgs.skipped)} {what} and were skipped (e.g. {', '.join(imgs.skipped[:3])})",
                      stacklevel=4)
    if getattr(imgs, "skipped_links", None):  # image folders only: shards hold no links
        warnings.warn(f"{len(imgs.skipped_links)} symbolic links under {imgs.root} were not followed: "
                      f"{'; '.join(imgs.skipped_links[:3])}", stacklevel=4)
    if imgs.empty_classes:
        warnings.warn(f"{len(imgs.empty_classes)} class folders hold no images (kept as classes so that "
                      f"labels keep their folder index): {', '.join(imgs.empty_classes[:10])}", stacklevel=4)


def _check_classes(imgs: ImageList, store: LabelStore, num_classes: int | None) -> int:
    store_c = store.num_classes
    if num_classes is not None and num_classes != store_c:
        raise ValueError(f"num_classes={num_classes} but the label store {store.url} has {store_c} classes")
    folders = imgs.classes
    if num_classes is None and folders is not None and len(folders) != store_c:
        raise ValueError(f"the label store has {store_c} classes but {imgs.root} has {len(folders)} class "
                         f"folders; pass num_classes={store_c} to train on the store's {store_c} classes anyway")
    return store_c


def _match_rows(imgs: ImageList | ShardSet, store: LabelStore, missing: str) -> np.ndarray:
    """Store row of every image; N + folder label where it has no map and missing='onehot' (N = store size)."""
    index = {k: i for i, k in enumerate(store.keys.tolist())}
    if len(index) < store.num_samples:
        raise ValueError(f"the label store {store.url} holds {store.num_samples - len(index)} duplicate key(s): it is "
                         f"damaged or was written by another tool; `dali-relabel verify` lists them")
    rows = np.array([index.get(k, -1) for k in imgs.keys], np.int64)
    absent = np.flatnonzero(rows < 0)
    if len(absent):
        # (Shards: the sample's tar and member, which is what a user can find.)
        names = [imgs.location(i) if isinstance(imgs, ShardSet) else imgs.keys[i] for i in absent[:10].tolist()]
        if missing == "error":
            how = (" (a shard sample's __key__ matches the store key without its extension, or a file name: "
                   "docs/SHARDS.md)" if isinstance(imgs, ShardSet) else "")
            raise KeyError(f"{len(absent)} of {len(rows)} images have no label map in {store.url}, e.g. "
                           f"{', '.join(names)}{how}; annotate them, or pass missing='onehot' to use one-hot folder "
                           f"labels for them")
        # (Shards: read only these samples' .cls members, not every tar's.)
        labels = imgs.read_labels(absent) if isinstance(imgs, ShardSet) else np.array(imgs.labels)[absent]
        if (labels < 0).any():
            unlabelled = absent[labels < 0]
            where = [imgs.location(i) if isinstance(imgs, ShardSet) else imgs.keys[i] for i in unlabelled[:5].tolist()]
            what = "a .cls member" if isinstance(imgs, ShardSet) else "a class folder"
            raise ValueError(f"missing='onehot' needs a class label for each image without a label map, but "
                             f"{len(unlabelled)} have none ({what}), e.g. {', '.join(where)}: annotate them")
        rows[absent] = store.num_samples + labels
        print(f"{len(absent)} of {len(rows)} images have no label map; they get one-hot targets of their folder "
              f"label (e.g. {', '.join(names[:3])})", file=sys.stderr)
    return rows


def _check_labels(imgs: ImageList | ShardSet, store: LabelStore, rows: np.ndarray, need_labels: bool) -> None:
    present = rows < store.num_samples
    if isinstance(imgs, ShardSet):
        # Comparing the shards' .cls labels with the store's reads a member of every sample in every tar (slow on
        # network storage): `dali-relabel verify --shards` does it, not every loader start.
        folder = np.full(int(present.sum()), -1)
    else:
        folder = np.array(imgs.labels)[present]
    stored = store.labels[rows[present]]
    known = (folder >= 0) & (stored >= 0)
    disagree = np.flatnonzero(known & (folder != stored))
    if len(disagree):
        keys = np.array(imgs.keys)[present][disagree[:5]]
        raise ValueError(f"{len(disagree)} images have a different label in the store than their folder index "
                         f"(e.g. {', '.join(keys)}): the store's class order differs from the sorted class "
                         f"folders of {imgs.root}")
    if need_labels and (stored < 0).any():
        raise ValueError(f"the store {store.url} has no label for {(stored < 0).sum()} images; the 'labels' "
                         f"output needs them")


__all__ = ["LabeledImages", "MISSING"]
