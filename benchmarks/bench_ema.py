"""What `training.ema` costs: the average's update alone, and a training step with and without it.

On the demo spec (experiments/snake_pqmf.json) at the sizes bench_experiments.py runs it (its
own batch and segment length; with `--benchmark-disable`, batch 1 on 4096 samples), on the CPU.
The update is `WeightAverage.update` on the model's weights (every step, the default); the
steps are the engine's `Trainer.train_step`, which makes that update after the optimizer's.
The overhead is the step's median with EMA over its median without, less one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from benchmarks.bench_experiments import PLUGINS, ROOT, overrides_for
from lyra_core.loader import load_spec, resolved
from lyra_core.services.rundir import RunDir
from lyra_core.training.data import batch_stream
from lyra_core.training.engine import Trainer

DEMO = ROOT / "experiments" / "snake_pqmf.json"
EMA = {"decay": 0.999, "start": 0, "every": 1}
ROUNDS = 5


def trainer(smoke: bool, root: Path, ema: bool) -> tuple[Trainer, Iterator[torch.Tensor], int]:
    """The demo's trainer (with or without an average) and its batch stream."""
    changes = overrides_for(DEMO, smoke) | ({"training.ema": EMA} if ema else {})
    sets = [f"{key}={json.dumps(value)}" for key, value in changes.items()]
    spec = load_spec(DEMO, PLUGINS.registry, sets)
    run = RunDir.create(resolved(spec, PLUGINS.registry), {}, root)
    built = Trainer(spec, PLUGINS, run, "cpu")
    batches, usable = batch_stream(built.train_set, spec.data.batch_size, spec.seed, built.position)
    return built, batches, usable


def timed(benchmark, step, group: str, built: Trainer):
    benchmark.group = f"ema: snake_pqmf {group}"
    benchmark.extra_info["params"] = sum(p.numel() for p in built.model.parameters())
    data = built.spec.data
    benchmark.extra_info["batch"], benchmark.extra_info["segment_length"] = (
        data.batch_size,
        data.segment_length,
    )
    if benchmark.disabled:  # CI: one untimed run
        return benchmark.pedantic(step, rounds=1, iterations=1)
    step()  # warm-up: compile the fused kernels, fill the allocator
    return benchmark.pedantic(step, rounds=ROUNDS, iterations=1)


def test_ema_update(benchmark, request, tmp_path):
    """`WeightAverage.update` alone, on the demo model's weights."""
    built, _, _ = trainer(request.config.getoption("benchmark_disable"), tmp_path, ema=True)
    assert built.ema is not None
    average = built.ema
    before = {k: v.clone() for k, v in average.state.items()}
    with torch.no_grad():  # weights away from the average, so the update does real work
        for p in built.model.parameters():
            p.add_(0.01)

    def update() -> None:
        average.update(built.model, 1)

    timed(benchmark, update, "update", built)
    moved = [k for k in average.averaged if not torch.equal(average.state[k], before[k])]
    assert moved == average.averaged


@pytest.mark.parametrize("ema", [False, True], ids=["without-ema", "with-ema"])
def test_train_step(benchmark, request, tmp_path, ema):
    """One optimizer step of the engine, with and without the average's update."""
    smoke = request.config.getoption("benchmark_disable")
    built, batches, usable = trainer(smoke, tmp_path, ema)
    assert (built.ema is not None) == ema
    built.model.train()

    def step() -> dict[str, float] | None:
        return built.train_step(batches, usable)

    values = timed(benchmark, step, "train step", built)
    assert values is not None, "the step was skipped: non-finite loss or gradients"
