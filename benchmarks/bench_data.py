"""The data pipeline: cache preparation speed and delivery rates (audio seconds per second).

Run: `.venv/bin/pytest benchmarks/bench_data.py -s` (2 threads); each benchmark prints its rate
and stores it in `extra_info` (see `--benchmark-json`). Targets: preparing 10 minutes of 44.1 kHz
stereo WAV ≥ 20× real time; with a warm cache, the demo's data section (read + segment + its
augmentations) delivering ≥ 10× the audio that a training step of experiments/snake_pqmf.json
consumes (`test_demo_pipeline_vs_training_step`, which times both in one process).
With `--benchmark-disable` (CI) the audio is shortened so that the file runs in seconds.

On a machine shared with other busy processes, set `OMP_WAIT_POLICY=PASSIVE`: with the default
(spinning) policy every small parallel op waits for a descheduled thread, which slows the
augmentations (many small ops) by 10-20x and the training step much less, so the comparison
would say more about the neighbours than about Lyra.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from lyra_core import BuildContext
from lyra_core.discovery import load_plugins
from lyra_core.loader import load_spec
from lyra_plugins.augmentations import DequantizeSpec, PhaseMangleSpec, RandomCropSpec
from lyra_plugins.datasets import AudioFolderSpec, SyntheticSpec

RATE, CHANNELS, SEGMENT, BATCH = 44100, 2, 32768, 8
DEMO = Path(__file__).resolve().parents[1] / "experiments" / "snake_pqmf.json"


def write_wavs(folder: Path, minutes: float, rate: int = RATE, per_file: float = 60.0) -> float:
    """Noisy harmonic stereo audio in 16-bit WAV files of `per_file` seconds; returns seconds."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    total = minutes * 60.0
    done, number = 0.0, 0
    while done < total:
        seconds = min(per_file, total - done)
        t = np.arange(int(seconds * rate)) / rate
        tone = 0.3 * np.sin(2 * np.pi * (110.0 * (number + 1)) * t)
        audio = tone[:, None] + 0.05 * rng.standard_normal((t.size, CHANNELS))
        sf.write(folder / f"take{number:03d}.wav", audio.astype(np.float32), rate, "PCM_16")
        done, number = done + seconds, number + 1
    return total


def rate_info(benchmark, audio_seconds: float, key: str = "x_real_time") -> float:
    """Audio seconds per wall second, from the benchmark's mean (or one timed run if disabled)."""
    stats = getattr(benchmark, "stats", None)
    mean = stats.stats.mean if stats else benchmark.extra_info.get("_seconds", float("nan"))
    value = audio_seconds / mean
    benchmark.extra_info[key] = round(value, 1)
    print(f"\n{benchmark.name}: {value:.1f} audio seconds per second")
    return value


def timed(benchmark, fn, rounds: int, setup=None):
    """`benchmark.pedantic`, also timing the single run that `--benchmark-disable` makes."""

    def run(*args):
        start = time.perf_counter()
        out = fn(*args)
        benchmark.extra_info["_seconds"] = time.perf_counter() - start
        return out

    return benchmark.pedantic(run, setup=setup, rounds=rounds, iterations=1)


@pytest.mark.parametrize("source_rate", [44100, 48000])
@pytest.mark.benchmark(group="data: prepare 10 min stereo WAV -> 44.1 kHz cache")
def test_prepare_cache(benchmark, tmp_path, source_rate):
    minutes = 0.5 if benchmark.disabled else 10.0
    seconds = write_wavs(tmp_path / "wav", minutes, rate=source_rate)
    ctx = BuildContext(sample_rate=RATE, channels=CHANNELS, segment_length=SEGMENT)
    rounds = iter(range(1000))

    def fresh_cache():
        spec = AudioFolderSpec(
            paths=(str(tmp_path / "wav"),), cache_dir=str(tmp_path / f"c{next(rounds)}")
        )
        return (spec,), {}

    index = timed(benchmark, lambda spec: spec.index(ctx), rounds=3, setup=fresh_cache)
    assert index.decoded == len(index.files) and not index.skipped
    assert abs(index.audio_seconds - seconds) < 1.0
    rate_info(benchmark, seconds)


@pytest.fixture(scope="module")
def warm_folder(tmp_path_factory) -> AudioFolderSpec:
    root = tmp_path_factory.mktemp("warm")
    write_wavs(root / "wav", 2.0)
    spec = AudioFolderSpec(paths=(str(root / "wav"),), cache_dir=str(root / "cache"))
    spec.index(BuildContext(sample_rate=RATE, channels=CHANNELS, segment_length=SEGMENT))
    return spec


def augment_chain(ctx: BuildContext):
    """RAVE's order: crop, phase mangle (p 0.8), dequantize."""
    return [
        RandomCropSpec(length=SEGMENT - 4096).build(ctx),
        PhaseMangleSpec().build(ctx),
        DequantizeSpec().build(ctx),
    ]


