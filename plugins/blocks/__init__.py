"""Convolutional blocks: the dilated residual unit and the down- and upsampling blocks around it.

Contract (kind `block`): `build(ctx, in_channels, out_channels, stride)` returns a module on
[B, C, T]. A block with stride s maps T frames to T/s (encoder) or T·s (decoder) when T is a
multiple of s.

Blocks here: `residual_unit`, `encoder_block`, `decoder_block`, `noise_injection` (SNAC); the
windowed attention block `local_attention` lives in plugins/attention.py.

`causal` (or the model's `causal`, through the build context) builds every conv of a block in
its causal, streamable form (plugins/causal.py): padded on the left only, transposed convs
overlap-added between chunks. Every conv built here is a `FastConv`: switched by
`lyra_core.services.streaming.channels_last_inference`, it runs oneDNN's channels-last path at
inference (causal.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import attrs
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm as _weight_norm

from lyra_core import ActivationRef, BuildContext, BuildError, hookimpl, param
from lyra_core.validators import MAX_FACTOR, odd, positive_ints, size
from lyra_plugins.activations import SnakeSpec
from lyra_plugins.blocks.causal import (
    CausalConv1d,
    CausalConvTranspose1d,
    FastConv,
    conv1d,
    conv_transpose1d,
)

DownPadding = Literal["symmetric", "asymmetric"]


class Conv1d(FastConv, nn.Conv1d):
    """nn.Conv1d (zero padding), with the channels-last inference path of causal.py."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv1d(self, x)


class ConvTranspose1d(FastConv, nn.ConvTranspose1d):
    """nn.ConvTranspose1d (no output size argument), with the channels-last inference path."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv_transpose1d(self, x)


class AsymmetricConv1d(Conv1d):
    """A Conv1d that zero-pads (left, right) itself before convolving (cached_conv's padding)."""

    def __init__(self, *args: Any, pad: tuple[int, int], **kwargs: Any):
        super().__init__(*args, padding=0, **kwargs)
        self.pad = pad

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, pad={self.pad}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, self.pad))


def conv(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    *,
    weight_norm: bool,
    stride: int = 1,
    dilation: int = 1,
    padding: int | tuple[int, int] | None = None,
    transposed: bool = False,
    output_padding: int = 0,
    groups: int = 1,
    bias: bool = True,
    causal: bool = False,
) -> nn.Module:
    """A Conv1d (or ConvTranspose1d), "same" padded by default, optionally weight-normalised.

    A (left, right) `padding` pads unevenly (`AsymmetricConv1d`, same parameters as a Conv1d).
    `causal`: padded on the left only and streamable (`padding` and `output_padding` are then
    ignored).
    """
    if causal:
        kind = CausalConvTranspose1d if transposed else CausalConv1d
        extra = {} if transposed else {"dilation": dilation}
        layer = kind(
            in_channels, out_channels, kernel_size, stride, groups=groups, bias=bias, **extra
        )
        return _weight_norm(layer) if weight_norm else layer
    if padding is None:
        padding = dilation * (kernel_size - 1) // 2
    if transposed:
        layer: nn.Module = ConvTranspose1d(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            int(padding),
            output_padding,
            groups=groups,
            bias=bias,
        )
    elif isinstance(padding, tuple):
        layer = AsymmetricConv1d(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            dilation=dilation,
            groups=groups,
            bias=bias,
            pad=padding,
        )
    else:
        layer = Conv1d(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias
        )
    return _weight_norm(layer) if weight_norm else layer


def strided_conv(
    in_channels: int,
    out_channels: int,
    stride: int,
    weight_norm: bool,
    padding: DownPadding = "symmetric",
    bias: bool = True,
    causal: bool = False,
) -> nn.Module:
    """Downsample by `stride` with kernel 2·stride (stride 1: a k3 conv). Padding "symmetric":
    ceil(stride/2) each side (DAC, SNAC); "asymmetric": stride−1 left, stride right (RAVE);
    causal: stride on the left."""
    if stride == 1:
        return conv(in_channels, out_channels, 3, weight_norm=weight_norm, bias=bias, causal=causal)
    pad = math.ceil(stride / 2) if padding == "symmetric" else (stride - 1, stride)
    return conv(
        in_channels,
        out_channels,
        2 * stride,
        stride=stride,
        padding=pad,
        weight_norm=weight_norm,
        bias=bias,
        causal=causal,
    )


