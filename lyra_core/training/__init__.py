"""`lyra run`: train a spec, or resume a run directory."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from lyra_core import __version__
from lyra_core.context import BuildContext
from lyra_core.errors import LyraError
from lyra_core.experiment import ExperimentSpec
from lyra_core.loader import apply_overrides, load_spec, resolved, validate_data
from lyra_core.plugins import Plugins
from lyra_core.runs.rundir import RunDir, spec_hash, versions
from lyra_core.runs.tracking import Tracker, flatten
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
    overrides = overrides or []
    registry = plugins.registry
    if resume:
        run = RunDir.open(Path(resume))
        data = apply_overrides(json.loads(run.spec_text()), overrides)
        spec: ExperimentSpec = validate_data(data, registry, str(run.spec_file))
        if overrides:  # e.g. more steps: the run directory keeps the spec it now trains
            run.spec_file.write_text(json.dumps(resolved(spec, registry), indent=2) + "\n")
    else:
        if spec_path is None:
            raise LyraError("lyra run: give a SPEC file, or --resume RUN_DIR")
        spec = load_spec(spec_path, registry, overrides)
        run = None
    data = resolved(spec, registry)
    world = distributed.setup(device)
    if run is None:
        path = Path(run_dir) if run_dir else None
        if world.main:
            run = RunDir.create(data, versions(plugins), path)
        if world.world > 1:
            run = _broadcast_run_dir(run, world)
    assert run is not None
    tracker_spec = spec.tracking or registry.get("tracker", "mlflow").spec()
    ctx = BuildContext(registry=registry, sample_rate=spec.data.sample_rate, seed=spec.seed)
    tracker: Tracker = tracker_spec.build(ctx) if world.main else Tracker()
    if init and resume:
        raise LyraError("lyra run: --init starts a new run; --resume continues one: pick one")
    trainer = Trainer(spec, plugins, run, device, resume=bool(resume), init=init)
    tags = {
        "lyra.version": __version__,
        "lyra.git_commit": _git_commit(),
        "lyra.spec_hash": spec_hash(data),
        "lyra.run_dir": str(run.path.resolve()),
    }
    try:
        reason = trainer.fit(tracker, tags, flatten(data))
    finally:
        distributed.teardown()
    if reason == "interrupted":
        raise LyraError(
            f"interrupted at step {trainer.step}; the checkpoint is saved. "
            f"Resume with: lyra run --resume {run.path}"
        )
    print(f"done: {trainer.step} steps; checkpoints in {run.checkpoints}")
    return reason


def _broadcast_run_dir(run: RunDir | None, world: distributed.Dist) -> RunDir:
    import torch.distributed as dist

    holder = [str(run.path) if run else None]
    dist.broadcast_object_list(holder, src=0)
    return RunDir(Path(holder[0]))
