"""What the command modules share: `--set`, the loaded plugins, the options of a trained run,
and argument types that refuse a mistaken value with one line (exit 2) before anything runs."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from lyra_core.discovery import Plugins, load_plugins

EXIT_USER_ERROR = 2  # a user's mistake: a clear message, no traceback
MAX_COUNT = 10_000  # files one command writes (samples, interpolation steps)

Handler = Callable[[argparse.Namespace], int]


class Parser(argparse.ArgumentParser):
    """An argument parser whose mistakes are one line: `error: lyra CMD: ...; see --help`."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {self.prog}: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR)


# -- argument types: each raises ArgumentTypeError, which argparse reports with the option --------


def _number(value: str, kind: type) -> float:
    try:
        number = kind(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not {'an integer' if kind is int else 'a number'}"
        ) from None
    if not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"{value!r}: give a finite number")
    return number


def bounded(kind: type, low: float, high: float, low_open: bool = False) -> Callable[[str], Any]:
    """An argparse type: a finite `kind` (int or float) in [low, high] ((low, high] if open)."""

    def parse(value: str) -> Any:
        number = _number(value, kind)
        if number < low or (low_open and number == low) or number > high:
            left = "(" if low_open else "["
            raise argparse.ArgumentTypeError(
                f"{value}: expected a value in {left}{low:g}, {high:g}]"
            )
        return number

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


seconds = bounded(float, 0.0, 86_400.0, low_open=True)  # up to a day
non_negative_seconds = bounded(float, 0.0, 86_400.0)
count = bounded(int, 1, MAX_COUNT)
seed = bounded(int, 0, 2**63 - 1)
port = bounded(int, 1, 65_535)


def rate(value: str) -> int:
    """An argparse type: an output sample rate that `write_audio` accepts."""
    from lyra_core.errors import LyraError
    from lyra_core.services.audio import check_rate

    hz = int(_number(value, int))
    try:
        check_rate(hz)
    except LyraError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return hz


def _writable_folder(path: Path, value: str) -> None:
    """`path` is or can become a folder: no file in the way, the nearest existing one writable."""
    parent = path
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        where = "is a file" if str(parent) == value else f"{parent} is a file"
        raise argparse.ArgumentTypeError(f"{value}: {where}, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{value}: cannot write in {parent} (permission denied)")


def output_dir(value: str) -> str:
    """An argparse type: a folder to write into (it may not exist yet)."""
    if not value:
        raise argparse.ArgumentTypeError("give a folder")
    _writable_folder(Path(value), value)
    return value


def output_file(value: str) -> str:
    """An argparse type: a file to write (not a folder; its folder may not exist yet).

    With `output_dir`, the one check of every path a command writes (-o, --json, --run-dir, ...).
    """
    if not value:
        raise argparse.ArgumentTypeError("give a file name")
    if Path(value).is_dir():
        raise argparse.ArgumentTypeError(f"{value}: is a folder; give a file name in it")
    _writable_folder(Path(value).parent, value)
    return value


def add_command(sub: Any, name: str, handler: Handler, **kwargs: Any) -> argparse.ArgumentParser:
    """A subcommand whose `handler(args)` runs when it is chosen."""
    p = sub.add_parser(name, **kwargs)
    p.set_defaults(handler=handler)
    return p


def add_set(p: argparse.ArgumentParser) -> None:
    """`--set KEY=VALUE`, repeatable: override any value of a spec."""
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec value, e.g. training.steps=10 (VALUE is JSON, else a string)",
    )


def plugins(args: argparse.Namespace) -> Plugins:
    return load_plugins(builtins_only=getattr(args, "builtins_only", False))


def add_run_options(p: argparse.ArgumentParser, audio_out: bool = True) -> None:
    """The options of every command that loads a trained model (--run)."""
    p.add_argument("--run", required=True, help="run directory, checkpoint file or MLflow run id")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda")
    p.add_argument(
        "--weights",
        choices=("ema", "raw"),
        help="ema: the weights' moving average (training.ema); raw: the trained weights "
        "(default: ema when the run kept one, else raw)",
    )
    p.add_argument(
        "--tracking-uri", help="MLflow store for a run id (default: $MLFLOW_TRACKING_URI)"
    )
    p.add_argument(
        "--chunk-seconds", type=seconds, default=10.0, help="audio per chunk (default 10)"
    )
    p.add_argument(
        "--context-seconds",
        type=non_negative_seconds,
        default=0.5,
        help="audio each chunk sees on both sides, crossfaded at seams (default 0.5)",
    )
    if audio_out:
        p.add_argument(
            "--format", choices=("wav", "flac", "mp3"), default="wav", help="default: wav"
        )
        p.add_argument("--bits", choices=("16", "24", "float"), default="16", help="default: 16")
        p.add_argument("--no-dither", action="store_true", help="no TPDF dither when quantising")
        p.add_argument("--rate", type=rate, help="resample the output to this rate (Hz)")


def loaded_model(args: argparse.Namespace):  # -> lyra_core.services.model.LoadedModel
    from lyra_core.services.model import load_model

    return load_model(args.run, plugins(args), args.device, args.tracking_uri, args.weights)


def chunking(args: argparse.Namespace):  # -> lyra_core.services.chunking.Chunking
    from lyra_core.services.chunking import Chunking

    return Chunking(args.chunk_seconds, args.context_seconds)


def audio_output(args: argparse.Namespace):  # -> lyra_core.inference.files.AudioOutput
    from lyra_core.inference.files import AudioOutput

    return AudioOutput(f".{args.format}", args.bits, not args.no_dither, args.rate)


def add_bitstream_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--bitstream",
        action="store_true",
        help="the latent quantized and entropy-coded as .lyra files (their measured bitrate)",
    )
    p.add_argument(
        "--step",
        type=bounded(float, 1e-3, 64.0),
        help="grid step of a continuous latent, in its training standard deviations (default "
        "0.2; smaller: closer and more bits)",
    )
    p.add_argument(
        "--kbps", type=bounded(float, 1e-3, 1e6), help="the finest step whose file meets this rate"
    )
    p.add_argument(
        "--entropy-model",
        metavar="NAME",
        help="factorized (default) or prior (a latent_prior run): lyra components entropy_model",
    )
    p.add_argument(
        "--refit", action="store_true", help="fit the entropy model again (cached in RUN/compress)"
    )


def bitstream_codec(args: argparse.Namespace, loaded: Any) -> Any:
    """The `.lyra` codec that --bitstream, --step, --kbps and --entropy-model ask for."""
    from lyra_core.errors import LyraError
    from lyra_core.services.compress import DEFAULT_ENTROPY_MODEL, open_codec

    if args.step is not None and args.kbps is not None:
        raise LyraError("--step and --kbps both choose the operating point: give one")
    name = args.entropy_model or DEFAULT_ENTROPY_MODEL
    return open_codec(loaded, name, chunking(args), args.refit)