def deliver(dataset, ctx: BuildContext, batches: int, augment: bool) -> float:
    """Read, batch and (optionally) augment `batches` batches; returns the audio seconds."""
    augmentations = augment_chain(ctx) if augment else []
    generator = torch.Generator().manual_seed(0)
    loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, drop_last=True)
    samples = 0
    for _, x in zip(range(batches), loader, strict=False):
        for aug in augmentations:
            x = aug(x, generator)
        samples += x.shape[0] * x.shape[-1]
    return samples / ctx.sample_rate


@pytest.mark.parametrize("augment", [False, True], ids=["read", "read+augment"])
@pytest.mark.benchmark(group="data: delivery, batch 8 x 32768 stereo 44.1 kHz")
def test_folder_delivery_warm_cache(benchmark, warm_folder, augment):
    ctx = BuildContext(sample_rate=RATE, channels=CHANNELS, segment_length=SEGMENT)
    assert warm_folder.index(ctx, warn=False).decoded == 0  # warm: nothing is decoded again
    dataset = warm_folder.build(ctx, "train")
    seconds = timed(benchmark, lambda: deliver(dataset, ctx, 8, augment), rounds=5)
    rate_info(benchmark, seconds, "audio_s_per_s")


@pytest.mark.parametrize("augment", [False, True], ids=["render", "render+augment"])
@pytest.mark.benchmark(group="data: delivery, batch 8 x 32768 stereo 44.1 kHz")
def test_synthetic_delivery(benchmark, augment):
    ctx = BuildContext(sample_rate=RATE, channels=CHANNELS, segment_length=SEGMENT)
    dataset = SyntheticSpec().build(ctx, "train")
    seconds = timed(benchmark, lambda: deliver(dataset, ctx, 2, augment), rounds=5)
    rate_info(benchmark, seconds, "audio_s_per_s")


def demo_step_seconds(runs: int) -> tuple[float, float]:
    """Median wall time of a training step of the demo spec, and the audio seconds it consumes."""
    registry = load_plugins().registry
    spec = load_spec(DEMO, registry)
    data = spec.data
    ctx = spec.context(registry)
    model = spec.model.build(ctx)
    losses = [loss.build(ctx) for loss in spec.losses]
    optimizer = spec.training.optimizer.build(ctx, model.parameters())
    x = data.dataset.build(ctx, "train")[0].expand(data.batch_size, -1, -1).contiguous()
    times = []
    for _ in range(runs + 1):  # the first step warms up
        start = time.perf_counter()
        optimizer.zero_grad()
        output = model(x)
        sum(loss(output, x) for loss in losses).backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:])), data.batch_size * data.segment_length / data.sample_rate


@pytest.mark.parametrize("source", ["audio_folder", "synthetic"])
@pytest.mark.benchmark(group="data: the demo's data section vs its training step")
def test_demo_pipeline_vs_training_step(benchmark, tmp_path, source):
    """The demo's format and augmentations; audio_folder over a warm cache, or synthetic."""
    registry = load_plugins().registry
    spec = load_spec(DEMO, registry)
    data = spec.data
    ctx = spec.context(registry)
    if source == "audio_folder":
        write_wavs(tmp_path / "wav", 0.5 if benchmark.disabled else 2.0, rate=data.sample_rate)
        folder = AudioFolderSpec(paths=(str(tmp_path / "wav"),), cache_dir=str(tmp_path / "c"))
        folder.index(ctx)  # warm the cache
        dataset = folder.build(ctx, "train")
    else:
        dataset = data.dataset.build(ctx, "train")
    augmentations = [a.build(ctx) for a in data.augmentations]
    generator = torch.Generator().manual_seed(0)
    loader = DataLoader(dataset, batch_size=data.batch_size, shuffle=True, drop_last=True)
    batches = 2 if benchmark.disabled else 8

    def deliver_demo() -> float:
        samples = 0
        for _, x in zip(range(batches), loader, strict=False):
            for aug in augmentations:
                x = aug(x, generator)
            samples += x.shape[0] * x.shape[-1]
        return samples / data.sample_rate

    delivered = rate_info(benchmark, timed(benchmark, deliver_demo, rounds=5), "audio_s_per_s")
    if benchmark.disabled:  # CI checks that the pipeline runs; the step is only a measurement
        return
    step, audio = demo_step_seconds(runs=3)
    consumed = audio / step
    benchmark.extra_info["step_s"] = round(step, 3)
    benchmark.extra_info["step_audio_s_per_s"] = round(consumed, 2)
    benchmark.extra_info["ratio"] = round(delivered / consumed, 1)
    ratio = delivered / consumed
    print(f"training step {step:.3f} s = {consumed:.2f} audio s/s; data/step = {ratio:.1f}x")