def transposed_conv(
    in_channels: int,
    out_channels: int,
    stride: int,
    weight_norm: bool,
    bias: bool = True,
    causal: bool = False,
) -> nn.Module:
    """Upsample T -> T·stride: kernel 2·stride, padding ceil(stride/2), output padding stride%2
    (for even strides RAVE's padding stride//2 is the same); causal: the first T·stride samples
    of the full output."""
    if stride == 1:
        return conv(in_channels, out_channels, 3, weight_norm=weight_norm, bias=bias, causal=causal)
    return conv(
        in_channels,
        out_channels,
        2 * stride,
        stride=stride,
        padding=math.ceil(stride / 2),
        output_padding=stride % 2,
        transposed=True,
        weight_norm=weight_norm,
        bias=bias,
        causal=causal,
    )


class ResizeConv(nn.Sequential):
    """Nearest-neighbour upsampling by `stride`, then a "same" conv of kernel 2·stride + 1."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        weight_norm: bool,
        bias: bool = True,
        causal: bool = False,
    ):
        k = 2 * stride + 1
        super().__init__(
            nn.Upsample(scale_factor=stride, mode="nearest"),
            conv(in_channels, out_channels, k, weight_norm=weight_norm, bias=bias, causal=causal),
        )


class NoiseInjection(nn.Module):
    """x + n·linear(x) with n ~ N(0, 1) of shape [B, 1, T], drawn from torch's global generator
    (seed it with torch.manual_seed for reproducible outputs); SNAC's NoiseBlock."""

    def __init__(self, channels: int, weight_norm: bool):
        super().__init__()
        self.linear = conv(channels, channels, 1, weight_norm=weight_norm, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noise = torch.randn((x.shape[0], 1, x.shape[-1]), device=x.device, dtype=x.dtype)
        return x + noise * self.linear(x)


class ResidualUnit(nn.Module):
    """x + conv2(act(conv1(act(x)))): a dilated conv and a pointwise conv, with the skip."""

    def __init__(
        self,
        ctx: BuildContext,
        channels: int,
        activation: Any,
        kernel_size: int,
        dilation: int,
        weight_norm: bool,
        depthwise: bool = False,
        bias: bool = True,
        causal: bool = False,
    ):
        super().__init__()
        self.act1 = activation.build(ctx, channels=channels)
        self.conv1 = conv(
            channels,
            channels,
            kernel_size,
            dilation=dilation,
            weight_norm=weight_norm,
            groups=channels if depthwise else 1,
            bias=bias,
            causal=causal,
        )
        self.act2 = activation.build(ctx, channels=channels)
        self.conv2 = conv(channels, channels, 1, weight_norm=weight_norm, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act2(self.conv1(self.act1(x))))


def residual_units(
    ctx: BuildContext, channels: int, spec: Any, dilations: Sequence[int]
) -> list[nn.Module]:
    """One `ResidualUnit` per dilation, with the kernel, activation and options of `spec`."""
    return [
        ResidualUnit(
            ctx,
            channels,
            spec.activation,
            spec.kernel_size,
            d,
            spec.weight_norm,
            spec.depthwise,
            spec.bias,
            spec.causal or ctx.causal,
        )
        for d in dilations
    ]


DEPTHWISE_DOC = "groups = channels in the dilated convs (SNAC)"
BIAS_DOC = "give every conv a bias (RAVE: none)"
CAUSAL_DOC = (
    "causal, streamable convs: padded on the left only, so no output depends on later input "
    "(also set by the model's `causal`)"
)


@attrs.frozen(kw_only=True)
class ResidualUnitSpec:
    """Residual unit: act -> conv(k, dilation d) -> act -> conv k1, plus the skip (as in DAC)."""

    kernel_size: int = param(7, doc="kernel of the dilated conv (odd)", validator=odd())
    dilation: int = param(1, doc="dilation of the first conv", validator=size(MAX_FACTOR))
    activation: ActivationRef = param(factory=SnakeSpec, doc="activation before each conv")
    weight_norm: bool = param(False, doc="weight-normalise both convs")
    depthwise: bool = param(False, doc=DEPTHWISE_DOC)
    bias: bool = param(True, doc=BIAS_DOC)
    causal: bool = param(False, doc=CAUSAL_DOC)

    def build(
        self, ctx: BuildContext, in_channels: int, out_channels: int, stride: int = 1
    ) -> nn.Module:
        _check_same_shape("residual_unit", in_channels, out_channels, stride)
        return residual_units(ctx, in_channels, self, [self.dilation])[0]


@attrs.frozen(kw_only=True)
class NoiseInjectionSpec:
    """SNAC's noise block: x + n·conv1x1(x), n ~ N(0, 1) [B, 1, T] from torch's global RNG."""

    weight_norm: bool = param(True, doc="weight-normalise the (bias-free) 1x1 conv")

    def build(
        self, ctx: BuildContext, in_channels: int, out_channels: int, stride: int = 1
    ) -> nn.Module:
        _check_same_shape("noise_injection", in_channels, out_channels, stride)
        _refuse_noise_when_causal("noise_injection", ctx)
        return NoiseInjection(in_channels, self.weight_norm)


@attrs.frozen(kw_only=True)
class ResampleBlockSpec:
    """The fields encoder_block and decoder_block share: their residual units and convs."""

    dilations: tuple[int, ...] = param(
        (1, 3, 9),
        doc="one residual unit per dilation",
        validator=positive_ints(MAX_FACTOR, max_items=16),
    )
    kernel_size: int = param(7, doc="kernel of the residual units' dilated convs", validator=odd())
    activation: ActivationRef = param(
        factory=SnakeSpec, doc="activation in the units and before the conv"
    )
    weight_norm: bool = param(False, doc="weight-normalise every conv of the block")
    depthwise: bool = param(False, doc=DEPTHWISE_DOC)
    bias: bool = param(True, doc=BIAS_DOC)
    causal: bool = param(False, doc=CAUSAL_DOC)


@attrs.frozen(kw_only=True)
class EncoderBlockSpec(ResampleBlockSpec):
    """Downsampling block: residual units at the input width -> act -> strided conv."""

    padding: DownPadding = param(
        "symmetric",
        doc="padding of the strided conv (kernel 2·stride): symmetric: ceil(stride/2) each side "
        "(DAC, SNAC); asymmetric: stride−1 left and stride right (RAVE's cached_conv)",
    )

    def build(
        self, ctx: BuildContext, in_channels: int, out_channels: int, stride: int
    ) -> nn.Module:
        _check_stride(stride, "encoder_block")
        return nn.Sequential(
            *residual_units(ctx, in_channels, self, self.dilations),
            self.activation.build(ctx, channels=in_channels),
            strided_conv(
                in_channels,
                out_channels,
                stride,
                self.weight_norm,
                self.padding,
                self.bias,
                self.causal or ctx.causal,
            ),
        )


@attrs.frozen(kw_only=True)
class DecoderBlockSpec(ResampleBlockSpec):
    """Upsampling block: residual units, act and upsampling conv, in either order."""

    order: Literal["units_first", "upsample_first"] = param(
        "units_first",
        doc="units_first: units at the input width, act, upsample (the LyraCodec VAE's decoder); "
        "upsample_first: act, upsample, units at the output width (DAC)",
    )
    upsample: Literal["transposed", "resize"] = param(
        "transposed",
        doc="transposed: ConvTranspose1d(kernel 2·stride, padding ceil(stride/2), output padding "
        "stride%2); resize: nearest ×stride then a conv of kernel 2·stride+1 (no checkerboard "
        "artifacts)",
    )
    noise: bool = param(
        False, doc="a noise_injection right after the upsampling conv (SNAC; weight norm as set)"
    )

    def build(
        self, ctx: BuildContext, in_channels: int, out_channels: int, stride: int
    ) -> nn.Module:
        _check_stride(stride, "decoder_block")
        causal = self.causal or ctx.causal
        if self.noise:
            _refuse_noise_when_causal("decoder_block.noise", ctx, causal)
        if self.upsample == "resize":
            up: nn.Module = ResizeConv(
                in_channels, out_channels, stride, self.weight_norm, self.bias, causal
            )
        else:
            up = transposed_conv(
                in_channels, out_channels, stride, self.weight_norm, self.bias, causal
            )
        noise = [NoiseInjection(out_channels, self.weight_norm)] if self.noise else []
        width = in_channels if self.order == "units_first" else out_channels
        units = residual_units(ctx, width, self, self.dilations)
        act = self.activation.build(ctx, channels=in_channels)
        if self.order == "units_first":
            return nn.Sequential(*units, act, up, *noise)
        return nn.Sequential(act, up, *noise, *units)


def _check_same_shape(name: str, in_channels: int, out_channels: int, stride: int) -> None:
    if in_channels != out_channels or stride != 1:
        raise BuildError(
            name,
            f"keeps its width and length: needs in_channels == out_channels and stride 1, "
            f"got {in_channels} -> {out_channels}, stride {stride}",
        )


def _refuse_noise_when_causal(name: str, ctx: BuildContext, causal: bool = False) -> None:
    if causal or ctx.causal:
        raise BuildError(
            name,
            "draws fresh noise on every pass, so a stream cannot equal the offline pass: turn "
            "the noise off in a causal model",
        )


def _check_stride(stride: int, name: str) -> None:
    if not isinstance(stride, int) or stride < 1:
        raise BuildError(name, f"stride must be a positive integer, got {stride!r}")


@hookimpl
def lyra_register_components(registry) -> None:
    registry.add("block", "residual_unit", ResidualUnitSpec)
    registry.add("block", "encoder_block", EncoderBlockSpec)
    registry.add("block", "decoder_block", DecoderBlockSpec)
    registry.add("block", "noise_injection", NoiseInjectionSpec)
