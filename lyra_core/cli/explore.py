"""`lyra explore`: a local page to listen to a trained model and steer it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lyra_core.cli.common import add_command, add_run_options, chunking, loaded_model
from lyra_core.errors import LyraError


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


def add_parsers(sub: Any) -> None:
    text = "a local page to listen to and steer a model"
    p = add_command(sub, "explore", explore, help=text)
    add_run_options(p, audio_out=False)
    p.add_argument("--port", type=int, default=7860, help="default: 7860")
    p.add_argument("--host", default="127.0.0.1", help="interface to serve on (default: local)")
    p.add_argument("--examples", metavar="DIR", help="a folder of audio files to pick from")
    p.add_argument("--components", type=int, default=8, help="PCA sliders (default: 8)")
    p.add_argument(
        "--pca-examples", type=int, default=64, help="validation examples to fit the PCA on"
    )
    p.add_argument("--refit", action="store_true", help="refit the PCA even if it is cached")
    p.add_argument(
        "--max-seconds", type=float, default=60.0, help="longest upload accepted (default: 60)"
    )
