"""Where a label store lives: local path or URL, zarr's store argument, and what a local destination holds."""

from __future__ import annotations

import json
import os
from pathlib import Path

import zarr
import zarr.errors

from . import format as fmt


def local_path(url) -> Path | None:
    """The local directory of a path or ``file://`` URL; None for other URLs (``s3://``, ``memory://``...)."""
    s = str(url)
    if s.startswith("file://"):
        s = s[len("file://"):]
    if "://" in s:
        return None
    return Path(s).expanduser()


def store_arg(url):
    """zarr's store argument: local paths (and file:// URLs) become LocalStore, other URLs go to fsspec."""
    local = local_path(url)
    return str(url) if local is None else local


def join_url(url, name: str) -> str:
    """``url/name`` for paths and URLs alike."""
    return f"{str(url).rstrip('/')}/{name}"


def describe(e: BaseException) -> str:
    """``Type: message`` on one line, for the cause inside a message."""
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def try_open_group(arg, mode: str) -> zarr.Group | None:
    """The zarr v3 group at ``arg``, or None when there is none (nothing, or an array). Undecodable metadata
    raises (the caller names it)."""
    try:
        return zarr.open_group(arg, mode=mode, zarr_format=3)
    except (FileNotFoundError, NotADirectoryError, zarr.errors.GroupNotFoundError, KeyError):
        return None
    except zarr.errors.ContainsArrayError:
        return None  # an array, not a group


def inspect_destination(path: Path) -> tuple[str, str | None]:
    """What is at a local destination of a new store, and one entry as an example for "foreign".

    Returns:
        ``("absent" | "empty" | "file" | "store" | "partial" | "foreign", example)``. "partial": a zarr group
        without the format attribute holding nothing but this format's arrays (a creation interrupted by an older
        dali_relabel, which created stores in place); "foreign": anything else (never written into).
    """
    if not path.exists() and not path.is_symlink():
        return "absent", None
    if not path.is_dir():
        return "file", None
    entries = sorted(os.listdir(path))
    if not entries:
        return "empty", None
    meta = path / "zarr.json"
    if meta.is_file():
        try:
            doc = json.loads(meta.read_text())
        except (ValueError, OSError):
            doc = None
        if isinstance(doc, dict) and doc.get("node_type") == "group":
            attrs = doc.get("attributes") or {}
            if attrs.get("format") == fmt.FORMAT_NAME:
                return "store", None
            strangers = [e for e in entries if e != "zarr.json" and e not in fmt.ARRAYS]
            if not attrs and not strangers:
                return "partial", None
            return "foreign", strangers[0] if strangers else "zarr.json"
        return "foreign", "zarr.json"
    return "foreign", entries[0]


__all__ = ["describe", "inspect_destination", "join_url", "local_path", "store_arg", "try_open_group"]
