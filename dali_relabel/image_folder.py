"""Lists an image dataset the way ``torchvision.datasets.ImageFolder`` does, as store keys.

Class folders are the sorted sub-directories of the root; images are found recursively in each,
visiting directories and file names in sorted order, keeping torchvision's image extensions. So
row ``i`` of the listing is sample ``i`` of ``ImageFolder(root)`` and the label is its target.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

# torchvision.datasets.folder.IMG_EXTENSIONS (compared case-insensitively, as torchvision does)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def list_images(root) -> list[str]:
    """Every image file under ``root`` (any depth), relative, '/' separators, sorted."""
    root = Path(root)
    out = []
    for dirpath, _, files in os.walk(root, followlinks=True):
        rel = Path(dirpath).relative_to(root).as_posix()
        out.extend(f if rel == "." else f"{rel}/{f}" for f in files if is_image(f))
    return sorted(out)


@dataclasses.dataclass
class ImageList:
    """Images under ``root`` with their class labels, in a stable order.

    Attributes:
        root: directory the keys are relative to.
        keys: relative paths with extension, e.g. ``n01440764/n01440764_10026.JPEG`` (the label store's keys).
        labels: class index per image (folder index for trees; -1 when a file list gives none).
        classes: class folder names (index = label) for trees; None for file lists.
        skipped: files in class folders that are not images (by extension), for reporting.
        empty_classes: class folders without any image.
    """

    root: Path
    keys: list[str]
    labels: list[int]
    classes: list[str] | None = None
    skipped: list[str] = dataclasses.field(default_factory=list)
    empty_classes: list[str] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def from_path(cls, path) -> "ImageList":
        """A directory is read as class folders (like torchvision's ImageFolder); a file as an image list."""
        path = Path(path)
        if path.is_dir():
            return cls.from_folder(path)
        if path.is_file():
            return cls.from_file_list(path)
        raise FileNotFoundError(f"{path}: no such directory (ImageFolder root) or file (image list)")

    @classmethod
    def from_folder(cls, root) -> "ImageList":
        """``root/<class>/**/<image>`` in exactly torchvision ImageFolder's order and labels."""
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"image folder {root} is not a directory")
        classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
        keys, labels, skipped, empty = [], [], [], []
        for label, name in enumerate(classes):
            found = 0
            for dirpath, _, files in sorted(os.walk(root / name, followlinks=True)):  # ImageFolder's order
                rel = Path(dirpath).relative_to(root).as_posix()
                for f in sorted(files):
                    if is_image(f):
                        keys.append(f"{rel}/{f}")
                        labels.append(label)
                        found += 1
                    elif not f.startswith("."):
                        skipped.append(f"{rel}/{f}")
            if not found:
                empty.append(name)
        return cls(root, keys, labels, classes, skipped, empty)

    @classmethod
    def from_file_list(cls, path) -> "ImageList":
        """Lines ``<relative path> [label]``; paths relative to the list's directory."""
        path = Path(path)
        keys, labels = [], []
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.rsplit(maxsplit=1)
            if len(parts) == 2 and parts[1].lstrip("-").isdigit():
                keys.append(parts[0])
                labels.append(int(parts[1]))
            else:
                keys.append(line)
                labels.append(-1)
        if not keys:
            raise ValueError(f"{path}: empty image list")
        return cls(path.parent, keys, labels)
