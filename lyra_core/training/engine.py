"""The training loop: one step-based loop for one process or many, resumable to the bit.

State that a checkpoint carries: model, optimizer, scheduler and grad-scaler states, the step,
every RNG (global and augmentation), the data position, the best metric, and the resolved spec.
Ctrl-C and SIGTERM are turned into a flag checked between steps, so the checkpoint written on
the way out is always a consistent step boundary.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import nn

from lyra_core.errors import LyraError
from lyra_core.experiment import ExperimentSpec
from lyra_core.plugins import Plugins
from lyra_core.runs import checkpoint
from lyra_core.runs.metrics import distance_losses
from lyra_core.runs.rundir import RunDir
from lyra_core.runs.tracking import SafeTracker, Tracker
from lyra_core.training import distributed, validation
from lyra_core.training.data import Position, batch_stream
from lyra_core.training.phases import AdversarialPart, Phases
from lyra_core.training.progress import Progress

PRECISION = {"32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class Interrupted(Exception):
    """Ctrl-C or SIGTERM arrived; the run stopped at a step boundary after a checkpoint."""


@attrs.define
class Run:
    """What lifecycle hooks receive: the run's spec, directory, model and current step."""

    spec: ExperimentSpec
    run_dir: Path
    model: nn.Module
    device: torch.device
    step: int = 0
    tracker_run_id: str | None = None


@attrs.define
class WeightedLoss:
    name: str
    module: nn.Module
    weight: float
    schedule: Any  # callable step -> factor, or None

    def factor(self, step: int) -> float:
        return self.weight * (float(self.schedule(step)) if self.schedule else 1.0)


def _loss_names(specs: tuple, plugins: Plugins, taken: tuple[str, ...] = ()) -> list[str]:
    """Each loss's own `name` (a `term` loss: its term) or else its registered name, suffixed
    with its index where a name repeats."""
    names = [
        s.name if isinstance(getattr(s, "name", None), str) else plugins.registry.name_of(s)[1]
        for s in specs
    ]
    return [
        n if names.count(n) == 1 and n not in taken else f"{n}_{i}" for i, n in enumerate(names)
    ]


