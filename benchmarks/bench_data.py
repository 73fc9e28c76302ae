"""Benchmark data: the demo dataset's real-photo JPEGs, replicated to any size, with a label store and
the official per-image maps for the same images.

The JPEGs are the demo dataset's (scikit-image photos composed into 500x375 multi-object canvases, q90).
For more images than the demo has, each image appears several times under different names (symbolic
links): every copy is decoded and cropped anew, as distinct files would be. The label store holds either
the demo's ground-truth maps (``num_classes=None``: 10 classes) or realistic synthetic ImageNet-like maps
(``dali_relabel.testing.synthetic``) for ``num_classes`` classes, 15x15, top-5: the official path's dense tensor
grows with C, so ImageNet-scale comparisons need C = 1000.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import numpy as np

from dali_relabel.image_folder import ImageList
from dali_relabel.store import LabelStore
from dali_relabel.testing.demo_dataset import build_demo_dataset
from dali_relabel.testing.synthetic import synthetic_label_maps

DEMO_IMAGES = 320


@dataclasses.dataclass(frozen=True)
class BenchData:
    """A benchmark data set under one work directory.

    Attributes:
        images: ImageFolder root (``<class>/<image>.jpg``).
        labels: label store of every image (keys = paths relative to ``images``).
        class_list: DALI file list ``<key> <class label>`` (a hard-label pipeline's input).
        maps: root of the official ``<key without extension>.pt`` maps, or None if not exported.
        num_images, num_classes: N and C.
        image_size: (height, width) of the JPEGs.
        map_shape: (H, W, K) of the label maps.
    """

    images: Path
    labels: Path
    class_list: Path
    maps: Path | None
    num_images: int
    num_classes: int
    image_size: tuple[int, int]
    map_shape: tuple[int, int, int]


def benchmark_data(work: str | os.PathLike, *, num_images: int = DEMO_IMAGES, num_classes: int | None = 1000,
                   data_dir: str | os.PathLike | None = None, official_maps: bool = True,
                   seed: int = 0) -> BenchData:
    """Builds the data set in ``work`` (an empty directory the caller removes afterwards).

    Args:
        work: directory for the image links, store, file list and official maps.
        num_images: at least this many images: ``ceil(num_images / 320)`` copies of the demo's 320.
        num_classes: C of the synthetic maps; None uses the demo's ground-truth maps (10 classes).
        data_dir: where the demo dataset is built or found (default: the dali_relabel cache). A prebuilt
            one there needs no scikit-image (e.g. on a machine without it).
        official_maps: also export the official per-image ``.pt`` maps.
        seed: seed of the synthetic maps.

    Returns:
        Where everything is.
    """
    work = Path(work)
    demo = build_demo_dataset(data_dir, num_images=DEMO_IMAGES)
    demo_store = LabelStore.open(str(demo.labels))
    copies = max(1, math.ceil(num_images / DEMO_IMAGES))
    root = work / "images"
    for name in demo.class_names:  # every class folder, as in the demo
        (root / name).mkdir(parents=True, exist_ok=True)
    source_row = {}
    for row, key in enumerate(demo_store.keys.tolist()):
        folder, name = key.split("/")
        for j in range(copies):
            link = f"{folder}/{name if copies == 1 else f'r{j}-{name}'}"
            (root / link).symlink_to(demo.images / key)
            source_row[link] = row

    listing = ImageList.from_folder(root)
    rows = np.array([source_row[k] for k in listing.keys])
    source = "demo ground truth" if num_classes is None else "dali_relabel.testing.synthetic"
    if num_classes is None:
        scores, classes = demo_store.read(rows)
        num_classes = demo_store.num_classes
        h, w, k = demo_store.height, demo_store.width, demo_store.k
    else:
        h, w, k = 15, 15, 5
        scores, classes = synthetic_label_maps(len(rows), height=h, width=w, k=k, num_classes=num_classes, seed=seed)
    store = LabelStore.create(str(work / "labels.zarr"), keys=listing.keys, num_classes=num_classes, height=h,
                              width=w, k=k, labels=np.array(listing.labels, np.int32),
                              annotator={"model": "benchmark maps", "source": source})
    for b in range(store.num_blocks):
        r = store.block_rows(b)
        store.write_block(b, scores[r.start:r.stop], classes[r.start:r.stop])
    class_list = work / "classes.txt"
    class_list.write_text("".join(f"{key} {label}\n" for key, label in zip(listing.keys, listing.labels)))
    maps = None
    if official_maps:
        from official_loader import export_official_maps

        maps = work / "maps"
        export_official_maps(store, maps)
    return BenchData(images=root, labels=work / "labels.zarr", class_list=class_list, maps=maps,
                     num_images=len(listing.keys), num_classes=num_classes, image_size=(demo.height, demo.width),
                     map_shape=(h, w, k))
