"""dali-relabel build: compile the DALI plugin now and say what was built."""

from __future__ import annotations

import argparse

HELP = "compile the DALI plugin (normally done once on first import) and print what was built"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--force", action="store_true", help="rebuild even if a cached build exists")


def run(args: argparse.Namespace) -> int:
    from ..ops.build import build, cache_root
    from ..ops.plugin import loaded_plugin

    # Importing the package already built (or found) and loaded the plugin: report that one.
    plugin = build(force=True) if args.force else (loaded_plugin() or build())
    print(plugin.describe())
    print(f"cache root: {cache_root()} (set DALI_RELABEL_CACHE to move it)")
    return 0
