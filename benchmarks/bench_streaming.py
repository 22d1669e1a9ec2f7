"""Streaming decode's real-time factor: causal models chunk by chunk, beside their offline forms.

Two models, random weights, loaded the way the CLI loads a run (eval, weight norm folded, eager
Snake): the demo (experiments/snake_pqmf.json) and a RAVE v2-sized model
(experiments/reference/rave_v2.json), each with `"causal": true` on the model. Each decodes one
chunk of 2048 samples' latent per call, batch 1, on 1 and 2 threads:

- `offline`: the non-causal model decodes the same frames in one pass (no state), its convs on
  PyTorch's plain conv1d path (as the loaded model runs them);
- `stream`: the causal model in Lyra's `Stream` (eager PyTorch, state carried between calls,
  the convs on their channels-last oneDNN path: `runs.streaming.channels_last_inference`);
- `torchscript`: the causal model's `lyra export --streaming` module, `decode` (the same path).

`extra_info` holds the real-time factor (audio seconds per second of compute, from the median;
`realtime_factor_best` from the fastest round, the least disturbed on a shared machine),
the stream's latency (the chunk plus the model's delay, in samples and ms), and for the streaming
rows their speed relative to the offline row of the same model and threads. With
`--benchmark-disable` (`make test`) the models are shrunk to a few channels and run once.

Run: `OMP_WAIT_POLICY=PASSIVE .venv/bin/pytest benchmarks/bench_streaming.py --benchmark-only`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from lyra_core.discovery import load_plugins
from lyra_core.inference.stream_export import build_streaming_torchscript
from lyra_core.loader import validate_data
from lyra_core.services.model import LoadedModel, load_model, save_model
from lyra_core.services.streaming import Latency, Stream
from lyra_core.testing import torch_threads

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
SPECS = {"demo": EXPERIMENTS / "snake_pqmf.json", "rave_v2": EXPERIMENTS / "reference/rave_v2.json"}
CHUNK = 2048
MODES = ("offline", "stream", "torchscript")
MODELS: dict[tuple[str, bool, bool], LoadedModel] = {}
EXPORTS: dict[tuple[str, bool], Any] = {}
MEDIANS: dict[tuple[str, int, str], float] = {}


def spec_data(name: str, causal: bool, smoke: bool) -> dict[str, Any]:
    data = json.loads(SPECS[name].read_text())
    model = data["model"]
    model["causal"] = causal
    if smoke:  # a few channels: the code paths, not the speed
        for coder in ("encoder", "decoder"):
            model[coder]["base_channels"] = 4
        model["bottleneck"]["latent_dim"] = 4
    return data


def loaded_model(name: str, causal: bool, smoke: bool, folder: Path) -> LoadedModel:
    """The model with random weights, saved as a checkpoint and loaded like a trained run."""
    key = (name, causal, smoke)
    if key not in MODELS:
        plugins = load_plugins()
        spec = validate_data(spec_data(name, causal, smoke), plugins.registry, str(SPECS[name]))
        torch.manual_seed(0)
        model = spec.model.build(spec.context(plugins.registry))
        run = folder / f"{name}-{causal}-{smoke}"
        save_model(model, spec, plugins.registry, run, plugins.versions())
        MODELS[key] = load_model(run, plugins, device="cpu")
    return MODELS[key]


def decoder_for(mode: str, loaded: LoadedModel, key: tuple[str, bool]):
    """A function latent -> audio for the mode."""
    if mode == "offline":
        return lambda z: loaded.model.decode(z)
    if mode == "stream":
        return Stream(loaded.model, loaded.sample_rate).decode
    if key not in EXPORTS:
        EXPORTS[key] = build_streaming_torchscript(loaded)
    module = EXPORTS[key]
    module.reset()
    return module.decode


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(SPECS))
def test_streaming_decode_realtime_factor(
    benchmark, request, tmp_path_factory, name, mode, threads
):
    smoke = request.config.getoption("benchmark_disable")
    loaded = loaded_model(name, mode != "offline", smoke, tmp_path_factory.getbasetemp())
    benchmark.group = f"streaming decode, {name}, {CHUNK}-sample chunks, batch 1"
    with torch_threads(threads):
        decode = decoder_for(mode, loaded, (name, smoke))
        frames = CHUNK // loaded.hop_length
        z = torch.randn(
            1, loaded.latent_channels, frames, generator=torch.Generator().manual_seed(0)
        )
        with torch.inference_mode():
            decode(z)  # warm up (oneDNN primitives, TorchScript's profiling runs)
            decode(z)
            y = benchmark(decode, z)
    assert y.shape == (1, loaded.channels, CHUNK) and torch.isfinite(y).all()
    record(benchmark, loaded, name, mode, threads)


def record(benchmark, loaded: LoadedModel, name: str, mode: str, threads: int) -> None:
    latency = Latency(CHUNK, loaded.delay, loaded.sample_rate)
    benchmark.extra_info |= {
        "threads": threads,
        # folded weight norm leaves plain buffers: count every stored weight
        "weights": sum(t.numel() for t in loaded.model.state_dict().values()),
        "latency_samples": latency.samples if mode != "offline" else None,
        "latency_ms": round(latency.milliseconds, 1) if mode != "offline" else None,
    }
    stats = getattr(benchmark, "stats", None)
    if not stats:  # --benchmark-disable: no timings
        return
    median = stats.stats.median
    MEDIANS[(name, threads, mode)] = median
    seconds = CHUNK / loaded.sample_rate
    rtf = seconds / median
    benchmark.extra_info["realtime_factor"] = round(rtf, 2)
    # the fastest round: on a shared machine, the least disturbed by other work
    benchmark.extra_info["realtime_factor_best"] = round(seconds / stats.stats.min, 2)
    if (name, threads, "offline") in MEDIANS and mode != "offline":
        ratio = MEDIANS[(name, threads, "offline")] / median
        benchmark.extra_info["speed_vs_offline"] = round(ratio, 2)
    best = benchmark.extra_info["realtime_factor_best"]
    print(f"\n{name} {mode} {threads} thread(s): {1e3 * median:.2f} ms, {rtf:.1f}x ({best:.1f}x)")
