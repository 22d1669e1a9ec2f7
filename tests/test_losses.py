"""The built-in losses: auraloss equality, DAC's mel definition, silence, autocast, errors.

auraloss (the `[bench]` extra) is a test dependency: the MR-STFT loss must equal its
`MultiResolutionSTFTLoss` within 1e-5 relative.
"""

from __future__ import annotations

import math

import attrs
import auraloss
import numpy as np
import pytest
import soundfile as sf
import torch

from lyra_core import BuildContext, LossRef, LyraError, SpecError, param
from lyra_core.interfaces import ModelOutput
from lyra_core.spec import structure
from lyra_core.testing import check_component

SR = 16000
LOSSES = ["multi_resolution_stft", "mel", "multiscale_spectral", "l1", "term"]
SPECTRAL = ["multi_resolution_stft", "mel", "multiscale_spectral"]
RECONSTRUCTION = [*SPECTRAL, "l1"]


@attrs.frozen(kw_only=True)
class LossesOnly:
    """The `losses` section alone, to check error paths."""

    losses: tuple[LossRef, ...] = param(())


def build(registry, data: dict, sample_rate: int = SR):
    spec = structure(data, LossRef, registry)
    return spec.build(BuildContext(registry=registry, sample_rate=sample_rate))


def out(x: torch.Tensor, **terms: torch.Tensor) -> ModelOutput:
    return ModelOutput(reconstruction=x, latent=x.new_zeros(1), terms=dict(terms))


def pair(channels: int, length: int = 6000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    target = torch.randn(2, channels, length, generator=gen)
    return target + 0.3 * torch.randn(2, channels, length, generator=gen), target


def tone_with_noise(tmp_path, channels: int) -> torch.Tensor:
    """A harmonic tone plus noise, written to and read back from a 16-bit WAV."""
    t = np.arange(SR) / SR
    rng = np.random.default_rng(1)
    chans = []
    for c in range(channels):
        f0 = 220.0 * (1 + 0.5 * c)
        tone = sum(0.3 / k * np.sin(2 * np.pi * k * f0 * t + k) for k in range(1, 9))
        chans.append(tone * np.exp(-2 * t) + 0.01 * rng.standard_normal(t.size))
    path = tmp_path / f"tone{channels}.wav"
    sf.write(path, np.stack(chans, axis=1), SR, subtype="PCM_16")
    audio, sr = sf.read(path, dtype="float32", always_2d=True)
    assert sr == SR
    return torch.from_numpy(audio.T.copy()).unsqueeze(0)


def assert_rel(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-5) -> None:
    a, b = float(torch.as_tensor(a).detach()), float(torch.as_tensor(b).detach())
    assert math.isfinite(a) and abs(a - b) <= rtol * abs(b), (a, b)


# --- multi-resolution STFT == auraloss -----------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 2])
def test_mrstft_equals_auraloss_on_random_signals(registry, channels):
    pred, target = pair(channels)
    ours = build(registry, {"type": "multi_resolution_stft"})
    assert_rel(ours(out(pred), target), auraloss.freq.MultiResolutionSTFTLoss()(pred, target))


@pytest.mark.parametrize("channels", [1, 2])
def test_mrstft_equals_auraloss_on_a_wav_tone(registry, tmp_path, channels):
    target = tone_with_noise(tmp_path, channels)
    # a plausible reconstruction: smoothed (lowpassed), a little quieter, with some hiss
    smoothed = torch.nn.functional.avg_pool1d(target, 5, stride=1, padding=2)
    pred = 0.8 * smoothed + 0.003 * torch.randn(target.shape, generator=torch.Generator())
    ours = build(registry, {"type": "multi_resolution_stft"})
    assert_rel(ours(out(pred), target), auraloss.freq.MultiResolutionSTFTLoss()(pred, target))


def test_mrstft_matches_auraloss_gradients_and_options(registry):
    pred, target = pair(2, length=3000, seed=3)
    options = {
        "fft_sizes": [256, 512],
        "hop_sizes": [64, 100],
        "win_lengths": [200, 512],
        "lin_mag_weight": 0.5,
        "sc_weight": 2.0,
    }
    ours = build(registry, {"type": "multi_resolution_stft", "window": "hamming", **options})
    ref = auraloss.freq.MultiResolutionSTFTLoss(
        fft_sizes=options["fft_sizes"],
        hop_sizes=options["hop_sizes"],
        win_lengths=options["win_lengths"],
        window="hamming_window",
        w_sc=2.0,
        w_lin_mag=0.5,
    )
    x1, x2 = pred.clone().requires_grad_(), pred.clone().requires_grad_()
    ours_value, ref_value = ours(out(x1), target), ref(x2, target)
    assert_rel(ours_value, ref_value)
    ours_value.backward()
    ref_value.backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-4, atol=1e-9)


