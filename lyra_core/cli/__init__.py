"""The `lyra` command line (also `python -m lyra_core`): one module per command or group.

Each module adds its own subcommands (`add_parsers(sub)`), whose parsers carry their handler.
A user's mistake (a `LyraError`) is printed as its message and exits 2; `--traceback` shows the
traceback too. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from lyra_core import __version__
from lyra_core.cli import bench, components, data, explore, inference, run, specs, summary
from lyra_core.cli.allocator import tune_allocator
from lyra_core.cli.common import EXIT_USER_ERROR
from lyra_core.errors import LyraError

# In the order `lyra --help` lists them.
COMMAND_MODULES = (components, specs, run, summary, data, inference, explore, bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lyra", description="Train and use neural audio codecs.")
    parser.add_argument("--version", action="version", version=f"lyra {__version__}")
    parser.add_argument("--traceback", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tune_allocator()
    try:
        return args.handler(args)
    except LyraError as exc:
        if args.traceback:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
