"""What the coders' `checkpoint` option saves and costs: a LyraCodec VAE training step with and
without activation checkpointing, on the CPU.

The spec is experiments/lyracodec_vae.json reduced as bench_experiments.py reduces it (batch 1,
8192 samples, float32; with `--benchmark-disable`, 4096 samples at width 8, run once), with
`model.encoder.checkpoint` and `model.decoder.checkpoint` both off or both on. The step is the
engine's `Trainer.train_step` (forward, losses, backward, clipping, AdamW).

Memory is read from the torch profiler's allocation events (`profile_memory=True`), replayed in
time order: these are the bytes torch's CPU allocator hands out and takes back, so they include
every tensor autograd saves for the backward pass, and nothing else of the process. (tracemalloc
does not see torch's allocator; ru_maxrss is a process-wide high-water mark that also holds the
weights, the optimizer state, Python and the compiled kernels, and never goes down.)
`extra_info` holds, per case:

- `peak_mib`: the peak of tensor memory during one training step (bench_experiments' number);
  it includes the parameters' gradients (`grad_mib`, allocated anew every step in both cases);
- `saved_mib`: the tensor memory a forward pass (and its losses) leaves alive for the backward
  pass: the activations that checkpointing drops, beside the blocks' inputs that it keeps.

The checkpointed case adds `peak_saving_pct`, `saved_saving_pct` and `time_cost_pct` (its median
step time over the plain one's, less one) when the plain case ran before it in the same session.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from benchmarks.bench_experiments import PLUGINS, REDUCED_ROUNDS, ROOT, overrides_for
from lyra_core.loader import load_spec, resolved
from lyra_core.services.rundir import RunDir
from lyra_core.training.data import batch_stream
from lyra_core.training.engine import Trainer
from lyra_plugins.activations import _Kernels

SPEC = ROOT / "experiments" / "lyracodec_vae.json"
MIB = 2**20
RESULTS: dict[bool, dict[str, float]] = {}  # checkpoint -> what the case measured


def trainer(smoke: bool, root: Path, checkpoint: bool) -> tuple[Trainer, Iterator, int, str]:
    """The reduced LyraCodec trainer, its batch stream, and what was changed in the spec."""
    changes = overrides_for(SPEC, smoke)
    changes |= {"model.encoder.checkpoint": checkpoint, "model.decoder.checkpoint": checkpoint}
    sets = [f"{key}={json.dumps(value)}" for key, value in changes.items()]
    spec = load_spec(SPEC, PLUGINS.registry, sets)
    run = RunDir.create(resolved(spec, PLUGINS.registry), {}, root)
    built = Trainer(spec, PLUGINS, run, "cpu")
    batches, usable = batch_stream(built.train_set, spec.data.batch_size, spec.seed, built.position)
    described = ", ".join(f"{k} {json.dumps(v)}" for k, v in changes.items())
    return built, batches, usable, described


def net_allocated_bytes(fn: Callable[[], Any]) -> int:
    """Tensor bytes allocated while `fn` runs and still alive when it returns (its result is
    held until then), from the profiler's allocation and free events."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    with torch.profiler.profile(activities=activities, profile_memory=True) as prof:
        result = fn()
    del result
    return sum(e.nbytes() for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")


def saved_bytes(built: Trainer, batches: Iterator, usable: int) -> int:
    """What one forward pass and its losses keep alive for the backward pass (not run)."""
    phase = built.schedule.enter(built.step)
    x = built._next_batch(batches, usable)
    built.model.train()
    return net_allocated_bytes(lambda: built.generator.forward(x, phase, built.step))


def record(benchmark, checkpoint: bool, measured: dict[str, float]) -> None:
    benchmark.extra_info.update(measured)
    RESULTS[checkpoint] = measured
    if checkpoint and False in RESULTS:
        plain = RESULTS[False]
        for key in ("peak", "saved"):
            saving = 1 - measured[f"{key}_mib"] / plain[f"{key}_mib"]
            benchmark.extra_info[f"{key}_saving_pct"] = round(100 * saving, 1)
        cost = measured["median_s"] / plain["median_s"] - 1
        benchmark.extra_info["time_cost_pct"] = round(100 * cost, 1)


@pytest.mark.parametrize("checkpoint", [False, True], ids=["plain", "checkpoint"])
def test_train_step(benchmark, request, tmp_path, peak_allocated_bytes, checkpoint):
    """One optimizer step of the reduced LyraCodec VAE, with or without checkpointing."""
    gc.collect()  # the other case's trainer (about 4 GB with AdamW) is gone before this one
    smoke = request.config.getoption("benchmark_disable")
    built, batches, usable, described = trainer(smoke, tmp_path, checkpoint)
    assert built.model.encoder.checkpoint is built.model.decoder.checkpoint is checkpoint
    benchmark.group = "checkpointing: lyracodec_vae train step"
    params = [p for p in built.model.parameters() if p.requires_grad]
    benchmark.extra_info |= {
        "checkpoint": checkpoint,
        "params": sum(p.numel() for p in params),
        "reduced": described,
    }

    def step() -> dict[str, float] | None:
        return built.train_step(batches, usable)

    if benchmark.disabled:  # CI: one untimed run
        values = benchmark.pedantic(step, rounds=1, iterations=1)
    else:
        step()  # compile the fused Snake kernels, fill the allocator
        measured = {
            "peak_mib": round(peak_allocated_bytes(step) / MIB, 1),
            "grad_mib": round(sum(p.numel() * p.element_size() for p in params) / MIB, 1),
            "saved_mib": round(saved_bytes(built, batches, usable) / MIB, 1),
        }
        values = benchmark.pedantic(step, rounds=REDUCED_ROUNDS, iterations=1)
        measured["median_s"] = benchmark.stats.stats.median
        record(benchmark, checkpoint, measured)
    benchmark.extra_info["fused_snake"] = _Kernels.failure or "compiled"
    assert values is not None, "the step was skipped: non-finite loss or gradients"
    assert all(torch.isfinite(torch.tensor(v)) for v in values.values()), values
