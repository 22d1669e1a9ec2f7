"""Discriminators: multi-scale (MSD), multi-period (MPD), multi-resolution spectral (MRSD), and
a `combined` list of any of them.

Contract (kind `discriminator`): `build(ctx)` returns a `lyra_core.interfaces.Discriminator`
whose `forward(x)` takes [B, C, T] audio and returns one `Critique` per sub-discriminator.
`Critique.features` holds every hidden layer's output (after its activation) and
`Critique.logits` the final conv's output, which is not repeated in `features` (feature
matching's `include_logits` decides whether it is matched too).

Stereo: the audio's channels are the first layer's input channels (`ctx.channels`; for MRSD,
the real and imaginary parts of each channel's STFT), so a discriminator judges the stereo
image as well as each channel; it rejects audio with another channel count.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Literal

import attrs
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

from lyra_core import (
    ActivationRef,
    BuildContext,
    BuildError,
    DiscriminatorRef,
    LyraError,
    hookimpl,
    param,
)
from lyra_core.interfaces import Critique, Discriminator
from lyra_core.validators import (
    MAX_CHANNELS,
    MAX_FACTOR,
    MAX_KERNEL,
    MAX_SAMPLES,
    EachCheck,
    between,
    each,
    odd,
    positive,
    positive_ints,
    size,
)
from lyra_plugins.activations import LeakyReLUSpec

MAX_LAYERS = 32  # hidden convs per stack, sub-discriminators

Norm = Literal["weight", "spectral", "none"]
NORM_DOC = "reparametrisation of every conv: weight norm, spectral norm, or none"
ACTIVATION_DOC = "activation after each hidden conv (LeakyReLU 0.1 in HiFi-GAN and DAC)"


def _leaky_relu() -> LeakyReLUSpec:
    return LeakyReLUSpec(negative_slope=0.1)


# --- validators ----------------------------------------------------------------------------------


def _band_edges(_: object, a: attrs.Attribute, edges: Sequence[float]) -> None:
    if len(edges) < 2 or edges[0] != 0 or edges[-1] != 1:
        raise ValueError(
            f"{a.name} must run from 0 to 1 (fractions of the bins), got {list(edges)}"
        )
    if any(lo >= hi for lo, hi in pairwise(edges)):
        raise ValueError(f"{a.name} must be strictly increasing, got {list(edges)}")


# --- shared pieces -------------------------------------------------------------------------------


def _normed(conv: nn.Module, norm: Norm) -> nn.Module:
    if norm == "weight":
        return weight_norm(conv)
    if norm == "spectral":
        return spectral_norm(conv)
    return conv


class _AnyRank(nn.Module):
    """Runs a [B, C, T] activation on [B, C, ...] maps by flattening the trailing axes."""

    def __init__(self, activation: nn.Module):
        super().__init__()
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(x.flatten(2)).reshape_as(x)


class ConvStack(nn.Module):
    """Hidden convs, each followed by the activation, then `post` (a conv to one logit channel,
    or the identity for MRSD's band stacks, whose outputs are joined before the post conv)."""

    def __init__(
        self,
        convs: Sequence[nn.Module],
        widths: Sequence[int],
        post: nn.Module,
        make_activation: Callable[[int], nn.Module],
    ):
        super().__init__()
        self.convs = nn.ModuleList(convs)
        self.activations = nn.ModuleList(_AnyRank(make_activation(w)) for w in widths)
        self.post = post

    def forward(self, x: torch.Tensor) -> Critique:
        features = []
        for conv, activation in zip(self.convs, self.activations, strict=True):
            x = activation(conv(x))
            features.append(x)
        return Critique(features, self.post(x))


class _Judge(Discriminator):
    """A discriminator that checks its input: [B, channels, T] audio."""

    def __init__(self, name: str, channels: int):
        super().__init__()
        self.name, self.channels = name, channels

    def check(self, x: torch.Tensor) -> None:
        if x.dim() != 3 or x.shape[1] != self.channels:
            raise LyraError(
                f"{self.name} discriminator: expected [B, {self.channels}, T] audio (built for "
                f"{self.channels} channel(s)), got {tuple(x.shape)}"
            )


def _activation_maker(spec: object, ctx: BuildContext) -> Callable[[int], nn.Module]:
    return lambda channels: spec.activation.build(ctx, channels=channels)


# --- MSD -----------------------------------------------------------------------------------------


class MultiScaleDiscriminator(_Judge):
    """One conv stack per scale; scale k sees the audio average-pooled k times (rate sr / 2^k)."""

    def __init__(self, spec: MSDSpec, ctx: BuildContext):
        super().__init__("msd", ctx.channels)
        if ctx.channels % spec.groups[0]:
            raise BuildError(
                "msd.groups[0]",
                f"the first conv's groups ({spec.groups[0]}) must divide the audio's "
                f"{ctx.channels} channel(s)",
            )
        self.pool = nn.AvgPool1d(4, 2, padding=2)
        self.stacks = nn.ModuleList(self._stack(spec, ctx) for _ in range(spec.scales))

    @staticmethod
    def _stack(spec: MSDSpec, ctx: BuildContext) -> ConvStack:
        widths = (ctx.channels, *spec.channels)
        layers = zip(
            widths[:-1], spec.channels, spec.kernel_sizes, spec.strides, spec.groups, strict=True
        )
        convs = [
            _normed(nn.Conv1d(cin, cout, k, s, padding=k // 2, groups=g), spec.norm)
            for cin, cout, k, s, g in layers
        ]
        post = _normed(nn.Conv1d(widths[-1], 1, 3, padding=1), spec.norm)
        return ConvStack(convs, spec.channels, post, _activation_maker(spec, ctx))

    def scale_inputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The audio each scale judges: x, then x pooled once, twice, ..."""
        inputs = [x]
        for _ in range(len(self.stacks) - 1):
            inputs.append(self.pool(inputs[-1]))
        return inputs

    def forward(self, x: torch.Tensor) -> list[Critique]:
        self.check(x)
        return [stack(s) for stack, s in zip(self.stacks, self.scale_inputs(x), strict=True)]


@attrs.frozen(kw_only=True)
class MSDSpec:
    """Multi-scale waveform discriminator (MelGAN/HiFi-GAN): grouped Conv1d stacks at 3 rates."""

    scales: int = param(
        3,
        doc="sub-discriminators; each after the first sees the audio downsampled 2× again "
        "by AvgPool1d(4, 2, padding=2)",
        validator=size(16),
    )
    channels: tuple[int, ...] = param(
        (128, 128, 256, 512, 1024, 1024, 1024),
        doc="output width of each hidden conv (HiFi-GAN's MSD)",
        validator=positive_ints(MAX_CHANNELS, max_items=MAX_LAYERS),
    )
    kernel_sizes: tuple[int, ...] = param(
        (15, 41, 41, 41, 41, 41, 5),
        doc="kernel of each hidden conv (odd)",
        validator=positive_ints(MAX_KERNEL, max_items=MAX_LAYERS, odd=True),
    )
    strides: tuple[int, ...] = param(
        (1, 2, 2, 4, 4, 1, 1),
        doc="stride of each hidden conv",
        validator=positive_ints(MAX_FACTOR, max_items=MAX_LAYERS),
    )
    groups: tuple[int, ...] = param(
        (1, 4, 16, 16, 16, 16, 1),
        doc="groups of each hidden conv; must divide its input and output widths",
        validator=positive_ints(MAX_CHANNELS, max_items=MAX_LAYERS),
    )
    norm: Norm = param("weight", doc=NORM_DOC)
    activation: ActivationRef = param(factory=_leaky_relu, doc=ACTIVATION_DOC)

    def __attrs_post_init__(self) -> None:
        names = ("channels", "kernel_sizes", "strides", "groups")
        lengths = {n: len(getattr(self, n)) for n in names}
        if len(set(lengths.values())) > 1:
            listing = ", ".join(f"{n} has {k}" for n, k in lengths.items())
            raise ValueError(
                f"channels, kernel_sizes, strides and groups differ in length ({listing})"
            )
        inputs = (None, *self.channels[:-1])  # the first conv's input is the audio's channels
        for i, (cin, cout, g) in enumerate(zip(inputs, self.channels, self.groups, strict=True)):
            if cout % g or (cin is not None and cin % g):
                raise ValueError(
                    f"groups[{i}] = {g} must divide the conv's input ({cin or 'audio'}) and "
                    f"output ({cout}) widths"
                )

    def build(self, ctx: BuildContext) -> Discriminator:
        return MultiScaleDiscriminator(self, ctx)


# --- MPD -----------------------------------------------------------------------------------------


class PeriodDiscriminator(nn.Module):
    """Folds [B, C, T] into [B, C, T/p, p] (padding T to a multiple of p) and runs a Conv2d stack
    over the T/p axis, so each column holds the samples p apart."""

    def __init__(self, period: int, stack: ConvStack, whole_period: bool = False):
        super().__init__()
        self.period, self.stack, self.whole_period = period, stack, whole_period

    def fold(self, x: torch.Tensor) -> torch.Tensor:
        pad = -x.shape[-1] % self.period
        if self.whole_period:  # DAC: p − T mod p, so a whole period when T is a multiple
            pad = self.period - x.shape[-1] % self.period
        if pad:  # reflect like HiFi-GAN and DAC; zeros only when the audio is shorter than pad
            x = F.pad(x, (0, pad), mode="reflect" if pad < x.shape[-1] else "constant")
        return x.view(x.shape[0], x.shape[1], -1, self.period)

    def forward(self, x: torch.Tensor) -> Critique:
        return self.stack(self.fold(x))


class MultiPeriodDiscriminator(_Judge):
    """One `PeriodDiscriminator` per period."""

    def __init__(self, spec: MPDSpec, ctx: BuildContext):
        super().__init__("mpd", ctx.channels)
        self.periods = nn.ModuleList(
            PeriodDiscriminator(p, self._stack(spec, ctx), spec.pad == "whole_period")
            for p in spec.periods
        )

    @staticmethod
    def _stack(spec: MPDSpec, ctx: BuildContext) -> ConvStack:
        widths = (ctx.channels, *spec.channels)
        k, pad = spec.kernel_size, spec.kernel_size // 2
        strides = [spec.stride] * (len(spec.channels) - 1) + [1]
        convs = [
            _normed(nn.Conv2d(cin, cout, (k, 1), (s, 1), padding=(pad, 0)), spec.norm)
            for cin, cout, s in zip(widths[:-1], spec.channels, strides, strict=True)
        ]
        post = _normed(nn.Conv2d(widths[-1], 1, (3, 1), padding=(1, 0)), spec.norm)
        return ConvStack(convs, spec.channels, post, _activation_maker(spec, ctx))

    def forward(self, x: torch.Tensor) -> list[Critique]:
        self.check(x)
        return [period(x) for period in self.periods]


@attrs.frozen(kw_only=True)
class MPDSpec:
    """Multi-period waveform discriminator (HiFi-GAN, DAC): Conv2d stacks on period-folded audio."""

    periods: tuple[int, ...] = param(
        (2, 3, 5, 7, 11),
        doc="one sub-discriminator per period",
        validator=positive_ints(MAX_FACTOR, max_items=MAX_LAYERS),
    )
    channels: tuple[int, ...] = param(
        (32, 128, 512, 1024, 1024),
        doc="output width of each hidden Conv2d; all but the last stride by `stride`",
        validator=positive_ints(MAX_CHANNELS, max_items=MAX_LAYERS),
    )
    kernel_size: int = param(
        5, doc="kernel height (k, 1) of the hidden convs (odd)", validator=odd()
    )
    stride: int = param(
        3, doc="stride (s, 1) of the hidden convs but the last", validator=size(MAX_FACTOR)
    )
    norm: Norm = param("weight", doc=NORM_DOC)
    activation: ActivationRef = param(factory=_leaky_relu, doc=ACTIVATION_DOC)
    pad: Literal["to_multiple", "whole_period"] = param(
        "to_multiple",
        doc="reflect-pad T to a multiple of the period (HiFi-GAN), or by p − T mod p, a whole "
        "period when T is already a multiple (DAC)",
    )

    def build(self, ctx: BuildContext) -> Discriminator:
        return MultiPeriodDiscriminator(self, ctx)


# --- MRSD ----------------------------------------------------------------------------------------


class BandedSpectrogramDiscriminator(nn.Module):
    """Complex STFT of one window size, real and imaginary parts as channels, [B, 2C, frames,
    bins]; the bins split into bands, a Conv2d stack per band, concatenated on frequency, then a
    post conv."""

    def __init__(self, window: int, spec: MRSDSpec, ctx: BuildContext):
        super().__init__()
        self.n_fft, self.hop = window, max(1, round(window * spec.hop_factor))
        self.match_stride = spec.framing == "match_stride"
        if self.match_stride and self.hop != window // 4:
            raise BuildError("mrsd.framing", "match_stride needs hop_factor 0.25")
        self.register_buffer("window", torch.hann_window(window), persistent=False)
        bins = window // 2 + 1
        self.bands = [(int(lo * bins), int(hi * bins)) for lo, hi in pairwise(spec.bands)]
        if any(hi <= lo for lo, hi in self.bands):
            raise BuildError(
                "mrsd.bands",
                f"a {window}-sample window has {bins} bins, too few for bands at "
                f"{list(spec.bands)}: one band is empty; use larger windows or fewer bands",
            )
        self.stacks = nn.ModuleList(self._band_stack(spec, ctx) for _ in self.bands)
        self.post = _normed(nn.Conv2d(spec.channels, 1, (3, 3), padding=(1, 1)), spec.norm)

    @staticmethod
    def _band_stack(spec: MRSDSpec, ctx: BuildContext) -> ConvStack:
        width = spec.channels
        widths = [2 * ctx.channels] + [width] * (len(spec.frequency_strides) - 1)
        convs = [
            nn.Conv2d(cin, width, (3, 9), (1, s), padding=(1, 4))
            for cin, s in zip(widths, spec.frequency_strides, strict=True)
        ]
        convs.append(nn.Conv2d(width, width, (3, 3), padding=(1, 1)))
        convs = [_normed(c, spec.norm) for c in convs]
        return ConvStack(convs, [width] * len(convs), nn.Identity(), _activation_maker(spec, ctx))

    def spectrogram(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, T] audio to [B, 2C, frames, bins] (per channel: real, imaginary), in float32."""
        batch, channels, length = x.shape
        x = x.float().reshape(batch * channels, length)
        if self.match_stride:  # frames = ceil(T / hop), aligned like a strided conv's
            side = (self.n_fft - self.hop) // 2
            right = -length % self.hop
            mode = "reflect" if side + right < length else "constant"
            x = F.pad(x[:, None], (side, side + right), mode=mode)[:, 0]
        pad_mode = "reflect" if x.shape[-1] > self.n_fft // 2 else "constant"
        with torch.autocast(x.device.type, enabled=False):
            stft = torch.stft(
                x,
                self.n_fft,
                self.hop,
                window=self.window,
                center=True,
                pad_mode=pad_mode,
                return_complex=True,
            )
        if self.match_stride:
            stft = stft[..., 2:-2]  # the frames that only the padding added
        parts = torch.view_as_real(stft)  # [B·C, bins, frames, 2]
        parts = parts.view(batch, channels, *parts.shape[1:]).permute(0, 1, 4, 3, 2)
        return parts.reshape(batch, 2 * channels, parts.shape[-2], parts.shape[-1])

    def forward(self, x: torch.Tensor) -> Critique:
        spectrum = self.spectrogram(x)
        features, outputs = [], []
        # oneDNN's bf16 CPU convolution returns non-finite values when a kernel is wider than
        # its input (narrow bands after the strides): on the CPU the band stacks stay float32.
        cpu_autocast = x.device.type == "cpu" and torch.is_autocast_enabled("cpu")
        with torch.autocast("cpu", enabled=False) if cpu_autocast else contextlib.nullcontext():
            for (lo, hi), stack in zip(self.bands, self.stacks, strict=True):
                critique = stack(spectrum[..., lo:hi])
                features.extend(critique.features)
                outputs.append(critique.logits)
            return Critique(features, self.post(torch.cat(outputs, dim=-1)))


class MultiResolutionSpectralDiscriminator(_Judge):
    """One `BandedSpectrogramDiscriminator` per STFT window."""

    def __init__(self, spec: MRSDSpec, ctx: BuildContext):
        super().__init__("mrsd", ctx.channels)
        self.resolutions = nn.ModuleList(
            BandedSpectrogramDiscriminator(w, spec, ctx) for w in spec.windows
        )

    def forward(self, x: torch.Tensor) -> list[Critique]:
        self.check(x)
        return [resolution(x) for resolution in self.resolutions]


@attrs.frozen(kw_only=True)
class MRSDSpec:
    """Multi-resolution spectral discriminator (DAC's MRD): Conv2d stacks per band of STFTs."""

    windows: tuple[int, ...] = param(
        (2048, 1024, 512),
        doc="STFT window (= FFT size) of each sub-discriminator; Hann",
        validator=positive_ints(MAX_SAMPLES, max_items=MAX_LAYERS),
    )
    hop_factor: float = param(
        0.25,
        doc="hop as a fraction of the window",
        validator=between(0, 1, low_open=True),
    )
    bands: tuple[float, ...] = param(
        (0.0, 0.1, 0.25, 0.5, 0.75, 1.0),
        doc="band edges as fractions of the bins, from 0 to 1 (DAC's 5 bands)",
        validator=[each(between(0, 1), min_items=2, max_items=MAX_LAYERS + 1), _band_edges],
    )
    channels: int = param(
        32, doc="width of every conv in the band stacks", validator=size(MAX_CHANNELS)
    )
    frequency_strides: tuple[int, ...] = param(
        (1, 2, 2, 2),
        doc="frequency stride of each (3, 9) conv of a band stack; a (3, 3) conv follows them",
        validator=positive_ints(MAX_FACTOR, max_items=MAX_LAYERS),
    )
    norm: Norm = param("weight", doc=NORM_DOC)
    activation: ActivationRef = param(factory=_leaky_relu, doc=ACTIVATION_DOC)
    framing: Literal["centered", "match_stride"] = param(
        "centered",
        doc="centered: torch.stft's centred frames; match_stride (DAC, audiotools): reflect-pad "
        "(window − hop)/2 each side and T up to a multiple of the hop, drop 2 frames at each "
        "end, so frames = ceil(T / hop) (needs hop_factor 0.25)",
    )

    def build(self, ctx: BuildContext) -> Discriminator:
        return MultiResolutionSpectralDiscriminator(self, ctx)


# --- combined ------------------------------------------------------------------------------------


class CombinedDiscriminator(Discriminator):
    """The members' critiques, concatenated in the members' order."""

    def __init__(self, members: Sequence[Discriminator], peak: float | None = None):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.peak = peak

    def forward(self, x: torch.Tensor) -> list[Critique]:
        if self.peak is not None:  # DAC: no DC, each example's peak at `peak`
            x = x - x.mean(dim=-1, keepdim=True)
            x = self.peak * x / (x.abs().amax(dim=-1, keepdim=True) + 1e-9)
        return [critique for member in self.members for critique in member(x)]


@attrs.frozen(kw_only=True)
class CombinedSpec:
    """Several discriminators judging the same audio, e.g. MPD + MRSD (DAC) or MSD + MPD + MRSD."""

    members: tuple[DiscriminatorRef, ...] = param(
        doc="the discriminators; their critiques are concatenated in this order",
        validator=EachCheck(None, min_items=1, max_items=MAX_LAYERS),
    )
    normalize_peak: float | None = param(
        None,
        doc="DAC: remove each example's DC offset and scale its peak (per channel) to this "
        "value (0.8) before the members judge it; none: judge the audio as it is",
        validator=positive,
    )

    @classmethod
    def example(cls) -> CombinedSpec:
        return cls(members=(MPDSpec(), MRSDSpec()))

    def build(self, ctx: BuildContext) -> Discriminator:
        members = []
        for i, member in enumerate(self.members):
            built = member.build(ctx)
            if not isinstance(built, Discriminator):
                raise BuildError(
                    f"combined.members[{i}]",
                    f"built a {type(built).__name__}, not a lyra_core.interfaces.Discriminator",
                )
            members.append(built)
        return CombinedDiscriminator(members, self.normalize_peak)


@hookimpl
def lyra_register_components(registry) -> None:
    registry.add("discriminator", "msd", MSDSpec)
    registry.add("discriminator", "mpd", MPDSpec)
    registry.add("discriminator", "mrsd", MRSDSpec)
    registry.add("discriminator", "combined", CombinedSpec)
