"""Augmentations: batched random transforms of [B, C, T] audio on the training device.

Contract (kind `augmentation`): `build(ctx)` returns a `lyra_core.interfaces.Augmentation`, called
as `aug(x, generator)`. Each example is chosen with probability `p`; only chosen examples change.
Every random number comes from `generator`, so a seed gives the same batch on every run (draw on
the generator's device; put it on the training device to keep noise generation there).
"""

from __future__ import annotations

import math
from fractions import Fraction

import attrs
import torch
import torchaudio.functional as AF
from scipy.special import betaincinv

from lyra_core import BuildContext, LyraError, hookimpl, param
from lyra_core.interfaces import Augmentation
from lyra_core.validators import MAX_SAMPLE_RATE, MAX_SAMPLES, between, fraction, size


def _ordered(low: str, high: str):
    """A class validator: field `low` must not exceed field `high`."""

    def check(spec: object) -> None:
        if getattr(spec, low) > getattr(spec, high):
            raise ValueError(
                f"{low} ({getattr(spec, low)}) is above {high} ({getattr(spec, high)})"
            )

    return check


def rand(n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """`n` uniform numbers in [0, 1) from `generator` (float64), moved to `device`."""
    where = generator.device if generator is not None else torch.device("cpu")
    return torch.rand(n, generator=generator, device=where, dtype=torch.float64).to(device)


def _noise(shape: torch.Size, generator: torch.Generator | None, like: torch.Tensor, kind: str):
    where = generator.device if generator is not None else torch.device("cpu")
    draw = torch.rand if kind == "uniform" else torch.randn
    return draw(shape, generator=generator, device=where, dtype=like.dtype).to(like.device)


def _check_batch(module: Augmentation, x: torch.Tensor) -> None:
    if x.dim() != 3:
        raise LyraError(f"{type(module).__name__}: expected audio [B, C, T], got {tuple(x.shape)}")


def _fit_length(y: torch.Tensor, total: int, v: float) -> torch.Tensor:
    """[C, T'] cut to `total` samples at offset fraction `v`, or, when shorter, filled at the end
    with its mirror image."""
    if y.shape[-1] >= total:
        start = min(int(v * (y.shape[-1] - total + 1)), y.shape[-1] - total)
        return y[:, start : start + total]
    return torch.nn.functional.pad(y[None], (0, total - y.shape[-1]), mode="reflect")[0]


class PerExample(Augmentation):
    """Chooses examples with probability `p` and transforms only those (`apply`)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def apply(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_batch(self, x)
        if self.p == 0.0:
            return x
        chosen = (rand(x.shape[0], generator, x.device) < self.p).nonzero().squeeze(1)
        if chosen.numel() == 0:
            return x
        changed = self.apply(x[chosen], generator).to(x.dtype)
        return changed if chosen.numel() == x.shape[0] else x.index_copy(0, chosen, changed)


# -- random_crop -------------------------------------------------------------------------------


class RandomCrop(Augmentation):
    def __init__(self, length: int, p: float):
        super().__init__()
        self.length, self.p = length, p

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        batch, _, total = x.shape
        if self.length > total:
            raise LyraError(
                f"random_crop: length {self.length} is longer than the batch's {total} samples; "
                f"raise data.segment_length or lower the crop length"
            )
        span = total - self.length
        chosen = rand(batch, generator, x.device) < self.p
        offsets = (rand(batch, generator, x.device) * (span + 1)).floor().clamp(max=span).long()
        offsets = torch.where(chosen, offsets, torch.zeros_like(offsets)).tolist()
        return torch.stack([x[i, :, o : o + self.length] for i, o in enumerate(offsets)])


@attrs.frozen(kw_only=True)
class RandomCropSpec:
    """Crop `length` samples at a uniform random offset (unchosen examples: from the start)."""

    length: int = param(16384, doc="samples kept per example", validator=size(MAX_SAMPLES))
    p: float = param(1.0, doc="probability of a random offset", validator=fraction)

    def build(self, ctx: BuildContext) -> Augmentation:
        return RandomCrop(self.length, self.p)


# -- phase_mangle ------------------------------------------------------------------------------


def allpass_impulse_response(omega: torch.Tensor, r: float, taps: int) -> torch.Tensor:
    """Impulse responses [n, taps] of the 2nd-order all-passes with poles r·e^{±jω} (float64).

    H(z) = (r² − 2r·cos ω·z⁻¹ + z⁻²) / (1 − 2r·cos ω·z⁻¹ + r²·z⁻²). The response of 1/A(z) is
    g[n] = rⁿ·sin((n + 1)ω) / sin ω; then h[n] = r²·g[n] − 2r·cos ω·g[n − 1] + g[n − 2].
    """
    n = torch.arange(taps + 2, dtype=torch.float64, device=omega.device) - 2.0
    w = omega.to(torch.float64)[:, None]
    g = r**n * torch.sin((n + 1.0) * w) / torch.sin(w)
    g[:, :2] = 0.0  # g[-2] = g[-1] = 0
    return r * r * g[:, 2:] - 2.0 * r * torch.cos(w) * g[:, 1:-1] + g[:, :-2]


class PhaseMangle(PerExample):
    def __init__(self, low: float, high: float, r: float, sample_rate: int, p: float):
        super().__init__(p)
        self.low, self.high, self.r, self.sample_rate = low, high, r, sample_rate
        # Long enough that r^taps < 1e-8: the truncated tail carries no audible energy.
        self.taps = math.ceil(math.log(1e-8) / math.log(r)) + 64

    def apply(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        u = rand(x.shape[0], generator, x.device)
        freq = torch.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        h = allpass_impulse_response(2.0 * math.pi * freq / self.sample_rate, self.r, self.taps)
        # Causal filtering from rest (what lfilter does), as an FFT convolution.
        total = x.shape[-1]
        size = 1 << (total + self.taps - 1 - 1).bit_length()
        response = torch.fft.rfft(h.to(x.dtype), size)[:, None]
        return torch.fft.irfft(torch.fft.rfft(x, size) * response, size)[..., :total]


@attrs.frozen(kw_only=True)
class PhaseMangleSpec:
    """RAVE's random phase mangling: a 2nd-order all-pass at a log-uniform frequency (|H| = 1)."""

    min_frequency: float = param(
        20.0,
        doc="lowest all-pass frequency (Hz)",
        validator=between(0, MAX_SAMPLE_RATE, low_open=True),
    )
    max_frequency: float = param(
        2000.0,
        doc="highest all-pass frequency (Hz)",
        validator=between(0, MAX_SAMPLE_RATE, low_open=True),
    )
    r: float = param(
        0.99, doc="pole radius, in (0, 0.999]", validator=between(0, 0.999, low_open=True)
    )
    p: float = param(0.8, doc="probability per example", validator=fraction)

    def __attrs_post_init__(self) -> None:
        _ordered("min_frequency", "max_frequency")(self)
        if not 0.0 < self.r <= 0.999:
            raise ValueError(f"r must be in (0, 0.999], got {self.r}")

    def build(self, ctx: BuildContext) -> Augmentation:
        if self.max_frequency >= ctx.sample_rate / 2:
            raise LyraError(
                f"phase_mangle: max_frequency {self.max_frequency} Hz is not below the Nyquist "
                f"frequency ({ctx.sample_rate / 2} Hz)"
            )
        return PhaseMangle(self.min_frequency, self.max_frequency, self.r, ctx.sample_rate, self.p)


# -- dequantize --------------------------------------------------------------------------------


class Dequantize(PerExample):
    def __init__(self, bits: int, p: float):
        super().__init__(p)
        self.step = 2.0 / 2**bits  # one quantisation step of a `bits`-bit signal in [-1, 1)

    def apply(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return x + (_noise(x.shape, generator, x, "uniform") - 0.5) * self.step


@attrs.frozen(kw_only=True)
class DequantizeSpec:
    """Add uniform noise one quantisation step wide (±half a step) at `bits` bits."""

    bits: int = param(16, doc="bit depth whose step sets the noise width", validator=size(64))
    p: float = param(1.0, doc="probability per example", validator=fraction)

    def build(self, ctx: BuildContext) -> Augmentation:
        return Dequantize(self.bits, self.p)


# -- gain --------------------------------------------------------------------------------------


class Gain(PerExample):
    def __init__(self, low: float, high: float, p: float):
        super().__init__(p)
        self.low, self.high = low, high

    def apply(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        db = self.low + rand(x.shape[0], generator, x.device) * (self.high - self.low)
        return x * (10.0 ** (db / 20.0)).to(x.dtype)[:, None, None]


@attrs.frozen(kw_only=True)
class GainSpec:
    """Multiply each example by a gain drawn uniformly in dB (no clipping)."""

    min_db: float = param(-6.0, doc="lowest gain (dB)", validator=between(-120, 120))
    max_db: float = param(6.0, doc="highest gain (dB)", validator=between(-120, 120))
    p: float = param(0.5, doc="probability per example", validator=fraction)

    def __attrs_post_init__(self) -> None:
        _ordered("min_db", "max_db")(self)

    def build(self, ctx: BuildContext) -> Augmentation:
        return Gain(self.min_db, self.max_db, self.p)


# -- polarity_flip -----------------------------------------------------------------------------


class PolarityFlip(PerExample):
    def apply(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return -x


@attrs.frozen(kw_only=True)
class PolarityFlipSpec:
    """Negate the waveform."""

    p: float = param(0.5, doc="probability per example", validator=fraction)

    def build(self, ctx: BuildContext) -> Augmentation:
        return PolarityFlip(self.p)


# -- pitch_shift -------------------------------------------------------------------------------


class PitchShift(PerExample):
    def __init__(self, semitones: float, denominator: int, p: float):
        super().__init__(p)
        self.semitones, self.denominator = semitones, denominator

    def ratio(self, u: float) -> Fraction:
        """The pitch ratio for a uniform draw `u`, as a small fraction (cheap to resample by)."""
        exact = 2.0 ** ((2.0 * u - 1.0) * self.semitones / 12.0)
        return Fraction(exact).limit_denominator(self.denominator)

    def apply(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        total = x.shape[-1]
        draws = rand(2 * x.shape[0], generator, x.device).view(2, -1).tolist()
        out = []
        for example, u, v in zip(x, *draws, strict=True):
            ratio = self.ratio(u)
            # Read the example `ratio` times faster: pitch (and tempo) times `ratio`.
            y = AF.resample(example, ratio.numerator, ratio.denominator)
            out.append(_fit_length(y, total, v))  # pitched up: too short, mirrored at the end
        return torch.stack(out)


@attrs.frozen(kw_only=True)
class PitchShiftSpec:
    """Resample by a ratio near 1 (pitch and speed together) and crop back to the input length.

    Pitching up leaves fewer samples than came in: the end is filled with a mirror image; to avoid
    that, load longer segments and put random_crop after pitch_shift.
    """

    semitones: float = param(
        2.0, doc="largest shift either way (semitones)", validator=between(0, 48, low_open=True)
    )
    max_denominator: int = param(
        32, doc="ratios are fractions with at most this denominator", validator=size(1024)
    )
    p: float = param(0.5, doc="probability per example", validator=fraction)

    def __attrs_post_init__(self) -> None:
        if self.semitones >= 12.0:
            raise ValueError(f"semitones must be below 12, got {self.semitones}")

    def build(self, ctx: BuildContext) -> Augmentation:
        return PitchShift(self.semitones, self.max_denominator, self.p)


# -- add_noise ---------------------------------------------------------------------------------


class AddNoise(PerExample):
    def __init__(self, low: float, high: float, p: float):
        super().__init__(p)
        self.low, self.high = low, high

    def apply(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        snr = self.low + rand(x.shape[0], generator, x.device) * (self.high - self.low)
        noise = _noise(x.shape, generator, x, "normal")
        # Scaled by the drawn noise's own power, so each example gets exactly the drawn SNR.
        signal = torch.linalg.vector_norm(x, dim=(1, 2), dtype=torch.float64)
        drawn = torch.linalg.vector_norm(noise, dim=(1, 2), dtype=torch.float64).clamp_min(1e-30)
        scale = signal / drawn / 10.0 ** (snr / 20.0)
        return x + noise * scale.to(x.dtype)[:, None, None]


@attrs.frozen(kw_only=True)
class AddNoiseSpec:
    """Add white Gaussian noise at a signal-to-noise ratio drawn uniformly in dB."""

    min_snr_db: float = param(20.0, doc="lowest SNR (dB)", validator=between(-60, 200))
    max_snr_db: float = param(50.0, doc="highest SNR (dB)", validator=between(-60, 200))
    p: float = param(0.5, doc="probability per example", validator=fraction)

    def __attrs_post_init__(self) -> None:
        _ordered("min_snr_db", "max_snr_db")(self)

    def build(self, ctx: BuildContext) -> Augmentation:
        return AddNoise(self.min_snr_db, self.max_snr_db, self.p)


# -- time_stretch ------------------------------------------------------------------------------


class TimeStretch(PerExample):
    def __init__(self, low: float, high: float, n_fft: int, p: float):
        super().__init__(p)
        self.low, self.high, self.n_fft, self.hop = low, high, n_fft, n_fft // 4

    def apply(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        count, channels, total = x.shape
        if total <= self.n_fft:
            raise LyraError(
                f"time_stretch: n_fft {self.n_fft} is not shorter than the batch's {total} "
                f"samples; lower n_fft or raise data.segment_length"
            )
        draws = rand(2 * count, generator, x.device).view(2, -1)
        factors = (self.low + draws[0] * (self.high - self.low)).tolist()
        window = torch.hann_window(self.n_fft, device=x.device)
        spec = torch.stft(
            x.float().reshape(count * channels, total),
            self.n_fft,
            self.hop,
            window=window,
            return_complex=True,
        ).view(count, channels, self.n_fft // 2 + 1, -1)
        # Each bin's expected phase advance per hop: its centre frequency times the hop.
        advance = torch.linspace(0, math.pi * self.hop, spec.shape[-2], device=x.device)[:, None]
        out = []
        for example, factor, v in zip(spec, factors, draws[1].tolist(), strict=True):
            # phase_vocoder speeds up by `rate`: a duration `factor` times the input's.
            frames = AF.phase_vocoder(example, 1.0 / factor, advance)
            length = round(total * factor)
            y = torch.istft(frames, self.n_fft, self.hop, window=window, length=length)
            out.append(_fit_length(y, total, v))
        return torch.stack(out)


@attrs.frozen(kw_only=True)
class TimeStretchSpec:
    """Change each example's duration, not its pitch, by a factor drawn uniformly in
    [min_factor, max_factor] (a phase vocoder: STFT, torchaudio's phase_vocoder, inverse STFT),
    then cut it back to the batch's length: a longer result at a random offset, a shorter one
    filled at the end with its mirror image (to avoid that, load longer segments and put
    random_crop after time_stretch). Channels are stretched alike. Transients are smeared over
    about one STFT window, the phase vocoder's usual price.
    """

    min_factor: float = param(
        0.9,
        doc="shortest duration, as a multiple of the input's (below 1: faster)",
        validator=between(0.5, 2.0, low_open=True),
    )
    max_factor: float = param(
        1.1,
        doc="longest duration, as a multiple of the input's (above 1: slower)",
        validator=between(0.5, 2.0, low_open=True),
    )
    n_fft: int = param(
        2048,
        doc="STFT window length in samples (the hop is a quarter of it); longer windows keep "
        "tones cleaner, shorter ones keep transients sharper",
        validator=between(16, 65536, integer=True),
    )
    p: float = param(0.5, doc="probability per example", validator=fraction)

    def __attrs_post_init__(self) -> None:
        _ordered("min_factor", "max_factor")(self)

    def build(self, ctx: BuildContext) -> Augmentation:
        return TimeStretch(self.min_factor, self.max_factor, self.n_fft, self.p)


# -- mixup -------------------------------------------------------------------------------------


class Mixup(Augmentation):
    def __init__(self, alpha: float, p: float):
        super().__init__()
        self.alpha, self.p = alpha, p

    def weights(self, u: torch.Tensor) -> torch.Tensor:
        """max(λ, 1 − λ) for λ ~ Beta(α, α), from uniform draws `u` (float64): the inverse CDF
        of the folded distribution, F⁻¹((1 + u) / 2), so one draw gives one weight."""
        return torch.from_numpy(betaincinv(self.alpha, self.alpha, 0.5 + 0.5 * u.cpu().numpy()))

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_batch(self, x)
        batch = x.shape[0]
        if self.p == 0.0 or batch < 2:
            return x
        chosen = rand(batch, generator, x.device) < self.p
        where = generator.device if generator is not None else torch.device("cpu")
        order = torch.randperm(batch, generator=generator, device=where).to(x.device)
        # A random cycle through the batch: each example's partner is the next one in `order`,
        # so no example is mixed with itself and each is some example's partner once.
        partner = torch.empty_like(order)
        partner[order] = order.roll(-1)
        lam = self.weights(rand(batch, generator, x.device)).to(x.device, x.dtype)
        lam = torch.where(chosen, lam, torch.ones_like(lam))[:, None, None]
        mixed = lam * x + (1.0 - lam) * x[partner]
        return torch.where(chosen[:, None, None], mixed, x)


@attrs.frozen(kw_only=True)
class MixupSpec:
    """Mix each chosen example with another example of the batch: λ·x + (1 − λ)·partner, with
    λ ~ Beta(α, α) folded to max(λ, 1 − λ) so the example itself dominates. The partners follow
    a random cycle through the batch (nobody is mixed with itself); they are the examples as
    they came in, before any mixing. The augmented batch is both the model's input and its
    target, so the model learns to reconstruct the mixture. A batch of one is left as it is.
    """

    alpha: float = param(
        0.2,
        doc="the Beta distribution's α: small values keep λ near 1 (light mixing), large ones "
        "near 0.5 (even mixtures)",
        validator=between(0.0, 100.0, low_open=True),
    )
    p: float = param(0.5, doc="probability per example", validator=fraction)

    def build(self, ctx: BuildContext) -> Augmentation:
        return Mixup(self.alpha, self.p)


@hookimpl
def lyra_register_components(registry) -> None:
    registry.add("augmentation", "random_crop", RandomCropSpec)
    registry.add("augmentation", "phase_mangle", PhaseMangleSpec)
    registry.add("augmentation", "dequantize", DequantizeSpec)
    registry.add("augmentation", "gain", GainSpec)
    registry.add("augmentation", "polarity_flip", PolarityFlipSpec)
    registry.add("augmentation", "pitch_shift", PitchShiftSpec)
    registry.add("augmentation", "add_noise", AddNoiseSpec)
    registry.add("augmentation", "time_stretch", TimeStretchSpec)
    registry.add("augmentation", "mixup", MixupSpec)
