"""Lists an image dataset the way ``torchvision.datasets.ImageFolder`` does, as store keys.

Class folders are the sorted sub-directories of the root; images are found recursively in each,
visiting directories and file names in sorted order, keeping torchvision's image extensions. So
row ``i`` of the listing is sample ``i`` of ``ImageFolder(root)`` and the label is its target.

Unlike ``os.walk(followlinks=True)``, the walk is safe with symbolic links: links to files are
followed; links to directories are followed only to a directory not listed yet, so a link back to
an ancestor (a cycle, which would list the same images again and again) or a second path to a
directory already listed is skipped, as is a broken link. Every skipped link is reported
(``ImageList.skipped_links``), never silent.

Keys (the relative paths) are plain relative POSIX paths (:func:`key_problem`): a file name that cannot
be one (a newline, which DALI's line-based file lists cannot carry; an undecodable name) is an error
that names the file.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from .errors import ImageFolderError, InvalidKeyError

# torchvision.datasets.folder.IMG_EXTENSIONS (compared case-insensitively, as torchvision does)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def key_problem(key) -> str | None:
    """Why ``key`` is not a valid key (an image path relative to the dataset root), or None.

    A key is non-empty UTF-8 text with ``/`` separators, no empty, ``.`` or ``..`` component, not absolute, no
    backslash and no control character (DALI's file lists are line based: a newline cannot be carried). So a
    key never names a file outside the root.
    """
    if not isinstance(key, str) or not key:
        return "is not a non-empty string"
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8 (a file name in another encoding?)"
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in key):
        return "contains a control character (newline, tab, NUL...)"
    if key.startswith("/"):
        return "is an absolute path; keys are paths relative to the dataset root"
    if "\\" in key:
        return "contains a backslash; keys use '/' separators"
    if any(p in ("", ".", "..") for p in key.split("/")):
        return "has an empty, '.' or '..' component; keys are plain relative paths inside the dataset root"
    return None


def resolve_key(root, key: str) -> Path:
    """The file a key names under ``root``; refuses (InvalidKeyError) a key that could name a file outside it."""
    problem = key_problem(key)
    if problem is not None:
        raise InvalidKeyError(f"key {key!r} {problem}")
    return Path(root) / key


def is_inside(path, root) -> bool:
    """Whether the local path ``path`` (existing or not; not a URL) is ``root`` or lies below it, links resolved."""
    text = str(path)
    if text.startswith("file://"):
        text = text[len("file://"):]
    if "://" in text:
        return False
    target, base = Path(text).expanduser().resolve(), Path(root).expanduser().resolve()
    return target == base or base in target.parents


def _walk(top: Path, root: Path, skipped: list[str], listed: set,
          above: tuple = ()) -> list[tuple[str, list[str], list[str]]]:
    """``(relative dir, image file names, other file names)`` of ``top`` and every directory below it (see the
    module doc).

    ``listed``: (device, inode) of every directory listed so far, shared by the calls of one listing; ``above``:
    those of the directories above ``top``.
    """
    out = []
    # Depth first, entries in sorted order: which of two paths to one directory is kept does not depend on
    # the file system's order. Each stack entry carries the directories on its path (for cycles).
    stack: list[tuple[Path, tuple]] = [(top, above)]
    while stack:
        directory, ancestors = stack.pop()
        rel = directory.relative_to(root).as_posix()
        try:
            st = directory.stat()
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as e:
            skipped.append(f"{rel}: cannot be listed ({e.strerror})")
            continue
        ident = (st.st_dev, st.st_ino)
        if ident in listed:  # reached through a link: a cycle or a second path
            why = ("a link back to a folder above it (a cycle)" if ident in ancestors
                   else "a second path to a folder listed already")
            skipped.append(f"{rel}: skipped, {why}")
            continue
        listed.add(ident)
        files, others, subdirs = [], [], []
        for entry in entries:
            try:
                is_dir = entry.is_dir()  # follows links
                is_file = not is_dir and entry.is_file()
            except OSError:
                is_dir = is_file = False
            if entry.is_symlink() and not is_dir and not is_file:
                skipped.append(f"{rel}/{entry.name}: skipped, a broken symbolic link")
            elif is_dir:
                subdirs.append(directory / entry.name)
            elif is_file:
                (files if is_image(entry.name) else others).append(entry.name)
        out.append((rel, files, others))
        stack.extend((d, ancestors + (ident,)) for d in reversed(subdirs))
    return out


def walk_files(root, skipped: list[str]) -> list[tuple[str, list[str], list[str]]]:
    """``(relative dir, image file names, other file names)`` of every directory under ``root``, links treated as
    the module doc says; ``skipped`` receives a line per link not followed."""
    root = Path(root)
    report: list[str] = []
    walked = _walk(root, root, report, set())
    skipped.extend(sorted(report))
    return walked


def _keys_of(root: Path, walked: list[tuple[str, list[str], list[str]]]) -> list[tuple[str, str]]:
    """[(relative dir, key)] in ImageFolder's order (directories as sorted path strings, then file names)."""
    out = []
    for rel, files, _ in sorted(walked):
        for f in sorted(files):
            key = f if rel == "." else f"{rel}/{f}"
            problem = key_problem(key)
            if problem is not None:
                raise ImageFolderError(f"{root}: the image file name {key!r} {problem}, so it cannot be a key (DALI's "
                                       f"file lists are line based); rename it, or move it out of {root}")
            out.append((rel, key))
    return out


def list_images(root, skipped: list[str] | None = None) -> list[str]:
    """Every image file under ``root`` (any depth), relative, '/' separators, sorted.

    Args:
        root: the directory.
        skipped: if given, receives one line per symbolic link skipped (cycles, second paths, broken links).

    Raises:
        ImageFolderError: an image file name that cannot be a key (named).
    """
    root = Path(root)
    report: list[str] = []
    keys = sorted(key for _, key in _keys_of(root, _walk(root, root, report, set())))
    if skipped is not None:
        skipped.extend(sorted(report))
    return keys


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
        skipped_links: symbolic links not followed, with why (a directory cycle, a second path to a directory
            already listed, a broken link), for reporting.
    """

    root: Path
    keys: list[str]
    labels: list[int]
    classes: list[str] | None = None
    skipped: list[str] = dataclasses.field(default_factory=list)
    empty_classes: list[str] = dataclasses.field(default_factory=list)
    skipped_links: list[str] = dataclasses.field(default_factory=list)

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
        raise FileNotFoundError(f"{path}: no such directory (ImageFolder root, or webdataset shards) or file (image "
                                f"list)")

    @classmethod
    def from_folder(cls, root) -> "ImageList":
        """``root/<class>/**/<image>`` in exactly torchvision ImageFolder's order and labels (symbolic links: see
        the module doc).

        Raises:
            FileNotFoundError: ``root`` is not a directory.
            ImageFolderError: an image file name that cannot be a key (named).
        """
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"image folder {root} is not a directory")
        classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
        keys, labels, skipped, empty, links = [], [], [], [], []
        st = root.stat()
        listed: set = {(st.st_dev, st.st_ino)}
        for label, name in enumerate(classes):
            walked = _walk(root / name, root, links, listed, above=((st.st_dev, st.st_ino),))
            found = 0
            for _, key in _keys_of(root, walked):
                keys.append(key)
                labels.append(label)
                found += 1
            if not found:
                empty.append(name)
            # Non-image files, for the report only (hidden files are not worth mentioning).
            skipped.extend(f"{rel}/{f}" for rel, _, others in sorted(walked) for f in sorted(others)
                           if not f.startswith("."))
        return cls(root, keys, labels, classes, skipped, empty, sorted(links))

    @classmethod
    def from_file_list(cls, path) -> "ImageList":
        """Lines ``<relative path> [label]``; paths relative to the list's directory.

        Raises:
            ImageFolderError: a path that is not a plain relative path inside that directory (named, with its line).
        """
        path = Path(path)
        keys, labels = [], []
        for number, line in enumerate(path.read_text().splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.rsplit(maxsplit=1)
            if len(parts) == 2 and parts[1].lstrip("-").isdigit():
                key, label = parts[0], int(parts[1])
            else:
                key, label = line, -1
            problem = key_problem(key)
            if problem is not None:
                raise ImageFolderError(f"{path}, line {number}: the image path {key!r} {problem}")
            keys.append(key)
            labels.append(label)
        if not keys:
            raise ValueError(f"{path}: empty image list")
        return cls(path.parent, keys, labels)
