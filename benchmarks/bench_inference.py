"""Real-time factor of `lyra reconstruct` for the demo model (experiments/snake_pqmf.json).

Random weights, saved as a checkpoint and loaded the way the CLI loads a trained run (eval,
weight norm folded, eager Snake). `reconstruct` encodes and decodes in 10 s chunks with 0.5 s of
context (the CLI's defaults); the command also reads, writes and scores the file. The real-time
factor (audio seconds per second of compute) is in `extra_info["realtime_factor"]`.

Run: `OMP_WAIT_POLICY=PASSIVE .venv/bin/pytest benchmarks/bench_inference.py` (on a machine
shared with other busy processes, OpenMP's spinning threads otherwise wait on each other).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from lyra_core.context import BuildContext
from lyra_core.discovery import load_plugins
from lyra_core.inference.files import AudioOutput, reconstruct_files
from lyra_core.loader import load_spec, resolved
from lyra_core.services import checkpoint
from lyra_core.services.chunking import Chunking, reconstruct_audio
from lyra_core.services.model import load_model

DEMO = Path(__file__).resolve().parent.parent / "experiments" / "snake_pqmf.json"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo model with random weights, loaded from a checkpoint like a trained run."""
    plugins = load_plugins()
    spec = load_spec(DEMO, plugins.registry)
    d = spec.data
    torch.manual_seed(0)
    ctx = BuildContext(registry=plugins.registry, sample_rate=d.sample_rate, channels=d.channels)
    model = spec.model.build(ctx)
    run = tmp_path_factory.mktemp("demo_run")
    state = {
        "format": checkpoint.FORMAT,
        "model": model.state_dict(),
        "spec": json.dumps(resolved(spec, plugins.registry)),
        "plugins": plugins.versions(),
        "step": 0,
    }
    checkpoint.save_atomic(state, run / "checkpoints" / "last.pt")
    return load_model(run, plugins, device="cpu")


def music(seconds: float, rate: int) -> torch.Tensor:
    t = torch.arange(round(seconds * rate)) / rate
    x = 0.3 * torch.sin(2 * torch.pi * 220 * t) + 0.05 * torch.randn(t.shape)
    return x[None, None]


@pytest.mark.benchmark(group="reconstruct, demo model (random weights)")
@pytest.mark.parametrize("seconds", [1, 60])
def test_reconstruct_realtime_factor(benchmark, demo, seconds):
    x = music(seconds, demo.sample_rate)
    chunking = Chunking()
    reconstruct_audio(demo, x, chunking)  # warm up (oneDNN primitives)
    rounds = 10 if seconds == 1 else 3
    y = benchmark.pedantic(
        reconstruct_audio, (demo, x, chunking), rounds=rounds, iterations=1, warmup_rounds=0
    )
    assert y.shape == x.shape and torch.isfinite(y).all()
    record_rtf(benchmark, seconds)


@pytest.mark.benchmark(group="reconstruct command, file in and out, with metrics")
def test_reconstruct_command_60s(benchmark, demo, tmp_path):
    src = tmp_path / "minute.wav"
    sf.write(src, music(60, demo.sample_rate)[0, 0].numpy(), demo.sample_rate)
    rows = benchmark.pedantic(
        reconstruct_files,
        (demo, [src], tmp_path / "out", Chunking(), AudioOutput(".wav", "16")),
        rounds=2,
        iterations=1,
    )
    assert np.isfinite(rows[0][1]["si_sdr"])
    record_rtf(benchmark, 60)


def record_rtf(benchmark, seconds: float) -> None:
    """Audio seconds per second of compute, from the median (no stats under --benchmark-disable)."""
    stats = getattr(benchmark, "stats", None)
    if stats:
        median = stats.stats.median
        benchmark.extra_info["realtime_factor"] = round(seconds / median, 2)
        print(f"\n{benchmark.name}: median {median:.3f} s, {seconds / median:.1f}x real time")
