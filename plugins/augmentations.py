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


class PerExample(Augmentation):
    """Chooses examples with probability `p` and transforms only those (`apply`)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def apply(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.dim() != 3:
            raise LyraError(
                f"{type(self).__name__}: expected audio [B, C, T], got {tuple(x.shape)}"
            )
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
            if y.shape[-1] >= total:
                start = min(int(v * (y.shape[-1] - total + 1)), y.shape[-1] - total)
                y = y[:, start : start + total]
            else:  # pitched up: too short; fill the end with its mirror image
                y = torch.nn.functional.pad(y[None], (0, total - y.shape[-1]), mode="reflect")[0]
            out.append(y)
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


@hookimpl
def lyra_register_components(registry) -> None:
    registry.add("augmentation", "random_crop", RandomCropSpec)
    registry.add("augmentation", "phase_mangle", PhaseMangleSpec)
    registry.add("augmentation", "dequantize", DequantizeSpec)
    registry.add("augmentation", "gain", GainSpec)
    registry.add("augmentation", "polarity_flip", PolarityFlipSpec)
    registry.add("augmentation", "pitch_shift", PitchShiftSpec)
    registry.add("augmentation", "add_noise", AddNoiseSpec)
