"""Augmentations: each does what its name says and nothing else, seeded and with its own p."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.signal import find_peaks, lfilter
from scipy.stats import beta, kstest

from lyra_core import BuildContext, LyraError, SpecError
from lyra_core.interfaces import Augmentation
from lyra_core.spec import structure
from lyra_core.testing import check_component
from lyra_plugins.augmentations import (
    AddNoiseSpec,
    DequantizeSpec,
    GainSpec,
    MixupSpec,
    PhaseMangleSpec,
    PitchShiftSpec,
    PolarityFlipSpec,
    RandomCropSpec,
    TimeStretchSpec,
    allpass_impulse_response,
)

RATE = 16000
NAMES = [
    "random_crop",
    "phase_mangle",
    "dequantize",
    "gain",
    "polarity_flip",
    "pitch_shift",
    "add_noise",
    "time_stretch",
    "mixup",
]


@pytest.fixture
def ctx(lyra_registry) -> BuildContext:
    return BuildContext(registry=lyra_registry, sample_rate=RATE, channels=2, segment_length=4096)


def batch(b: int = 8, c: int = 2, t: int = 4096, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.3 * torch.randn(b, c, t, generator=g)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def build(lyra_registry, ctx: BuildContext, name: str, **fields) -> Augmentation:
    if name == "random_crop":
        fields.setdefault("length", 3000)
    aug = lyra_registry.get("augmentation", name).spec(**fields).build(ctx)
    assert isinstance(aug, Augmentation)
    return aug


def rms_db(x: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(x.double().pow(2).mean(dim=(1, 2)))


@pytest.mark.parametrize("name", NAMES)
def test_contract(lyra_registry, ctx, name):
    check_component(lyra_registry, "augmentation", name, ctx)


@pytest.mark.parametrize("name", NAMES)
def test_p_zero_is_the_identity(lyra_registry, ctx, name):
    x = batch()
    fields = {"length": x.shape[-1]} if name == "random_crop" else {}
    y = build(lyra_registry, ctx, name, p=0.0, **fields)(x, gen())
    assert torch.equal(y, x)


@pytest.mark.parametrize("name", NAMES)
def test_the_same_seed_gives_the_same_batch(lyra_registry, ctx, name):
    aug = build(lyra_registry, ctx, name, p=0.5)
    x = batch(b=16)
    a, b, c = aug(x, gen(1)), aug(x, gen(1)), aug(x, gen(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # A generator carries on: a second batch from the same generator differs from the first.
    g = gen(1)
    assert not torch.equal(aug(x, g), aug(x, g))


@pytest.mark.parametrize("name", [n for n in NAMES if n != "random_crop"])
def test_only_the_chosen_examples_change(lyra_registry, ctx, name):
    x = batch(b=64)
    y = build(lyra_registry, ctx, name, p=0.5)(x, gen(3))
    assert y.shape == x.shape and y.dtype == x.dtype
    same = (y == x).flatten(1).all(dim=1)
    assert 16 <= int((~same).sum()) <= 48  # about half, with a wide margin
    assert torch.equal(y[same], x[same])


def test_gain_changes_the_rms_by_the_drawn_db_and_nothing_else(lyra_registry, ctx):
    x = batch()
    y = build(lyra_registry, ctx, "gain", min_db=3.0, max_db=3.0, p=1.0)(x, gen())
    torch.testing.assert_close(rms_db(y) - rms_db(x), torch.full((8,), 3.0, dtype=torch.float64))
    ratio = y / x  # one factor per example: the waveform is only scaled
    torch.testing.assert_close(ratio, torch.full_like(x, 10 ** (3 / 20)), rtol=1e-5, atol=0)
    x = batch(b=128)
    change = rms_db(build(lyra_registry, ctx, "gain", min_db=-6.0, max_db=6.0, p=1.0)(x, gen()))
    change -= rms_db(x)
    assert change.min() >= -6.0 - 1e-6 and change.max() <= 6.0 + 1e-6
    assert change.min() < -4.5 and change.max() > 4.5 and abs(change.mean()) < 1.0


def test_polarity_flip_negates(lyra_registry, ctx):
    x = batch()
    assert torch.equal(build(lyra_registry, ctx, "polarity_flip", p=1.0)(x, gen()), -x)


def test_dequantize_stays_within_one_step(lyra_registry, ctx):
    x = batch(b=4, t=65536)
    for bits in (8, 16):
        step = 2.0 / 2**bits
        noise = build(lyra_registry, ctx, "dequantize", bits=bits, p=1.0)(x, gen()) - x
        assert noise.abs().max() <= step / 2 * (1 + 1e-3)
        assert noise.std().item() == pytest.approx(step / math.sqrt(12), rel=0.02)  # uniform
        assert abs(noise.mean().item()) < step * 0.01


def test_add_noise_reaches_the_drawn_snr(lyra_registry, ctx):
    x = batch()
    y = build(lyra_registry, ctx, "add_noise", min_snr_db=20.0, max_snr_db=20.0, p=1.0)(x, gen())
    snr = rms_db(x) - rms_db(y - x)
    torch.testing.assert_close(snr, torch.full((8,), 20.0, dtype=torch.float64), atol=1e-3, rtol=0)
    noise = (y - x)[0].flatten()
    assert abs(noise.mean()) < 0.01 * noise.std()  # zero-mean white noise
    corr = torch.corrcoef(torch.stack([noise[:-1], noise[1:]]))[0, 1]
    assert abs(corr) < 0.05
    x = batch(b=128)
    y = build(lyra_registry, ctx, "add_noise", min_snr_db=10.0, max_snr_db=30.0, p=1.0)(x, gen())
    snr = rms_db(x) - rms_db(y - x)
    assert snr.min() >= 10.0 - 1e-3 and snr.max() <= 30.0 + 1e-3 and snr.max() - snr.min() > 15


def test_allpass_impulse_response_matches_lfilter_and_has_unit_magnitude():
    r = 0.99
    freqs = torch.tensor([20.0, 137.0, 2000.0, 5000.0])
    omega = 2 * math.pi * freqs / RATE
    h = allpass_impulse_response(omega, r, 4000)
    impulse = np.zeros(4000)
    impulse[0] = 1.0
    for w, response in zip(omega.tolist(), h, strict=True):
        a = [1.0, -2 * r * math.cos(w), r * r]
        np.testing.assert_allclose(response.numpy(), lfilter(a[::-1], a, impulse), atol=1e-12)
        magnitude = np.abs(np.fft.rfft(response.numpy(), 1 << 16))
        np.testing.assert_allclose(magnitude, 1.0, atol=1e-6)  # |H| = 1 at every frequency


def test_phase_mangle_is_an_allpass_filter_of_each_example(lyra_registry, ctx):
    x = batch(b=6, t=8192)
    x[..., 4096:] = 0.0  # silence at the end lets the filter's response die out
    y = build(lyra_registry, ctx, "phase_mangle", p=1.0)(x, gen())
    # |H| = 1: the energy (and the magnitude spectrum) of each example is kept...
    torch.testing.assert_close(rms_db(y), rms_db(x), atol=1e-3, rtol=0)
    spectrum = lambda s: torch.fft.rfft(s, 1 << 15).abs()  # noqa: E731
    torch.testing.assert_close(spectrum(y), spectrum(x), atol=2e-3, rtol=1e-3)
    # ...while the waveform changes: each example is lfilter(b, a) of the all-pass at the
    # frequency drawn for it (the draws, in order: one per example for p, then one for f).
    assert ((y - x).abs().amax(dim=(1, 2)) > 0.01).all()
    g = gen()
    torch.rand(6, generator=g, dtype=torch.float64)
    u = torch.rand(6, generator=g, dtype=torch.float64)
    freqs = torch.exp(math.log(20.0) + u * math.log(2000.0 / 20.0))
    for xi, yi, f in zip(x, y, freqs.tolist(), strict=True):
        w = 2 * math.pi * f / RATE
        a = [1.0, -2 * 0.99 * math.cos(w), 0.99**2]
        np.testing.assert_allclose(yi.numpy(), lfilter(a[::-1], a, xi.numpy()), atol=1e-5)


def test_phase_mangle_frequencies_must_be_below_nyquist(lyra_registry, ctx):
    with pytest.raises(LyraError, match="not below the Nyquist"):
        PhaseMangleSpec(max_frequency=9000.0).build(ctx)


def test_random_crop_takes_contiguous_slices_at_random_offsets(lyra_registry, ctx):
    x = torch.arange(4096.0).expand(16, 2, 4096).contiguous()
    y = build(lyra_registry, ctx, "random_crop", length=1000, p=1.0)(x, gen())
    assert y.shape == (16, 2, 1000)
    starts = y[:, 0, 0]
    torch.testing.assert_close(y, starts[:, None, None] + torch.arange(1000.0).expand(16, 2, -1))
    assert starts.max() <= 3096 and len(set(starts.tolist())) > 10
    fixed = build(lyra_registry, ctx, "random_crop", length=1000, p=0.0)(x, gen())
    assert torch.equal(fixed, x[..., :1000])  # unchosen examples start at 0
    with pytest.raises(LyraError, match="longer than the batch's 4096 samples"):
        build(lyra_registry, ctx, "random_crop", length=5000)(x, gen())


def dominant_frequency(x: torch.Tensor) -> float:
    window = torch.hann_window(x.shape[-1], dtype=torch.float64)
    power = torch.fft.rfft(x.double() * window, 1 << 18).abs()
    return power.argmax().item() * RATE / (1 << 18)


def test_pitch_shift_moves_the_pitch_within_range_and_keeps_the_length(lyra_registry, ctx):
    t = torch.arange(8192) / RATE
    sine = torch.sin(2 * math.pi * 440.0 * t).float()
    x = sine.expand(12, 2, -1).contiguous()
    y = build(lyra_registry, ctx, "pitch_shift", semitones=3.0, p=1.0)(x, gen())
    assert y.shape == x.shape
    pitches = [dominant_frequency(example[0, :6000]) for example in y]
    low, high = 440.0 * 2 ** (-3 / 12), 440.0 * 2 ** (3 / 12)
    assert all(low - 1 <= f <= high + 1 for f in pitches)
    assert max(pitches) - min(pitches) > 40  # different examples, different shifts
    assert all(torch.equal(example[0], example[1]) for example in y)  # channels move together
    # A shift too small to express as a fraction with a small denominator leaves the audio be.
    tiny = build(lyra_registry, ctx, "pitch_shift", semitones=0.001, p=1.0)(x, gen())
    assert torch.equal(tiny, x)


@pytest.mark.parametrize(
    ("spec", "data", "message"),
    [
        (GainSpec, {"min_db": 6.0, "max_db": -6.0}, "min_db \\(6.0\\) is above max_db"),
        (AddNoiseSpec, {"min_snr_db": 40.0, "max_snr_db": 10.0}, "min_snr_db"),
        (PolarityFlipSpec, {"p": 1.5}, "p must be in \\[0, 1\\], got 1.5"),
        (DequantizeSpec, {"bits": 0}, "bits must be positive"),
        (PhaseMangleSpec, {"r": 1.0}, "r must be in \\(0, 0.999\\]"),
        (PitchShiftSpec, {"semitones": 12.0}, "semitones must be below 12"),
        (RandomCropSpec, {"length": -3}, "length must be positive"),
        (TimeStretchSpec, {"min_factor": 1.2, "max_factor": 1.1}, "min_factor \\(1.2\\) is above"),
        (TimeStretchSpec, {"max_factor": 3.0}, "max_factor must be in \\(0.5, 2\\], got 3.0"),
        (TimeStretchSpec, {"n_fft": 8}, "n_fft must be at least 16"),
        (MixupSpec, {"alpha": 0.0}, "alpha must be in \\(0, 100\\], got 0.0"),
    ],
)
def test_bad_settings_are_spec_errors(lyra_registry, spec, data, message):
    with pytest.raises(SpecError, match=message):
        structure(data, spec, lyra_registry)


def test_a_batch_of_the_wrong_rank_is_a_clear_error(lyra_registry, ctx):
    with pytest.raises(LyraError, match=r"expected audio \[B, C, T\], got \(2, 100\)"):
        build(lyra_registry, ctx, "gain", p=1.0)(torch.zeros(2, 100), gen())


# -- time_stretch ------------------------------------------------------------------------------


def stretch(lyra_registry, ctx, x: torch.Tensor, factor: float, **fields) -> torch.Tensor:
    fields = {"min_factor": factor, "max_factor": factor, "p": 1.0} | fields
    return build(lyra_registry, ctx, "time_stretch", **fields)(x, gen())


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_time_stretch_keeps_the_pitch_and_the_length(lyra_registry, ctx, factor):
    t = torch.arange(8192) / RATE
    x = torch.sin(2 * math.pi * 440.0 * t).expand(3, 2, -1).contiguous()
    y = stretch(lyra_registry, ctx, x, factor)
    assert y.shape == x.shape and y.dtype == x.dtype
    # One FFT bin of the measured length, away from the mirrored end of a shortened example.
    bin_hz = RATE / 6000
    assert all(abs(dominant_frequency(e[0, :6000]) - 440.0) <= bin_hz for e in y)
    assert all(torch.equal(e[0], e[1]) for e in y)  # channels are stretched alike
    assert not torch.allclose(y, x, atol=0.1)


def click_spacing(x: torch.Tensor) -> float:
    """The typical spacing of the clicks in [T] audio: the median gap between the peaks of its
    energy envelope (a phase vocoder smears clicks and weakens some, so a few may be missed)."""
    envelope = torch.nn.functional.avg_pool1d(x.pow(2)[None, None], 255, 1, 127)[0, 0]
    peaks, _ = find_peaks(envelope.numpy(), distance=1000, height=0.1 * envelope.max().item())
    assert len(peaks) >= 8
    return float(np.median(np.diff(peaks)))


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_time_stretch_scales_the_spacing_of_a_click_train(lyra_registry, ctx, factor):
    x = torch.zeros(1, 1, 32768)
    x[..., 1000::2000] = 1.0  # a click every 2000 samples, far longer than the 256 window
    assert click_spacing(x[0, 0]) == 2000.0
    y = stretch(lyra_registry, ctx, x, factor, n_fft=256)[0, 0]
    kept = y[: round(0.9 * 32768 * min(factor, 1.0))]  # before a shortened one's mirror image
    assert click_spacing(kept) == pytest.approx(2000.0 * factor, rel=0.015)


def test_time_stretch_needs_a_batch_longer_than_its_window(lyra_registry, ctx):
    aug = build(lyra_registry, ctx, "time_stretch", n_fft=4096, p=1.0)
    with pytest.raises(LyraError, match="n_fft 4096 is not shorter than the batch's 4096"):
        aug(batch(), gen())


# -- mixup -------------------------------------------------------------------------------------


def mixture_of(y: torch.Tensor, x: torch.Tensor, rows: list[int]) -> tuple[list[int], list[float]]:
    """For each y[k] (a changed x[rows[k]]), the other row j of `x` and the weight λ with
    y[k] = λ·x_i + (1 − λ)·x_j: least squares against every candidate j, the best fit kept."""
    partners, weights = [], []
    x = x.double().flatten(1)
    for row, i in zip(y.double().flatten(1), rows, strict=True):
        d = x[i] - x  # y − x_j = λ·(x_i − x_j), one j per row
        lam = (d * (row - x)).sum(1) / (d * d).sum(1).clamp_min(1e-30)
        residual = (row - x - lam[:, None] * d).abs().amax(1)
        residual[i] = math.inf
        j = int(residual.argmin())
        assert residual[j] < 1e-5, f"row {i} is no mixture of two rows"
        partners.append(j)
        weights.append(float(lam[j]))
    return partners, weights


def test_mixup_mixes_each_example_with_another_by_a_folded_beta_weight(lyra_registry, ctx):
    x = batch(b=256, c=2, t=64)
    y = build(lyra_registry, ctx, "mixup", alpha=0.4, p=1.0)(x, gen(5))
    partners, weights = mixture_of(y, x, list(range(256)))
    assert sorted(partners) == list(range(256))  # each example is someone's partner once
    assert all(0.5 <= w <= 1.0 for w in weights)
    # The drawn weights follow max(λ, 1 − λ), λ ~ Beta(0.4, 0.4): its CDF is 2F(w) − 1.
    folded = lambda w: 2.0 * beta.cdf(w, 0.4, 0.4) - 1.0  # noqa: E731
    assert kstest(weights, folded).pvalue > 0.01
    # ... and come from the generator in order: p draws, the permutation, then the weights.
    g = gen(5)
    torch.rand(256, generator=g, dtype=torch.float64)
    torch.randperm(256, generator=g)
    u = torch.rand(256, generator=g, dtype=torch.float64).numpy()
    expected = beta.ppf(0.5 + 0.5 * u, 0.4, 0.4)
    np.testing.assert_allclose(weights, expected, atol=1e-4)


def test_mixup_mixes_only_chosen_examples_and_leaves_a_batch_of_one(lyra_registry, ctx):
    x = batch(b=64, t=256)
    y = build(lyra_registry, ctx, "mixup", alpha=1.0, p=0.5)(x, gen(2))
    same = (y == x).flatten(1).all(dim=1)
    assert 16 <= int((~same).sum()) <= 48
    mixture_of(y[~same], x, (~same).nonzero().squeeze(1).tolist())  # of the batch as it came
    one = batch(b=1)
    assert torch.equal(build(lyra_registry, ctx, "mixup", p=1.0)(one, gen()), one)
