"""The `fsq` and `residual_fsq` bottlenecks: the level grid, codes, straight-through gradients,
residual refinement, perplexity, spec errors, and a trained run through encode, decode,
reconstruct and evaluate."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from lyra_core import BuildContext, SpecError
from lyra_core.cli import main
from lyra_core.discovery import load_plugins
from lyra_core.interfaces import QuantizingBottleneck
from lyra_core.loader import validate_data
from lyra_core.services.model import load_model
from lyra_plugins.quantizers import FiniteScalarQuantizer, LevelGrid, perplexity, round_ste

from .helpers import NO_TRACKING, RATE, autoencoder, short_training, synthetic_data

DIM = 12
LEVELS = (8, 5, 5, 5)


@pytest.fixture(scope="module")
def plugins():
    return load_plugins()


def build(plugins, name: str = "residual_fsq", **fields) -> FiniteScalarQuantizer:
    fields = {"dim": DIM, "levels": LEVELS, **fields}
    spec = plugins.registry.get("bottleneck", name).spec(**fields)
    return spec.build(BuildContext(registry=plugins.registry))


@pytest.mark.parametrize("name", ["fsq", "residual_fsq"])
def test_contract(plugins, name):
    from lyra_core.testing import check_component

    built = check_component(plugins.registry, "bottleneck", name)
    assert isinstance(built, QuantizingBottleneck)
    assert built.codebook_size == 20 and built.frame_multiple == 1


def test_codes_values_codes_round_trip_for_every_stage(plugins):
    rvq = build(plugins, n_stages=4)
    grid = rvq.grid
    gen = torch.Generator().manual_seed(0)
    for scale in rvq.scales:
        codes = torch.randint(rvq.codebook_size, (3, 50), generator=gen)
        sent = grid.values(codes) * scale  # what the stage adds to the latent
        steps = (sent / scale * grid.half_levels).round()
        assert torch.equal(grid.codes(steps), codes)
    # a code is the mixed-radix number of the level indices, the first dimension fastest
    index = torch.tensor([3, 1, 4, 2])  # level index per dimension
    code = 3 + 8 * (1 + 5 * (4 + 5 * 2))
    assert torch.equal(
        grid.steps(torch.tensor([[code]]))[0, :, 0], index - torch.tensor(LEVELS) // 2
    )


@pytest.mark.parametrize(("name", "stages"), [("fsq", 1), ("residual_fsq", 3)])
def test_dequantize_of_the_codes_is_the_quantized_latent(plugins, name, stages):
    fields = {"n_stages": stages} if name == "residual_fsq" else {}
    quantizer = build(plugins, name, **fields).eval()
    h = 2 * torch.randn(2, DIM, 40, generator=torch.Generator().manual_seed(1))
    z, codes, terms = quantizer.quantize(h)
    assert len(codes) == stages and all(c.dtype == torch.long for c in codes)
    assert all(c.shape == (2, 40) and c.min() >= 0 and c.max() < 1000 for c in codes)
    assert torch.equal(quantizer.dequantize(codes), z)
    assert set(terms) == {"perplexity"} and not terms["perplexity"].requires_grad
    for k in range(1, stages + 1):
        z_k, codes_k, _ = quantizer.quantize(h, n_quantizers=k)
        assert torch.equal(quantizer.dequantize(codes_k), z_k)
    assert torch.equal(quantizer.dequantize(codes[:1]), quantizer.quantize(h, n_quantizers=1)[0])


def test_autocast_keeps_the_levels_in_float32(plugins):
    quantizer = build(plugins, n_stages=2).eval()
    h = torch.randn(2, DIM, 8, generator=torch.Generator().manual_seed(7)).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z, codes, _ = quantizer.quantize(h)
    assert z.dtype == torch.float32
    assert torch.equal(z, quantizer.quantize(h.float())[0])
    assert torch.equal(quantizer.dequantize(codes), z)


def test_rounding_passes_the_upstream_gradient_unchanged():
    x = (3 * torch.randn(100, generator=torch.Generator().manual_seed(2))).requires_grad_()
    upstream = torch.randn(100)
    low, high = torch.tensor(-2.0), torch.tensor(3.0)
    y = round_ste(x, low, high)
    assert torch.equal(y, x.detach().round().clamp(-2, 3))
    y.backward(upstream)
    assert torch.equal(x.grad, upstream)


def test_straight_through_gradient_reaches_the_encoder_features(plugins):
    fsq = build(plugins, "fsq").train()
    gen = torch.Generator().manual_seed(3)
    h = torch.randn(2, DIM, 16, generator=gen, requires_grad=True)
    upstream = torch.randn(2, DIM, 16, generator=gen)
    fsq.quantize(h)[0].backward(upstream)
    # the same path with the rounding taken out: bound, normalise, project back
    h_smooth = h.detach().clone().requires_grad_()
    grid = fsq.grid
    fsq.out_proj(grid.bound(fsq.in_proj(h_smooth)) / grid.half_levels).backward(upstream)
    assert h.grad.abs().sum() > 0
    torch.testing.assert_close(h.grad, h_smooth.grad)
    residual = build(plugins, n_stages=3).train()
    h = torch.randn(2, DIM, 16, generator=gen, requires_grad=True)
    residual.quantize(h)[0].square().mean().backward()
    assert h.grad.abs().sum() > 0 and torch.isfinite(h.grad).all()


@pytest.mark.parametrize("levels", [LEVELS, (2, 3, 4, 7, 16)])
def test_each_value_lies_on_its_level_grid(levels):
    grid = LevelGrid(levels)
    z = 4 * torch.randn(4, len(levels), 2000, generator=torch.Generator().manual_seed(4))
    values, codes = grid.quantize(z)
    assert values.abs().max() <= 1
    for d, n in enumerate(levels):
        steps = values[:, d] * (n // 2)
        expected = torch.arange(-(n // 2), (n - 1) // 2 + 1, dtype=torch.float32)
        assert torch.equal(steps.unique(), expected), (n, steps.unique())
    assert torch.equal(grid.values(codes), values)
    assert grid.values(torch.zeros(1, 1, dtype=torch.long)).min() == -1  # code 0: lowest levels
    assert torch.equal(
        grid.quantize(torch.zeros(1, len(levels), 1))[0], torch.zeros(1, len(levels), 1)
    )


def test_more_residual_stages_reconstruct_a_random_input_better():
    quantizer = FiniteScalarQuantizer(DIM, LEVELS, 4, "residual_fsq")
    z = 2 * torch.rand(8, len(LEVELS), 500, generator=torch.Generator().manual_seed(5)) - 1
    errors = [
        float((quantizer.residual_quantize(z, k)[0] - z).square().mean()) for k in range(1, 5)
    ]
    assert all(b < a for a, b in itertools.pairwise(errors)), errors
    assert errors[-1] < errors[0] / 5, errors


def test_perplexity_of_uniform_codes_is_the_codebook_size_and_of_constant_codes_one(plugins):
    gen = torch.Generator().manual_seed(6)
    uniform = torch.randint(1000, (4, 50_000), generator=gen)
    assert float(perplexity(uniform, 1000)) == pytest.approx(1000, rel=0.02)
    assert float(perplexity(torch.full((4, 100), 17), 1000)) == pytest.approx(1.0, abs=1e-6)
    residual = build(plugins, n_stages=2)
    per_stage = residual.perplexity([uniform, torch.zeros_like(uniform)])
    assert per_stage[0] == pytest.approx(1000, rel=0.02) and per_stage[1] == 1.0


def tiny_spec(bottleneck: dict, name: str = "tiny_fsq") -> dict:
    """An 8 kHz model with hop 16 (4 PQMF bands, one stride-4 block), trained for two steps."""
    return {
        "name": name,
        "seed": 1,
        "data": synthetic_data(),
        "model": autoencoder(bottleneck),
        "losses": [{"type": "l1"}, {"type": "term", "name": "perplexity", "weight": 0}],
        "training": short_training(2, validate_every=2),
        "tracking": NO_TRACKING,
    }


@pytest.mark.parametrize(
    ("levels", "path", "message"),
    [
        ([8, 1], "$.model.bottleneck.levels[1]", "minimum of 2"),
        ([], "$.model.bottleneck.levels", "non-empty"),
        ([1024, 1024, 2], "$.model.bottleneck.levels", "must multiply to at most 1048576"),
    ],
)
def test_bad_levels_are_spec_errors_at_their_path(plugins, levels, path, message):
    spec = tiny_spec({"type": "residual_fsq", "levels": levels})
    with pytest.raises(SpecError) as info:
        validate_data(spec, plugins.registry)
    assert any(p == path and message in m for p, m in info.value.problems), info.value.problems


RESIDUAL = {"type": "residual_fsq", "dim": 8, "levels": [5, 4], "n_stages": 3}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, small_and_eager) -> Path:
    """A residual FSQ run trained for two steps with `lyra run`."""
    folder = tmp_path_factory.mktemp("fsq")
    spec = folder / "spec.json"
    spec.write_text(json.dumps(tiny_spec(RESIDUAL)))
    assert main(["run", str(spec), "--run-dir", str(folder / "run"), "--device", "cpu"]) == 0
    return folder / "run"


def test_a_trained_run_encodes_codes_that_decode_like_reconstruct(trained, tmp_path, capsys):
    t = np.arange(3000) / RATE
    sf.write(tmp_path / "in.wav", (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), RATE)
    run = ["--run", str(trained), "--device", "cpu"]
    assert main(["encode", str(tmp_path / "in.wav"), "-o", str(tmp_path / "enc"), *run]) == 0
    with np.load(tmp_path / "enc" / "in.codes.npz") as data:
        assert sorted(data.files) == ["level0", "level1", "level2"]
        assert all(data[f].shape == (math.ceil(3000 / 16),) for f in data.files)
    codes = str(tmp_path / "enc" / "in.codes.npz")
    assert main(["decode", codes, "-o", str(tmp_path / "dec"), "--bits", "float", *run]) == 0
    wav = str(tmp_path / "in.wav")
    assert main(["reconstruct", wav, "-o", str(tmp_path / "rec"), "--bits", "float", *run]) == 0
    capsys.readouterr()
    decoded, _ = sf.read(tmp_path / "dec" / "in.wav", dtype="float32")
    reconstructed, _ = sf.read(tmp_path / "rec" / "in.wav", dtype="float32")
    assert decoded.shape == reconstructed.shape == (3000,)
    np.testing.assert_allclose(decoded, reconstructed, atol=1e-5)


def test_evaluate_reports_the_exact_bitrate(trained, tmp_path, capsys):
    t = np.arange(4000) / RATE
    sf.write(tmp_path / "in.wav", (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), RATE)
    report = tmp_path / "report.json"
    argv = ["evaluate", "--run", str(trained), str(tmp_path / "in.wav"), "--no-visqol"]
    assert main([*argv, "--json", str(report), "--device", "cpu"]) == 0
    capsys.readouterr()
    bits = json.loads(report.read_text())["transmission"]["bits_per_second"]
    assert bits == pytest.approx(RATE / 16 * 3 * math.log2(5 * 4))  # frames/s, stages, bits


def test_validation_reports_the_perplexity_that_training_leaves_out(trained):
    rows = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    reported = [r["val/perplexity"] for r in rows if "val/perplexity" in r]
    assert len(reported) == 2 and all(1 <= p <= 5 * 4 for p in reported)  # steps 0 and 2
    assert all(r["train/loss"] == r["train/l1"] for r in rows if "train/loss" in r)


def test_explore_and_sample_draw_from_uniform_codes(trained, plugins, tmp_path, capsys):
    from lyra_core.explore.explorer import Explorer

    loaded = load_model(trained, plugins, device="cpu")
    drawn = Explorer.open(loaded, components=2).from_prior(0, 1.0, 0.1)
    assert drawn.latent.shape[-2:] == (8, loaded.latent_frames(800)) and drawn.length == 800
    argv = ["sample", "--run", str(trained), "--seconds", "0.1", "-o", str(tmp_path)]
    assert main([*argv, "--device", "cpu"]) == 0
    capsys.readouterr()
    audio, rate = sf.read(tmp_path / "sample_000.wav")
    assert rate == RATE and audio.shape == (800,) and np.isfinite(audio).all()
