"""The ``dali-relabel`` command line (argparse; one subcommand per job)."""

from __future__ import annotations

import argparse
import sys


def _cmd_build(args: argparse.Namespace) -> int:
    from .build import build, cache_root
    from .plugin import loaded_plugin

    # Importing the package already built/loaded the plugin; report that build unless forced.
    plugin = build(force=True, verbose=True) if args.force else (loaded_plugin() or build(verbose=True))
    print(plugin.describe())
    print(f"cache root: {cache_root()}")
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dali-relabel",
        description="ReLabel soft targets in NVIDIA DALI pipelines: build the plugin, manage label stores, "
        "annotate, train-loader demo.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("build", help="compile the DALI plugin now (normally done on first import) and say what was built")
    p.add_argument("--force", action="store_true", help="rebuild even if a cached build exists")
    p.set_defaults(func=_cmd_build)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
