"""Convolutional encoder and decoder built from blocks (DAC, stable-audio-tools' Oobleck, seed 001).

Contracts: `encoder` builds with `build(ctx, in_channels, out_channels)` and maps [B, Cin, T] to
[B, Cout, T/hop]; `decoder` builds with `build(ctx, in_channels, out_channels)` and maps
[B, Cin, T'] to [B, Cout, T'·hop]. Both expose `hop_length`, the product of their strides.

Widths: with base width b and multipliers m₁…mₙ the encoder's blocks go b·[1, m₁, …, mₙ₋₁] ->
b·[m₁, …, mₙ] (so the first block keeps b when m₁ = 1, as in seed 001); the decoder runs the same
widths backwards.

Seed 001's LyraCodec VAE (experiments/lyracodec_vae.json) is these components with the choices
that give its 255,858,050 parameters exactly: no weight norm, SnakeBeta everywhere, encoder
kernels 7 (input) and 3 (output), decoder kernels 3 (input) and 7 (output), and every block's
residual units at the block's input width (decoder order "units_first", transposed upsampling).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import attrs
import torch
from torch import nn

from lyra_core import Activation, Block, BuildContext, hookimpl, param
from lyra_plugins.activations import SnakeSpec
from lyra_plugins.blocks import (
    DecoderBlockSpec,
    EncoderBlockSpec,
    conv,
    odd,
    positive,
    positive_ints,
)


def _check_lengths(spec: ConvEncoderSpec | ConvDecoderSpec) -> None:
    if len(spec.c_mults) != len(spec.strides):
        raise ValueError(
            f"c_mults and strides need one entry per block: got {len(spec.c_mults)} multipliers "
            f"and {len(spec.strides)} strides"
        )


def _widths(base: int, c_mults: Sequence[int]) -> list[int]:
    return [base * m for m in (1, *c_mults)]


class ConvStack(nn.Module):
    """input conv -> blocks -> output; `hop_length` is the blocks' total stride."""

    def __init__(self, input_conv: nn.Module, blocks: list[nn.Module], output: nn.Module, hop: int):
        super().__init__()
        self.input_conv = input_conv
        self.blocks = nn.ModuleList(blocks)
        self.output = output
        self.hop_length = hop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_conv(x)
        for block in self.blocks:
            x = block(x)
        return self.output(x)


class WaveformOutput(nn.Module):
    """act -> conv, then optionally RAVE's amplitude modulation and a final tanh."""

    def __init__(self, act: nn.Module, conv_out: nn.Module, amplitude_modulation: bool, tanh: bool):
        super().__init__()
        self.act = act
        self.conv = conv_out
        self.amplitude_modulation = amplitude_modulation
        self.tanh = tanh

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(self.act(x))
        if self.amplitude_modulation:
            amplitude, wave = y.chunk(2, dim=1)
            y = torch.sigmoid(amplitude) * wave
        return torch.tanh(y) if self.tanh else y


class ConvEncoder(ConvStack):
    """input conv -> downsampling blocks -> act + output conv."""


class ConvDecoder(ConvStack):
    """input conv -> upsampling blocks -> waveform output."""


@attrs.frozen(kw_only=True)
class ConvEncoderSpec:
    """Conv encoder: input conv -> strided blocks (base_channels·c_mults) -> act -> output conv."""

    base_channels: int = param(64, doc="width after the input conv", validator=positive)
    c_mults: tuple[int, ...] = param(
        (2, 4, 8, 16),
        doc="each block's output width, as a multiple of base_channels",
        validator=positive_ints,
    )
    strides: tuple[int, ...] = param(
        (2, 4, 8, 8),
        doc="each block's downsampling factor; hop_length is their product",
        validator=positive_ints,
    )
    block: Block = param(factory=EncoderBlockSpec, doc="the downsampling block")
    activation: Activation = param(factory=SnakeSpec, doc="activation before the output conv")
    input_kernel: int = param(7, doc="kernel of the input conv (odd)", validator=odd)
    output_kernel: int = param(3, doc="kernel of the output conv (odd; seed 001: 3)", validator=odd)
    weight_norm: bool = param(False, doc="weight-normalise the input and output convs")

    def __attrs_post_init__(self) -> None:
        _check_lengths(self)

    def build(self, ctx: BuildContext, in_channels: int, out_channels: int) -> nn.Module:
        widths = _widths(self.base_channels, self.c_mults)
        blocks = [
            self.block.build(ctx, in_channels=cin, out_channels=cout, stride=s)
            for cin, cout, s in zip(widths[:-1], widths[1:], self.strides, strict=True)
        ]
        output = nn.Sequential(
            self.activation.build(ctx, channels=widths[-1]),
            conv(widths[-1], out_channels, self.output_kernel, weight_norm=self.weight_norm),
        )
        input_conv = conv(in_channels, widths[0], self.input_kernel, weight_norm=self.weight_norm)
        return ConvEncoder(input_conv, blocks, output, math.prod(self.strides))


@attrs.frozen(kw_only=True)
class ConvDecoderSpec:
    """Conv decoder: input conv -> upsampling blocks (widths reversed) -> act -> output conv."""

    base_channels: int = param(64, doc="width of the last block's output", validator=positive)
    c_mults: tuple[int, ...] = param(
        (2, 4, 8, 16),
        doc="the encoder's multipliers, in encoder order (run backwards here)",
        validator=positive_ints,
    )
    strides: tuple[int, ...] = param(
        (8, 8, 4, 2),
        doc="each block's upsampling factor, in decoder order",
        validator=positive_ints,
    )
    block: Block = param(factory=DecoderBlockSpec, doc="the upsampling block")
    activation: Activation = param(factory=SnakeSpec, doc="activation before the output conv")
    input_kernel: int = param(7, doc="kernel of the input conv (odd; seed 001: 3)", validator=odd)
    output_kernel: int = param(7, doc="kernel of the output conv (odd)", validator=odd)
    weight_norm: bool = param(False, doc="weight-normalise the input and output convs")
    amplitude_modulation: bool = param(
        False,
        doc="RAVE: output 2x channels, split into amplitude a and wave w, return sigmoid(a)·w",
    )
    tanh: bool = param(False, doc="squash the output with tanh")

    def __attrs_post_init__(self) -> None:
        _check_lengths(self)

    def build(self, ctx: BuildContext, in_channels: int, out_channels: int) -> nn.Module:
        widths = _widths(self.base_channels, self.c_mults)[::-1]
        blocks = [
            self.block.build(ctx, in_channels=cin, out_channels=cout, stride=s)
            for cin, cout, s in zip(widths[:-1], widths[1:], self.strides, strict=True)
        ]
        factor = 2 if self.amplitude_modulation else 1
        output = WaveformOutput(
            self.activation.build(ctx, channels=widths[-1]),
            conv(
                widths[-1], factor * out_channels, self.output_kernel, weight_norm=self.weight_norm
            ),
            self.amplitude_modulation,
            self.tanh,
        )
        input_conv = conv(in_channels, widths[0], self.input_kernel, weight_norm=self.weight_norm)
        return ConvDecoder(input_conv, blocks, output, math.prod(self.strides))


@hookimpl
def lyra_register_components(registry) -> None:
    registry.add("encoder", "conv_encoder", ConvEncoderSpec)
    registry.add("decoder", "conv_decoder", ConvDecoderSpec)
