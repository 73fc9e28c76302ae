"""Imports the official relabel_imagenet label maps (naver-ai/relabel_imagenet) into a LabelStore.

The release is a tree mirroring ``train/``: ``<wnid>/<image stem>.pt``, each a tensor
``[2, K, H, W]`` (``[0]`` top-k logits, ``[1]`` class indices stored as floats), float32 (the
official release) or float16 (TokenLabeling's files, same layout). Each map is matched to its
image by relative path without extension (store keys keep the image's extension), rows follow
``ImageFolder`` order and labels are the class folder indices. Each cell is transposed to
``[H, W, K]`` and sorted by descending score (ties: ascending class).

Scores dtype: float32 files (the official release) go to a float32 store, which keeps every logit
exactly; float16 files to a float16 store; ``scores_dtype`` overrides (float16 halves the scores at a
rounding of up to 2^-11 relative per logit, ~8e-3 at a logit of 16).

Number of classes (``num_classes=None``): class folders named like WordNet ids (``n01440764``, as in
ImageNet) mean the official release, ImageNet-1k: 1000 classes, also when only some folders are
present; otherwise the larger of the folder count and 1 + the largest class index in the maps (all
maps are read for that before any block is written). Labels (the images' original classes) are the
folder indices when the folders are all the classes; for a subset of ImageNet-1k folders they are the
ImageNet-1k indices of the folders (the class order timm ships; -1, unknown, without timm); otherwise
the folder indices, and the report asks to check them.

Layouts (``layout``): ``"kyx"`` (default) — the file's axes are ``[K, y, x]``, rows = image y, the
natural layout of a conv output and what TokenLabeling's generator writes; ``"kxy"`` — ``[K, x, y]``,
for maps saved transposed (the official loader's crop-box quirk pools them as if they were).

Parallel over processes (each writes whole blocks, see LabelStore), resumable (completed blocks
are skipped), and strict: a missing pair, a corrupt file, a wrong shape, a non-finite score or a
class outside ``[0, num_classes)`` fails, naming the file.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import time
import warnings
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from ..errors import DaliRelabelError, InvalidArgument
from ..image_folder import ImageList, is_inside, walk_files
from .label_store import LabelStore

LAYOUTS = {"kyx": (1, 2, 0), "kxy": (2, 1, 0)}  # file axes → [H, W, K]
_SHOWN = 20  # missing pairs listed in an error
IMAGENET_CLASSES = 1000  # the official release is ImageNet-1k
_WNID = re.compile(r"n\d{8}")  # a WordNet id, ImageNet's class folder names


class NaverImportError(DaliRelabelError, ValueError):
    """The release cannot be imported; the message names the file(s) and what to do."""


@dataclasses.dataclass
class ImportReport:
    """What an import did."""

    store: str
    num_images: int
    num_maps: int
    imported: int
    images_without_map: list[str]
    maps_without_image: list[str]
    blocks_written: int
    blocks_already_complete: int
    seconds: float
    num_classes: int = 0
    num_classes_reason: str = ""
    scores_dtype: str = ""
    labels_note: str = ""

    def summary(self) -> str:
        lines = [f"{self.store}: {self.imported} samples ({self.num_images} images, {self.num_maps} maps); "
                 f"{self.blocks_written} blocks written, {self.blocks_already_complete} already complete; "
                 f"{self.seconds:.1f} s",
                 f"num_classes {self.num_classes} ({self.num_classes_reason}); scores stored as {self.scores_dtype}"]
        if self.labels_note:
            lines.append(self.labels_note)
        for what, items in (("images without a map (not imported)", self.images_without_map),
                            ("maps without an image (ignored)", self.maps_without_image)):
            if items:
                lines.append(f"{len(items)} {what}: " + ", ".join(items[:_SHOWN])
                             + (f" ... and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""))
        return "\n".join(lines)


def load_naver_map(path, *, num_classes: int, layout: str = "kyx",
                   expect_shape: tuple[int, ...] | None = None, scores_dtype: str = "float32",
                   chosen_from: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Reads one official ``.pt`` map as store data.

    Args:
        path: the ``.pt`` file.
        num_classes: class indices must lie in ``[0, num_classes)``.
        layout: ``"kyx"`` or ``"kxy"`` (see the module doc).
        expect_shape: the ``[2, K, H, W]`` shape every map must have (the first map's), or None.
        scores_dtype: the store's scores dtype, "float32" or "float16" (then scores must fit its range).
        chosen_from: the file the store's float16 dtype was chosen from (automatic choice), or None: a float32
            file is then refused rather than rounded.

    Returns:
        ``(scores, classes)``: float32 and int64 ``[H, W, K]``, each cell sorted by descending score, ties by
        ascending class.

    Raises:
        NaverImportError: unreadable, wrong shape/dtype, non-finite, non-integral or out-of-range data.
    """
    import torch

    try:
        t = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        # torch's own messages run to paragraphs (e.g. weights_only advice): its first sentence says enough.
        detail = " ".join(str(e).split()).split(". ")[0][:160]
        raise NaverImportError(f"{path}: cannot be read as a torch tensor ({type(e).__name__}: {detail}); the file "
                               f"is corrupt or not a label map: extract it again from the release") from None
    if not isinstance(t, torch.Tensor):
        raise NaverImportError(f"{path}: holds a {type(t).__name__}, expected a tensor [2, K, H, W]")
    shape = tuple(t.shape)
    if len(shape) != 4 or shape[0] != 2 or min(shape) < 1:
        raise NaverImportError(f"{path}: tensor of shape {list(shape)}, expected [2, K, H, W] ([0] = top-k scores, "
                               f"[1] = class indices)")
    if expect_shape is not None and shape != tuple(expect_shape):
        raise NaverImportError(f"{path}: shape {list(shape)} differs from the first map's {list(expect_shape)}; all "
                               f"maps of a store share K, H and W")
    if not t.is_floating_point():
        raise NaverImportError(f"{path}: dtype {t.dtype}, expected float32 or float16")
    if chosen_from is not None and scores_dtype == "float16" and t.dtype != torch.float16:
        held = str(t.dtype).replace("torch.", "")
        raise NaverImportError(f"{path}: holds {held} scores, but the store keeps float16 (chosen from the first "
                               f"map, {chosen_from}, which is float16): import with scores_dtype='float32' to keep "
                               f"them exactly, or scores_dtype='float16' to round them")
    a = t.detach().to(torch.float64).numpy()
    scores, cls = a[0], a[1]
    bad = ~np.isfinite(scores)
    if bad.any():
        where = tuple(int(v) for v in np.argwhere(bad)[0])
        raise NaverImportError(f"{path}: score {scores[where]} at [k, i, j] = {list(where)} is not finite "
                               f"({int(bad.sum())} such values); the map is damaged")
    bad = ~np.isfinite(cls) | (cls != np.round(cls)) | (cls < 0) | (cls >= num_classes)
    if bad.any():
        where = tuple(int(v) for v in np.argwhere(bad)[0])
        raise NaverImportError(f"{path}: class index {cls[where]} at [k, i, j] = {list(where)} is not an integer in "
                               f"[0, {num_classes}) ({int(bad.sum())} such values); check the number of classes")
    if scores_dtype == "float16" and np.abs(scores).max() > np.finfo(np.float16).max:
        raise NaverImportError(f"{path}: a score of magnitude {np.abs(scores).max()} exceeds the float16 range "
                               f"of the store; import with scores_dtype='float32'")
    axes = LAYOUTS[layout]
    scores, cls = scores.transpose(axes), cls.transpose(axes).astype(np.int64)
    # Descending score; ties by ascending class, so the store does not depend on the file's rank order.
    order = np.lexsort((cls, -scores), axis=-1)
    scores, cls = np.take_along_axis(scores, order, -1), np.take_along_axis(cls, order, -1)
    srt = np.sort(cls, axis=-1)
    dup = (srt[..., 1:] == srt[..., :-1]).any(axis=-1)
    if dup.any():
        y, x = (int(v) for v in np.argwhere(dup)[0])
        raise NaverImportError(f"{path}: cell (y={y}, x={x}) lists a class twice ({cls[y, x].tolist()}); "
                               f"a top-k map holds distinct classes")
    return scores.astype(np.float32), cls


