"""The training loop: one step-based loop for one process or many, resumable to the bit.

A step, followed from the top: the phase schedule says which phase the step is in; for each
accumulated batch the generator step runs the model and weighs its losses, the discriminator
step (when the phase trains it) updates the discriminator and gives the generator its
adversarial terms, and the generator backpropagates them all; then the generator updates.

What a checkpoint holds, and how a run continues from it, is in lyra_core.training.resume.
Ctrl-C and SIGTERM are turned into a flag checked between steps, so the checkpoint written on
the way out is always a consistent step boundary.

When a write fails (a full disk, a read-only or vanished folder: a WriteError of
lyra_core.services.atomic), the run stops. A checkpoint that cannot be written stops it at once,
before it trains past what it would lose. Any other write (a metrics or log line, a validation
example, a cache file) is not skipped: the run first saves a checkpoint of the step it reached,
if the disk takes it, then stops, since going on would leave steps out of `metrics.jsonl` and
`log.txt`, and a disk that refused one write refuses the next checkpoint too. It ends with one
line: what could not be written, where, the space free, the last good checkpoint and the command
that resumes (exit 2).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import nn

from lyra_core.discovery import Plugins
from lyra_core.errors import LyraError, WriteError
from lyra_core.experiment import ExperimentSpec
from lyra_core.interfaces import Tracker
from lyra_core.seeds import derive_seed
from lyra_core.services import checkpoint
from lyra_core.services.metrics import distance_losses
from lyra_core.services.rundir import RunDir
from lyra_core.services.tracking import SafeTracker
from lyra_core.training import distributed, validation
from lyra_core.training.budget import Budget
from lyra_core.training.data import Position, batch_stream
from lyra_core.training.distributed import Dist
from lyra_core.training.ema import WeightAverage
from lyra_core.training.phases import Phase, PhaseSchedule
from lyra_core.training.progress import Progress
from lyra_core.training.resume import initialise, restore, training_state
from lyra_core.training.steps import (
    DiscriminatorStep,
    GeneratorStep,
    StepMeans,
    WeightedLoss,
    loss_names,
)


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


class Trainer:
    """Builds a run's parts from its spec and trains them step by step (`fit`)."""

    def __init__(
        self,
        spec: ExperimentSpec,
        plugins: Plugins,
        run_dir: RunDir,
        device: Dist | str,
        resume: bool = False,
        init: str | None = None,
    ):
        self.spec, self.plugins, self.dir, self.hook = spec, plugins, run_dir, plugins.hook
        self.dist = device if isinstance(device, Dist) else distributed.setup(device)
        torch.manual_seed(spec.seed)
        self.ctx = spec.context(plugins.registry, str(self.dist.device))
        self.model = spec.model.build(self.ctx).to(self.dist.device)
        self.generator = GeneratorStep(
            self.model, self._losses(), spec.training, self.ctx, self.dist.device
        )
        self.discriminator = self._discriminator()
        self._data()
        self.step, self.best, self.nonfinite = 0, None, 0
        self.saved: int | None = None  # the step of the last checkpoint written (`last.pt`)
        self.budget = Budget(spec.training.max_minutes, spec.training.budget_clock)
        self.progress: Progress | None = None
        self.schedule = PhaseSchedule(spec.training, self._all_loss_names(), self.model, self.say)
        self.ema = self._ema()
        self._start(resume, init)
        self.generator.wrap(self._wrap, spec.training.compile)
        self.run = Run(spec, self.dir.path, self.model, self.dist.device, self.step)
        self.stop_signal: str | None = None
        self.data_seconds = 0.0

    # -- building ----------------------------------------------------------------------------

    def _losses(self) -> list[WeightedLoss]:
        specs = self.spec.losses
        if not specs:
            raise LyraError("$.losses: the spec has no losses to train with")
        names = loss_names(specs, self.plugins.registry)
        return [
            WeightedLoss.build(n, s, self.ctx, self.dist.device)
            for n, s in zip(names, specs, strict=True)
        ]

    def _discriminator(self) -> DiscriminatorStep | None:
        t = self.spec.training
        if t.adversarial is None:
            return None
        taken = [w.name for w in self.generator.losses]
        names = loss_names(t.adversarial.losses, self.plugins.registry, taken)
        return DiscriminatorStep(
            t, self.ctx, names, self.dist.device, self._wrap, self.generator.precision
        )

    def _all_loss_names(self) -> list[str]:
        extra = self.discriminator.losses if self.discriminator else []
        return [w.name for w in [*self.generator.losses, *extra]]

    def _data(self) -> None:
        """The datasets, the augmentations and their noise, and the position in the data."""
        d, rank = self.spec.data, self.dist.rank
        self.augmentations = [a.build(self.ctx) for a in d.augmentations]
        seed = derive_seed(self.spec.seed, "augment", rank)
        self.aug_gen = torch.Generator().manual_seed(seed)
        with self.dist.local_first():  # each node's local rank 0 fills its data cache
            self.train_set = d.dataset.build(self.ctx, "train")
            self.val_set = d.dataset.build(self.ctx, "validation")
        self.distances = distance_losses(self.plugins.registry, self.ctx)
        self.position = Position()

    def _ema(self) -> WeightAverage | None:
        """The moving average of the unwrapped model's weights, kept by the main process (the
        one that validates and saves; under DDP every rank holds the same weights)."""
        ema = self.spec.training.ema
        return WeightAverage(ema, self.model) if ema and self.dist.main else None

    def _start(self, resume: bool, init: str | None) -> None:
        """Continue from the run's last checkpoint, start from `init`'s weights, or fresh."""
        if resume:
            restore(self, checkpoint.load(self.dir.last, map_location=self.dist.device))
            if self.dist.main:  # records after the checkpoint are logged again
                self.dir.drop_metrics_after(self.step)
        elif init:
            initialise(self, init)
        if not resume and self.dist.rank:  # the same init, per-rank noise
            torch.manual_seed(derive_seed(self.spec.seed, "rank", self.dist.rank))

    def _wrap(self, module: nn.Module) -> nn.Module:
        """DistributedDataParallel under torchrun; the module itself in one process."""
        if self.dist.world == 1:
            return module
        cuda = self.dist.device.type == "cuda"
        return nn.parallel.DistributedDataParallel(
            module, device_ids=[self.dist.device] if cuda else None
        )

    # -- checkpoints (what they hold and how a run continues: training/resume.py) ------------

    def save(self, best: bool = False) -> None:
        if not self.dist.main:
            return
        state = training_state(self)
        path = self.dir.save(state, self.step, self.spec.training.keep_checkpoints, best)
        self.saved = self.saved if best else self.step
        self.hook.lyra_on_checkpoint(run=self.run, step=self.step, path=path)

    # -- one step ----------------------------------------------------------------------------

    def autocast(self) -> contextlib.AbstractContextManager:
        return self.generator.precision.autocast()

    def train_step(self, batches: Iterator[torch.Tensor], usable: int) -> dict[str, float] | None:
        """One optimizer step over `accumulate` batches; None if it was skipped (non-finite)."""
        self._seed_step()
        phase = self.schedule.enter(self.step)
        self.generator.enter(phase)
        means = StepMeans(self.spec.training.accumulate)
        self.generator.optimizer.zero_grad(set_to_none=True)
        finite = True
        for _ in range(means.batches):
            finite &= self._batch_step(self._next_batch(batches, usable), phase, means)
        norm = self.generator.update(finite)
        if norm is None:
            return None
        if self.ema:
            self.ema.update(self.model, self.step + 1)  # the loop counts the step after this
        extra = {"grad_norm": norm, "lr": self.generator.lr}
        return self.schedule.metrics(phase) | means.values | extra

    def _seed_step(self) -> None:
        """A step's noise (the model's and the augmentations') is drawn from streams seeded by
        (seed, rank, step): a resume continues every process's noise exactly, though the
        checkpoint holds the main process's RNG state only."""
        seed, rank = self.spec.seed, self.dist.rank
        torch.manual_seed(derive_seed(seed, "step", rank, self.step))
        self.aug_gen.manual_seed(derive_seed(seed, "augment", rank, self.step))

    def _next_batch(self, batches: Iterator[torch.Tensor], usable: int) -> torch.Tensor:
        started = time.perf_counter()
        x = next(batches).to(self.dist.device, non_blocking=True)
        self.position.advance(self.spec.data.batch_size, usable)
        for augment in self.augmentations:
            x = augment(x, self.aug_gen)
        self.data_seconds += time.perf_counter() - started
        return x

    def _batch_step(self, x: torch.Tensor, phase: Phase, means: StepMeans) -> bool:
        """One batch: the generator's forward, the discriminator's update and terms when the
        phase has them, and the generator's backward; False if anything was not finite."""
        out, terms = self.generator.forward(x, phase, self.step)
        finite = True
        if self.discriminator and phase.trains_discriminator(self.step):
            d_loss = self.discriminator.train(x, out.reconstruction, self.step)
            finite = d_loss is not None
            means.add("d_loss", d_loss or 0.0)
        if self.discriminator and phase.adversarial:
            terms |= self.discriminator.generator_terms(x, out.reconstruction, phase, self.step)
        return self.generator.backward(terms, out.reconstruction, means) and finite

    # -- the loop ----------------------------------------------------------------------------

    def fit(self, tracker: Tracker, tags: dict[str, str], params: dict[str, str]) -> str:
        """Train to `training.steps`; returns 'completed', 'interrupted' or (raising) 'failed'."""
        self._start_tracking(tracker, tags, params)
        batches, usable = self._batches()
        self.progress = self._progress()
        self.hook.lyra_on_train_start(run=self.run)
        reason = "failed"
        try:
            with self._signals():
                self._loop(batches, usable)
            reason = "completed"
        except (Interrupted, KeyboardInterrupt):
            reason = "interrupted"
        except WriteError as exc:
            raise self._write_failed(exc) from exc
        finally:
            self.progress.close()
            self._finish(reason)
        return reason

    def _write_failed(self, exc: WriteError) -> WriteError:
        """The run stops on a failed write (see the module's docstring): after a checkpoint of
        this step (if it trained one) unless the write was one; the error says what next."""
        if exc.path.parent != self.dir.checkpoints and self.saved != self.step and self.step:
            with contextlib.suppress(WriteError):
                self.save()
        if self.saved is None:  # before its first step, the run leaves no directory behind
            left = f"remove {self.dir.path} (it holds no checkpoint) and " if self.step else ""
            return exc.about(then=f"{left}start the run again")
        return exc.about(
            then=f"resume from step {self.saved} ({self.dir.last}) with: "
            f"lyra run --resume {self.dir.path}"
        )

    def _loop(self, batches: Iterator[torch.Tensor], usable: int) -> None:
        t = self.spec.training
        if self.step == 0:
            self._log_validation()
        self.budget.start()  # the first validation is not training time
        while self.step < t.steps:
            if self._out_of_time():
                return
            if self.dist.any(self.stop_signal is not None):  # every process stops here
                raise Interrupted(self.stop_signal or "a signal to another process")
            started, self.data_seconds = time.perf_counter(), 0.0
            values = self.train_step(batches, usable)
            if values is None:
                self._skipped()
                continue
            self.nonfinite = 0
            self._after_step(values, time.perf_counter() - started)

    def _out_of_time(self) -> bool:
        """Whether the time budget is spent (every rank agrees); if so, validate the last step."""
        if self.budget.minutes is None or self.dist.mean(float(self.budget.exhausted())) < 0.5:
            return False
        self.say(
            f"time budget of {self.budget.minutes:g} {self.budget.clock} minute(s) spent at "
            f"step {self.step}"
        )
        if self.step % self.spec.training.validate_every:
            self._log_validation()
        return True

    def _skipped(self) -> None:
        self.nonfinite += 1
        if self.nonfinite >= self.spec.training.max_nonfinite:
            raise LyraError(
                f"step {self.step + 1}: the loss or gradients were not finite for "
                f"{self.nonfinite} steps in a row (skipped); the last good checkpoint "
                f"is {self.dir.last} — lower the learning rate or set training.grad_clip"
            )

    def _after_step(self, values: dict[str, float], seconds: float) -> None:
        """Count the step, then log, validate and checkpoint when they are due."""
        t, progress = self.spec.training, self.progress
        assert progress is not None
        self.step += 1
        self.run.step = self.step
        values = self.dist.means(values)
        self.hook.lyra_on_step_end(run=self.run, step=self.step, metrics=values)
        progress.update(self.step, values, seconds, self.data_seconds)
        last = self.step == t.steps
        if self.step % t.log_every == 0 or last:
            train = {f"train/{k}": v for k, v in values.items()}
            self.tracker.log_metrics(train | progress.rates(), self.step)
        if self.step % t.validate_every == 0 or last:
            self._log_validation()
        if self.step % t.checkpoint_every == 0:
            self.save()

    def _start_tracking(self, tracker: Tracker, tags: dict[str, str], params: dict) -> None:
        self.tracker = SafeTracker(tracker, self.dir.path, enabled=self.dist.main)
        if not self.dist.main:
            return
        self.run.tracker_run_id = self.tracker.start(self.spec.name, tags)
        self.tracker.log_params(params)
        for path in self.dir.records():
            self.tracker.log_artifact(path)
        hint = self.tracker.describe()
        print(f"run directory: {self.dir.path}" + (f"\n{hint}" if hint else ""), file=sys.stderr)

    def _batches(self) -> tuple[Iterator[torch.Tensor], int]:
        d = self.spec.data
        return batch_stream(
            self.train_set,
            d.batch_size,
            self.spec.seed,
            self.position,
            self.dist.rank,
            self.dist.world,
            d.num_workers,
            self.dist.device.type == "cuda",
        )

    def _progress(self) -> Progress:
        t, d = self.spec.training, self.spec.data
        audio = d.batch_size * t.accumulate * d.segment_length / d.sample_rate
        return Progress(
            t.steps,
            self.step,
            audio,
            enabled=self.dist.main,
            log=self.dir.log,
            every=t.log_every,
            time_left=self.budget.wall_seconds_left,
        )

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        """Ctrl-C and SIGTERM set `stop_signal` while the block runs, on every process (torchrun
        and SLURM send SIGTERM to all of them; the main process says what happens)."""

        def handler(signum: int, _frame: Any) -> None:
            if self.stop_signal is not None:  # a second Ctrl-C stops at once
                raise KeyboardInterrupt
            self.stop_signal = signal.Signals(signum).name
            if self.dist.main:
                print(
                    f"\n{self.stop_signal}: stopping after this step and saving a checkpoint "
                    "(press Ctrl-C again to abort without one)",
                    file=sys.stderr,
                )

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    def _finish(self, reason: str) -> None:
        """The last checkpoint (unless the run failed), the tracked run's status, the hook."""
        try:
            if reason != "failed":
                self.save()
        except WriteError as exc:
            reason = "failed"
            raise self._write_failed(exc) from exc
        finally:
            self._end_tracking(reason)

    def _end_tracking(self, reason: str) -> None:
        if self.dist.main:
            status = {"completed": "FINISHED", "interrupted": "KILLED"}.get(reason, "FAILED")
            if reason == "completed" and self.dir.last.exists():
                self.tracker.log_artifact(self.dir.last, "checkpoints")
            self.tracker.end(status)
        self.hook.lyra_on_train_end(run=self.run, step=self.step, reason=reason)

    # -- validation --------------------------------------------------------------------------

    def say(self, line: str) -> None:
        """A line for the user (and the run's log) between status lines."""
        if self.progress is not None:
            self.progress.message(line)
        elif self.dist.main:
            print(line, file=sys.stderr)

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

        losses = {w.name: w.module for w in self.generator.losses}
        weights = self.ema.applied(self.model) if self.ema else contextlib.nullcontext(self.model)
        with weights as model:
            metrics, (x, y) = validation.validate(
                model, batches, losses, self.distances, extra, self.dist.device, self.autocast
            )
        if t.validation_examples:
            folder = self.dir.path / "validation" / f"step-{self.step:07d}"
            for path in validation.write_examples(
                folder, x, y, d.sample_rate, t.validation_examples
            ):
                self.tracker.log_artifact(path, f"validation/step-{self.step:07d}")
        return metrics

    def _log_validation(self) -> None:
        if self.dist.main:
            metrics = self.validate()
            self.tracker.log_metrics(metrics, self.step)
            self.hook.lyra_on_validation_end(run=self.run, step=self.step, metrics=metrics)
            self.say(
                f"validation at step {self.step}{' (EMA weights)' if self.ema else ''}: "
                + ", ".join(f"{k.removeprefix('val/')} {v:.4g}" for k, v in metrics.items())
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
