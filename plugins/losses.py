"""Losses: spectral and waveform reconstruction distances, and the bottleneck's named terms.

Contract (kind `loss`): `build(ctx)` returns a module called as `loss(output, target)` with a
`ModelOutput` and the target audio [B, C, T]; it returns an unweighted scalar. Every loss spec has
`weight` and `schedule`: the trainer multiplies the value by `weight * schedule(step)`, once.

Spectra are computed in float32 with autocast off, so the losses work under bf16/fp16 autocast;
channels are folded into the batch (as auraloss and DAC do). Magnitudes are floored before any
log, so silence gives finite values and gradients (auraloss issue 63).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import attrs
import torch
import torch.nn.functional as F
from torch import nn
from torchaudio.transforms import MelSpectrogram, Spectrogram

from lyra_core import BuildContext, LyraError, WeightScheduleRef, hookimpl, param
from lyra_core.interfaces import ModelOutput
from lyra_core.validators import (
    MAX_SAMPLE_RATE,
    MAX_SAMPLES,
    between,
    non_negative,
    positive,
    positive_ints,
)

MAX_RESOLUTIONS = 16

Window = Literal["hann", "hamming", "blackman", "bartlett"]


# --- validators ----------------------------------------------------------------------------------


def _same_lengths(spec: object, names: Sequence[str]) -> None:
    lengths = {n: len(getattr(spec, n)) for n in names}
    if len(set(lengths.values())) > 1:
        listing = ", ".join(f"{n} has {k}" for n, k in lengths.items())
        raise ValueError(f"{', '.join(names)} must have the same length ({listing})")


# --- shared spec fields and module base ---------------------------------------------------------


@attrs.frozen(kw_only=True)
class LossSpec:
    """The fields every built-in loss has; the trainer applies them, the loss never does."""

    weight: float = param(
        1.0, doc="constant factor the trainer applies to this loss", validator=non_negative
    )
    schedule: WeightScheduleRef | None = param(
        None, doc="weight schedule over steps, multiplied with weight (null: constant)"
    )


class ReconstructionLoss(nn.Module):
    """Compares `output.reconstruction` with the target through `distance`, in float32.

    `distance(prediction, target)` is the same measure on plain float32 [B, C, T] tensors, for
    callers that have no `ModelOutput` (metrics, benchmarks).
    """

    name = "loss"

    def forward(self, output: ModelOutput, target: torch.Tensor) -> torch.Tensor:
        prediction = output.reconstruction
        if prediction.shape != target.shape:
            raise LyraError(
                f"{self.name} loss: reconstruction {tuple(prediction.shape)} and target "
                f"{tuple(target.shape)} differ in shape; expected both [B, C, T]"
            )
        if prediction.dim() != 3:
            raise LyraError(f"{self.name} loss: expected [B, C, T] audio, got {prediction.dim()}-d")
        with torch.autocast(prediction.device.type, enabled=False):
            return self.distance(prediction.float(), target.float())

    def distance(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def _check_length(loss: str, samples: int, n_fft: int) -> None:
    # center=True reflect-pads n_fft // 2 on each side, which needs more samples than that.
    if samples <= n_fft // 2:
        raise LyraError(
            f"{loss} loss: {samples} samples are too few for an FFT of {n_fft} "
            f"(needs more than {n_fft // 2}); use longer segments or smaller FFT sizes"
        )


# --- multi-resolution STFT (auraloss) ------------------------------------------------------------


class MultiResolutionSTFTLoss(ReconstructionLoss):
    """Mean over resolutions of spectral convergence + mean |log|X̂| − log|X||."""

    name = "multi_resolution_stft"

    def __init__(self, spec: MultiResolutionSTFTSpec):
        super().__init__()
        self.resolutions = list(zip(spec.fft_sizes, spec.hop_sizes, spec.win_lengths, strict=True))
        make_window = getattr(torch, f"{spec.window}_window")
        for _, _, win in self.resolutions:
            self.register_buffer(f"window_{win}", make_window(win), persistent=False)
        self.floor = math.sqrt(spec.eps)  # sqrt(clamp(re² + im², eps)) == clamp(|X|, sqrt(eps))
        self.weights = (spec.sc_weight, spec.log_mag_weight, spec.lin_mag_weight)

    def magnitude(self, x: torch.Tensor, n_fft: int, hop: int, win: int) -> torch.Tensor:
        window = getattr(self, f"window_{win}")
        spec = torch.stft(x, n_fft, hop, win, window, center=True, return_complex=True)
        return spec.abs().clamp_min(self.floor)

    def distance(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x = prediction.reshape(-1, prediction.shape[-1])
        y = target.reshape(-1, target.shape[-1])
        sc_weight, log_weight, lin_weight = self.weights
        total = x.new_zeros(())
        for n_fft, hop, win in self.resolutions:
            _check_length(self.name, x.shape[-1], n_fft)
            x_mag, y_mag = self.magnitude(x, n_fft, hop, win), self.magnitude(y, n_fft, hop, win)
            if sc_weight:
                sc = torch.linalg.vector_norm(y_mag - x_mag) / torch.linalg.vector_norm(y_mag)
                total = total + sc_weight * sc
            if log_weight:
                total = total + log_weight * F.l1_loss(x_mag.log(), y_mag.log())
            if lin_weight:
                total = total + lin_weight * F.l1_loss(x_mag, y_mag)
        return total / len(self.resolutions)


@attrs.frozen(kw_only=True)
class MultiResolutionSTFTSpec(LossSpec):
    """Multi-resolution STFT loss: spectral convergence + log-magnitude L1 (auraloss's defaults)."""

    fft_sizes: tuple[int, ...] = param(
        (1024, 2048, 512),
        doc="FFT size per resolution",
        validator=positive_ints(MAX_SAMPLES, max_items=MAX_RESOLUTIONS),
    )
    hop_sizes: tuple[int, ...] = param(
        (120, 240, 50),
        doc="hop per resolution (samples)",
        validator=positive_ints(MAX_SAMPLES, max_items=MAX_RESOLUTIONS),
    )
    win_lengths: tuple[int, ...] = param(
        (600, 1200, 240),
        doc="window length per resolution",
        validator=positive_ints(MAX_SAMPLES, max_items=MAX_RESOLUTIONS),
    )
    window: Window = param("hann", doc="analysis window (periodic), zero-padded to the FFT size")
    sc_weight: float = param(1.0, doc="weight of the spectral convergence term")
    log_mag_weight: float = param(1.0, doc="weight of the log-magnitude L1 term")
    lin_mag_weight: float = param(0.0, doc="weight of the linear-magnitude L1 term")
    eps: float = param(
        1e-8, doc="floor of the power |X|² before the square root", validator=positive
    )

    def __attrs_post_init__(self) -> None:
        _same_lengths(self, ("fft_sizes", "hop_sizes", "win_lengths"))
        for n_fft, win in zip(self.fft_sizes, self.win_lengths, strict=True):
            if win > n_fft:
                raise ValueError(f"win_lengths: window {win} is longer than its FFT size {n_fft}")

    def build(self, ctx: BuildContext) -> nn.Module:
        return MultiResolutionSTFTLoss(self)


# --- multi-scale mel (DAC) -----------------------------------------------------------------------


class LogMagnitudeLoss(ReconstructionLoss):
    """Sum over scales of log_weight·L1(log10 S^power) + mag_weight·L1(S) of magnitude spectra S.

    The spectra are one transform per window length (hop a quarter window); DAC's mel and STFT
    distances are this with mel or plain magnitude spectrograms.
    """

    def __init__(self, spec: MelSpec | STFTSpec, spectra: list[nn.Module]):
        super().__init__()
        self.spec = spec
        self.spectra = nn.ModuleList(spectra)

    def log(self, magnitude: torch.Tensor) -> torch.Tensor:
        return magnitude.clamp_min(self.spec.clamp_eps).pow(self.spec.power).log10()

    def distance(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x = prediction.reshape(-1, prediction.shape[-1])
        y = target.reshape(-1, target.shape[-1])
        total = x.new_zeros(())
        for spectrum, win in zip(self.spectra, self.spec.window_lengths, strict=True):
            _check_length(self.name, x.shape[-1], win)
            x_mag, y_mag = spectrum(x), spectrum(y)
            if self.spec.log_weight:
                total = total + self.spec.log_weight * F.l1_loss(self.log(x_mag), self.log(y_mag))
            if self.spec.mag_weight:
                total = total + self.spec.mag_weight * F.l1_loss(x_mag, y_mag)
        return total


class MelLoss(LogMagnitudeLoss):
    """DAC's multi-scale mel distance: Slaney mel spectrograms of magnitude (power 1)."""

    name = "mel"

    def __init__(self, spec: MelSpec, sample_rate: int):
        mels = [
            MelSpectrogram(
                sample_rate,
                n_fft=win,
                hop_length=win // 4,
                f_min=spec.f_min,
                f_max=spec.f_max,
                n_mels=n_mels,
                power=1.0,
                norm="slaney",
                mel_scale="slaney",
            )
            for win, n_mels in zip(spec.window_lengths, spec.n_mels, strict=True)
        ]
        super().__init__(spec, mels)


def _quarter_hops(spec: MelSpec | STFTSpec) -> None:
    if any(w < 4 for w in spec.window_lengths):
        raise ValueError("window_lengths must be at least 4 (the hop is a quarter window)")


@attrs.frozen(kw_only=True)
class MelSpec(LossSpec):
    """Multi-scale log-mel L1 (DAC): windows 32…2048, hop w/4, Slaney mel filters, summed."""

    window_lengths: tuple[int, ...] = param(
        (32, 64, 128, 256, 512, 1024, 2048),
        doc="FFT/window size per scale; hop is a quarter",
        validator=positive_ints(MAX_SAMPLES, max_items=MAX_RESOLUTIONS),
    )
    n_mels: tuple[int, ...] = param(
        (5, 10, 20, 40, 80, 160, 320),
        doc="mel bands per scale",
        validator=positive_ints(MAX_SAMPLES, max_items=MAX_RESOLUTIONS),
    )
    f_min: float = param(0.0, doc="lowest mel frequency (Hz)", validator=non_negative)
    f_max: float | None = param(
        None,
        doc="highest mel frequency (Hz; null: sample_rate / 2)",
        validator=between(0, MAX_SAMPLE_RATE, low_open=True),
    )
    clamp_eps: float = param(
        1e-5, doc="floor of the mel magnitude before the log", validator=positive
    )
    power: float = param(1.0, doc="exponent of the clamped mel before log10 (DAC: 1)")
    log_weight: float = param(1.0, doc="weight of the log-mel L1 term")
    mag_weight: float = param(0.0, doc="weight of the linear mel L1 term (DAC's config: 0)")

    def __attrs_post_init__(self) -> None:
        _same_lengths(self, ("window_lengths", "n_mels"))
        _quarter_hops(self)

    def build(self, ctx: BuildContext) -> nn.Module:
        nyquist = ctx.sample_rate / 2
        f_max = nyquist if self.f_max is None else self.f_max
        if not self.f_min < f_max <= nyquist:
            raise LyraError(
                f"mel loss: need f_min < f_max <= sample_rate / 2 = {nyquist:g} Hz, "
                f"got f_min={self.f_min:g}, f_max={f_max:g}"
            )
        return MelLoss(self, ctx.sample_rate)


# --- multi-scale STFT magnitude (DAC) ------------------------------------------------------------


class STFTLoss(LogMagnitudeLoss):
    """DAC's multi-scale STFT distance: magnitude spectrograms (periodic Hann)."""

    name = "stft"

    def __init__(self, spec: STFTSpec):
        stfts = [Spectrogram(n_fft=w, hop_length=w // 4, power=1.0) for w in spec.window_lengths]
        super().__init__(spec, stfts)


@attrs.frozen(kw_only=True)
class STFTSpec(LossSpec):
    """Multi-scale STFT magnitude distance (DAC's MultiScaleSTFTLoss): log10 and linear L1."""

    window_lengths: tuple[int, ...] = param(
        (2048, 512),
        doc="FFT/window size per scale (periodic Hann); hop is a quarter",
        validator=positive_ints(MAX_SAMPLES, max_items=MAX_RESOLUTIONS),
    )
    clamp_eps: float = param(1e-5, doc="floor of the magnitude before the log", validator=positive)
    power: float = param(
        2.0,
        doc="exponent of the clamped magnitude before log10 (DAC: 2)",
        validator=between(0, 8, low_open=True),
    )
    log_weight: float = param(
        1.0, doc="weight of the log-magnitude L1 term", validator=non_negative
    )
    mag_weight: float = param(
        1.0, doc="weight of the linear-magnitude L1 term", validator=non_negative
    )

    def __attrs_post_init__(self) -> None:
        _quarter_hops(self)

    def build(self, ctx: BuildContext) -> nn.Module:
        return STFTLoss(self)


# --- RAVE's multi-scale spectral distance ---------------------------------------------------------


class MultiScaleSpectralLoss(ReconstructionLoss):
    """Sum over scales of mean((X−X̂)²)/mean(X²) + mean |ln(X + ε) − ln(X̂ + ε)|."""

    name = "multiscale_spectral"

    def __init__(self, spec: MultiScaleSpectralSpec):
        super().__init__()
        self.spec = spec
        self.stfts = nn.ModuleList(
            Spectrogram(n_fft=s, hop_length=s // 4, power=1.0) for s in spec.scales
        )

    def distance(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x = prediction.reshape(-1, prediction.shape[-1])
        y = target.reshape(-1, target.shape[-1])
        eps, total = self.spec.log_eps, x.new_zeros(())
        for stft, scale in zip(self.stfts, self.spec.scales, strict=True):
            _check_length(self.name, x.shape[-1], scale)
            x_mag, y_mag = stft(x), stft(y)
            relative = (y_mag - x_mag).square().mean() / (y_mag.square().mean() + self.spec.eps)
            total = total + relative + F.l1_loss((x_mag + eps).log(), (y_mag + eps).log())
        return total


@attrs.frozen(kw_only=True)
class MultiScaleSpectralSpec(LossSpec):
    """RAVE's spectral distance: relative squared error + log-magnitude L1 over 5 scales, summed."""

    scales: tuple[int, ...] = param(
        (2048, 1024, 512, 256, 128),
        doc="FFT/window sizes; hop is a quarter",
        validator=positive_ints(MAX_SAMPLES, max_items=MAX_RESOLUTIONS),
    )
    log_eps: float = param(1e-7, doc="ε added to magnitudes before the log", validator=positive)
    eps: float = param(
        1e-7,
        doc="added to the target's mean power (RAVE: none; keeps silence finite)",
        validator=non_negative,
    )

    def build(self, ctx: BuildContext) -> nn.Module:
        return MultiScaleSpectralLoss(self)


# --- waveform and bottleneck terms ---------------------------------------------------------------


class L1Loss(ReconstructionLoss):
    """Mean absolute error between the waveforms."""

    name = "l1"

    def distance(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(prediction, target)


@attrs.frozen(kw_only=True)
class L1Spec(LossSpec):
    """Waveform L1: mean |x̂ − x| over batch, channels and samples."""

    def build(self, ctx: BuildContext) -> nn.Module:
        return L1Loss()


class TermLoss(nn.Module):
    """Picks one of the bottleneck's named loss terms out of the model's output."""

    def __init__(self, term: str):
        super().__init__()
        self.term = term

    def forward(self, output: ModelOutput, target: torch.Tensor) -> torch.Tensor:
        if self.term not in output.terms:
            available = ", ".join(sorted(output.terms)) or "none"
            raise LyraError(
                f"term loss: the model's output has no term '{self.term}'; "
                f"available terms: {available}"
            )
        return output.terms[self.term].float().mean()


@attrs.frozen(kw_only=True)
class TermSpec(LossSpec):
    """A named term of the model's output, e.g. the bottleneck's `kl` (a tensor is averaged)."""

    name: str = param("kl", doc="the term's name in the model output (e.g. kl, commitment)")

    def build(self, ctx: BuildContext) -> nn.Module:
        return TermLoss(self.name)


@hookimpl
def lyra_register_components(registry) -> None:
    registry.add("loss", "multi_resolution_stft", MultiResolutionSTFTSpec)
    registry.add("loss", "mel", MelSpec)
    registry.add("loss", "multiscale_spectral", MultiScaleSpectralSpec)
    registry.add("loss", "stft", STFTSpec)
    registry.add("loss", "l1", L1Spec)
    registry.add("loss", "term", TermSpec)
