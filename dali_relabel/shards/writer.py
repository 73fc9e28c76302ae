"""``dali-relabel shard``: an ImageFolder (or image list) written as webdataset tar shards, with DALI's indexes.

Each image becomes one sample: ``<key>.<ext>`` (the image file's bytes, unchanged; ``ext`` its extension in lower
case) and, when the image has a class, ``<key>.cls`` (the class index in ASCII digits: webdataset's convention).
``key`` is the image's path relative to the root without its extension, so it maps back to the label store's key
exactly (``dali_relabel.shards.keys``, rule 1). The images are shuffled (seeded) before they are cut into shards,
as webdataset shards of ImageNet are: a shard is a random sample of the dataset, which is what makes reading whole
shards in turn a good shuffle. Next to every ``<prefix>-NNNNNN.tar`` its DALI index ``<prefix>-NNNNNN.idx``;
``shardindex.json`` is a wids shard index of them all (webdataset's indexed-dataset reader opens it as it is).

Long conversions resume: each shard is written to a temporary file and renamed when complete with its index;
rerun with the same arguments, finished shards are checked against the plan and kept. The output directory is
refused when it holds anything else (or shards of another plan), so nothing is overwritten.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

from ..errors import InvalidArgument, ShardsNotFoundError, ShardWriteError, storage_error
from ..fs import atomic_write_text
from ..image_folder import ImageList, is_inside, list_images
from .index import Component, SampleEntry, format_index, index_path_for, read_index, write_index
from .keys import strip_extension
from .paths import WIDS_INDEX_NAME, wids_index

MANIFEST = "dali_relabel_shards.json"
MANIFEST_FORMAT = "dali_relabel.shards"
MANIFEST_VERSION = 1
_BLOCK = 512


@dataclasses.dataclass
class ShardReport:
    """What :func:`write_shards` did.

    Attributes:
        out: the output directory. shards: shard file names, in order. samples: images written in all.
        written, kept: shards written by this run, and complete ones found from an earlier run.
        bytes: total size of the tar files. seconds: time taken.
    """

    out: Path
    shards: list[str]
    samples: int
    written: int
    kept: int
    bytes: int
    seconds: float


def write_shards(images: str | os.PathLike, out: str | os.PathLike, *, max_count: int = 1000,
                 max_bytes: int = 1 << 30, seed: int = 0, shuffle: bool = True, prefix: str = "shard",
                 progress: bool = True) -> ShardReport:
    """Writes the images under ``images`` as shards in ``out`` (see the module).

    Args:
        images: ImageFolder root (``<root>/<class>/<image>``; labels = class folder index), a folder of images
            without classes, or an image list file (``<path> [label]`` lines).
        out: output directory (created; must be empty or hold an unfinished conversion with the same plan).
        max_count: at most this many images per shard. max_bytes: a new shard starts before one would exceed this.
        seed: the shuffle's seed. shuffle: False keeps the listing's order (shards then hold whole classes in
            turn: a poor order to train from).
        prefix: shard file names are ``<prefix>-000000.tar``, ...

    Raises:
        ShardWriteError: images whose names cannot be webdataset keys, an output directory in use.
        InvalidArgument: ``max_count``, ``max_bytes`` or ``prefix`` out of range; ``out`` inside ``images``.
        FileNotFoundError: no images. StoreWriteError: the disk is full, read-only or forbidden (named).
    """
    for name, value in (("max_count", max_count), ("max_bytes", max_bytes)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise InvalidArgument(name, value, "must be an integer >= 1", where="write_shards")
    if not isinstance(prefix, str) or not prefix or "/" in prefix or "." in prefix or prefix.strip() != prefix:
        raise InvalidArgument("prefix", prefix, "must be a non-empty file name without '/', '.' or surrounding "
                              "whitespace", where="write_shards")
    started = time.perf_counter()
    listing = _listing(images)
    if is_inside(out, listing.root):
        raise InvalidArgument("out", str(out), f"is inside the image folder {listing.root}: the shards would be "
                              f"listed with the images (a class folder) on the next run; choose a directory outside "
                              f"it", where="write_shards")
    keys, exts = _sample_names(listing)
    sizes = np.array([(listing.root / k).stat().st_size for k in listing.keys], np.int64)
    order = np.random.default_rng(seed).permutation(len(keys)) if shuffle else np.arange(len(keys))
    plan = _cut(order, sizes, max_count, max_bytes)
    names = [f"{prefix}-{i:06d}.tar" for i in range(len(plan))]
    out = Path(out)
    manifest = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "images": str(Path(images).resolve()),
                "num_samples": len(keys), "num_shards": len(plan), "seed": seed, "shuffle": shuffle,
                "max_count": max_count, "max_bytes": max_bytes, "prefix": prefix,
                "plan_digest": _plan_digest(names, plan, keys)}
    _claim(out, manifest)
    from tqdm import tqdm

    bar = tqdm(total=len(keys), unit="img", desc=f"shards → {out}", disable=not progress, file=sys.stderr)
    written = kept = 0
    entries = []
    for name, members in zip(names, plan):
        tar = out / name
        planned = [keys[i] for i in members]
        if tar.is_file() and _complete(tar, planned):
            kept += 1
        else:
            try:
                _write_shard(tar, listing, members.tolist(), keys, exts)
            except OSError as e:
                raise storage_error(e, doing=f"write shard {name}", path=out,
                                    then="finished shards are kept: rerun with the same arguments to resume") from e
            written += 1
        entries.append((name, len(members), tar.stat().st_size, None))
        bar.update(len(members))
    bar.close()
    atomic_write_text(out / WIDS_INDEX_NAME, json.dumps(wids_index(entries, name=prefix), indent=1) + "\n")
    atomic_write_text(out / MANIFEST, json.dumps({**manifest, "complete": True}, indent=1) + "\n")
    return ShardReport(out=out, shards=names, samples=len(keys), written=written, kept=kept,
                       bytes=sum(e[2] for e in entries), seconds=time.perf_counter() - started)


def write_missing_indexes(directory: str | os.PathLike) -> list[Path]:
    """Writes DALI's index next to every ``*.tar`` in ``directory`` that has none; returns the indexes written.

    Raises:
        ShardsNotFoundError: ``directory`` is not a directory or holds no ``.tar`` file.
        ShardError: a damaged or truncated tar (named; the indexes of the tars before it are written).
    """
    from .index import scan_tar

    directory = Path(directory)
    tars = sorted(directory.glob("*.tar")) if directory.is_dir() else []
    if not tars:
        raise ShardsNotFoundError(f"{directory}: " + ("holds no .tar shards" if directory.is_dir() else
                                                      "no such directory") + " to index")
    done = []
    for tar in tars:
        index = index_path_for(tar)
        if not index.exists():
            samples = scan_tar(tar)
            if not samples:
                raise ShardWriteError(f"{tar}: the tar holds no samples")
            atomic_write_text(index, format_index(samples))
            done.append(index)
    return done


def _listing(images) -> ImageList:
    listing = ImageList.from_path(images)
    if listing.classes == []:   # a folder without class folders: its images, unlabelled
        keys = list_images(images)
        listing = ImageList(listing.root, keys, [-1] * len(keys), [])
    if not listing.keys:
        raise FileNotFoundError(f"no images under {images}")
    return listing


def _sample_names(listing: ImageList) -> tuple[list[str], list[str]]:
    """Each image's webdataset key and member extension; refuses names webdataset would split otherwise."""
    keys, exts, bad, seen = [], [], [], {}
    for path in listing.keys:
        key = strip_extension(path)
        ext = path[len(key) + 1:].lower()
        if "." in ext or any(c.isspace() for c in path):
            bad.append(path)
        if key in seen:
            raise ShardWriteError(f"{seen[key]} and {path} would both be sample {key!r} (webdataset keys drop the "
                                  f"extension): rename one")
        seen[key] = path
        keys.append(key)
        exts.append(ext)
    if bad:
        raise ShardWriteError(f"{len(bad)} image names cannot be webdataset keys (a dot before the extension, or "
                              f"whitespace): e.g. {', '.join(bad[:3])}; rename them")
    return keys, exts


