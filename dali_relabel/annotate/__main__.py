"""``python -m dali_relabel.annotate`` (e.g. under torchrun): the same arguments as ``dali-relabel annotate``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from dali_relabel.cli import add_common_arguments, run_command
    from dali_relabel.cli import annotate as command

    parser = argparse.ArgumentParser(prog="python -m dali_relabel.annotate", description=command.HELP)
    command.add_arguments(parser)
    add_common_arguments(parser)
    parser.set_defaults(func=command.run)
    return run_command(parser.parse_args(argv), "annotate", parser)


if __name__ == "__main__":
    sys.exit(main())
