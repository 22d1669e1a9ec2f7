"""What the command modules share: `--set`, the loaded plugins, and the options of a trained run."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from lyra_core.plugins import Plugins, load_plugins

EXIT_USER_ERROR = 2  # a user's mistake: a clear message, no traceback

Handler = Callable[[argparse.Namespace], int]


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
        "--tracking-uri", help="MLflow store for a run id (default: $MLFLOW_TRACKING_URI)"
    )
    p.add_argument("--chunk-seconds", type=float, default=10.0, help="audio per chunk (default 10)")
    p.add_argument(
        "--context-seconds",
        type=float,
        default=0.5,
        help="audio each chunk sees on both sides, crossfaded at seams (default 0.5)",
    )
    if audio_out:
        p.add_argument("--format", choices=("wav", "flac"), default="wav", help="default: wav")
        p.add_argument("--bits", choices=("16", "24", "float"), default="16", help="default: 16")
        p.add_argument("--no-dither", action="store_true", help="no TPDF dither when quantising")
        p.add_argument("--rate", type=int, help="resample the output to this rate (Hz)")


def loaded_model(args: argparse.Namespace):  # -> lyra_core.runs.model.LoadedModel
    from lyra_core.runs.model import load_model

    return load_model(args.run, plugins(args), args.device, args.tracking_uri)


def chunking(args: argparse.Namespace):  # -> lyra_core.runs.chunking.Chunking
    from lyra_core.runs.chunking import Chunking

    return Chunking(args.chunk_seconds, args.context_seconds)


def audio_output(args: argparse.Namespace):  # -> lyra_core.inference.files.AudioOutput
    from lyra_core.inference.files import AudioOutput

    return AudioOutput(f".{args.format}", args.bits, not args.no_dither, args.rate)
