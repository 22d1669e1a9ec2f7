"""Runs `lyra run` in a subprocess with test-only hooks (not collected by pytest).

    python train_driver.py SPEC RUN_DIR [--resume] [--kill-after-checkpoint STEP]
        [--stop-server-at STEP PGID] [--term-launcher-at STEP] [--dump-params PATH]
        [--set k=v ...]

`--kill-after-checkpoint` SIGKILLs this process right after the checkpoint of STEP is written;
`--stop-server-at` kills a tracking server's process group at STEP; `--term-launcher-at` has rank
0 send SIGTERM to its launcher (torchrun, which passes it to every process) at STEP, as a
cluster's pre-emption does; `--dump-params` saves each rank's final parameters to PATH.RANK.pt.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import types

import torch

from lyra_core import hookimpl
from lyra_core.discovery import load_plugins
from lyra_core.errors import LyraError
from lyra_core.training import train

parser = argparse.ArgumentParser()
parser.add_argument("spec")
parser.add_argument("run_dir")
parser.add_argument("--resume", action="store_true")
parser.add_argument("--kill-after-checkpoint", type=int)
parser.add_argument("--stop-server-at", nargs=2, type=int)
parser.add_argument("--term-launcher-at", type=int)
parser.add_argument("--dump-params")
parser.add_argument("--set", action="append", default=[])
args = parser.parse_args()


@hookimpl
def lyra_on_checkpoint(run, step, path):
    if step == args.kill_after_checkpoint:
        os.kill(os.getpid(), signal.SIGKILL)


@hookimpl
def lyra_on_step_end(run, step, metrics):
    if args.stop_server_at and step == args.stop_server_at[0]:
        os.killpg(args.stop_server_at[1], signal.SIGKILL)
    if step == args.term_launcher_at and os.environ.get("RANK") == "0":
        os.kill(os.getppid(), signal.SIGTERM)


@hookimpl
def lyra_on_train_end(run, step, reason):
    if args.dump_params:
        rank = int(os.environ.get("RANK", "0"))
        torch.save(run.model.state_dict(), f"{args.dump_params}.{rank}.pt")


hooks = types.SimpleNamespace(
    lyra_on_checkpoint=lyra_on_checkpoint,
    lyra_on_step_end=lyra_on_step_end,
    lyra_on_train_end=lyra_on_train_end,
)
plugins = load_plugins(extra=[("testhooks", hooks)])
try:
    if args.resume:
        train(plugins, None, args.set, resume=args.run_dir, device="cpu")
    else:
        train(plugins, args.spec, args.set, device="cpu", run_dir=args.run_dir)
except LyraError as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(2)
