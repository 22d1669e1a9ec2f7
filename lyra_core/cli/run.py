"""`lyra run`: train a spec, resume a run, or fine-tune from a run's weights."""

from __future__ import annotations

import argparse
from typing import Any

from lyra_core.cli.common import add_command, add_set, output_dir, plugins


def run(args: argparse.Namespace) -> int:
    from lyra_core.training import train

    reason = train(
        plugins(args), args.spec, args.set, args.resume, args.device, args.run_dir, args.init
    )
    return 0 if reason == "completed" else 1


def add_parsers(sub: Any) -> None:
    p = add_command(sub, "run", run, help="train a spec (or resume a run) with MLflow tracking")
    p.add_argument("spec", nargs="?", metavar="SPEC", help="experiment spec (JSON)")
    add_set(p)
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    p.add_argument(
        "--init",
        metavar="RUN",
        help="start from the model weights of a run directory or checkpoint (fine-tuning, e.g. "
        "the output of `lyra import`)",
    )
    p.add_argument(
        "--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, mps"
    )
    p.add_argument(
        "--run-dir", type=output_dir, help="where the run writes (default: runs/NAME-TIMESTAMP)"
    )
