"""Lists an image dataset the way ``torchvision.datasets.ImageFolder`` does, as store keys.

Class folders are the sorted sub-directories of the root; images are found recursively in each,
visiting directories and file names in sorted order, keeping torchvision's image extensions. So
row ``i`` of the listing is sample ``i`` of ``ImageFolder(root)`` and the label is its target.
"""

from __future__ import annotations

import os
from pathlib import Path

# torchvision.datasets.folder.IMG_EXTENSIONS (compared case-insensitively, as torchvision does)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def scan_image_folder(root) -> tuple[list[str], list[str], list[int]]:
    """Lists ``root/<class>/**/<image>``.

    Args:
        root: dataset root (e.g. ImageNet's ``train/``).

    Returns:
        ``(class_names, keys, labels)``: sorted class folder names; image paths relative to
        ``root`` with '/' separators, in ImageFolder order; each image's class index.

    Raises:
        FileNotFoundError: ``root`` is not a directory.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} is not a directory")
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
    keys, labels = [], []
    for label, name in enumerate(classes):
        for dirpath, _, files in sorted(os.walk(root / name, followlinks=True)):
            rel = Path(dirpath).relative_to(root).as_posix()
            for f in sorted(files):
                if is_image(f):
                    keys.append(f"{rel}/{f}")
                    labels.append(label)
    return classes, keys, labels


def list_images(root) -> list[str]:
    """Every image file under ``root`` (any depth), relative, '/' separators, sorted."""
    root = Path(root)
    out = []
    for dirpath, _, files in os.walk(root, followlinks=True):
        rel = Path(dirpath).relative_to(root).as_posix()
        out.extend(f if rel == "." else f"{rel}/{f}" for f in files if is_image(f))
    return sorted(out)
