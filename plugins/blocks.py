"""Convolutional blocks: the dilated residual unit and the down- and upsampling blocks around it.

Contract (kind `block`): `build(ctx, in_channels, out_channels, stride)` returns a module on
[B, C, T]. A block with stride s maps T frames to T/s (encoder) or T·s (decoder) when T is a
multiple of s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import attrs
import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm as _weight_norm

from lyra_core import Activation, BuildContext, BuildError, hookimpl, param
from lyra_plugins.activations import SnakeSpec


def positive(_: object, a: attrs.Attribute, value: int) -> None:
    if value <= 0:
        raise ValueError(f"{a.name} must be positive, got {value}")


def odd(_: object, a: attrs.Attribute, value: int) -> None:
    if value <= 0 or value % 2 == 0:
        raise ValueError(f"{a.name} must be a positive odd number ('same' padding), got {value}")


def positive_ints(_: object, a: attrs.Attribute, value: Sequence[int]) -> None:
    if not value or any(v <= 0 for v in value):
        raise ValueError(f"{a.name} must be a non-empty list of positive integers, got {value}")


def conv(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    *,
    weight_norm: bool,
    stride: int = 1,
    dilation: int = 1,
    padding: int | None = None,
    transposed: bool = False,
    output_padding: int = 0,
) -> nn.Module:
    """A Conv1d (or ConvTranspose1d), "same" padded by default, optionally weight-normalised."""
    if padding is None:
        padding = dilation * (kernel_size - 1) // 2
    if transposed:
        layer: nn.Module = nn.ConvTranspose1d(
            in_channels, out_channels, kernel_size, stride, padding, output_padding
        )
    else:
        layer = nn.Conv1d(in_channels, out_channels, kernel_size, stride, padding, dilation)
    return _weight_norm(layer) if weight_norm else layer


def strided_conv(in_channels: int, out_channels: int, stride: int, weight_norm: bool) -> nn.Module:
    """Downsample by `stride`: kernel 2·stride, padding ceil(stride/2) (stride 1: a k3 conv)."""
    if stride == 1:
        return conv(in_channels, out_channels, 3, weight_norm=weight_norm)
    return conv(
        in_channels,
        out_channels,
        2 * stride,
        stride=stride,
        padding=math.ceil(stride / 2),
        weight_norm=weight_norm,
    )


def transposed_conv(
    in_channels: int, out_channels: int, stride: int, weight_norm: bool
) -> nn.Module:
    """Upsample T -> T·stride: kernel 2·stride, padding ceil(stride/2), output padding stride%2."""
    if stride == 1:
        return conv(in_channels, out_channels, 3, weight_norm=weight_norm)
    return conv(
        in_channels,
        out_channels,
        2 * stride,
        stride=stride,
        padding=math.ceil(stride / 2),
        output_padding=stride % 2,
        transposed=True,
        weight_norm=weight_norm,
    )


class ResizeConv(nn.Sequential):
    """Nearest-neighbour upsampling by `stride`, then a "same" conv of kernel 2·stride + 1."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, weight_norm: bool):
        super().__init__(
            nn.Upsample(scale_factor=stride, mode="nearest"),
            conv(in_channels, out_channels, 2 * stride + 1, weight_norm=weight_norm),
        )


class ResidualUnit(nn.Module):
    """x + conv1(act(conv_d(act(x)))): a dilated conv and a pointwise conv, with the skip."""

    def __init__(
        self,
        ctx: BuildContext,
        channels: int,
        activation: Any,
        kernel_size: int,
        dilation: int,
        weight_norm: bool,
    ):
        super().__init__()
        self.act1 = activation.build(ctx, channels=channels)
        self.conv1 = conv(
            channels, channels, kernel_size, dilation=dilation, weight_norm=weight_norm
        )
        self.act2 = activation.build(ctx, channels=channels)
        self.conv2 = conv(channels, channels, 1, weight_norm=weight_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act2(self.conv1(self.act1(x))))


def residual_units(
    ctx: BuildContext,
    channels: int,
    activation: Any,
    kernel_size: int,
    dilations: Sequence[int],
    weight_norm: bool,
) -> list[nn.Module]:
    return [ResidualUnit(ctx, channels, activation, kernel_size, d, weight_norm) for d in dilations]