# --- DAC's mel loss ------------------------------------------------------------------------------


def slaney_mel_filters(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    """librosa.filters.mel's defaults (Slaney scale and area norm), written out as an oracle."""

    def hz_to_mel(f):
        f = np.asarray(f, dtype=np.float64)
        lin = f / (200.0 / 3)
        log = 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
        return np.where(f >= 1000.0, log, lin)

    def mel_to_hz(m):
        lin = m * (200.0 / 3)
        log = 1000.0 * np.exp(np.log(6.4) / 27.0 * (m - 15.0))
        return np.where(m >= 15.0, log, lin)

    fft_freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sr / 2), n_mels + 2))
    fdiff, ramps = np.diff(mel_f), mel_f[:, None] - fft_freqs[None, :]
    lower, upper = -ramps[:-2] / fdiff[:-1, None], ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    return weights * (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]


def dac_mel_oracle(pred, target, windows, n_mels, sr, eps=1e-5):
    total = 0.0
    for win, mels in zip(windows, n_mels, strict=True):
        fb = torch.from_numpy(slaney_mel_filters(sr, win, mels)).float()

        def mel(x, win=win, fb=fb):
            spec = torch.stft(
                x.reshape(-1, x.shape[-1]), win, win // 4, window=torch.hann_window(win),
                return_complex=True,
            )  # fmt: skip
            return fb @ spec.abs()

        total += (mel(pred).clamp(eps).log10() - mel(target).clamp(eps).log10()).abs().mean()
    return total


@pytest.mark.parametrize("channels", [1, 2])
def test_mel_matches_dac_definition(registry, channels):
    pred, target = pair(channels, length=4000)
    windows, n_mels = [32, 64, 128, 256, 512, 1024, 2048], [5, 10, 20, 40, 80, 160, 320]
    ours = build(registry, {"type": "mel"}, sample_rate=44100)
    expected = dac_mel_oracle(pred, target, windows, n_mels, 44100)
    assert_rel(ours(out(pred), target), expected, rtol=1e-4)


def test_mel_magnitude_term_and_power(registry):
    pred, target = pair(1, length=2000)
    base = {"type": "mel", "window_lengths": [128, 256], "n_mels": [16, 32]}
    log_only = build(registry, base)(out(pred), target)
    both = build(registry, {**base, "mag_weight": 1.0})(out(pred), target)
    mag_only = build(registry, {**base, "mag_weight": 1.0, "log_weight": 0.0})(out(pred), target)
    squared = build(registry, {**base, "power": 2.0})(out(pred), target)
    assert mag_only > 0
    assert_rel(both, log_only + mag_only)
    assert_rel(squared, 2 * log_only)  # log10(m²) = 2·log10(m)


# --- every loss: identity, silence, autocast -----------------------------------------------------


@pytest.mark.parametrize("name", RECONSTRUCTION)
def test_zero_for_a_perfect_reconstruction_and_positive_otherwise(registry, name):
    pred, target = pair(2, length=3000)
    loss = build(registry, {"type": name})
    assert float(loss(out(target.clone()), target)) == pytest.approx(0.0, abs=1e-6)
    assert float(loss(out(pred), target)) > 0.01


@pytest.mark.parametrize("name", RECONSTRUCTION)
@pytest.mark.parametrize("silent", ["both", "prediction", "target"])
def test_finite_values_and_gradients_at_silence(registry, name, silent):
    pred, target = pair(2, length=3000)
    if silent in ("both", "prediction"):
        pred = torch.zeros_like(pred)
    if silent in ("both", "target"):
        target = torch.zeros_like(target)
    pred.requires_grad_()
    value = build(registry, {"type": name})(out(pred), target)
    value.backward()
    assert torch.isfinite(value)
    assert torch.isfinite(pred.grad).all()


@pytest.mark.parametrize("name", RECONSTRUCTION)
def test_bf16_autocast_computes_in_float32(registry, name):
    pred, target = pair(2, length=3000)
    loss = build(registry, {"type": name})
    low = pred.bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(out(low), target.bfloat16())
    value.backward()
    assert value.dtype == torch.float32
    # the same as float32 maths on the bf16-rounded audio: nothing ran in bf16 inside
    reference = loss(out(low.detach().float()), target.bfloat16().float())
    assert_rel(value, reference, rtol=1e-6)
    assert low.grad is not None and torch.isfinite(low.grad.float()).all()