def _cut(order: np.ndarray, sizes: np.ndarray, max_count: int, max_bytes: int) -> list[np.ndarray]:
    """Consecutive runs of ``order``, each at most ``max_count`` images and ``max_bytes`` of tar (≥ 1 image)."""
    # A member costs its header block plus its data rounded up to blocks; the .cls member one block of each.
    cost = (-(-sizes // _BLOCK) + 1) * _BLOCK + 2 * _BLOCK
    shards, start, total = [], 0, 0
    for j, i in enumerate(order.tolist()):
        if j > start and (j - start >= max_count or total + cost[i] > max_bytes):
            shards.append(order[start:j])
            start, total = j, 0
        total += int(cost[i])
    shards.append(order[start:])
    return shards


def _plan_digest(names: list[str], plan: list[np.ndarray], keys: list[str]) -> str:
    h = hashlib.sha256()
    for name, members in zip(names, plan):
        h.update(name.encode() + b"\n" + "\n".join(keys[i] for i in members.tolist()).encode() + b"\n")
    return h.hexdigest()[:32]


def _claim(out: Path, manifest: dict) -> None:
    """Makes ``out`` this conversion's, or refuses: an empty (or new) directory, or one of the same plan."""
    path = out / MANIFEST
    if out.exists() and not out.is_dir():
        raise ShardWriteError(f"{out} exists and is not a directory")
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except ValueError:
            old = None
        if not isinstance(old, dict):
            raise ShardWriteError(f"{path} is damaged (not a JSON object): delete the directory {out} and convert "
                                  f"again (nothing there was changed)")
        if old.get("plan_digest") != manifest["plan_digest"]:
            differ = [f"{k} {old.get(k)!r} → {v!r}" for k, v in manifest.items()
                      if old.get(k) != v and k != "plan_digest"]
            raise ShardWriteError(f"{out} holds shards of another plan ({'; '.join(differ) or 'other images'}); "
                                  f"write to a new directory (nothing there was changed)")
        return
    if out.is_dir() and any(not e.name.startswith(".") for e in os.scandir(out)):
        raise ShardWriteError(f"{out} is not empty and holds no dali-relabel shards: choose a new or empty "
                              f"directory (nothing there was changed)")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({**manifest, "complete": False}, indent=1) + "\n")


def _complete(tar: Path, planned: list[str]) -> bool:
    """A shard from an earlier run is kept when its index lists exactly the planned samples."""
    index = index_path_for(tar)
    if not index.is_file():
        return False
    try:
        return [s.key for s in read_index(index)] == planned
    except ValueError:
        return False


def _write_shard(tar: Path, listing: ImageList, members: list[int], keys: list[str], exts: list[str]) -> None:
    """One shard: the tar and its index through temporary files; the index lands first, the tar last (a shard is
    complete when its tar exists, see ``_complete``)."""
    tmp_tar = tar.with_name(f".{tar.name}.tmp-{os.getpid()}")
    tmp_idx = tar.with_name(f".{tar.name}.idx.tmp-{os.getpid()}")
    samples = []
    try:
        with open(tmp_tar, "wb") as f, tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as archive:
            for i in members:
                data = (listing.root / listing.keys[i]).read_bytes()
                parts = [Component(exts[i], _add(archive, f"{keys[i]}.{exts[i]}", data), len(data))]
                if listing.labels[i] >= 0:
                    label = str(listing.labels[i]).encode()
                    parts.append(Component("cls", _add(archive, f"{keys[i]}.cls", label), len(label)))
                samples.append(SampleEntry(keys[i], tuple(parts)))
        write_index(tmp_idx, samples)
        os.replace(tmp_idx, index_path_for(tar))
        os.replace(tmp_tar, tar)
    finally:
        tmp_tar.unlink(missing_ok=True)
        tmp_idx.unlink(missing_ok=True)


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> int:
    """Adds a member (fixed metadata: the same images give the same bytes); returns its data offset."""
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    archive.addfile(info, io.BytesIO(data))
    return archive.offset - -(-len(data) // _BLOCK) * _BLOCK


__all__ = ["MANIFEST", "ShardReport", "ShardWriteError", "write_missing_indexes", "write_shards"]