def import_naver(maps_dir, images_dir, out, *, layout: str = "kyx", allow_missing: bool = False,
                 workers: int | None = None, num_classes: int | None = None, scores_dtype: str | None = None,
                 block_size: int = 512, annotator: dict | None = None, progress: bool = True) -> ImportReport:
    """Converts the official release into a label store (resuming a partial import).

    Args:
        maps_dir: root of the ``.pt`` tree (``<wnid>/<stem>.pt``).
        images_dir: root of the images (``<wnid>/<stem>.<ext>``), e.g. ImageNet ``train/``.
        out: store path or URL.
        layout: ``"kyx"`` or ``"kxy"``.
        allow_missing: import the matched pairs when some images lack a map or some maps lack an
            image (listed in the report) instead of failing.
        workers: processes (default: CPU count, at most 8); 1 imports in this process.
        num_classes: C (default: 1000 when the class folders are WordNet ids, i.e. ImageNet-1k, the official
            release, even for a subset of its folders; else the larger of the folder count and 1 + the largest
            class index in the maps).
        scores_dtype: "float32" or "float16" (default: the first map's dtype, so the float32 release is kept
            exactly).
        block_size: samples per store block.
        annotator: description stored in the store (default: the release's).
        progress: show a progress bar.

    Returns:
        An :class:`ImportReport`.

    Raises:
        NaverImportError: unmatched pairs (without ``allow_missing``), or a bad map file.
        ValueError: ``out`` holds a different store (see ``LabelStore.create(exist_ok=True)``).
    """
    from tqdm import tqdm

    started = time.perf_counter()
    if layout not in LAYOUTS:
        raise InvalidArgument("layout", layout, f"must be one of {sorted(LAYOUTS)}", where="import_naver")
    for name, value in (("block_size", block_size), ("workers", workers), ("num_classes", num_classes)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise InvalidArgument(name, value, "must be an integer >= 1", where="import_naver")
    for name, tree in (("images_dir", images_dir), ("maps_dir", maps_dir)):
        if is_inside(out, tree):
            raise InvalidArgument("out", out, f"is inside the {'image' if name == 'images_dir' else 'map'} folder "
                                  f"{tree}: the store would be listed with its files and written among them; choose "
                                  f"a path outside it", where="import_naver")
    listing = ImageList.from_folder(images_dir)
    class_names, image_keys, image_labels = listing.classes, listing.keys, listing.labels
    maps_dir = Path(maps_dir)
    if not maps_dir.is_dir():
        raise FileNotFoundError(f"import_naver: maps folder {maps_dir} is not a directory")
    maps = _scan_maps(maps_dir)
    by_stem: dict[str, int] = {}
    for i, key in enumerate(image_keys):
        stem = os.path.splitext(key)[0]
        if stem in by_stem:
            raise NaverImportError(f"images {image_keys[by_stem[stem]]!r} and {key!r} share the stem {stem!r}, so a "
                                   f"map {stem}.pt cannot tell them apart; remove one")
        by_stem[stem] = i
    matched = sorted(by_stem[s] for s in maps if s in by_stem)
    images_without = [image_keys[i] for s, i in by_stem.items() if s not in maps]
    maps_without = sorted(f"{s}.pt" for s in maps if s not in by_stem)
    if (images_without or maps_without) and not allow_missing:
        parts = []
        for what, items in (("images without a map", sorted(images_without)), ("maps without an image", maps_without)):
            if items:
                parts.append(f"{len(items)} {what}: " + ", ".join(items[:_SHOWN])
                             + (f" ... and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""))
        raise NaverImportError(f"import_naver: {maps_dir} and {images_dir} do not match: " + "; ".join(parts)
                               + ". Give matching map and image trees, or allow missing pairs (allow_missing) to "
                                 "import the matched pairs only")
    if not matched:
        raise NaverImportError(f"import_naver: no map in {maps_dir} matches an image in {images_dir}")
    if scores_dtype not in (None, "float16", "float32"):
        raise InvalidArgument("scores_dtype", scores_dtype, "must be 'float16' or 'float32' (or None: the maps' own)",
                              where="import_naver")

    keys = [image_keys[i] for i in matched]
    map_paths = [str(maps[os.path.splitext(k)[0]]) for k in keys]
    workers = min(8, os.cpu_count() or 1) if workers is None else max(1, workers)
    if num_classes is None:
        num_classes, reason = _default_num_classes(class_names, map_paths, workers, progress)
    else:
        reason = "given"
    if len(class_names) > num_classes:
        raise InvalidArgument("num_classes", num_classes, f"is below the {len(class_names)} class folders of "
                              f"{images_dir}", where="import_naver")
    folder_labels = np.array([image_labels[i] for i in matched], np.int32)
    labels, store_class_names, labels_note = _labels(class_names, folder_labels, num_classes)
    first_shape, first_dtype = _first_map(map_paths[0], num_classes, layout)
    chosen_from = None
    if scores_dtype is None:
        scores_dtype = "float16" if first_dtype == "float16" else "float32"
        chosen_from = map_paths[0]
    _, k, h, w = first_shape
    if layout == "kxy":
        h, w = w, h
    store = LabelStore.create(
        out, keys=keys, labels=labels, num_classes=num_classes, height=h, width=w, k=k,
        class_names=store_class_names, scores_dtype=scores_dtype,
        annotator=annotator if annotator is not None else {
            "source": "naver-ai/relabel_imagenet label maps (official release format)",
            "imported_with": "dali-relabel import-naver", "file_layout": f"[2, K, {layout[1]}, {layout[2]}]"},
        block_size=block_size, exist_ok=True)
    done = store.completed_blocks()
    todo = [int(b) for b in np.nonzero(~done)[0]]
    done_samples = sum(len(store.block_rows(b)) for b in np.nonzero(done)[0])
    bar = tqdm(total=store.num_samples, initial=done_samples, unit="map", desc=f"importing into {out}",
               disable=not progress, file=sys.stderr)
    tasks = [(str(out), b, map_paths[store.block_rows(b).start:store.block_rows(b).stop], layout, num_classes,
              first_shape, store.scores_dtype, chosen_from) for b in todo]
    if workers == 1 or len(tasks) <= 1 or "memory://" in str(out):
        for task in tasks:  # memory:// stores live in this process only
            bar.update(_import_block(task, store))
    else:
        with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=get_context("spawn")) as pool:
            pending = {pool.submit(_import_block, task) for task in tasks}
            while pending:
                finished, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for f in finished:
                    if f.exception() is not None:
                        for p in pending:
                            p.cancel()
                        raise f.exception()
                    bar.update(f.result())
    bar.close()
    return ImportReport(store=str(out), num_images=len(image_keys), num_maps=len(maps), imported=len(keys),
                        images_without_map=sorted(images_without), maps_without_image=maps_without,
                        blocks_written=len(tasks), blocks_already_complete=int(done.sum()),
                        seconds=time.perf_counter() - started, num_classes=num_classes,
                        num_classes_reason=reason, scores_dtype=store.scores_dtype, labels_note=labels_note)


def _scan_maps(root: Path) -> dict[str, Path]:
    """{relative path without '.pt': file} for every .pt file under root (symbolic links as the image listing
    treats them: a directory cycle or a second path to a directory is skipped, with a warning)."""
    out, skipped = {}, []
    for rel, _, others in walk_files(root, skipped):
        for f in others:
            if f.endswith(".pt"):
                stem = f[:-3] if rel == "." else f"{rel}/{f[:-3]}"
                out[stem] = root / f if rel == "." else root / rel / f
    if skipped:
        warnings.warn(f"{len(skipped)} symbolic link(s) under {root} not followed: {'; '.join(skipped[:5])}",
                      stacklevel=3)
    return out


def _first_map(path: str, num_classes: int, layout: str) -> tuple[tuple[int, int, int, int], str]:
    """Shape and dtype name of the first map (checked in full, so a bad first file is named)."""
    import torch

    load_naver_map(path, num_classes=num_classes, layout=layout)
    t = torch.load(path, map_location="cpu", weights_only=True)
    return tuple(t.shape), str(t.dtype).replace("torch.", "")


def imagenet1k_classes() -> list[str] | None:
    """The 1000 ImageNet-1k WordNet ids in class-index order (as timm ships them), or None without timm."""
    try:
        from timm.data import ImageNetInfo
    except ImportError:
        return None
    names = list(ImageNetInfo().label_names())
    return names if len(names) == IMAGENET_CLASSES else None


def _default_num_classes(class_names: list[str], map_paths: list[str], workers: int,
                         progress: bool) -> tuple[int, str]:
    """num_classes when not given, and why (see the module doc)."""
    if class_names and all(_WNID.fullmatch(c) for c in class_names) and len(class_names) <= IMAGENET_CLASSES:
        return IMAGENET_CLASSES, "ImageNet-1k: the class folders are WordNet ids"
    largest, where = _largest_class_index(map_paths, workers, progress)
    if largest + 1 > len(class_names):
        return largest + 1, f"1 + the largest class index in the maps ({largest}, in {where})"
    return len(class_names), "the number of class folders"


def _largest_class_index(paths: list[str], workers: int, progress: bool) -> tuple[int, str]:
    """The largest class index in the maps and a file holding it: reads every map, before any block is written."""
    from tqdm import tqdm

    size = max(1, min(256, -(-len(paths) // (4 * workers))))  # a few chunks per worker, at most 256 maps each
    chunks = [paths[i:i + size] for i in range(0, len(paths), size)]
    best = (-1, "")
    with tqdm(total=len(paths), unit="map", desc="finding num_classes", disable=not progress, file=sys.stderr) as bar:
        if workers == 1 or len(chunks) <= 1:
            for chunk in chunks:
                best = max(best, _chunk_largest_class(chunk))
                bar.update(len(chunk))
        else:
            with ProcessPoolExecutor(max_workers=min(workers, len(chunks)), mp_context=get_context("spawn")) as pool:
                for chunk, found in zip(chunks, pool.map(_chunk_largest_class, chunks)):
                    best = max(best, found)
                    bar.update(len(chunk))
    return best


def _chunk_largest_class(paths: list[str]) -> tuple[int, str]:
    import torch

    best = (-1, "")
    for p in paths:
        try:
            largest = int(torch.load(p, map_location="cpu", weights_only=True)[1].max())
        except Exception:
            continue  # a bad file is reported, with its name, when its block is imported
        best = max(best, (largest, p))
    return best


def _labels(class_names: list[str], folder_labels: np.ndarray,
            num_classes: int) -> tuple[np.ndarray, list[str] | None, str]:
    """The images' original labels as class indices of the maps, the class names, and a note when unknown.

    A subset of ImageNet-1k's folders is labelled by each folder's ImageNet-1k index (-1 when that order is
    not known); any other tree by its folder indices (ImageFolder's labels), which are the class indices when
    the folders are all the classes; otherwise the note asks to check.
    """
    if len(class_names) == num_classes:
        return folder_labels, class_names, ""
    if num_classes == IMAGENET_CLASSES and all(_WNID.fullmatch(c) for c in class_names):
        imagenet = imagenet1k_classes()
        if imagenet is not None and set(class_names) <= set(imagenet):
            index = np.array([imagenet.index(c) for c in class_names], np.int32)
            return index[folder_labels], imagenet, ""
        why = "install timm for ImageNet-1k's class order" if imagenet is None else \
            "some folders are not ImageNet-1k classes"
        return np.full_like(folder_labels, -1), None, (
            f"labels unknown (-1): {len(class_names)} class folders of {num_classes} classes ({why})")
    return folder_labels, None, (
        f"labels are the folder indices 0..{len(class_names) - 1} ({len(class_names)} class folders of "
        f"{num_classes} classes): check that they are the maps' class indices")


_worker_stores: dict[str, LabelStore] = {}


def _import_block(task, store: LabelStore | None = None) -> int:
    """Loads one block's maps and writes the block. Runs in a worker process (or inline)."""
    url, block, paths, layout, num_classes, shape, scores_dtype, chosen_from = task
    if store is None:
        store = _worker_stores.get(url)
        if store is None:
            store = _worker_stores[url] = LabelStore.open(url, mode="r+")
    loaded = [load_naver_map(p, num_classes=num_classes, layout=layout, expect_shape=shape, scores_dtype=scores_dtype,
                             chosen_from=chosen_from) for p in paths]
    store.write_block(block, np.stack([s for s, _ in loaded]), np.stack([c for _, c in loaded]))
    return len(paths)