# --- RAVE's multiscale spectral distance ---------------------------------------------------------


def test_multiscale_spectral_matches_rave_definition(registry):
    pred, target = pair(2, length=3000)
    scales, eps = [512, 256, 128], 1e-7
    ours = build(registry, {"type": "multiscale_spectral", "scales": scales})
    expected = 0.0
    for s in scales:

        def mag(x, s=s):
            x = x.reshape(-1, x.shape[-1])
            return torch.stft(x, s, s // 4, window=torch.hann_window(s), return_complex=True).abs()

        x, y = mag(target), mag(pred)
        expected += ((x - y) ** 2).mean() / (x**2).mean()
        expected += ((x + eps).log() - (y + eps).log()).abs().mean()
    assert_rel(ours(out(pred), target), expected, rtol=1e-5)


# --- term and l1 --------------------------------------------------------------------------------


def test_l1_is_the_mean_absolute_error(registry):
    pred, target = pair(2, length=100)
    assert_rel(build(registry, {"type": "l1"})(out(pred), target), (pred - target).abs().mean())


def test_term_picks_the_named_term(registry):
    x = torch.zeros(1, 1, 10)
    kl, vq = torch.tensor(0.25, requires_grad=True), torch.tensor([1.0, 3.0])
    picked = build(registry, {"type": "term"})(out(x, kl=kl, vq=vq), x)
    assert picked.item() == 0.25
    assert build(registry, {"type": "term", "name": "vq"})(out(x, kl=kl, vq=vq), x).item() == 2.0
    picked.backward()
    assert kl.grad == 1.0


def test_missing_term_names_the_available_ones(registry):
    x = torch.zeros(1, 1, 10)
    loss = build(registry, {"type": "term", "name": "kl"})
    with pytest.raises(LyraError, match=r"no term 'kl'; available terms: commitment, vq"):
        loss(out(x, vq=torch.tensor(1.0), commitment=torch.tensor(2.0)), x)
    with pytest.raises(LyraError, match="available terms: none"):
        loss(out(x), x)


# --- weights, specs and errors -------------------------------------------------------------------


def test_losses_are_unweighted(registry):
    # the trainer applies weight × schedule(step); the module's value ignores both
    pred, target = pair(1, length=2000)
    data = {"type": "mel", "weight": 15.0, "schedule": {"type": "linear", "end_step": 100}}
    spec = structure(data, LossRef, registry)
    assert spec.weight == 15.0 and spec.schedule.build(BuildContext())(50) == 0.5
    weighted = spec.build(BuildContext(registry=registry, sample_rate=SR))(out(pred), target)
    assert weighted.item() == build(registry, {"type": "mel"})(out(pred), target).item()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"type": "multi_resolution_stft", "fft_sizes": [1024, 512]}, "must have the same length"),
        ({"type": "multi_resolution_stft", "hop_sizes": [120, 0, 50]}, "positive integers"),
        ({"type": "multi_resolution_stft", "win_lengths": [600, 1200, 600]}, "longer than"),
        ({"type": "mel", "n_mels": [5]}, "must have the same length"),
        ({"type": "mel", "weight": -1}, "weight must be >= 0"),
        ({"type": "mel", "schedule": {"type": "linear", "end_step": 0}}, "end_step"),
        ({"type": "multiscale_spectral", "scales": []}, "must not be empty"),
    ],
)
def test_bad_specs_fail_with_their_json_path(registry, data, message):
    with pytest.raises(SpecError, match=message) as err:
        structure({"losses": [data]}, LossesOnly, registry)
    assert all(path.startswith("$.losses[0]") for path, _ in err.value.problems)


def test_mel_above_nyquist_is_a_build_error(registry):
    with pytest.raises(LyraError, match="f_max <= sample_rate / 2 = 8000"):
        build(registry, {"type": "mel", "f_max": 11025.0}, sample_rate=SR)


def test_shape_mismatch_and_short_audio_are_clear_errors(registry):
    loss = build(registry, {"type": "multi_resolution_stft"})
    with pytest.raises(LyraError, match=r"reconstruction \(2, 1, 4000\) and target \(2, 2, 4000\)"):
        loss(out(torch.zeros(2, 1, 4000)), torch.zeros(2, 2, 4000))
    with pytest.raises(LyraError, match="500 samples are too few for an FFT of 1024"):
        loss(out(torch.zeros(1, 1, 500)), torch.zeros(1, 1, 500))


@pytest.mark.parametrize("name", LOSSES)
def test_contract(registry, name):
    check_component(registry, "loss", name, BuildContext(registry=registry, sample_rate=SR))
