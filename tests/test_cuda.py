"""Lyra's CUDA path: AMP steps of every shipped experiment, fused Snake (Triton), device moves.

Every test here is marked `cuda` and skips without a CUDA GPU; `make gpu-check` runs them with
`pytest -m cuda` on the GPU machine (tools/gpu_check.py). With LYRA_CUDA_RECORD=FILE set, the AMP
test appends one JSON line per experiment (its losses per precision) for the check's report.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from lyra_core.discovery import Plugins, load_plugins
from lyra_core.loader import load_spec, resolved
from lyra_core.services import checkpoint
from lyra_core.services.rundir import RunDir, versions
from lyra_core.training import train
from lyra_core.training.engine import Trainer

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted([*ROOT.glob("experiments/*.json"), *ROOT.glob("experiments/reference/*.json")])
PRECISIONS = ("32", "bf16", "fp16")
# How far a mixed-precision step-0 loss may be from float32's (relative): bf16 keeps 8 bits of
# mantissa, fp16 11.
LOSS_RTOL = {"bf16": 0.1, "fp16": 0.05}
HAS_CUDA = torch.cuda.is_available()

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU"),
]


def amp_overrides(precision: str, batch_size: int = 2) -> list[str]:
    """A shipped experiment at its real model and segment size, made cheap to step once: a small
    synthetic dataset, no tracker, no validation audio, and the discriminator on from step 0
    (`phases=[]` is DAC's schedule: D then G on every batch)."""
    dataset = {"type": "synthetic", "train_examples": batch_size, "validation_examples": 1}
    return [
        f"data.dataset={json.dumps(dataset)}",
        f"data.batch_size={batch_size}",
        "data.num_workers=0",
        f"training.precision={json.dumps(precision)}",
        "training.steps=1",
        "training.compile=false",
        "training.validate_every=1000",
        "training.checkpoint_every=1000",
        "training.validation_batches=1",
        "training.validation_examples=0",
        "training.phases=[]",
        'tracking={"type": "none"}',
    ]


def codec_overrides(spec_path: Path) -> list[str]:
    """A latent prior's spec names a trained codec run: the contract tests' small codec."""
    if json.loads(spec_path.read_text())["model"]["type"] != "latent_prior":
        return []
    from lyra_plugins.priors import example_codec

    return [f"model.codec={example_codec()}", "data.sample_rate=22050"]


def trainer_for(
    plugins: Plugins, spec_path: Path, overrides: list[str], folder: Path, device: str = "cuda"
) -> Trainer:
    """The real Trainer for `spec_path` with `overrides`, on `device`, in a fresh run directory."""
    spec = load_spec(spec_path, plugins.registry, overrides)
    data = resolved(spec, plugins.registry)
    run = RunDir.create(data, versions(plugins), folder)
    return Trainer(spec, plugins, run, device)


def one_step(
    plugins: Plugins, spec_path: Path, precision: str, folder: Path, device: str = "cuda"
) -> dict[str, float]:
    """Step 0's metrics for one precision: the same seed, weights and batch for each."""
    overrides = amp_overrides(precision) + codec_overrides(spec_path)
    trainer = trainer_for(plugins, spec_path, overrides, folder, device)
    batch = torch.stack([trainer.train_set[i] for i in range(trainer.spec.data.batch_size)])
    values = trainer.train_step(iter([batch]), len(trainer.train_set))
    assert values is not None, f"{spec_path.name} {precision}: the step was skipped (non-finite)"
    del trainer
    if device == "cuda":
        torch.cuda.empty_cache()
    return values


def record(line: dict[str, Any]) -> None:
    target = os.environ.get("LYRA_CUDA_RECORD")
    if target:
        with open(target, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")


@pytest.fixture(scope="module")
def plugins() -> Plugins:
    return load_plugins()


def snake_inputs(dtype: torch.dtype, beta: bool) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(4, 64, 8192, device="cuda", generator=gen).to(dtype).requires_grad_()
    alpha = (torch.rand(1, 64, 1, device="cuda", generator=gen) + 0.5).requires_grad_()
    b = (torch.rand(1, 64, 1, device="cuda", generator=gen) + 0.5).requires_grad_()
    return x, alpha, b if beta else alpha


@pytest.mark.parametrize("beta", [False, True], ids=["snake", "snake_beta"])
def test_fused_snake_on_cuda_matches_the_eager_formula(beta):
    from lyra_plugins.activations import snake, snake_fused

    x, alpha, b = snake_inputs(torch.float32, beta)
    fused = snake_fused(x, alpha, b)
    grads = torch.autograd.grad(fused.square().sum(), [x, alpha, b] if beta else [x, alpha])
    eager = snake(x, alpha, b)
    expected = torch.autograd.grad(eager.square().sum(), [x, alpha, b] if beta else [x, alpha])
    torch.testing.assert_close(fused, eager, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grads[0], expected[0], atol=1e-5, rtol=1e-5)
    for got, want in zip(grads[1:], expected[1:], strict=True):  # sums over 32k values
        torch.testing.assert_close(got, want, atol=1e-3, rtol=1e-4)


def test_fused_snake_runs_in_bf16_on_cuda():
    from lyra_plugins.activations import snake, snake_fused

    x, alpha, _ = snake_inputs(torch.bfloat16, False)
    fused = snake_fused(x, alpha)
    assert fused.dtype == torch.bfloat16
    torch.testing.assert_close(fused.float(), snake(x, alpha).float(), atol=2e-2, rtol=2e-2)


TINY_OVERRIDES = [
    'data.dataset={"type": "synthetic", "train_examples": 8, "validation_examples": 2}',
    "data.batch_size=2",
    "data.segment_length=8192",
    "data.num_workers=0",
    "training.checkpoint_every=2",
    "training.validate_every=1000",
    "training.validation_batches=1",
    "training.validation_examples=0",
    'tracking={"type": "none"}',
]
DEMO = ROOT / "experiments" / "snake_pqmf.json"


def _params(run: Path) -> dict[str, torch.Tensor]:
    return checkpoint.load(run / "checkpoints" / "last.pt")["model"]


def test_a_cuda_checkpoint_resumes_on_the_cpu_and_back(plugins, tmp_path):
    run = tmp_path / "run"
    sets = [*TINY_OVERRIDES, 'training.precision="bf16"']
    done = train(plugins, str(DEMO), [*sets, "training.steps=2"], device="cuda", run_dir=str(run))
    assert done == "completed"
    written = _params(run)
    assert all(t.device.type == "cpu" for t in written.values())  # map_location="cpu"
    # Resumed on the CPU, the model holds exactly the weights the GPU wrote.
    cpu = Trainer(*_reopen(plugins, run), "cpu", resume=True)
    for key, value in cpu.model.state_dict().items():
        assert torch.equal(value, written[key]), key
    del cpu
    assert train(plugins, None, ["training.steps=4"], resume=str(run), device="cpu") == "completed"
    on_cpu = _params(run)
    back = Trainer(*_reopen(plugins, run), "cuda", resume=True)
    for key, value in back.model.state_dict().items():
        assert value.device.type == "cuda"
        assert torch.equal(value.cpu(), on_cpu[key]), key
    del back
    assert train(plugins, None, ["training.steps=6"], resume=str(run), device="cuda") == "completed"
    assert all(torch.isfinite(t).all() for t in _params(run).values())


def _reopen(plugins: Plugins, run: Path) -> tuple[Any, Plugins, RunDir]:
    from lyra_core.loader import validate_data

    folder = RunDir.open(run)
    spec = validate_data(json.loads(folder.spec_text()), plugins.registry, str(folder.spec_file))
    return spec, plugins, folder


def test_fp16_trains_with_a_grad_scaler_and_its_state_resumes(plugins, tmp_path):
    run = tmp_path / "run"
    sets = [*TINY_OVERRIDES, 'training.precision="fp16"', "training.steps=2"]
    assert train(plugins, str(DEMO), sets, device="cuda", run_dir=str(run)) == "completed"
    state = checkpoint.load(run / "checkpoints" / "last.pt")
    assert state["scaler"] and state["scaler"]["scale"] > 0
    assert train(plugins, None, ["training.steps=4"], resume=str(run), device="cuda") == "completed"


# Last: the slowest (every experiment at its real model size), so the others report first.
@pytest.mark.parametrize("spec_path", SPECS, ids=lambda p: p.stem)
def test_every_experiment_steps_in_fp32_bf16_and_fp16(plugins, spec_path, tmp_path):
    losses: dict[str, dict[str, float]] = {}
    for precision in PRECISIONS:
        values = one_step(plugins, spec_path, precision, tmp_path / precision)
        losses[precision] = {k: v for k, v in values.items() if "loss" in k}
    record({"spec": spec_path.stem, "losses": losses})
    for precision, values in losses.items():
        bad = {k: v for k, v in values.items() if not math.isfinite(v)}
        assert not bad, f"{spec_path.name} {precision}: non-finite {bad}"
    reference = losses["32"]["loss"]
    for precision, rtol in LOSS_RTOL.items():
        assert losses[precision]["loss"] == pytest.approx(reference, rel=rtol), precision
    if "d_loss" in losses["32"]:  # the discriminator stepped in every precision
        assert all("d_loss" in losses[p] for p in PRECISIONS)