class Trainer:
    def __init__(
        self,
        spec: ExperimentSpec,
        plugins: Plugins,
        run_dir: RunDir,
        device: str,
        resume: bool = False,
        init: str | None = None,
    ):
        self.spec, self.plugins, self.dir = spec, plugins, run_dir
        self.dist = distributed.setup(device)
        self.hook = plugins.hook
        t, d = spec.training, spec.data
        torch.manual_seed(spec.seed)
        self.ctx = spec.context(plugins.registry, str(self.dist.device))
        model = spec.model.build(self.ctx).to(self.dist.device)
        self.model = model
        self.losses = [
            WeightedLoss(
                name,
                s.build(self.ctx).to(self.dist.device),
                getattr(s, "weight", 1.0),
                s.schedule.build(self.ctx) if getattr(s, "schedule", None) else None,
            )
            for name, s in zip(_loss_names(spec.losses, plugins), spec.losses, strict=True)
        ]
        if not self.losses:
            raise LyraError("$.losses: the spec has no losses to train with")
        self.optimizer = t.optimizer.build(self.ctx, model.parameters())
        self.scheduler = (
            t.scheduler.build(self.ctx, self.optimizer, t.steps) if t.scheduler else None
        )
        self.dtype = PRECISION[t.precision]
        self.scaler = torch.amp.GradScaler(
            self.dist.device.type, enabled=t.precision == "fp16" and self.dist.device.type == "cuda"
        )
        self.augmentations = [a.build(self.ctx) for a in d.augmentations]
        self.aug_gen = torch.Generator().manual_seed(spec.seed * 7919 + self.dist.rank)
        self.train_set = d.dataset.build(self.ctx, "train")
        self.val_set = d.dataset.build(self.ctx, "validation")
        self.distances = distance_losses(plugins.registry, self.ctx)
        self.step, self.position = 0, Position()
        self.best: float | None = None
        self.nonfinite = 0
        self.adversarial = None
        names = [w.name for w in self.losses]
        if t.adversarial:
            adv_names = iter(_loss_names(t.adversarial.losses, plugins, tuple(names)))
            self.adversarial = AdversarialPart(
                t, self.ctx, self.dist.device, lambda _: next(adv_names), self._wrap
            )
            names += [name for name, *_ in self.adversarial.losses]
        self.phases = Phases(t, names, model)
        if resume:
            self._restore(checkpoint.load(self.dir.last, map_location=self.dist.device))
        elif init:
            self._initialise(init)
        elif self.dist.rank:
            torch.manual_seed(spec.seed + self.dist.rank)  # the same init, per-rank noise
        self.trained = self._wrap(torch.compile(model) if t.compile else model)
        self.run = Run(spec, self.dir.path, model, self.dist.device, self.step)
        self.stop_signal: str | None = None
        self.data_seconds = 0.0

    def _wrap(self, module: nn.Module) -> nn.Module:
        """DistributedDataParallel under torchrun; the module itself in one process."""
        if self.dist.world == 1:
            return module
        cuda = self.dist.device.type == "cuda"
        return nn.parallel.DistributedDataParallel(
            module, device_ids=[self.dist.device] if cuda else None
        )

    # -- state -----------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {
            "format": checkpoint.FORMAT,
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "scaler": self.scaler.state_dict(),
            "rng": checkpoint.rng_state(),
            "augment_rng": self.aug_gen.get_state(),
            "data": {"epoch": self.position.epoch, "offset": self.position.offset},
            "best": self.best,
            "nonfinite": self.nonfinite,
            "adversarial": self.adversarial.state_dict() if self.adversarial else None,
            "spec": self.dir.spec_text(),
            "plugins": self.plugins.versions(),
        }

    def _initialise(self, source: str) -> None:
        """Start from another checkpoint's model weights (fine-tuning, `lyra import`)."""
        from lyra_core.runs.model import find_checkpoint

        path = find_checkpoint(source)
        state = checkpoint.load(path, map_location=self.dist.device)
        try:
            self.model.load_state_dict(state["model"])
        except (KeyError, RuntimeError) as exc:
            raise LyraError(
                f"--init {source}: its weights do not fit this spec's model ({exc}); "
                "initialise from a run of the same model spec"
            ) from exc

    def _restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler and state["scheduler"]:
            self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        checkpoint.set_rng_state(state["rng"])
        self.aug_gen.set_state(state["augment_rng"])
        self.position = Position(**state["data"])
        self.step, self.best, self.nonfinite = state["step"], state["best"], state["nonfinite"]
        if self.adversarial and state["adversarial"]:
            self.adversarial.load_state_dict(state["adversarial"])

    def save(self, best: bool = False) -> None:
        if not self.dist.main:
            return
        state = self._state()
        path = self.dir.save(state, self.step, self.spec.training.keep_checkpoints, best)
        self.hook.lyra_on_checkpoint(run=self.run, step=self.step, path=path)

    # -- one step ----------------------------------------------------------------------------

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.dist.device.type, dtype=self.dtype)

    def train_step(self, batches: Iterator[torch.Tensor], usable: int) -> dict[str, float] | None:
        """One optimizer step over `accumulate` batches; None if it was skipped (non-finite)."""
        t = self.spec.training
        phase = self.phases.enter(self.step)
        every = phase.discriminator_every
        train_d = self.adversarial is not None and every > 0 and self.step % every == 0
        self.optimizer.zero_grad(set_to_none=True)
        values: dict[str, float] = {"phase": float(self.phases.current or 0)}
        finite = True
        for _ in range(t.accumulate):
            data_started = time.perf_counter()
            x = next(batches).to(self.dist.device, non_blocking=True)
            self.position.advance(self.spec.data.batch_size, usable)
            for augment in self.augmentations:
                x = augment(x, self.aug_gen)
            self.data_seconds += time.perf_counter() - data_started
            weights = {
                w.name: self.phases.factor(phase, w.name) * w.factor(self.step) for w in self.losses
            }
            with self.autocast():
                out = self.trained(x)
                parts = {w.name: w.module(out, x).float() for w in self.losses if weights[w.name]}
            if train_d:
                d_loss = self.adversarial.discriminator_step(
                    x, out.reconstruction, self.step, self.autocast
                )
                finite &= d_loss is not None
                values["d_loss"] = values.get("d_loss", 0.0) + (d_loss or 0.0) / t.accumulate
            if phase.adversarial:
                with self.autocast():
                    adv = self.adversarial.generator_terms(x, out.reconstruction)
                for i, name in enumerate(adv):
                    weights[name] = self.phases.factor(phase, name) * self.adversarial.weight(
                        i, self.step
                    )
                parts |= adv
            zero = torch.zeros((), device=self.dist.device)
            total = sum((weights[name] * value for name, value in parts.items()), zero)
            finite &= bool(torch.isfinite(total))
            self.scaler.scale(total / t.accumulate).backward()
            for name, v in {**parts, "loss": total}.items():
                values[name] = values.get(name, 0.0) + float(v.detach()) / t.accumulate
        self.scaler.unscale_(self.optimizer)
        params = [p for p in self.model.parameters() if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(params, t.grad_clip or math.inf)
        if not finite or (not self.scaler.is_enabled() and not torch.isfinite(norm)):
            self.optimizer.zero_grad(set_to_none=True)
            return None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scheduler:
            self.scheduler.step()
        values["grad_norm"] = float(norm)
        values["lr"] = self.optimizer.param_groups[0]["lr"]
        return values

    # -- the loop ----------------------------------------------------------------------------

    def validate(self) -> dict[str, float]:
        t, d = self.spec.training, self.spec.data
        # Its own generator: validating must not move the global RNG (exact resume).
        loader = torch.utils.data.DataLoader(
            self.val_set, batch_size=d.batch_size, generator=torch.Generator()
        )
        batches = [b for _, b in zip(range(t.validation_batches), loader, strict=False)]
        if not batches:
            raise LyraError("the validation split is empty: the dataset gave no validation data")

        def extra(x: torch.Tensor, y: torch.Tensor) -> list:
            return self.hook.lyra_validation_metrics(run=self.run, target=x, reconstruction=y)

        losses = {w.name: w.module for w in self.losses}
        metrics, (x, y) = validation.validate(
            self.model, batches, losses, self.distances, extra, self.dist.device, self.autocast
        )
        if t.validation_examples:
            folder = self.dir.path / "validation" / f"step-{self.step:07d}"
            for path in validation.write_examples(
                folder, x, y, d.sample_rate, t.validation_examples
            ):
                self.tracker.log_artifact(path, f"validation/step-{self.step:07d}")
        return metrics

    def _install_signals(self) -> dict[int, Any]:
        def handler(signum: int, _frame: Any) -> None:
            if self.stop_signal is not None:  # a second Ctrl-C stops at once
                raise KeyboardInterrupt
            self.stop_signal = signal.Signals(signum).name
            print(
                f"\n{self.stop_signal}: stopping after this step and saving a checkpoint "
                "(press Ctrl-C again to abort without one)",
                file=sys.stderr,
            )

        return {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}

    def fit(self, tracker: Tracker, tags: dict[str, str], params: dict[str, str]) -> str:
        t, d = self.spec.training, self.spec.data
        self.tracker = SafeTracker(tracker, self.dir.path, enabled=self.dist.main)
        if self.dist.main:
            self.run.tracker_run_id = self.tracker.start(self.spec.name, tags)
            self.tracker.log_params(params)
            for path in self.dir.records():
                self.tracker.log_artifact(path)
            hint = self.tracker.describe()
            print(
                f"run directory: {self.dir.path}" + (f"\n{hint}" if hint else ""), file=sys.stderr
            )
        batches, usable = batch_stream(
            self.train_set,
            d.batch_size,
            self.spec.seed,
            self.position,
            self.dist.rank,
            self.dist.world,
            d.num_workers,
            self.dist.device.type == "cuda",
        )
        previous = self._install_signals() if self.dist.main else {}
        progress = Progress(
            t.steps,
            self.step,
            d.batch_size * t.accumulate * d.segment_length / d.sample_rate,
            enabled=self.dist.main,
            log=self.dir.log,
            every=t.log_every,
        )
        self.hook.lyra_on_train_start(run=self.run)
        reason = "failed"
        try:
            if self.step == 0:
                self._log_validation()
            while self.step < t.steps:
                if self.stop_signal:
                    raise Interrupted(self.stop_signal)
                started, self.data_seconds = time.perf_counter(), 0.0
                values = self.train_step(batches, usable)
                if values is None:
                    self.nonfinite += 1
                    if self.nonfinite >= t.max_nonfinite:
                        raise LyraError(
                            f"step {self.step + 1}: the loss or gradients were not finite for "
                            f"{self.nonfinite} steps in a row (skipped); the last good checkpoint "
                            f"is {self.dir.last} — lower the learning rate or set "
                            "training.grad_clip"
                        )
                    continue
                self.nonfinite = 0
                self.step += 1
                self.run.step = self.step
                values = {k: self.dist.mean(v) for k, v in values.items()}
                self.hook.lyra_on_step_end(run=self.run, step=self.step, metrics=values)
                progress.update(self.step, values, time.perf_counter() - started, self.data_seconds)
                if self.step % t.log_every == 0 or self.step == t.steps:
                    self.tracker.log_metrics(
                        {f"train/{k}": v for k, v in values.items()} | progress.rates(), self.step
                    )
                if self.step % t.validate_every == 0 or self.step == t.steps:
                    self._log_validation()
                if self.step % t.checkpoint_every == 0:
                    self.save()
            reason = "completed"
        except (Interrupted, KeyboardInterrupt):
            reason = "interrupted"
        finally:
            progress.close()
            for sig, old in previous.items():
                signal.signal(sig, old)
            if reason != "failed":
                self.save()
            if self.dist.main:
                status = {"completed": "FINISHED", "interrupted": "KILLED"}.get(reason, "FAILED")
                if reason == "completed" and self.dir.last.exists():
                    self.tracker.log_artifact(self.dir.last, "checkpoints")
                self.tracker.end(status)
            self.hook.lyra_on_train_end(run=self.run, step=self.step, reason=reason)
        return reason

    def _log_validation(self) -> None:
        if self.dist.main:
            metrics = self.validate()
            self.tracker.log_metrics(metrics, self.step)
            self.hook.lyra_on_validation_end(run=self.run, step=self.step, metrics=metrics)
            print(
                f"validation at step {self.step}: "
                + ", ".join(f"{k.removeprefix('val/')} {v:.4g}" for k, v in metrics.items()),
                file=sys.stderr,
            )
            self._maybe_best(metrics)
        self.dist.barrier()

    def _maybe_best(self, metrics: dict[str, float]) -> None:
        t = self.spec.training
        value = metrics.get(t.best_metric)
        if value is None or self.step == 0:
            return
        better = self.best is None or (
            value < self.best if t.best_mode == "min" else value > self.best
        )
        if better:
            self.best = value
            self.save(best=True)
