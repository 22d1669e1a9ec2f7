"""Training phases: frozen modules, per-phase loss weights, and the discriminator's schedule."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from lyra_core import hookimpl
from lyra_core.discovery import load_plugins
from lyra_core.errors import BuildError, SpecError
from lyra_core.services.checkpoint import load
from lyra_core.training import train

from .test_training import TINY

ADVERSARIAL = {
    "discriminator": {"type": "mpd", "periods": [2, 3], "channels": [4, 8, 8]},
    "losses": [{"type": "hinge"}, {"type": "feature_matching", "weight": 2.0}],
}


class Recorder:
    """A plugin that records parameters at every step end."""

    def __init__(self):
        self.steps: dict[int, dict[str, dict[str, torch.Tensor]]] = {}
        self.metrics: dict[int, dict[str, float]] = {}

    @hookimpl
    def lyra_on_train_start(self, run):
        self.model = run.model
        self.steps[0] = {"model": self.snapshot(run.model)}

    @hookimpl
    def lyra_on_step_end(self, run, step, metrics):
        self.steps[step] = {"model": self.snapshot(run.model)}
        self.metrics[step] = dict(metrics)

    @staticmethod
    def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in module.state_dict().items()}


def run_spec(tmp_path: Path, training: dict, name: str = "run", resume: bool = False):
    spec = copy.deepcopy(TINY)
    spec["training"].update(training)
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(spec))
    recorder = Recorder()
    plugins = load_plugins(extra=[("recorder", recorder)])
    run_dir = tmp_path / name
    if resume:
        train(
            plugins,
            None,
            [f"training.steps={training['steps']}"],
            resume=str(run_dir),
            device="cpu",
        )
    else:
        train(plugins, str(path), run_dir=str(run_dir), device="cpu")
    return recorder, run_dir


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor], prefix: str) -> set:
    return {k for k in before if k.startswith(prefix) and not torch.equal(before[k], after[k])}


def test_frozen_modules_stay_bit_identical_then_train(tmp_path):
    rec, run_dir = run_spec(
        tmp_path,
        {
            "steps": 4,
            "phases": [
                {"name": "decoder only", "until": 2, "frozen": ["encoder"]},
                {"name": "all"},
            ],
        },
    )
    s0, s2, s4 = (rec.steps[i]["model"] for i in (0, 2, 4))
    assert changed(s0, s2, "encoder.") == set()
    assert changed(s0, s2, "decoder.")  # the decoder trained in phase one
    assert changed(s2, s4, "encoder.")  # and the encoder from step 2 on
    assert [rec.metrics[i]["phase"] for i in (1, 2, 3, 4)] == [0, 0, 1, 1]
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    tracked = [json.loads(line) for line in lines if "train/loss" in line]
    assert [r["train/phase"] for r in tracked] == [0, 0, 1, 1]  # declared phases are tracked


def test_loss_weights_per_phase(tmp_path):
    rec, _ = run_spec(
        tmp_path,
        {
            "steps": 2,
            "phases": [
                {"until": 1, "loss_weights": {"kl": 0}},
                {"loss_weights": {"l1": 0}},
            ],
        },
    )
    assert "kl" not in rec.metrics[1] and "l1" in rec.metrics[1]
    assert "l1" not in rec.metrics[2] and rec.metrics[2]["loss"] == pytest.approx(
        0.01 * rec.metrics[2]["kl"]
    )


def test_bad_phases_are_spec_and_build_errors(tmp_path):
    with pytest.raises(
        SpecError, match=r"\$\.training\.phases: phases must end at increasing steps"
    ):
        run_spec(tmp_path, {"phases": [{"until": 4}, {"until": 2}]})
    with pytest.raises(SpecError, match=r"training\.adversarial is not set"):
        run_spec(tmp_path, {"phases": [{"discriminator_every": 1}]}, name="b")
    with pytest.raises(BuildError, match=r"phases\[0\].frozen: the model has no submodule 'enc'"):
        run_spec(tmp_path, {"phases": [{"frozen": ["enc"]}]}, name="c")
    with pytest.raises(BuildError, match="no loss named 'mel'"):
        run_spec(tmp_path, {"phases": [{"loss_weights": {"mel": 1}}]}, name="d")


def rave_like(steps: int) -> dict:
    return {
        "steps": steps,
        "checkpoint_every": 1000,
        "adversarial": ADVERSARIAL,
        "phases": [
            {"name": "reconstruction", "until": 2},
            {
                "name": "adversarial",
                "adversarial": True,
                "discriminator_every": 2,
                "frozen": ["encoder"],
            },
        ],
    }


def test_discriminator_joins_on_schedule_and_resumes_in_phase(tmp_path):
    rec, run_dir = run_spec(tmp_path, rave_like(6))
    assert all("hinge" not in rec.metrics[i] and "d_loss" not in rec.metrics[i] for i in (1, 2))
    assert all("hinge" in rec.metrics[i] for i in (3, 4, 5, 6))
    # D trains on every 2nd batch of its phase: batches 2 and 4 (0-based step index)
    assert [i for i in range(1, 7) if "d_loss" in rec.metrics[i]] == [3, 5]
    assert changed(rec.steps[2]["model"], rec.steps[6]["model"], "encoder.") == set()
    state = load(run_dir / "checkpoints" / "last.pt")
    assert state["adversarial"]["optimizer"]["state"]  # the discriminator's Adam moments

    # Stop in the adversarial phase at step 4, resume to 6: the same parameters as straight on.
    _, part = run_spec(tmp_path, rave_like(4), name="part")
    run_spec(tmp_path, rave_like(6), name="part", resume=True)
    a, b = load(run_dir / "checkpoints" / "last.pt"), load(part / "checkpoints" / "last.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for key in a["adversarial"]["discriminator"]:
        assert torch.equal(
            a["adversarial"]["discriminator"][key], b["adversarial"]["discriminator"][key]
        ), key


def test_discriminator_is_untouched_before_its_phase(tmp_path):
    _, run_dir = run_spec(tmp_path, {**rave_like(2), "checkpoint_every": 1})
    first = load(run_dir / "checkpoints" / "step-0000001.pt")["adversarial"]["discriminator"]
    last = load(run_dir / "checkpoints" / "last.pt")["adversarial"]["discriminator"]
    assert all(torch.equal(first[k], last[k]) for k in first)
    assert load(run_dir / "checkpoints" / "last.pt")["adversarial"]["optimizer"]["state"] == {}


def test_a_phases_learning_rate_factor_and_betas(tmp_path):
    phases = [
        {"name": "warm", "until": 2},
        {"name": "still", "until": 4, "lr_factor": 0.0, "betas": [0.0, 0.5]},
        {"name": "on", "betas": [0.7, 0.8]},
    ]
    rec, run_dir = run_spec(tmp_path, {"steps": 5, "phases": phases, "checkpoint_every": 1})
    s2, s4, s5 = (rec.steps[i]["model"] for i in (2, 4, 5))
    assert changed(s2, s4, "") == set()  # a factor of 0: no update in 'still'
    assert changed(s4, s5, "encoder.")
    assert [rec.metrics[i]["lr"] for i in (2, 3, 4, 5)] == pytest.approx([0.001, 0, 0, 0.001])
    state = load(run_dir / "checkpoints" / "last.pt")["optimizer"]
    assert state["param_groups"][0]["betas"] == (0.7, 0.8)
    assert state["param_groups"][0]["lr"] == pytest.approx(0.001)  # the scheduler's own value


def test_a_frozen_phase_keeps_the_optimizer_state_of_what_it_freezes(tmp_path):
    phases = [{"until": 2}, {"until": 4, "frozen": ["decoder"]}, {}]
    rec, run_dir = run_spec(tmp_path, {"steps": 5, "phases": phases})
    names = [name for name, _ in rec.model.named_parameters()]  # the optimizer's order
    state = load(run_dir / "checkpoints" / "last.pt")["optimizer"]["state"]
    steps: dict[str, set[int]] = {}
    for index, saved in state.items():
        steps.setdefault(names[index].split(".")[0], set()).add(int(saved["step"]))
    assert steps["encoder"] == {5} and steps["decoder"] == {3}  # 2 before, 1 after: none lost
