"""The ``dali-relabel`` command line: argparse, one module per subcommand.

Each module in ``dali_relabel/cli/`` defines ``HELP`` (one line), ``add_arguments(parser)``
and ``run(args) -> int`` (the exit status). Every module is imported to build the parser, so each keeps
its heavy imports (torch, matplotlib, the annotator...) inside ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command name -> module under dali_relabel.cli
COMMANDS = {
    "build": "build",
    "annotate": "annotate",
    "crop-stats": "crop_stats",
    "demo": "demo",
    "import-naver": "import_naver",
    "info": "info",
    "shard": "shard",
    "show": "show",
    "verify": "verify",
}


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dali-relabel",
        description="ReLabel soft targets in NVIDIA DALI pipelines: plugin, label stores, annotator, loader demo.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"dali_relabel.cli.{module_name}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(func=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
