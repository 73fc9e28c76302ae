"""Which tar files a shard specification names: a directory, a brace pattern, a glob, a wids shard index, a list.

Webdataset's conventions: ``train-{000000..000127}.tar`` (brace expansion, zero padding kept), a directory of
``*.tar`` shards, and the ``wids`` shard index (``shardindex.json``: ``{"__kind__": "wids-shard-index-v1",
"shardlist": [{"url": ..., "nsamples": ...}, ...]}``, urls relative to the JSON's directory).
"""

from __future__ import annotations

import glob
import json
import os
import re
from pathlib import Path
from typing import Sequence

from ..errors import ShardError, ShardsNotFoundError

WIDS_KIND = "wids-shard-index-v1"
WIDS_INDEX_NAME = "shardindex.json"
_BRACE = re.compile(r"\{([^{}]*)\}")


def expand_braces(pattern: str) -> list[str]:
    """Bash-style brace expansion as webdataset does it: ``{000..002}`` (zero padding kept), ``{a,b}``."""
    m = _BRACE.search(pattern)
    if m is None:
        return [pattern]
    head, body, tail = pattern[:m.start()], m.group(1), pattern[m.end():]
    span = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if span:
        lo, hi = span.groups()
        width = len(lo) if lo.startswith("0") and len(lo) > 1 else 0
        step = 1 if int(hi) >= int(lo) else -1
        choices = [str(i).zfill(width) for i in range(int(lo), int(hi) + step, step)]
    elif "," in body:
        choices = body.split(",")
    else:
        choices = ["{" + body + "}"]   # not a brace expression: literal
        return [head + choices[0] + t for t in expand_braces(tail)]
    return [head + c + t for c in choices for t in expand_braces(tail)]


def is_shard_spec(images) -> bool:
    """Whether ``images`` names webdataset shards (rather than an ImageFolder root or an image list).

    Raises:
        ShardError: a directory holding both class folders and ``.tar`` files (say which one is meant).
    """
    if isinstance(images, (list, tuple)):
        return True
    s = os.fspath(images)
    if s.endswith((".tar", ".json")) or "{" in s or glob.has_magic(s):
        return True
    path = Path(s)
    if not path.is_dir():
        return False
    entries = list(os.scandir(path))
    tars = [e.name for e in entries if e.is_file() and e.name.endswith(".tar")]
    if not tars and not (path / WIDS_INDEX_NAME).is_file():
        return False
    folders = [e.name for e in entries if e.is_dir() and not e.name.startswith(".")]
    if folders:
        raise ShardError(f"{path} holds both .tar shards (e.g. {tars[0] if tars else WIDS_INDEX_NAME}) and folders "
                         f"(e.g. {folders[0]}): pass the shards as '{path}/*.tar' or the images as an image list")
    return True


def shard_paths(spec) -> list[Path]:
    """The tar files ``spec`` names, in order (see the module).

    Raises:
        ShardsNotFoundError: a named tar does not exist, or the specification names none.
        ShardError: a JSON file that is not a wids shard index.
    """
    if isinstance(spec, (list, tuple)):
        paths = [p for item in spec for p in shard_paths(item)]
    else:
        s = os.fspath(spec)
        path = Path(s)
        if s.endswith(".json"):
            paths = _wids_paths(path)
        elif "{" in s:
            paths = [Path(p) for p in expand_braces(s)]
        elif glob.has_magic(s):
            paths = [Path(p) for p in sorted(glob.glob(s))]
        elif path.is_dir():
            paths = (_wids_paths(path / WIDS_INDEX_NAME) if (path / WIDS_INDEX_NAME).is_file()
                     else sorted(p for p in path.iterdir() if p.suffix == ".tar" and p.is_file()))
        else:
            paths = [path]
    if not paths:
        raise ShardsNotFoundError(f"{spec}: names no .tar shards (a directory of .tar files, a brace pattern "
                                  f"'train-{{000000..000127}}.tar', a glob or a wids shardindex.json)")
    absent = [str(p) for p in paths if not p.is_file()]
    if absent:
        raise ShardsNotFoundError(f"{len(absent)} of {len(paths)} shards do not exist, e.g. {', '.join(absent[:3])}")
    return paths


def _wids_paths(path: Path) -> list[Path]:
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ShardError(f"{path}: not a readable wids shard index ({e})") from None
    if not isinstance(meta, dict) or meta.get("__kind__") != WIDS_KIND or not isinstance(meta.get("shardlist"), list):
        raise ShardError(f"{path}: not a wids shard index (expected {{'__kind__': '{WIDS_KIND}', 'shardlist': "
                         f"[{{'url': ..., 'nsamples': ...}}, ...]}})")
    out = []
    for entry in meta["shardlist"]:
        url = str(entry.get("url", "")) if isinstance(entry, dict) else ""
        if "://" in url and not url.startswith("file://"):
            raise ShardError(f"{path}: shard {url} is remote; this loader reads local (or mounted) shards: copy them "
                             f"or mount the bucket")
        url = url.removeprefix("file://")
        out.append(Path(url) if os.path.isabs(url) else path.parent / url)
    return out


def wids_index(shards: Sequence[tuple[str, int, int, str | None]], name: str | None = None) -> dict:
    """A wids shard index (``shardindex.json``) of ``(url, nsamples, filesize, md5sum)`` entries."""
    entries = [{"url": url, "nsamples": n, "filesize": size, **({"md5sum": md5} if md5 else {})}
               for url, n, size, md5 in shards]
    return {"__kind__": WIDS_KIND, "wids_version": 1, **({"name": name} if name else {}), "shardlist": entries}


__all__ = ["WIDS_INDEX_NAME", "WIDS_KIND", "expand_braces", "is_shard_spec", "shard_paths", "wids_index"]
