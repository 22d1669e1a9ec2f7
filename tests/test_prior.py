"""Latent priors: a causal density over latent frames, trained by `lyra run` on a codec's latents,
sampled and continued by `lyra sample`."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from lyra_core.cli import main
from lyra_core.discovery import load_plugins
from lyra_core.errors import BuildError, LyraError
from lyra_core.loader import validate_data
from lyra_core.services.model import load_model, save_model
from lyra_core.training import train
from lyra_plugins.priors import WaveNetPrior

from .helpers import NO_TRACKING, RATE, autoencoder, synthetic_data, train_spec

CODEC = {
    "name": "tiny_codec",
    "seed": 1,
    "data": synthetic_data(),
    "model": autoencoder({"type": "gaussian", "latent_dim": 4}, bands=None),
    "losses": [{"type": "l1"}],
    "training": {
        "steps": 1,
        "optimizer": {"type": "adam"},
        "validate_every": 1000,
        "validation_batches": 1,
        "validation_examples": 0,
    },
    "tracking": NO_TRACKING,
}
pytestmark = pytest.mark.usefixtures("small_and_eager")

PRIOR_MODEL = {"type": "wavenet", "channels": 8, "layers": 3, "cycle": 2, "mixtures": 2}


def prior_spec(codec: str) -> dict:
    spec = copy.deepcopy(CODEC)
    spec["name"] = "tiny_prior"
    spec["model"] = {"type": "latent_prior", "codec": codec, "prior": PRIOR_MODEL}
    spec["losses"] = [
        {"type": "term", "name": "nll"},
        {"type": "term", "name": "frame_prior_nll", "weight": 0.0},
    ]
    spec["training"] |= {"steps": 3, "validate_every": 3, "best_metric": "val/nll"}
    return spec


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    """A codec trained for one step, and a prior trained on its latents for three."""
    folder = tmp_path_factory.mktemp("prior")
    codec = train_spec(CODEC, folder, "codec")
    return codec, train_spec(prior_spec(str(codec)), folder, "prior")


def small_prior(seed: int = 0) -> WaveNetPrior:
    torch.manual_seed(seed)
    return WaveNetPrior(3, channels=8, layers=4, kernel=3, cycle=2, mixtures=2)


# -- the wavenet prior ---------------------------------------------------------------------------


def test_each_frame_depends_on_exactly_the_receptive_field_before_it():
    prior = small_prior()
    z = torch.randn(1, 3, 40)
    base = prior.mixture(z)[1]
    for t in (0, 9, 20):
        moved = z.clone()
        moved[..., t] += 1.0
        changed = (prior.mixture(moved)[1] - base).abs().amax(dim=(0, 1, 2)) > 0
        seen = torch.arange(40)
        assert torch.equal(changed, (seen >= t) & (seen < t + prior.receptive_field))


def test_next_frame_uses_the_distribution_nll_scores():
    """At temperature 0, the next frame of z[:t] is the mode nll's mixture has at t."""
    prior = small_prior()
    z = torch.randn(2, 3, 30)
    log_w, mean, _ = prior.mixture(torch.nn.functional.pad(z, (1, 0))[..., :-1])
    for t in (0, 5, 29):  # 0: no past; 29: a past longer than the receptive field
        mode = mean[..., t].gather(-1, log_w[..., t].argmax(-1, keepdim=True))
        assert torch.allclose(prior.next_frame(z[..., :t], 0.0), mode, atol=1e-6)


def test_nll_is_the_mixture_density():
    """With one component, nll is the Gaussian negative log-density of its mean and scale."""
    torch.manual_seed(0)
    prior = WaveNetPrior(2, channels=4, layers=2, kernel=2, cycle=1, mixtures=1)
    z = torch.randn(1, 2, 6)
    _, mean, log_scale = prior.mixture(torch.nn.functional.pad(z, (1, 0))[..., :-1])
    normal = torch.distributions.Normal(mean[:, :, 0], log_scale[:, :, 0].exp())
    assert torch.allclose(prior.nll(z), -normal.log_prob(z).mean(dim=(1, 2)), atol=1e-5)


def test_a_trained_prior_beats_the_frame_wise_prior_and_continues_a_prompt():
    """On latents whose frames follow from the ones before (phase-shifted sines), a briefly
    trained prior's nll falls far below N(0, I)'s, and it continues a prompt along the sines."""
    torch.manual_seed(0)
    prior = WaveNetPrior(3, channels=16, layers=4, kernel=3, cycle=2, mixtures=2)
    t = torch.arange(64.0)
    phases = torch.rand(16, 3, 1) * 2 * math.pi
    z = 1.5 * torch.sin(0.4 * t + phases)
    standard = (0.5 * z.square() + 0.5 * math.log(2 * math.pi)).mean()
    optimizer = torch.optim.Adam(prior.parameters(), lr=1e-2)
    for _ in range(150):
        optimizer.zero_grad()
        prior.nll(z).mean().backward()
        optimizer.step()
    with torch.no_grad():
        assert float(prior.nll(z).mean()) < float(standard) - 1.0
    with torch.no_grad():
        continued = prior.generate(z[:2, :, :32], 16, temperature=0.0)
    assert continued.shape == (2, 3, 48)
    assert torch.equal(continued[..., :32], z[:2, :, :32])
    assert (continued[..., 32:] - z[:2, :, 32:48]).abs().mean() < 0.3


# -- trained by `lyra run`, used by `lyra sample` -------------------------------------------------


