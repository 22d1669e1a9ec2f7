"""`.lyra` encode + decode of the small-data recipe's model (experiments/small_data.json) on one
thread, and the entropy coding's share of it.

Random weights, saved and loaded as the CLI loads a trained run; the factorized entropy model is
fitted to synthetic training audio (the rates differ from a trained model's; the speed of the
coder does not depend much on them). The benchmarks time, on 10 s of audio: the whole round trip
(`Codec.encode` then `Codec.decode`: the model's encoder and decoder, quantization and range
coding), the model alone (encode and decode the latent), and the range coding alone (a chunk's
rows coded and decoded with their tables). `extra_info` holds the real-time factor (audio
seconds per second of compute) and the coding's share of the model's time, from the medians.

Run: `OMP_WAIT_POLICY=PASSIVE .venv/bin/pytest benchmarks/bench_compress.py --benchmark-only`;
on a machine shared with other work add `--benchmark-timer time.process_time` (CPU time of this
one-thread process, which other processes do not stretch).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lyra_core.discovery import load_plugins
from lyra_core.loader import load_spec
from lyra_core.services.chunking import decode_latent, encode_audio
from lyra_core.services.compress import ChunkCoder, open_codec
from lyra_core.services.model import load_model, save_model
from lyra_core.testing import torch_threads

SPEC = Path(__file__).resolve().parent.parent / "experiments" / "small_data.json"
SECONDS = 10.0
GROUP = "lyra files, small_data model, 1 thread"
medians: dict[str, float] = {}


@pytest.fixture(scope="module")
def codec(tmp_path_factory):
    plugins = load_plugins()
    data = '{"type": "synthetic", "train_examples": 32, "validation_examples": 2}'
    spec = load_spec(SPEC, plugins.registry, [f"data.dataset={data}"])
    torch.manual_seed(0)
    model = spec.model.build(spec.context(plugins.registry))
    run = tmp_path_factory.mktemp("small_data")
    save_model(model, spec, plugins.registry, run, plugins.versions())
    return open_codec(load_model(run, plugins, "cpu"), log=lambda _: None)


@pytest.fixture(scope="module")
def audio(codec) -> torch.Tensor:
    rate = codec.loaded.sample_rate
    t = torch.arange(round(SECONDS * rate)) / rate
    gen = torch.Generator().manual_seed(0)
    x = 0.3 * torch.sin(2 * torch.pi * 220 * t) + 0.05 * torch.randn(t.shape, generator=gen)
    return x[None, None]


@pytest.fixture
def one_thread():
    with torch_threads(1):
        yield


def record(benchmark, name: str) -> None:
    if benchmark.stats is not None:  # None under --benchmark-disable
        medians[name] = benchmark.stats.stats.median
        benchmark.extra_info["realtime_factor"] = SECONDS / medians[name]
    if {"model", "coding"} <= medians.keys():
        benchmark.extra_info["coding_share_of_model"] = medians["coding"] / medians["model"]


@pytest.mark.benchmark(group=GROUP)
def test_model_alone(benchmark, codec, audio, one_thread):
    loaded, chunking = codec.loaded, codec.chunking

    def run() -> torch.Tensor:
        z = encode_audio(loaded, audio, chunking)
        return decode_latent(loaded, z, audio.shape[-1], chunking)

    assert benchmark(run).shape == audio.shape
    record(benchmark, "model")


@pytest.mark.benchmark(group=GROUP)
def test_range_coding_alone(benchmark, codec, audio, one_thread):
    step = codec.default_step
    symbols = codec.symbols(audio, step)
    coder = ChunkCoder(codec, codec.space(step), step)
    frames = symbols.shape[1]

    def run() -> np.ndarray:
        out = np.zeros_like(symbols)
        for start in range(0, frames, codec.chunk_frames):
            end = min(frames, start + codec.chunk_frames)
            coder.decode(coder.encode(symbols, start, end), out, start, end)
        return out

    assert np.array_equal(benchmark(run), symbols)
    record(benchmark, "coding")


@pytest.mark.benchmark(group=GROUP)
def test_lyra_round_trip(benchmark, codec, audio, one_thread):
    decoded = benchmark(lambda: codec.decode(codec.encode(audio), "bench.lyra"))
    assert decoded.shape == audio.shape
    record(benchmark, "round trip")
