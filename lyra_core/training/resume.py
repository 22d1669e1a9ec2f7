"""What a training checkpoint holds, and how a run continues from one, to the bit.

A checkpoint carries the model, the optimizer, scheduler and grad-scaler states, the step, every
RNG (global and augmentation), the data position, the best metric, the time spent, the
discriminator's state, the resolved spec, the plugins' versions, the world size and, with
`training.ema`, the weights' moving average (`ema`), which validation and the 'best' checkpoint
judge (see lyra_core.training.ema). A piece of training state is added here, in `training_state` and
`restore`, and nowhere else.

Only the main process writes the checkpoint, so the RNG states in it are its own; every process
reseeds its noise each step from (seed, rank, step) (`Trainer._seed_step`), which is what makes a
resume exact on every process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from lyra_core.errors import LyraError
from lyra_core.services import checkpoint
from lyra_core.training.data import Position

if TYPE_CHECKING:
    from lyra_core.training.engine import Trainer

# What a checkpoint must hold for a resume to continue exactly (lyra import writes weights only).
RESUME_STATE = ("model", "optimizer", "rng", "augment_rng", "data", "step", "best", "nonfinite")


def training_state(trainer: Trainer) -> dict[str, Any]:
    """Everything `restore` needs to continue `trainer` from its current step."""
    t = trainer
    return {
        "format": checkpoint.FORMAT,
        "step": t.step,
        "model": t.model.state_dict(),
        **t.generator.state_dict(),  # optimizer, scheduler, scaler, balancer
        "rng": checkpoint.rng_state(),
        "augment_rng": t.aug_gen.get_state(),
        "data": {"epoch": t.position.epoch, "offset": t.position.offset},
        "best": t.best,
        "nonfinite": t.nonfinite,
        "budget_seconds": t.budget.seconds(),
        "adversarial": t.discriminator.state_dict() if t.discriminator else None,
        checkpoint.EMA: t.ema.state_dict() if t.ema else None,
        "spec": t.dir.spec_text(),
        "plugins": t.plugins.versions(),
        "world": t.dist.world,
    }


def restore(trainer: Trainer, saved: dict[str, Any]) -> None:
    """Put `trainer` back where `training_state` found it (the run's `last.pt`)."""
    t, last = trainer, trainer.dir.last
    missing = [key for key in RESUME_STATE if key not in saved]
    if missing:
        raise LyraError(
            f"{last}: has no {', '.join(missing)} state to resume from (written by "
            "lyra import or another tool?); start a new run from its weights with --init"
        )
    t.dist.check_resume(saved.get("world"), last)
    t.model.load_state_dict(saved["model"])
    t.generator.load_state_dict(saved)
    checkpoint.set_rng_state(saved["rng"])
    t.aug_gen.set_state(saved["augment_rng"])
    t.position = Position(**saved["data"])
    t.step, t.best, t.nonfinite = saved["step"], saved["best"], saved["nonfinite"]
    t.saved = t.step
    t.budget.spent = float(saved.get("budget_seconds", 0.0))
    if t.discriminator and saved["adversarial"]:
        t.discriminator.load_state_dict(saved["adversarial"])
    _restore_ema(trainer, saved.get(checkpoint.EMA))


def _restore_ema(trainer: Trainer, saved: dict[str, torch.Tensor] | None) -> None:
    """The checkpoint's average; one that has none (EMA newly set) starts from its weights."""
    ema, last = trainer.ema, trainer.dir.last
    if ema is None:
        return
    if saved is None:
        ema.copy_from(trainer.model)
        trainer.say(f"training.ema: {last} has no average; it starts from these weights")
        return
    try:
        ema.load_state_dict(saved)
    except (KeyError, RuntimeError) as exc:
        raise LyraError(
            f"{last}: its '{checkpoint.EMA}' weights do not fit the model ({exc}); "
            "resume with the run's own model spec"
        ) from exc


def initialise(trainer: Trainer, source: str) -> None:
    """Start from another checkpoint's model weights (fine-tuning, `lyra import`)."""
    from lyra_core.services.model import find_checkpoint

    path = find_checkpoint(source, trainer.plugins.registry)
    saved = checkpoint.load(path, map_location=trainer.dist.device)
    try:
        trainer.model.load_state_dict(saved["model"])
    except (KeyError, RuntimeError) as exc:
        raise LyraError(
            f"--init {source}: its weights do not fit this spec's model ({exc}); "
            "initialise from a run of the same model spec"
        ) from exc
    if trainer.ema:
        trainer.ema.copy_from(trainer.model)
