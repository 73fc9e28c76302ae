"""Durability on local file systems, for writes made atomic by a temporary name and a rename."""

from __future__ import annotations

import os


def fsync_path(path) -> None:
    """Flushes a file's data, or a directory's entries (files created or renamed into it), to stable storage."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["fsync_path"]
