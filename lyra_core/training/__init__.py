"""`lyra run`: train a spec, or resume a run directory."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from lyra_core import __version__
from lyra_core.context import BuildContext
from lyra_core.discovery import Plugins
from lyra_core.errors import LyraError
from lyra_core.experiment import ExperimentSpec, default_tracker
from lyra_core.interfaces import RUN_DIR_TAG, Tracker
from lyra_core.loader import apply_overrides, load_spec, resolved, validate_data
from lyra_core.services.atomic import write_text
from lyra_core.services.rundir import RunDir, spec_hash, versions
from lyra_core.services.tracking import flatten
from lyra_core.training import distributed
from lyra_core.training.engine import Trainer

__all__ = ["train"]


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).parent,
        )
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def train(
    plugins: Plugins,
    spec_path: str | None = None,
    overrides: list[str] | None = None,
    resume: str | None = None,
    device: str = "auto",
    run_dir: str | None = None,
    init: str | None = None,
) -> str:
    """Train `spec_path` (or resume the run directory `resume`); returns how the run ended.

    `init` (a run directory or checkpoint) gives a new run its starting model weights.
    """
    if init and resume:
        raise LyraError("lyra run: --init starts a new run; --resume continues one: pick one")
    if resume and (spec_path or run_dir):
        raise LyraError(
            "lyra run --resume continues a run with its own spec and directory: drop "
            + ("SPEC" if spec_path else "--run-dir")
            + " (change values with --set)"
        )
    if not resume and spec_path is None:
        raise LyraError("lyra run: give a SPEC file, or --resume RUN_DIR")
    spec, run = _spec_and_run(plugins, spec_path, overrides or [], resume)
    data = resolved(spec, plugins.registry)
    world = distributed.setup(device)  # once: the trainer uses this one
    new, trainer = run is None, None
    try:
        if run is None:
            run = _create_run(data, plugins, run_dir, world)
        tracker = _tracker(spec, plugins, world)
        trainer = Trainer(spec, plugins, run, world, resume=bool(resume), init=init)
        reason = trainer.fit(tracker, _tags(data, run), flatten(data))
    except BaseException:
        if new and run and world.main and not (trainer and trainer.step):
            run.discard()  # a failed start leaves nothing: the same command can run again
        raise
    finally:
        distributed.teardown()
    if reason == "interrupted":
        raise LyraError(
            f"interrupted at step {trainer.step}; the checkpoint is saved. "
            f"Resume with: lyra run --resume {run.path}"
        )
    print(f"done: {trainer.step} steps; checkpoints in {run.checkpoints}")
    return reason


def _spec_and_run(
    plugins: Plugins, spec_path: str | None, overrides: list[str], resume: str | None
) -> tuple[ExperimentSpec, RunDir | None]:
    """The spec to train, and the run directory when resuming (a new run's is made later)."""
    registry = plugins.registry
    if not resume:
        assert spec_path is not None
        return load_spec(spec_path, registry, overrides), None
    run = RunDir.open(Path(resume))
    data = apply_overrides(json.loads(run.spec_text()), overrides)
    spec: ExperimentSpec = validate_data(data, registry, str(run.spec_file))
    if overrides and distributed.env_rank() == 0:  # the run directory keeps what it trains
        write_text(run.spec_file, json.dumps(resolved(spec, registry), indent=2) + "\n")
    return spec, run


def _create_run(
    data: dict[str, Any], plugins: Plugins, run_dir: str | None, world: distributed.Dist
) -> RunDir:
    """A new run directory, made by the main process and shared with the others."""
    path = Path(run_dir) if run_dir else None
    run = RunDir.create(data, versions(plugins), path) if world.main else None
    if world.world > 1:
        return _broadcast_run_dir(run, world)
    assert run is not None
    return run


def _tracker(spec: ExperimentSpec, plugins: Plugins, world: distributed.Dist) -> Tracker:
    if not world.main:
        return Tracker()
    registry = plugins.registry
    tracker_spec = spec.tracking or default_tracker(registry)
    ctx = BuildContext(registry=registry, sample_rate=spec.data.sample_rate, seed=spec.seed)
    return tracker_spec.build(ctx)


def _tags(data: dict[str, Any], run: RunDir) -> dict[str, str]:
    return {
        "lyra.version": __version__,
        "lyra.git_commit": _git_commit(),
        "lyra.spec_hash": spec_hash(data),
        RUN_DIR_TAG: str(run.path.resolve()),
    }


def _broadcast_run_dir(run: RunDir | None, world: distributed.Dist) -> RunDir:
    import torch.distributed as dist

    holder = [str(run.path.resolve()) if run else None]  # the same folder from any node's cwd
    dist.broadcast_object_list(holder, src=0)
    return RunDir(Path(holder[0]))
