"""A small multi-object dataset with exact label maps, built from the photos shipped in scikit-image.

Each image is a canvas (a tinted texture) with 2-4 photos pasted at known boxes, one class per photo
(astronaut, cat, coffee, ...); later pastes occlude earlier ones. The image's folder label is the class
with the largest visible area. Its label map is the ground truth layout: the logit of class c in map
cell (r, q) is ``alpha * coverage`` where coverage is the fraction of that cell covered by c. So the
ReLabel target of any crop is known: RoIAlign of the map ≈ alpha × (fraction of the crop covered by
each class), and the demo can print a crop's soft target next to its true composition.

Nothing is downloaded: scikit-image ships these photos. Building 320 images takes a few seconds; the
result is cached (content key = parameters) and created atomically.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np

from ..fs import build_once, cache_root

# (class name, loader of a uint8 image from skimage.data), sorted by name: class index = position =
# the index of the class folder in ImageFolder order. Grayscale photos become RGB.
PHOTOS = tuple(sorted((
    ("astronaut", "astronaut"),
    ("cat", "chelsea"),
    ("coffee", "coffee"),
    ("rocket", "rocket"),
    ("motorcycle", "stereo_motorcycle"),
    ("galaxies", "hubble_deep_field"),
    ("retina", "retina"),
    ("coins", "coins"),
    ("cameraman", "camera"),
    ("clock", "clock"),
)))
TEXTURES = ("grass", "gravel", "brick")
FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class DemoDataset:
    """Where a built demo dataset lives.

    Attributes:
        root: the dataset directory.
        images: ImageFolder-style root (one folder per class).
        labels: the label store (zarr) with the ground-truth maps.
        objects: per image key, its pasted objects as dicts {class, box=(y0, x0, y1, x1) normalized}, in
            paste order (later occludes earlier).
        class_names: class index -> name.
        alpha: logit per unit of cell coverage.
        height, width: canvas size in pixels.
    """

    root: Path
    images: Path
    labels: Path
    objects: dict
    class_names: tuple[str, ...]
    alpha: float
    height: int
    width: int

    def labelled_boxes(self) -> dict:
        """Per image key, the boxes ``[n, 4]`` (y0, x0, y1, x1, normalized) of its objects of the labelled class (the
        folder's), like ImageNet's boxes of the labelled class."""
        out = {}
        for key, objects in self.objects.items():
            label = self.class_names.index(key.split("/")[0])
            out[key] = np.array([o["box"] for o in objects if o["class"] == label], np.float64)
        return out


def _photo(name: str, max_side: int = 640) -> np.ndarray:
    import skimage.data

    img = getattr(skimage.data, name)()
    if isinstance(img, tuple):  # stereo_motorcycle returns (left, right, disparity)
        img = img[0]
    if img.ndim == 2:
        img = np.stack([img] * 3, -1)
    img = img[..., :3].astype(np.uint8)
    scale = max_side / max(img.shape[:2])
    if scale < 1:
        img = _resize(img, round(img.shape[0] * scale), round(img.shape[1] * scale))
    return img


def _resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize((max(1, w), max(1, h)), Image.BILINEAR))


def _params_key(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]


def cache_dir() -> Path:
    return cache_root() / "demo"


def _layout(rng: np.random.Generator, height: int, width: int, num_classes: int):
    """2-4 distinct classes with boxes (pixels, y0 x0 y1 x1) of 8%-40% of the canvas each."""
    n = int(rng.integers(2, 5))
    classes = rng.choice(num_classes, size=n, replace=False)
    boxes = []
    for _ in classes:
        area = rng.uniform(0.08, 0.40) * height * width
        aspect = np.exp(rng.uniform(np.log(0.6), np.log(1.6)))
        h = int(min(height, round(np.sqrt(area / aspect))))
        w = int(min(width, round(np.sqrt(area * aspect))))
        y0, x0 = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
        boxes.append((y0, x0, y0 + h, x0 + w))
    return classes, boxes


def coverage_maps(owner: np.ndarray, num_objects: int, map_h: int, map_w: int) -> np.ndarray:
    """Fraction of each map cell covered by each object: [num_objects, map_h, map_w].

    Cells partition the image evenly (cell r spans rows [r*H/map_h, (r+1)*H/map_h)), with fractional
    pixel overlaps, so the map is exact for any image size.
    """
    h, w = owner.shape
    onehot = np.stack([(owner == i).astype(np.float64) for i in range(num_objects)])

    def axis_matrix(n_pixels, n_cells):
        # m[c, p] = overlap of pixel p with cell c, divided by the cell length (rows sum to 1).
        edges = np.arange(n_cells + 1) * n_pixels / n_cells
        p = np.arange(n_pixels)
        overlap = np.clip(np.minimum(p + 1, edges[1:, None]) - np.maximum(p, edges[:-1, None]), 0, None)
        return overlap / (n_pixels / n_cells)

    my, mx = axis_matrix(h, map_h), axis_matrix(w, map_w)
    return my @ onehot @ mx.T  # [map_h, H] @ [n, H, W] @ [W, map_w] -> [n, map_h, map_w]


def crop_composition(owner: np.ndarray, box, num_objects: int) -> np.ndarray:
    """Fraction of the normalized box (y0, x0, y1, x1) covered by each object (pixel-exact)."""
    h, w = owner.shape
    y0, x0, y1, x1 = box
    region = owner[int(round(y0 * h)):max(int(round(y1 * h)), int(round(y0 * h)) + 1),
                   int(round(x0 * w)):max(int(round(x1 * w)), int(round(x0 * w)) + 1)]
    return np.array([(region == i).mean() for i in range(num_objects)])


def render(rng: np.random.Generator, photos, textures, height: int, width: int):
    """One canvas: (uint8 image [H, W, 3], class ids, pixel boxes, owner map [H, W] of object index or -1)."""
    texture = textures[int(rng.integers(len(textures)))]
    canvas = _resize(texture, height, width).astype(np.float32) * rng.uniform(0.5, 1.0, size=3)
    canvas = canvas.astype(np.uint8)
    owner = np.full((height, width), -1, np.int32)
    classes, boxes = _layout(rng, height, width, len(photos))
    for i, (cls, (y0, x0, y1, x1)) in enumerate(zip(classes, boxes)):
        canvas[y0:y1, x0:x1] = _resize(photos[cls], y1 - y0, x1 - x0)
        owner[y0:y1, x0:x1] = i
    return canvas, classes, boxes, owner


def label_map_from_owner(owner: np.ndarray, classes, num_classes: int, map_size: int, k: int, alpha: float):
    """Top-k ground-truth map: scores [H, W, k] (alpha * coverage, descending), classes [H, W, k] distinct."""
    cov = coverage_maps(owner, len(classes), map_size, map_size)          # [n_obj, H, W]
    dense = np.zeros((num_classes, map_size, map_size))
    for i, cls in enumerate(classes):
        dense[cls] += cov[i]
    dense *= alpha
    # Stable order: ties (e.g. the zeros) are broken by class index, so the map is deterministic.
    order = np.argsort(-dense, axis=0, kind="stable")[:k]                  # [k, H, W]
    top = np.take_along_axis(dense, order, 0)
    return top.transpose(1, 2, 0).astype(np.float16), order.transpose(1, 2, 0).astype(np.int16)


def build_demo_dataset(root: str | os.PathLike | None = None, *, num_images: int = 320, height: int = 375,
                       width: int = 500, map_size: int = 15, k: int = 5, alpha: float = 6.0, quality: int = 90,
                       seed: int = 0, progress: bool = True) -> DemoDataset:
    """Builds (or finds, cached) the demo dataset.

    Args:
        root: parent directory for the dataset (default: the dali_relabel cache dir); the dataset
            goes to ``<root>/v<version>-<parameter hash>``.
        num_images: number of canvases. height, width: canvas size in pixels.
        map_size: label map height = width. k: stored classes per cell (≤ number of classes).
        alpha: logit per unit of coverage. quality: JPEG quality. seed: layout seed.
        progress: show a progress bar while building.

    Returns:
        The dataset's paths and object layout.
    """
    from PIL import Image
    from tqdm import tqdm

    from ..store import LabelStore

    class_names = tuple(name for name, _ in PHOTOS)
    k = min(k, len(class_names))
    params = dict(version=FORMAT_VERSION, num_images=num_images, height=height, width=width, map_size=map_size, k=k,
                  alpha=alpha, quality=quality, seed=seed, classes=class_names)
    parent = Path(root) if root is not None else cache_dir()
    final = parent / f"v{FORMAT_VERSION}-{_params_key(params)}"
    if (final / "dataset.json").is_file():
        return _load(final)

    def fill(tmp: Path) -> None:
        photos = [_photo(loader) for _, loader in PHOTOS]
        textures = [_photo(t, max_side=512) for t in TEXTURES]
        rng = np.random.default_rng(seed)
        keys, labels, scores, classes, objects = [], [], [], [], {}
        for i in tqdm(range(num_images), desc="demo dataset", disable=not progress, unit="img"):
            canvas, obj_classes, boxes, owner = render(rng, photos, textures, height, width)
            visible = [(owner == j).sum() for j in range(len(obj_classes))]
            label = int(obj_classes[int(np.argmax(visible))])
            key = f"{class_names[label]}/{i:05d}.jpg"
            (tmp / "images" / class_names[label]).mkdir(parents=True, exist_ok=True)
            buf = io.BytesIO()
            Image.fromarray(canvas).save(buf, format="JPEG", quality=quality)
            (tmp / "images" / key).write_bytes(buf.getvalue())
            s, c = label_map_from_owner(owner, obj_classes, len(class_names), map_size, k, alpha)
            keys.append(key), labels.append(label), scores.append(s), classes.append(c)
            objects[key] = [{"class": int(cls), "box": [b[0] / height, b[1] / width, b[2] / height, b[3] / width]}
                            for cls, b in zip(obj_classes, boxes)]
        for name in class_names:  # every class folder exists, even if no image is labelled with it
            (tmp / "images" / name).mkdir(parents=True, exist_ok=True)
        order = np.argsort(keys)  # rows in ImageFolder order (sorted relative paths)
        store = LabelStore.create(
            str(tmp / "labels.zarr"), keys=[keys[i] for i in order], num_classes=len(class_names), height=map_size,
            width=map_size, k=k, labels=np.array(labels, np.int32)[order], class_names=list(class_names),
            annotator={"model": "ground truth layout (dali_relabel demo)", "alpha": alpha, "resize": "none"})
        scores_arr, classes_arr = np.stack(scores)[order], np.stack(classes)[order]
        for b in range(store.num_blocks):
            rows = store.block_rows(b)
            store.write_block(b, scores_arr[rows.start:rows.stop], classes_arr[rows.start:rows.stop])
        (tmp / "objects.json").write_text(json.dumps(objects))
        (tmp / "dataset.json").write_text(json.dumps({**params, "class_names": class_names}, indent=1))

    # Concurrent first users (test workers, ranks) build it once; the others wait and load it.
    build_once(final, fill, complete=lambda d: (d / "dataset.json").is_file())
    return _load(final)


def _load(root: Path) -> DemoDataset:
    meta = json.loads((root / "dataset.json").read_text())
    return DemoDataset(root=root, images=root / "images", labels=root / "labels.zarr",
                       objects=json.loads((root / "objects.json").read_text()),
                       class_names=tuple(meta["class_names"]), alpha=float(meta["alpha"]), height=int(meta["height"]),
                       width=int(meta["width"]))


def owner_map(objects: list[dict], height: int, width: int) -> np.ndarray:
    """Rebuilds an image's [H, W] object-index map (-1 = background) from its object boxes."""
    owner = np.full((height, width), -1, np.int32)
    for i, obj in enumerate(objects):
        y0, x0, y1, x1 = obj["box"]
        owner[round(y0 * height):round(y1 * height), round(x0 * width):round(x1 * width)] = i
    return owner