@attrs.frozen(kw_only=True)
class ResidualUnitSpec:
    """Residual unit: act -> conv(k, dilation d) -> act -> conv k1, plus the skip (seed 001)."""

    kernel_size: int = param(7, doc="kernel of the dilated conv (odd)", validator=odd)
    dilation: int = param(1, doc="dilation of the first conv", validator=positive)
    activation: Activation = param(factory=SnakeSpec, doc="activation before each conv")
    weight_norm: bool = param(False, doc="weight-normalise both convs")

    def build(
        self, ctx: BuildContext, in_channels: int, out_channels: int, stride: int = 1
    ) -> nn.Module:
        if in_channels != out_channels or stride != 1:
            raise BuildError(
                "residual_unit",
                f"keeps its width and length: needs in_channels == out_channels and stride 1, "
                f"got {in_channels} -> {out_channels}, stride {stride}",
            )
        return ResidualUnit(
            ctx, in_channels, self.activation, self.kernel_size, self.dilation, self.weight_norm
        )


@attrs.frozen(kw_only=True)
class EncoderBlockSpec:
    """Downsampling block: residual units at the input width -> act -> strided conv (seed 001)."""

    dilations: tuple[int, ...] = param(
        (1, 3, 9), doc="one residual unit per dilation", validator=positive_ints
    )
    kernel_size: int = param(7, doc="kernel of the residual units' dilated convs", validator=odd)
    activation: Activation = param(
        factory=SnakeSpec, doc="activation in the units and before the conv"
    )
    weight_norm: bool = param(False, doc="weight-normalise every conv of the block")

    def build(
        self, ctx: BuildContext, in_channels: int, out_channels: int, stride: int
    ) -> nn.Module:
        _check_stride(stride, "encoder_block")
        units = residual_units(
            ctx, in_channels, self.activation, self.kernel_size, self.dilations, self.weight_norm
        )
        return nn.Sequential(
            *units,
            self.activation.build(ctx, channels=in_channels),
            strided_conv(in_channels, out_channels, stride, self.weight_norm),
        )


@attrs.frozen(kw_only=True)
class DecoderBlockSpec:
    """Upsampling block: residual units, act and upsampling conv, in either order (seed, DAC)."""

    dilations: tuple[int, ...] = param(
        (1, 3, 9), doc="one residual unit per dilation", validator=positive_ints
    )
    kernel_size: int = param(7, doc="kernel of the residual units' dilated convs", validator=odd)
    activation: Activation = param(
        factory=SnakeSpec, doc="activation in the units and before the conv"
    )
    weight_norm: bool = param(False, doc="weight-normalise every conv of the block")
    order: Literal["units_first", "upsample_first"] = param(
        "units_first",
        doc="units_first: units at the input width, act, upsample (seed 001); "
        "upsample_first: act, upsample, units at the output width (DAC)",
    )
    upsample: Literal["transposed", "resize"] = param(
        "transposed",
        doc="transposed: ConvTranspose1d(kernel 2·stride, padding ceil(stride/2)); "
        "resize: nearest ×stride then a conv of kernel 2·stride+1 (no checkerboard artifacts)",
    )

    def build(
        self, ctx: BuildContext, in_channels: int, out_channels: int, stride: int
    ) -> nn.Module:
        _check_stride(stride, "decoder_block")
        if self.upsample == "resize":
            up: nn.Module = ResizeConv(in_channels, out_channels, stride, self.weight_norm)
        else:
            up = transposed_conv(in_channels, out_channels, stride, self.weight_norm)
        width = in_channels if self.order == "units_first" else out_channels
        units = residual_units(
            ctx, width, self.activation, self.kernel_size, self.dilations, self.weight_norm
        )
        act = self.activation.build(ctx, channels=in_channels)
        if self.order == "units_first":
            return nn.Sequential(*units, act, up)
        return nn.Sequential(act, up, *units)


def _check_stride(stride: int, name: str) -> None:
    if not isinstance(stride, int) or stride < 1:
        raise BuildError(name, f"stride must be a positive integer, got {stride!r}")


@hookimpl
def lyra_register_components(registry) -> None:
    registry.add("block", "residual_unit", ResidualUnitSpec)
    registry.add("block", "encoder_block", EncoderBlockSpec)
    registry.add("block", "decoder_block", DecoderBlockSpec)
