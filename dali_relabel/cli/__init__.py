"""The ``dali-relabel`` command line: argparse, one module per subcommand.

Each module in ``dali_relabel/cli/`` defines ``HELP`` (one line), ``add_arguments(parser)``
and ``run(args) -> int`` (the exit status). Every module is imported to build the parser, so each keeps
its heavy imports (torch, matplotlib, the annotator...) inside ``run``.

Errors: a command raises; :func:`run_command` prints one line ``dali-relabel <command>: error: <message>``
and returns 2 for problems the user can act on (the library's :mod:`dali_relabel.errors`, file system
errors, invalid values), 1 for anything else; ``--debug`` shows the traceback instead. A library
:class:`~dali_relabel.errors.InvalidArgument` is shown with the command's own option name.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from ..errors import DaliRelabelError, InvalidArgument

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
USER_ERROR, INTERNAL_ERROR, INTERRUPTED = 2, 1, 130
DEBUG_HELP = "on an error, show the full traceback instead of one line"


def _version() -> str:
    from .._version import __version__

    return f"dali-relabel {__version__}"


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    """Options every command takes (after its name too: ``dali-relabel info STORE --debug``)."""
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dali-relabel",
        description="ReLabel soft targets in NVIDIA DALI pipelines: plugin, label stores, annotator, loader demo.")
    parser.add_argument("--version", action="version", version=_version(), help="print the version and exit")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"dali_relabel.cli.{module_name}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        add_common_arguments(p)
        p.set_defaults(func=module.run, parser=p)
    return parser


def describe(error: BaseException, parser: argparse.ArgumentParser | None = None) -> str:
    """One line for an error: its message, with a library argument shown as the command's option."""
    if isinstance(error, InvalidArgument) and parser is not None:
        for action in parser._actions:
            if action.dest == error.argument and action.option_strings:
                value = " ".join(map(str, error.value)) if isinstance(error.value, (list, tuple)) else error.value
                return error.describe(f"{action.option_strings[-1]} {value}", where=False)
    if isinstance(error, KeyError) and error.args:
        return str(error.args[0])
    if isinstance(error, OSError) and not isinstance(error, DaliRelabelError) and error.filename is not None:
        return f"{error.strerror or error}: {error.filename}"
    text = " ".join(str(error).split())
    return text or type(error).__name__


def is_user_error(error: BaseException) -> bool:
    """Problems the user can act on: the library's errors, the file system's, invalid values."""
    return isinstance(error, (DaliRelabelError, OSError, ValueError, KeyError))


def _quiet_stdout() -> None:
    """After the reader of our output went away (``| head``): send the rest to /dev/null, so that the final
    flush at exit does not raise BrokenPipeError again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def run_command(args: argparse.Namespace, name: str, parser: argparse.ArgumentParser | None = None) -> int:
    """Runs ``args.func(args)`` with the command line's error conventions (see the module doc)."""
    debug = getattr(args, "debug", False)
    try:
        status = args.func(args)
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        _quiet_stdout()
        return 0
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"dali-relabel {name}: interrupted", file=sys.stderr)
        return INTERRUPTED
    except Exception as e:
        if debug:
            raise
        if is_user_error(e):
            print(f"dali-relabel {name}: error: {describe(e, parser)}", file=sys.stderr)
            return USER_ERROR
        print(f"dali-relabel {name}: internal error: {type(e).__name__}: {describe(e)} (rerun with --debug for "
              f"the traceback, and please report it)", file=sys.stderr)
        return INTERNAL_ERROR


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    return run_command(args, args.command, args.parser)


if __name__ == "__main__":
    sys.exit(main())