def test_lyra_run_trains_the_prior_with_the_codec_frozen(runs):
    codec_dir, prior_dir = runs
    plugins = load_plugins()
    codec, prior = load_model(codec_dir, plugins), load_model(prior_dir, plugins)
    assert prior.prior is not None and codec.prior is None
    inner = prior.model.codec.state_dict()
    assert all(torch.equal(v, inner[k]) for k, v in codec.model.state_dict().items())
    records = [json.loads(line) for line in (prior_dir / "metrics.jsonl").read_text().splitlines()]
    val = next(r for r in records if "val/nll" in r)
    assert math.isfinite(val["val/nll"]) and math.isfinite(val["val/frame_prior_nll"])
    x = torch.randn(1, 1, 4096)
    assert torch.equal(prior.model.encode(x)[0], codec.model.encode(x)[0])


def test_sample_draws_from_the_prior_and_continues_a_prompt(runs, tmp_path, capsys):
    _, prior_dir = runs
    prompt = tmp_path / "prompt.wav"
    sf.write(prompt, 0.3 * np.sin(np.arange(RATE // 2) / 5.0).astype(np.float32), RATE)
    common = ["sample", "--run", str(prior_dir), "-n", "2", "--seconds", "0.25"]
    assert main([*common, "-o", str(tmp_path / "free")]) == 0
    assert main([*common, "--prompt", str(prompt), "-o", str(tmp_path / "cont")]) == 0
    free = [sf.read(p)[0] for p in sorted((tmp_path / "free").glob("*.wav"))]
    cont = [sf.read(p)[0] for p in sorted((tmp_path / "cont").glob("*.wav"))]
    assert len(free) == len(cont) == 2 and not np.array_equal(free[0], free[1])
    assert len(free[0]) == RATE // 4 and len(cont[0]) >= RATE // 2 + RATE // 4
    assert main([*common, "--seed", "0", "-o", str(tmp_path / "again")]) == 0
    again = sf.read(sorted((tmp_path / "again").glob("*.wav"))[0])[0]
    assert np.abs(again - free[0]).max() < 1e-4  # one seed, one sample (but the 16-bit dither)


def test_a_prompt_without_a_prior_is_one_clear_error(runs, tmp_path, capsys):
    codec_dir, _ = runs
    prompt = tmp_path / "prompt.wav"
    sf.write(prompt, np.zeros(RATE // 4, np.float32), RATE)
    code = main(["sample", "--run", str(codec_dir), "--prompt", str(prompt), "-o", str(tmp_path)])
    err = capsys.readouterr().err
    assert code != 0 and "no latent prior to continue a prompt" in err
    assert "Traceback" not in err


def test_bad_codecs_are_refused_naming_model_codec(runs, tmp_path):
    codec_dir, _ = runs
    plugins = load_plugins()
    cases = {
        str(tmp_path / "missing"): "no such run directory",
        str(codec_dir): "set data.sample_rate and data.channels to the codec's",
    }
    for i, (codec, message) in enumerate(cases.items()):
        spec = prior_spec(codec)
        spec["data"]["sample_rate"] = 16000
        path = tmp_path / "spec.json"
        path.write_text(json.dumps(spec))
        with pytest.raises(LyraError, match=message) as info:
            train(plugins, str(path), run_dir=str(tmp_path / f"never{i}"), device="cpu")
        assert "model.codec" in str(info.value)


def test_evaluate_scores_the_latent_under_both_priors(runs, tmp_path, capsys):
    _, prior_dir = runs
    clip = tmp_path / "clip.wav"
    sf.write(clip, 0.3 * np.sin(np.arange(RATE // 2) / 5.0).astype(np.float32), RATE)
    report = tmp_path / "report.json"
    args = ["evaluate", str(clip), "--run", str(prior_dir), "--baselines", "--json", str(report)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "prior_nll" in out and "frame_prior_nll" in out
    model = json.loads(report.read_text())["systems"]["model"]["mean"]
    assert math.isfinite(model["prior_nll"]) and math.isfinite(model["frame_prior_nll"])
    assert math.isnan(model["visqol"])  # half a second: shorter than ViSQOL can score


@pytest.mark.parametrize(
    ("bottleneck", "message"),
    [
        ({"type": "fsq", "dim": 4, "levels": [5, 4]}, "discrete codes"),
        ({"type": "single_vector", "latent_dim": 4}, "one vector per example"),
    ],
)
def test_latents_a_frame_density_cannot_model_are_refused(tmp_path, bottleneck, message):
    plugins = load_plugins()
    spec_data = copy.deepcopy(CODEC)
    spec_data["model"]["bottleneck"] = bottleneck
    spec = validate_data(spec_data, plugins.registry, "codec")
    codec = tmp_path / "codec"
    save_model(spec.model.build(spec.context(plugins.registry)), spec, plugins.registry, codec)
    prior = validate_data(prior_spec(str(codec)), plugins.registry, "prior")
    with pytest.raises(BuildError, match=message) as info:
        prior.model.build(prior.context(plugins.registry))
    assert info.value.path == "model.codec"


def test_the_prior_codes_a_latent_frame_by_frame_and_decodes_it_exactly(runs):
    from lyra_core.services.compress import open_codec

    loaded = load_model(runs[1], load_plugins(), "cpu")
    codec = open_codec(loaded, "prior", log=lambda _: None)
    audio = torch.randn(1, 1, 4096, generator=torch.Generator().manual_seed(0)) * 0.1
    data = codec.encode(audio, 0.5)
    symbols = codec.symbols(audio, 0.5)
    assert torch.equal(codec.decode(data, "x"), codec.decode_symbols(symbols, 0.5, 4096))
    codec_only = load_model(runs[0], load_plugins(), "cpu")
    with pytest.raises(LyraError, match="needs a run with a latent prior"):
        open_codec(codec_only, "prior", log=lambda _: None)
