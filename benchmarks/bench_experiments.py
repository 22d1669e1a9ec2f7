"""Per shipped experiment (experiments/*.json): a full training step, encode and decode.

The step is the training engine's own (`Trainer.train_step`: data -> augmentations -> forward ->
losses -> backward -> clipping -> optimizer), on the CPU, at the spec's batch and segment length.
Encode and decode run in eval mode without gradients on one training batch. The GPU-sized
experiments (names starting with `lyracodec_`) run at a reduced batch and length, in float32 (CPU
autocast to fp16 is emulated, not what a GPU does): their ids end in `-reduced` and `extra_info`
says what was changed. `extra_info` also holds the parameter count, the audio seconds per step,
the real-time factor (audio seconds per second) and the peak of tensor memory during one step.

Run: `.venv/bin/pytest benchmarks/bench_experiments.py` or `lyra bench --spec SPEC.json` (which
sets LYRA_BENCH_SPECS, a path list that replaces the shipped experiments). With
`--benchmark-disable` (CI) each experiment runs once at batch 1 on 4096 samples, and the GPU-sized
ones at width 8 in float32 too; adversarial specs get a small MPD. A latent prior's spec trains
on the contract tests' small untrained codec (at 22,050 Hz) instead of the codec run it names.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import torch

from lyra_core.discovery import load_plugins
from lyra_core.errors import LyraError
from lyra_core.loader import load_spec, read_spec_file, resolved
from lyra_core.services.rundir import RunDir
from lyra_core.training.data import batch_stream
from lyra_core.training.engine import Trainer
from lyra_plugins.priors import example_codec

ROOT = Path(__file__).resolve().parents[1]
SPECS_ENV = "LYRA_BENCH_SPECS"
GPU_SIZED = ("lyracodec_",)  # name prefixes of the experiments sized for a GPU
REDUCED = {"data.batch_size": 1, "data.segment_length": 8192, "training.precision": "32"}
SMOKE = {"data.batch_size": 1, "data.segment_length": 4096}
SMOKE_GPU_SIZED = {
    "model.encoder.base_channels": 8,
    "model.decoder.base_channels": 8,
    "training.precision": "32",
}
# CI only: a small discriminator in adversarial specs (bench_registry covers the real ones).
SMOKE_DISCRIMINATOR = {"type": "mpd", "periods": [2, 3], "channels": [4, 8]}
ROUNDS, REDUCED_ROUNDS = 5, 3
# These benchmarks time the model: a spec that reads the user's audio folder gets synthetic audio.
STAND_IN_DATA = {"type": "synthetic", "train_examples": 64, "validation_examples": 4}


def spec_files() -> list[Path]:
    listed = [Path(p) for p in os.environ.get(SPECS_ENV, "").split(os.pathsep) if p]
    return listed or sorted((ROOT / "experiments").glob("*.json"))


def gpu_sized(path: Path) -> bool:
    return path.stem.startswith(GPU_SIZED)


def phases(path: Path) -> list[tuple[int, str]]:
    """`(first step, name)` of each training phase the spec names (one unnamed if none)."""
    try:
        training = load_spec(path, REGISTRY).training
    except LyraError:  # the fixture reports it
        return [(0, "")]
    if not training.phases:
        return [(0, "")]
    starts = [0] + [p.until for p in training.phases[:-1]]
    return [(start, p.name) for start, p in zip(starts, training.phases, strict=True)]


def label(path: Path) -> str:
    return f"{path.stem}-reduced" if gpu_sized(path) else path.stem


PLUGINS = load_plugins()
REGISTRY = PLUGINS.registry
SPECS = spec_files()
# (spec, (spec name, first step, phase name)): the phase is unique to its spec, so that pytest,
# which groups module-scoped parameters by value, runs each spec's tests together.
STEPS = [(path, (path.stem, start, name)) for path in SPECS for start, name in phases(path)]


def lookup(data: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        data = data.get(part, {}) if isinstance(data, dict) else {}
    return data if data != {} else "default"


def overrides_for(path: Path, smoke: bool) -> dict[str, Any]:
    data = {}
    if lookup(read_spec_file(path), "data.dataset.type") == "audio_folder":
        data = {"data.dataset": STAND_IN_DATA}
    if lookup(read_spec_file(path), "model.type") == "latent_prior":  # names a trained codec run
        data |= {"model.codec": str(example_codec()), "data.sample_rate": 22050}
    if not smoke:
        return data | (dict(REDUCED) if gpu_sized(path) else {})
    changes = data | SMOKE | (SMOKE_GPU_SIZED if gpu_sized(path) else {})
    if lookup(read_spec_file(path), "training.adversarial") != "default":
        changes["training.adversarial.discriminator"] = SMOKE_DISCRIMINATOR
    return changes


@attrs.define
class Experiment:
    """A trainer built from one spec, with its batch stream, and what was reduced."""

    name: str
    trainer: Trainer
    batches: Iterator[torch.Tensor]
    usable: int
    changes: str

    @property
    def audio_seconds(self) -> float:
        data = self.trainer.spec.data
        return data.batch_size * data.segment_length / data.sample_rate

    def info(self) -> dict[str, Any]:
        data = self.trainer.spec.data
        info = {
            "experiment": self.name,
            "batch": data.batch_size,
            "segment_length": data.segment_length,
            "audio_seconds": round(self.audio_seconds, 4),
            "params": sum(p.numel() for p in self.trainer.model.parameters()),
        }
        return info | ({"reduced": self.changes} if self.changes else {})


def build(path: Path, smoke: bool, root: Path) -> Experiment:
    changes = overrides_for(path, smoke)
    sets = [f"{key}={json.dumps(value)}" for key, value in changes.items()]
    spec = load_spec(path, PLUGINS.registry, sets)
    run = RunDir.create(resolved(spec, PLUGINS.registry), {}, root)
    trainer = Trainer(spec, PLUGINS, run, "cpu")
    batches, usable = batch_stream(
        trainer.train_set, spec.data.batch_size, spec.seed, trainer.position
    )
    raw = read_spec_file(path)
    described = ", ".join(
        f"{k} {json.dumps(v)} (spec: {json.dumps(lookup(raw, k))})" for k, v in changes.items()
    )
    return Experiment(path.stem, trainer, batches, usable, described)


@pytest.fixture(scope="module")
def experiments(request, tmp_path_factory) -> Iterator[Callable[[Path], Experiment]]:
    """The experiment of a spec file, built once; one at a time is kept (LyraCodec is large)."""
    smoke = request.config.getoption("benchmark_disable")
    cache: dict[Path, Experiment] = {}

    def get(path: Path) -> Experiment:
        if path not in cache:
            cache.clear()
            cache[path] = build(path, smoke, tmp_path_factory.mktemp("run"))
        return cache[path]

    yield get
    cache.clear()


def measure(benchmark, peak_allocated_bytes, experiment: Experiment, step, group: str) -> Any:
    """Time `step` (after a warm-up and a memory probe when timing), recording extra_info."""
    benchmark.group = f"experiment: {experiment.name} {group}"
    benchmark.extra_info.update(experiment.info())
    if benchmark.disabled:  # CI: one untimed run
        return benchmark.pedantic(step, rounds=1, iterations=1)
    step()  # compile the fused kernels, fill the allocator
    benchmark.extra_info["peak_mib"] = round(peak_allocated_bytes(step) / 2**20, 1)
    rounds = REDUCED_ROUNDS if experiment.changes else ROUNDS
    result = benchmark.pedantic(step, rounds=rounds, iterations=1)
    benchmark.extra_info["x_real_time"] = round(
        experiment.audio_seconds / benchmark.stats.stats.median, 3
    )
    return result


@pytest.mark.parametrize(
    ("path", "phase"),
    STEPS,
    ids=[f"{label(p)}-{name}" if name else label(p) for p, (_, _, name) in STEPS],
    scope="module",
)
def test_train_step(benchmark, peak_allocated_bytes, experiments, path, phase):
    """One optimizer step of the engine, in each phase (e.g. reconstruction, adversarial)."""
    _, start, name = phase
    experiment = experiments(path)
    trainer = experiment.trainer
    trainer.model.train()
    trainer.step = start

    def step() -> dict[str, float] | None:
        return trainer.train_step(experiment.batches, experiment.usable)

    group = f"train step ({name})" if name else "train step"
    values = measure(benchmark, peak_allocated_bytes, experiment, step, group)
    assert trainer.step == start  # train_step leaves the step count to the loop
    assert values is not None, "the step was skipped: non-finite loss or gradients"
    assert all(torch.isfinite(torch.tensor(v)) for v in values.values()), values


@pytest.fixture
def experiment(experiments, path) -> Experiment:
    return experiments(path)


@pytest.fixture
def batch(experiment) -> torch.Tensor:
    return next(experiment.batches)


EACH = pytest.mark.parametrize("path", SPECS, ids=[label(p) for p in SPECS], scope="module")


@EACH
def test_encode(benchmark, peak_allocated_bytes, experiment, batch):
    model = experiment.trainer.model.eval()

    def encode() -> torch.Tensor:
        with torch.no_grad():
            return model.encode(batch)[0]

    z = measure(benchmark, peak_allocated_bytes, experiment, encode, "encode")
    assert z.shape[0] == batch.shape[0] and bool(torch.isfinite(z).all())


@EACH
def test_decode(benchmark, peak_allocated_bytes, experiment, batch):
    model = experiment.trainer.model.eval()
    with torch.no_grad():
        z = model.encode(batch)[0]

    def decode() -> torch.Tensor:
        with torch.no_grad():
            return model.decode(z, batch.shape[-1])

    y = measure(benchmark, peak_allocated_bytes, experiment, decode, "decode")
    assert y.shape == batch.shape and bool(torch.isfinite(y).all())
