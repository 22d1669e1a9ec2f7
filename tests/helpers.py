"""Spec pieces several test modules build tiny models from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from lyra_core.discovery import Plugins, load_plugins
from lyra_core.training import train

EAGER_SNAKE = {"type": "snake", "implementation": "eager"}


def train_spec(spec: dict, folder: Path, name: str, plugins: Plugins | None = None) -> Path:
    """Train `spec` on the CPU, written as FOLDER/NAME.json, into the run directory FOLDER/NAME."""
    path = folder / f"{name}.json"
    path.write_text(json.dumps(spec))
    train(plugins or load_plugins(), str(path), run_dir=str(folder / name), device="cpu")
    return folder / name


def coder(kind: str) -> dict:
    """A one-stage conv encoder or decoder, 4 → 8 channels, stride 4, eager Snake."""
    block = "encoder_block" if kind == "conv_encoder" else "decoder_block"
    return {
        "type": kind,
        "base_channels": 4,
        "c_mults": [2],
        "strides": [4],
        "activation": EAGER_SNAKE,
        "block": {"type": block, "activation": EAGER_SNAKE},
    }


RATE = 8000  # the tiny specs' sample rate
NO_TRACKING = {"type": "none"}


def synthetic_data(
    validation_examples: int = 2, batch_size: int = 2, sample_rate: int = RATE
) -> dict:
    """A data section: synthetic mono audio, 4 training examples of 2048 samples."""
    return {
        "dataset": {
            "type": "synthetic",
            "train_examples": 4,
            "validation_examples": validation_examples,
        },
        "sample_rate": sample_rate,
        "channels": 1,
        "segment_length": 2048,
        "batch_size": batch_size,
    }


def autoencoder(bottleneck: dict, bands: int | None = 4) -> dict:
    """Two `coder`s around `bottleneck`, behind `bands` PQMF bands (None: no filterbank)."""
    bank = {"filterbank": {"type": "pqmf", "bands": bands}} if bands else {}
    coders = {"encoder": coder("conv_encoder"), "bottleneck": bottleneck}
    return {"type": "autoencoder", **bank, **coders, "decoder": coder("conv_decoder")}


def short_training(steps: int, **settings: object) -> dict:
    """A training section: `steps` steps of Adam, logged each, a checkpoint at the end."""
    return {
        "steps": steps,
        "optimizer": {"type": "adam", "lr": 0.001},
        "validate_every": 1000,
        "checkpoint_every": steps,
        "log_every": 1,
        "validation_batches": 1,
        "validation_examples": 0,
    } | settings


# What a fresh interpreter sees of an exported model: no site (so no .pth files and no editable
# Lyra), no user paths, only torch's own site-packages directory, a working directory outside the
# repository. `model` is the TorchScript file, `inputs` what the test saved, `lyra` whether Lyra
# imports there; the script saves its results to sys.argv[4].
FRESH_PREAMBLE = r"""
import sys
sys.path.append(sys.argv[1])
import torch
try:
    import lyra_core
    lyra = True
except ImportError:
    lyra = False
model = torch.jit.load(sys.argv[2])
inputs = torch.load(sys.argv[3])
"""


def consume(script: str, model_file: Path, inputs: object, tmp_path: Path) -> dict:
    """What `script`, run after FRESH_PREAMBLE in a fresh interpreter, saved."""
    torch.save(inputs, tmp_path / "in.pt")
    site = str(Path(torch.__file__).parent.parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "LYRA"))}
    files = [str(model_file), str(tmp_path / "in.pt"), str(tmp_path / "out.pt")]
    done = subprocess.run(
        [sys.executable, "-S", "-I", "-c", FRESH_PREAMBLE + script, site, *files],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return torch.load(tmp_path / "out.pt")
