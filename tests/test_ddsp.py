"""The DDSP model family: harmonic and noise synthesis, reverb, YIN, loudness, the `ddsp` model."""

from __future__ import annotations

import json
import math

import attrs
import numpy as np
import pytest
import soundfile as sf
import torch

from lyra_core import BuildContext, BuildError, LyraError
from lyra_core.cli import main
from lyra_core.discovery import load_plugins
from lyra_core.services.model import load_model
from lyra_plugins.ddsp import (
    DDSPSpec,
    FilteredNoise,
    HarmonicOscillator,
    LearnedReverb,
    a_weighted_loudness,
    yin,
)

from .helpers import NO_TRACKING, short_training, synthetic_data

pytestmark = pytest.mark.usefixtures("small_and_eager")

RATE, HOP = 16000, 64


def spectrum_db(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Hann-windowed magnitude spectrum of a 1-d signal in dB re its peak, and its frequencies."""
    magnitude = torch.fft.rfft(y * torch.hann_window(y.numel(), dtype=y.dtype)).abs()
    freqs = torch.fft.rfftfreq(y.numel(), 1 / RATE)
    return 20 * torch.log10(magnitude / magnitude.max() + 1e-12), freqs


def at(db: torch.Tensor, freqs: torch.Tensor, hz: float) -> float:
    return float(db[(freqs - hz).abs().argmin()])


def sine(freq: float, seconds: float = 0.5, harmonics: int = 1) -> torch.Tensor:
    t = torch.arange(round(seconds * RATE), dtype=torch.float64) / RATE
    tone = sum(torch.sin(2 * math.pi * k * freq * t + k) / k for k in range(1, harmonics + 1))
    return tone.float()[None]


# -- synthesizers --------------------------------------------------------------------------------


@pytest.mark.parametrize(("f0", "harmonics"), [(440.0, 10), (1300.0, 12)])
def test_harmonics_sound_at_multiples_of_f0_and_nothing_above_nyquist(f0, harmonics):
    frames = 100
    osc = HarmonicOscillator(RATE, HOP)
    weights = torch.rand(1, 1, harmonics, generator=torch.Generator().manual_seed(0)) + 0.5
    dist = weights.expand(1, frames, harmonics)  # steady controls: no modulation sidebands
    y = osc(torch.full((1, frames), f0), torch.full((1, frames), 0.5), dist)[0].double()
    assert y.shape == (frames * HOP,)
    db, freqs = spectrum_db(y)
    audible = [k for k in range(1, harmonics + 1) if k * f0 < RATE / 2]
    assert all(at(db, freqs, k * f0) > -20 for k in audible)
    if harmonics * f0 > RATE / 2:  # 12 · 1300 Hz is far above Nyquist: those are silent
        peaks = [f for f in range(1, harmonics + 1) if f not in audible]
        assert peaks  # harmonics that would alias back into the band
        aliases = [abs(RATE - k * f0) for k in peaks]
        assert all(at(db, freqs, a) < -60 for a in aliases)
    between = (freqs > 100) & ((freqs / f0 - (freqs / f0).round()).abs() > 0.1)
    assert db[between].max() < -60  # nothing between the harmonics, aliases included


def test_the_distribution_is_normalised_over_the_audible_harmonics():
    osc = HarmonicOscillator(RATE, HOP)
    amp = torch.full((1, 50), 0.4)
    f0 = torch.full((1, 50), 1000.0)  # harmonics 1..7 audible of 10
    y1 = osc(f0, amp, torch.ones(1, 50, 10))
    y2 = osc(f0, amp, 3 * torch.ones(1, 50, 7))
    assert torch.allclose(y1, y2, atol=1e-5)
    # seven equal sines sharing amplitude 0.4: mean square 7 · (0.4/7)² / 2
    assert math.isclose(float(y1.square().mean()), 7 * (0.4 / 7) ** 2 / 2, rel_tol=0.02)


def test_filtered_noise_has_the_requested_magnitude_response():
    bands, frames = 33, 400
    position = torch.linspace(0, 1, bands)
    target = 0.2 + 0.8 * torch.exp(-(((position - 0.3) / 0.15) ** 2))
    torch.manual_seed(0)
    y = FilteredNoise(HOP)(target.expand(4, frames, bands))
    assert y.shape == (4, frames * HOP)
    n = 2 * (bands - 1)  # one analysis bin per band
    segments = y[:, : y.shape[-1] // n * n].reshape(-1, n)
    window = torch.hann_window(n)
    power = torch.fft.rfft(segments * window).abs().square().mean(0) / window.square().sum()
    measured = (power * 3).sqrt()  # uniform noise in [-1, 1] has variance 1/3
    inner = slice(1, -1)  # DC and Nyquist bins see half the window's leakage
    assert torch.allclose(measured[inner], target[inner], rtol=0.12)


def test_reverb_starts_quiet_and_decaying():
    reverb = LearnedReverb(8000, RATE, rt60=0.25, dry=False)
    ir = reverb.ir.detach()
    assert math.isclose(float(ir.norm()), 0.1, rel_tol=1e-4)  # 20 dB below the dry signal
    early, late = ir[:1000].square().mean(), ir[3000:4000].square().mean()
    assert 10 * math.log10(early / late) > 30  # 60 dB per 0.25 s: about 45 dB over 3000 samples
    impulse = torch.zeros(1, 9000)
    impulse[0, 0] = 1
    assert torch.allclose(reverb(impulse)[0, :8000], ir, atol=1e-6)
    dry = LearnedReverb(8000, RATE, rt60=0.25, dry=True)
    assert torch.allclose(dry(impulse)[0, :8000] - impulse[0, :8000], dry.ir.detach(), atol=1e-6)


def test_gradients_reach_every_control_and_the_impulse_response():
    frames, harmonics, bands = 20, 8, 9
    amp = torch.rand(2, frames, requires_grad=True)
    dist = torch.rand(2, frames, harmonics, requires_grad=True)
    mags = torch.rand(2, frames, bands, requires_grad=True)
    reverb = LearnedReverb(256, RATE, 0.05, dry=True)
    f0 = torch.full((2, frames), 300.0)
    y = HarmonicOscillator(RATE, HOP)(f0, amp, dist) + FilteredNoise(HOP)(mags)
    reverb(y).square().mean().backward()
    for grad in (amp.grad, dist.grad, mags.grad, reverb.ir.grad):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


# -- features ------------------------------------------------------------------------------------


@pytest.mark.parametrize("freq", [82.4, 220.0, 440.0, 1046.5])
@pytest.mark.parametrize("harmonics", [1, 6])
def test_yin_finds_the_f0_of_sines_and_harmonic_tones(freq, harmonics):
    f0, confidence = yin(sine(freq, harmonics=harmonics), RATE, HOP)
    inner = slice(10, -10)  # away from the zero padding at the ends
    assert torch.allclose(f0[0, inner], torch.tensor(freq), rtol=0.01)
    assert confidence[0, inner].min() > 0.9


def test_yin_has_low_confidence_on_noise_and_silence():
    noise = torch.randn(1, 8000, generator=torch.Generator().manual_seed(0))
    assert yin(noise, RATE, HOP)[1].mean() < 0.4
    assert yin(torch.zeros(1, 640), RATE, HOP)[1].max() == 0


def test_a_weighting_makes_100_hz_quieter_than_1_khz_at_equal_rms():
    rms = 0.1
    loud = {
        f: a_weighted_loudness(rms * math.sqrt(2) * sine(f), RATE, HOP)[0, 10:-10].mean()
        for f in (100.0, 1000.0)
    }
    assert math.isclose(float(loud[1000.0]), 20 * math.log10(rms), abs_tol=0.1)  # 0 dB at 1 kHz
    assert math.isclose(float(loud[1000.0] - loud[100.0]), 19.1, abs_tol=0.3)  # IEC 61672: -19.1
    assert a_weighted_loudness(torch.zeros(1, 640), RATE, HOP).max() <= -119


# -- the model -----------------------------------------------------------------------------------


REGISTRY = load_plugins().registry


def small(**fields) -> torch.nn.Module:
    torch.manual_seed(0)
    return attrs.evolve(DDSPSpec.example(), **fields).build(
        BuildContext(registry=REGISTRY, sample_rate=RATE, segment_length=2048)
    )


def test_the_latent_is_timbre_then_f0_then_loudness_and_decodes_alone():
    model = small().eval()
    x = 0.5 * sine(440.0, seconds=0.25)[None]  # [1, 1, 4000]
    z, terms = model.encode(x)
    frames = math.ceil(4000 / model.hop_length)
    assert z.shape == (1, 4 + 2, frames) and "kl" in terms
    inner = slice(5, -5)
    assert torch.allclose(z[0, 4, inner], torch.tensor(440.0), rtol=0.01)
    _, _, loudness = model.pitch_and_loudness(x)
    assert torch.equal(z[0, 5], loudness[0])
    y = model.decode(z, 4000)
    assert y.shape == (1, 1, 4000) and torch.isfinite(y).all()
    assert torch.equal(model.decode(z, 4000), y)  # eval noise is seeded: same latent, same audio
    # timbre transfer: another f0 row moves the harmonic peak
    moved = z.clone()
    moved[:, 4] = 660.0
    with torch.no_grad():
        db, freqs = spectrum_db(model.decode(moved, 4000)[0, 0].double())
    assert at(db, freqs, 660.0) > at(db, freqs, 440.0)


def test_every_model_parameter_gets_a_gradient():
    model = small().train()
    x = 0.3 * torch.randn(2, 1, 1000, generator=torch.Generator().manual_seed(1))
    out = model(x)
    assert out.reconstruction.shape == x.shape
    (out.reconstruction.square().mean() + out.terms["kl"]).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert missing == []


def test_user_mistakes_are_named():
    with pytest.raises(LyraError, match=r"mono audio \[batch, 1, samples\]"):
        small()(torch.zeros(1, 2, 256))
    with pytest.raises(LyraError, match=r"latents \[batch, 6, frames\]"):
        small().decode(torch.zeros(1, 4, 8))
    ctx = BuildContext(registry=REGISTRY, sample_rate=RATE)
    with pytest.raises(BuildError, match=r"data\.channels to 1"):
        DDSPSpec.example().build(BuildContext(registry=REGISTRY, channels=2))
    with pytest.raises(BuildError, match=r"f0_max < sample_rate / 2 = 8000 Hz"):
        attrs.evolve(DDSPSpec.example(), f0_max=9000.0).build(ctx)


TINY = {
    "name": "tiny_ddsp",
    "seed": 1,
    "data": synthetic_data(sample_rate=RATE),
    "model": {
        "type": "ddsp",
        "hop": 64,
        "harmonics": 8,
        "noise_bands": 9,
        "bottleneck": {"type": "gaussian", "latent_dim": 4},
        "hidden": 16,
        "encoder_layers": 1,
        "mlp_layers": 1,
        "n_mels": 16,
        "window": 256,
        "reverb_seconds": 0.02,
    },
    "losses": [
        {"type": "mel", "window_lengths": [64, 256], "n_mels": [10, 40]},
        {"type": "term", "name": "kl", "weight": 0.01},
    ],
    "training": short_training(3),
    "tracking": NO_TRACKING,
}


def test_trains_through_lyra_run_and_reconstructs(tmp_path, capsys):
    spec, run = tmp_path / "spec.json", tmp_path / "run"
    spec.write_text(json.dumps(TINY))
    assert main(["run", str(spec), "--run-dir", str(run), "--device", "cpu"]) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train/loss"] for r in records if "train/loss" in r]
    assert len(losses) == 3 and all(np.isfinite(losses))
    loaded = load_model(run, load_plugins(), device="cpu")
    assert loaded.step == 3 and loaded.hop_length == 64 and loaded.latent_channels == 6

    sf.write(tmp_path / "tone.wav", 0.3 * sine(220.0, seconds=0.6, harmonics=3)[0].numpy(), RATE)
    capsys.readouterr()
    args = ["reconstruct", str(tmp_path / "tone.wav"), "--run", str(run), "--device", "cpu"]
    assert main([*args, "-o", str(tmp_path / "rec")]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].split()[:2] == ["file", "mel_distance"]
    assert all(np.isfinite(float(v)) for v in rows[1].split()[1:])
    audio, rate = sf.read(tmp_path / "rec" / "tone.wav")
    assert rate == RATE and audio.shape == (9600,) and np.isfinite(audio).all()
