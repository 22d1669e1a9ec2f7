"""A run's life around the loop: flags checked first, one distributed set-up, windowed progress,
a timestamped log, one derivation of seeds, and resumes that leave no debris or duplicates."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from lyra_core import BuildContext, hookimpl
from lyra_core.cli import main
from lyra_core.discovery import load_plugins
from lyra_core.errors import LyraError
from lyra_core.experiment import TrainingSpec
from lyra_core.seeds import derive_seed
from lyra_core.services.rundir import RunDir
from lyra_core.spec import structure
from lyra_core.training import distributed, train
from lyra_core.training.data import BatchSampler, Position
from lyra_core.training.phases import PhaseSchedule
from lyra_core.training.progress import Progress
from lyra_core.training.steps import DiscriminatorStep, Precision

from .test_training import write_spec

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d "


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def fake_run(folder: Path, spec: Path) -> Path:
    """A run directory that `RunDir.open` accepts (its checkpoint is never read)."""
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "spec.json").write_text(spec.read_text())
    (folder / "checkpoints" / "last.pt").write_bytes(b"not read")
    return folder


# -- flags and set-up ---------------------------------------------------------------------------


def test_init_with_resume_is_refused_before_anything_is_written(tmp_path, monkeypatch, capsys):
    spec = write_spec(tmp_path, tracking={"type": "mlflow"})
    old = fake_run(tmp_path / "old", spec)
    monkeypatch.chdir(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    argv = ["run", str(spec), "--init", str(old), "--resume", str(old), "--set", "training.steps=9"]
    assert main([*argv, "--run-dir", "new"]) == 2
    assert "--init starts a new run; --resume continues one" in capsys.readouterr().err
    # no run directory, no tracking store, and the resumed run's spec untouched
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert (old / "spec.json").read_text() == spec.read_text()
    with pytest.raises(LyraError, match="pick one"):
        train(load_plugins(), str(spec), init=str(old), resume=str(old), run_dir="other")
    assert not Path("runs").exists() and not Path("other").exists()


class CountingSetup:
    """Wraps `distributed.setup` to count its calls (it still does the real set-up)."""

    def __init__(self, real):
        self.real, self.calls = real, 0

    def __call__(self, requested: str) -> distributed.Dist:
        self.calls += 1
        return self.real(requested)


def test_one_set_up_no_phase_metric_and_a_timestamped_log(tmp_path, monkeypatch):
    setup = CountingSetup(distributed.setup)
    monkeypatch.setattr(distributed, "setup", setup)
    spec = write_spec(tmp_path, training={"steps": 2, "log_every": 1})
    run = tmp_path / "run"
    assert train(load_plugins(), str(spec), run_dir=str(run), device="cpu") == "completed"
    assert setup.calls == 1
    train_records = [r for r in records(run) if "train/loss" in r]
    assert len(train_records) == 2
    assert all("train/phase" not in r for r in train_records)  # the run declares no phases
    log = (run / "log.txt").read_text().splitlines()
    assert all(re.match(STAMP, line) for line in log), log
    assert any(re.match(STAMP + r"validation at step 0: .*si_sdr", line) for line in log)
    assert any(re.match(STAMP + r"validation at step 2: ", line) for line in log)
    assert any(re.match(STAMP + r"step 2/2 ", line) for line in log)


# -- the discriminator's step --------------------------------------------------------------------


def test_discriminator_step_learns_and_weighs_terms_with_the_phase(registry):
    adversarial = {
        "discriminator": {"type": "mpd", "periods": [2, 3], "channels": [4, 8]},
        "losses": [{"type": "hinge", "weight": 2.0}, {"type": "feature_matching", "weight": 3.0}],
    }
    phases = [{"adversarial": True, "discriminator_every": 2, "loss_weights": {"hinge": 0.5}}]
    data = {"optimizer": {"type": "adam", "lr": 0.01}, "adversarial": adversarial}
    training = structure({**data, "phases": phases}, TrainingSpec, registry)
    names = ["hinge", "feature_matching"]
    torch.manual_seed(0)
    step = DiscriminatorStep(
        training,
        BuildContext(registry=registry, channels=1),
        names,
        torch.device("cpu"),
        lambda module: module,
        Precision("cpu", None),
    )
    phase = PhaseSchedule(training, names, nn.Linear(1, 1)).enter(0)
    assert [phase.trains_discriminator(s) for s in range(4)] == [True, False, True, False]
    real = torch.sin(torch.linspace(0, 60, 512)).view(1, 1, -1)
    fake = nn.Parameter(0.1 * torch.randn(1, 1, 512))
    losses = [step.train(real, fake, s) for s in range(4)]
    assert losses[-1] < losses[0]  # the discriminator learns
    assert fake.grad is None  # and its update never reaches the generator
    terms = step.generator_terms(real, fake, phase, 0)
    assert {n: t.weight for n, t in terms.items()} == {"hinge": 1.0, "feature_matching": 3.0}
    sum(t.weight * t.value for t in terms.values()).backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0


# -- progress -----------------------------------------------------------------------------------


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_rates_and_eta_forget_a_slow_first_step():
    clock, lines = Clock(), []
    progress = Progress(1000, 0, 0.5, log=lines.append, every=10, clock=clock)
    clock.now = 180.0  # the first step compiles for 3 minutes
    progress.update(1, {"loss": 1.0}, 180.0, 0.0)
    for step in range(2, 21):  # then 8 steps/s
        clock.now += 0.125
        progress.update(step, {"loss": 1.0}, 0.125, 0.0)
    rates = progress.rates()
    assert rates["perf/steps_per_s"] == pytest.approx(8.0)
    assert rates["perf/audio_s_per_s"] == pytest.approx(4.0)
    assert lines[-1].startswith("step 20/1000 loss 1 | 8.00 steps/s 4.0 audio-s/s")
    assert lines[-1].endswith("ETA 2m02s")  # 980 steps at 8/s, not at 20 steps per 182 s
    progress.time_left = lambda: 45.0  # a time budget ends the run sooner
    progress.update(30, {"loss": 1.0}, 0.125, 0.0)
    assert lines[-1].endswith("ETA 0m45s")


def test_messages_end_the_status_line_first(capsys):
    lines = []
    progress = Progress(10, 0, 1.0, log=lines.append, every=5)
    progress.tty = True  # as on a terminal: a live line rewritten in place
    progress.update(1, {"loss": 0.5}, 0.1, 0.0)
    progress.message("validation at step 1: mel 0.5")
    progress.update(2, {"loss": 0.4}, 0.1, 0.0)
    progress.close()
    err = capsys.readouterr().err
    assert "\rstep 1/10 loss 0.5" in err
    assert re.search(r"\rstep 1/10 [^\n]*\nvalidation at step 1: mel 0.5\n\rstep 2/10", err)
    assert err.endswith("\n") and not err.endswith("\n\n")
    assert lines == ["validation at step 1: mel 0.5"]  # live lines reach the log every 5 steps


# -- seeds --------------------------------------------------------------------------------------


def test_one_seed_derivation():
    seeds = {
        derive_seed(s, purpose, *i)
        for s in (0, 1, 2)
        for purpose in ("augment", "order", "rank")
        for i in ((), (0,), (1,), (0, 1), (1, 0))
    }
    assert len(seeds) == 3 * 3 * 5  # no two streams share a seed
    assert derive_seed(7, "order", 3) == derive_seed(7, "order", 3)
    assert all(0 <= s < 2**63 for s in seeds)
    torch.Generator().manual_seed(max(seeds))  # any of them seeds torch
    # the data order: the same per (seed, epoch), another per epoch and per seed
    a, b = BatchSampler(64, 8, 5, Position(), 0, 1), BatchSampler(64, 8, 6, Position(), 0, 1)
    assert torch.equal(a.order(0), a.order(0))
    assert not torch.equal(a.order(0), a.order(1)) and not torch.equal(a.order(0), b.order(0))


# -- resuming -----------------------------------------------------------------------------------


def test_open_removes_temporaries_and_resume_drops_metrics_after_its_step(tmp_path):
    run = fake_run(tmp_path / "run", write_spec(tmp_path))
    stale = [run / "checkpoints" / ".step-0000005.pt.x1y2.tmp", run / ".metrics.jsonl.ab.tmp"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    opened = RunDir.open(run)
    assert not any(p.exists() for p in stale)
    assert (run / "checkpoints" / "last.pt").exists()
    lines = [json.dumps({"step": s, "train/loss": 1.0}) for s in (0, 1, 2, 3, 4)]
    opened.metrics_file.write_text("\n".join(lines) + '\n{"step": 5, "train/lo')  # torn by a kill
    assert opened.drop_metrics_after(3) == 2
    assert [r["step"] for r in records(run)] == [0, 1, 2, 3]
    assert opened.drop_metrics_after(3) == 0


class CrashAt:
    """A plugin that crashes the run at the end of one step, before that step is logged."""

    def __init__(self, step: int):
        self.step = step

    @hookimpl
    def lyra_on_step_end(self, run, step, metrics):
        if step == self.step:
            raise RuntimeError(f"crash at step {step}")


def test_a_crashed_run_resumes_with_each_step_logged_once(tmp_path):
    spec = write_spec(tmp_path, training={"steps": 6, "checkpoint_every": 3})
    run = tmp_path / "run"
    crashing = load_plugins(extra=[("crash", CrashAt(5))])
    with pytest.raises(RuntimeError, match="crash at step 5"):
        train(crashing, str(spec), run_dir=str(run), device="cpu")
    assert [r["step"] for r in records(run) if "train/loss" in r] == [1, 2, 3, 4]
    stale = run / "checkpoints" / ".step-0000005.pt.k1ll.tmp"  # a checkpoint write cut short
    stale.write_bytes(b"half a checkpoint")
    train(load_plugins(), None, ["training.steps=8"], resume=str(run), device="cpu")
    assert not stale.exists()
    logged = records(run)
    assert [r["step"] for r in logged if "train/loss" in r] == list(range(1, 9))
    assert [r["step"] for r in logged if "val/mel_distance" in r] == [0, 8]


# -- a time budget --------------------------------------------------------------------------------


@pytest.mark.parametrize("clock", ["wall", "cpu"])
def test_a_time_budget_stops_cleanly_and_counts_over_resumes(tmp_path, clock):
    budget = {"steps": 100_000, "max_minutes": 0.05, "budget_clock": clock, "validate_every": 1000}
    spec = write_spec(tmp_path, training=budget)
    run = tmp_path / "run"
    assert train(load_plugins(), str(spec), run_dir=str(run), device="cpu") == "completed"
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    first = state["step"]
    assert 0 < first < 100_000 and state["budget_seconds"] >= 0.05 * 60
    validated = [r["step"] for r in records(run) if "val/si_sdr" in r]
    assert validated == [0, first]  # the stop step is validated and checkpointed
    assert "time budget of 0.05" in (run / "log.txt").read_text()
    # a resume with a larger budget continues from the seconds already spent
    spent = state["budget_seconds"]
    more = [f"training.max_minutes={(spent + 3) / 60}"]  # 3 s more
    assert train(load_plugins(), resume=str(run), overrides=more, device="cpu") == "completed"
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] > first and spent + 3 <= state["budget_seconds"] < spent + 60
