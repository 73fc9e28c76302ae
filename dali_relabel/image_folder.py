"""Listing an image tree the way torchvision's ImageFolder does: keys (relative paths) and folder labels."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Formats DALI's image decoders read (case-insensitive).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".pnm",
                    ".jp2", ".j2k")


@dataclass
class ImageList:
    """Images of a tree in store order.

    Attributes:
        root: the tree's root directory.
        keys: ``[N]`` relative POSIX paths with extension (``class/name.JPEG``), unique, in store order.
        labels: ``[N]`` int32: index of the key's top-level folder among the sorted top-level folders
            (ImageFolder's class index); -1 for images directly under ``root``.
        folders: the sorted top-level folder names (``labels`` index into it).
    """

    root: Path
    keys: np.ndarray
    labels: np.ndarray
    folders: list[str]


def _visible(name: str) -> bool:
    return not name.startswith(".")   # .ipynb_checkpoints, .DS_Store, ...


def _images_under(directory: Path, root: Path) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(directory, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if _visible(d))
        for f in filenames:
            if _visible(f) and f.lower().endswith(IMAGE_EXTENSIONS):
                found.append(Path(dirpath, f).relative_to(root).as_posix())
    return sorted(found)


def list_images(root: str | Path) -> ImageList:
    """Lists the images under ``root``: each top-level folder is a class (sorted order, as ImageFolder).

    Order: classes in sorted order, each class's images sorted by path, then images directly under ``root``
    (label -1). Hidden files and folders (leading ``.``) are skipped; symbolic links are followed.

    Raises:
        FileNotFoundError: ``root`` is not a directory, or it holds no image (the message lists the extensions).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image directory {root} does not exist")
    folders = sorted(e.name for e in os.scandir(root) if e.is_dir() and _visible(e.name))
    keys, labels = [], []
    for index, folder in enumerate(folders):
        found = _images_under(root / folder, root)
        keys += found
        labels += [index] * len(found)
    top = sorted(e.name for e in os.scandir(root)
                 if e.is_file() and _visible(e.name) and e.name.lower().endswith(IMAGE_EXTENSIONS))
    keys += top
    labels += [-1] * len(top)
    if not keys:
        raise FileNotFoundError(f"no images under {root} (looked for {', '.join(IMAGE_EXTENSIONS)} in its "
                                "class folders and at its top level)")
    return ImageList(root=root, keys=np.array(keys, dtype=str), labels=np.array(labels, dtype=np.int32),
                     folders=folders)


__all__ = ["IMAGE_EXTENSIONS", "ImageList", "list_images"]
