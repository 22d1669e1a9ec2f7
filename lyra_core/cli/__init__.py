"""The `lyra` command line (also `python -m lyra_core`): one module per command or group.

Each module adds its own subcommands (`add_parsers(sub)`), whose parsers carry their handler.
A user's mistake (a `LyraError`, or an argument argparse refuses) is printed as one line and exits
2; `--traceback` shows the traceback too. So is a full disk or a read-only filesystem met by a
write that did not go through lyra_core.services.atomic (which says where and what to do). Anything
else is a bug and keeps its traceback. A user sees Lyra's own lines only: the libraries'
informational logging (MLflow's and alembic's table creation), their deprecation warnings and
torch's `No CUDA runtime is found` warning are off unless `--verbose`.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path

from lyra_core import __version__
from lyra_core.cli import (
    bench,
    components,
    data,
    evaluate,
    explore,
    inference,
    reference,
    report,
    run,
    specs,
    summary,
    transfer,
)
from lyra_core.cli.allocator import tune_allocator
from lyra_core.cli.common import EXIT_USER_ERROR, Parser
from lyra_core.errors import LyraError
from lyra_core.services.atomic import FULL, write_error

# In the order `lyra --help` lists them.
COMMAND_MODULES = (
    components,
    specs,
    run,
    summary,
    data,
    inference,
    transfer,
    evaluate,
    explore,
    report,
    bench,
    reference,
)
# Libraries' loggers and the least level of theirs a user sees without --verbose.
QUIET_LOGGERS = {
    "mlflow": logging.WARNING,
    "alembic": logging.WARNING,
    "torch.utils.cpp_extension": logging.ERROR,  # "No CUDA runtime is found" on import
}
OWN_MODULES = r"(?!lyra_core|lyra_plugins)"  # warnings from anything but Lyra's own modules


def quiet_libraries() -> None:
    """Only Lyra's own lines: the libraries' INFO logging, their deprecation warnings and
    torch's CUDA_HOME warning are off (set before MLflow or torch's extensions are imported)."""
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # MLflow resets its loggers on import
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    for category in (DeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category, module=OWN_MODULES)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="lyra", description="Train and use neural audio codecs.")
    parser.add_argument("--version", action="version", version=f"lyra {__version__}")
    parser.add_argument("--traceback", action="store_true", help="show tracebacks for errors")
    parser.add_argument(
        "--verbose", action="store_true", help="show the libraries' logging and warnings too"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.add_parsers(sub)
    return parser


def user_error(exc: LyraError, show_traceback: bool) -> int:
    if show_traceback:
        traceback.print_exc()
    print(f"error: {exc}", file=sys.stderr)
    return EXIT_USER_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or an argument argparse refused
        return exc.code if isinstance(exc.code, int) else EXIT_USER_ERROR
    if not args.verbose:
        quiet_libraries()
    tune_allocator()
    try:
        return args.handler(args)
    except LyraError as exc:
        return user_error(exc, args.traceback)
    except OSError as exc:
        full = exc.errno in (*FULL, errno.EROFS) and exc.filename
        error = write_error(exc, Path(exc.filename)) if full else None
        if error is None:
            raise
        return user_error(error, args.traceback)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
