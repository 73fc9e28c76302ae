"""Shared by the example scripts' tests: a script's other variant (its marked lines swapped), loading a script as
a module, an ImageNet-style validation folder for ReaL."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path


def other_variant(source: str, marker: str = "# ReLabel", prefix: str = "standard") -> str:
    """The script without ReLabel: drop the lines ending in ``marker``, uncomment the ``# <prefix>:`` lines."""
    out = []
    for line in source.splitlines(keepends=True):
        if line.rstrip().endswith(marker):
            continue
        m = re.match(rf"^(\s*)# {prefix}: (.*)$", line)
        out.append(f"{m.group(1)}{m.group(2)}\n" if m else line)
    return "".join(out)


def load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def imagenet_style_val(demo, root: Path) -> list[int]:
    """``root/val``: the demo's images named like ImageNet's validation files (``<class>/ILSVRC2012_val_<n>.JPEG``,
    numbered in key order); returns each file's class index (folder order), what a real.json lists."""
    from dali_relabel.image_folder import ImageList
    from dali_relabel.metrics import VAL_FILE_PATTERN

    listing = ImageList.from_folder(demo.images)
    labels = []
    for n, (key, label) in enumerate(zip(listing.keys, listing.labels), start=1):
        target = root / "val" / key.split("/")[0] / VAL_FILE_PATTERN.format(n)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(demo.images / key)
        labels.append(label)
    for cls in listing.classes:                       # (ImageFolder wants every class folder)
        (root / "val" / cls).mkdir(parents=True, exist_ok=True)
    return labels
