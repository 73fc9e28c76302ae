"""The images of a dataset: an ImageFolder-style tree or a file list, as relative keys and labels."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

# Formats DALI's image decoders read (GPU decoding covers JPEG, JPEG 2000 and, via nvImageCodec, more;
# the rest fall back to the CPU).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".pnm", ".ppm", ".pgm")


@dataclasses.dataclass
class ImageList:
    """Images under ``root`` with their class labels, in a stable order.

    Attributes:
        root: directory the keys are relative to.
        keys: relative paths with extension, e.g. ``n01440764/n01440764_10026.JPEG`` (the label store's keys).
        labels: class index per image (folder index for trees; -1 when a file list gives none).
        classes: class folder names (index = label) for trees; None for file lists.
        skipped: files that are not images DALI decodes (name list), for reporting.
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
    def from_path(cls, path: str | os.PathLike) -> "ImageList":
        """A directory is read as class folders (sorted, like torchvision's ImageFolder); a file as a list."""
        path = Path(path)
        if path.is_dir():
            return cls.from_folder(path)
        if path.is_file():
            return cls.from_file_list(path)
        raise FileNotFoundError(f"{path}: no such directory (ImageFolder root) or file (image list)")

    @classmethod
    def from_folder(cls, root: str | os.PathLike) -> "ImageList":
        root = Path(root)
        classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
        if not classes:
            raise FileNotFoundError(f"{root}: no class folders; expected <root>/<class>/<image> (ImageFolder layout)")
        keys, labels, skipped, empty = [], [], [], []
        for label, name in enumerate(classes):
            found = 0
            for dirpath, dirnames, filenames in os.walk(root / name, followlinks=True):
                dirnames.sort()
                for f in sorted(filenames):
                    rel = os.path.relpath(os.path.join(dirpath, f), root).replace(os.sep, "/")
                    if f.lower().endswith(IMAGE_EXTENSIONS):
                        keys.append(rel)
                        labels.append(label)
                        found += 1
                    elif not f.startswith("."):
                        skipped.append(rel)
            if not found:
                empty.append(name)
        if not keys:
            raise FileNotFoundError(f"{root}: no images (extensions {', '.join(IMAGE_EXTENSIONS)}) in its class folders")
        return cls(root, keys, labels, classes, skipped, empty)

    @classmethod
    def from_file_list(cls, path: str | os.PathLike) -> "ImageList":
        """Lines ``<relative path> [label]``; paths relative to the list's directory."""
        path = Path(path)
        keys, labels = [], []
        for n, line in enumerate(path.read_text().splitlines(), 1):
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
