"""`lyra explore`: a local page to listen to a trained model and steer it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lyra_core.cli.common import (
    add_command,
    add_run_options,
    bounded,
    chunking,
    loaded_model,
    port,
    seconds,
)
from lyra_core.errors import LyraError

components = bounded(int, 1, 256)
examples = bounded(int, 1, 100_000)


def explore(args: argparse.Namespace) -> int:
    try:
        from lyra_core.explore import page
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != "gradio":
            raise
        raise LyraError(
            "lyra explore needs Gradio: install with pip install -e '.[explore]'"
        ) from None
    from lyra_core.explore.explorer import Explorer

    explorer = Explorer.open(
        loaded_model(args),
        args.components,
        args.pca_examples,
        chunking(args),
        args.max_seconds,
        Path(args.examples) if args.examples else None,
        args.refit,
        lambda line: print(line, flush=True),
    )
    print(explorer.describe())
    try:
        page.serve(explorer, args.host, args.port)
    finally:
        explorer.close()
    return 0


def folder(value: str) -> str:
    """An argparse type: an existing folder."""
    if not Path(value).is_dir():
        what = "is a file" if Path(value).exists() else "does not exist"
        raise argparse.ArgumentTypeError(f"{value}: {what}; give a folder of audio files")
    return value


def add_parsers(sub: Any) -> None:
    text = "a local page to listen to and steer a model"
    p = add_command(sub, "explore", explore, help=text)
    add_run_options(p, audio_out=False)
    p.add_argument("--port", type=port, default=7860, help="default: 7860")
    p.add_argument("--host", default="127.0.0.1", help="interface to serve on (default: local)")
    p.add_argument(
        "--examples", metavar="DIR", type=folder, help="a folder of audio files to pick from"
    )
    p.add_argument(
        "--components", type=components, default=8, help="PCA sliders, 1 to 256 (default: 8)"
    )
    p.add_argument(
        "--pca-examples", type=examples, default=64, help="validation examples to fit the PCA on"
    )
    p.add_argument("--refit", action="store_true", help="refit the PCA even if it is cached")
    p.add_argument(
        "--max-seconds", type=seconds, default=60.0, help="longest upload accepted (default: 60)"
    )
