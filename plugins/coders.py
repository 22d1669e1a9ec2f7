"""Convolutional encoder and decoder built from blocks (DAC, Oobleck, the LyraCodec VAE).

Contracts: `encoder` builds with `build(ctx, in_channels, out_channels)` and maps [B, Cin, T] to
[B, Cout, T/hop]; `decoder` builds with `build(ctx, in_channels, out_channels)` and maps
[B, Cin, T'] to [B, Cout, T'·hop]. Both expose `hop_length`, the product of their strides.

Widths: with base width b and multipliers m₁…mₙ the encoder's blocks go b·[1, m₁, …, mₙ₋₁] ->
b·[m₁, …, mₙ] (so the first block keeps b when m₁ = 1, as in the LyraCodec VAE); the decoder runs
the same widths backwards.

`checkpoint` (both coders) is activation checkpointing of the blocks and the attention block, set
once per coder rather than per block spec: in training with gradients each of them keeps only its
input and runs again in the backward pass (non-reentrant torch.utils.checkpoint, which replays the
RNG state, so noise draws repeat); eval mode and no_grad run the blocks plainly.

The LyraCodec VAE (experiments/lyracodec_vae.json) is these components with the choices
that give its 255,858,050 parameters exactly: no weight norm, SnakeBeta everywhere, encoder
kernels 7 (input) and 3 (output), decoder kernels 3 (input) and 7 (output), and every block's
residual units at the block's input width (decoder order "units_first", transposed upsampling).

The reference codecs in experiments/reference/ are these components too (tested against the
packages in tests/test_reference_generators.py): DAC (weight norm, Snake, decoder order
"upsample_first", tanh); SNAC (also depthwise units, noise after each upsampling, local_attention
after the encoder's blocks and after the decoder's input conv, an identity activation and a
depthwise k7 output conv in the encoder, a depthwise k7 + 1x1 decoder input conv); RAVE v2
(LeakyReLU 0.2, no biases, "asymmetric" strided-conv padding, per-block dilations through
`blocks`, amplitude in the second half).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import attrs
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint as recompute

from lyra_core import ActivationRef, BlockRef, BuildContext, BuildError, hookimpl, param
from lyra_core.validators import MAX_CHANNELS, MAX_FACTOR, odd, positive_ints, size
from lyra_plugins.activations import SnakeSpec
from lyra_plugins.blocks import DecoderBlockSpec, EncoderBlockSpec, conv

ConvKind = Literal["dense", "depthwise"]


def _widths(base: int, c_mults: Sequence[int]) -> list[int]:
    return [base * m for m in (1, *c_mults)]


def _build_blocks(spec: ConvCoderSpec, ctx: BuildContext, widths: list[int]) -> list[nn.Module]:
    specs = spec.blocks if spec.blocks is not None else [spec.block] * len(spec.strides)
    return [
        b.build(ctx, in_channels=cin, out_channels=cout, stride=s)
        for b, cin, cout, s in zip(specs, widths[:-1], widths[1:], spec.strides, strict=True)
    ]


def _attention(spec: ConvCoderSpec, ctx: BuildContext, width: int) -> nn.Module | None:
    if spec.attention is None:
        return None
    return spec.attention.build(ctx, in_channels=width, out_channels=width, stride=1)


class ConvStack(nn.Module):
    """input conv -> blocks -> output, with an optional `attention` block (encoder: after the
    blocks; decoder: before them). `hop_length` is the blocks' total stride, `frame_multiple`
    the attention's (1 without). Submodules are registered in the order data flows through
    them, so parameters come in the references' order (`lyra import` maps by position).
    With `checkpoint`, the blocks and the attention run through `run_block` (see there)."""

    attention_first = False

    def __init__(
        self,
        input_conv: nn.Module,
        blocks: list[nn.Module],
        output: nn.Module,
        hop: int,
        attention: nn.Module | None = None,
        checkpoint: bool = False,
    ):
        super().__init__()
        self.checkpoint = checkpoint
        self.input_conv = input_conv
        if self.attention_first:
            self.attention = attention
        self.blocks = nn.ModuleList(blocks)
        if not self.attention_first:
            self.attention = attention
        self.output = output
        self.hop_length = hop
        self.frame_multiple = int(getattr(attention, "frame_multiple", 1))

    def run_block(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """`block(x)`. With `checkpoint`, in training with gradients on, only x is kept for the
        backward pass, which runs the block again to get its activations (the CPU and CUDA RNG
        states are restored first, so noise draws repeat). In eval or under no_grad: `block(x)`."""
        if self.checkpoint and self.training and torch.is_grad_enabled():
            return recompute(block, x, use_reentrant=False)
        return block(x)


class WaveformOutput(nn.Module):
    """act -> conv, then optionally RAVE's amplitude modulation and a final tanh."""

    def __init__(
        self,
        act: nn.Module,
        conv_out: nn.Module,
        amplitude_modulation: bool,
        tanh: bool,
        amplitude_first: bool = True,
    ):
        super().__init__()
        self.act = act
        self.conv = conv_out
        self.amplitude_modulation = amplitude_modulation
        self.amplitude_first = amplitude_first
        self.tanh = tanh

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(self.act(x))
        if self.amplitude_modulation:
            amplitude, wave = y.chunk(2, dim=1)
            if not self.amplitude_first:
                amplitude, wave = wave, amplitude
            y = torch.sigmoid(amplitude) * wave
        return torch.tanh(y) if self.tanh else y


class ConvEncoder(ConvStack):
    """input conv -> downsampling blocks -> attention -> act + output conv."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_conv(x)
        for block in self.blocks:
            x = self.run_block(block, x)
        if self.attention is not None:
            x = self.run_block(self.attention, x)
        return self.output(x)


class ConvDecoder(ConvStack):
    """input conv -> attention -> upsampling blocks -> waveform output."""

    attention_first = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_conv(x)
        if self.attention is not None:
            x = self.run_block(self.attention, x)
        for block in self.blocks:
            x = self.run_block(block, x)
        return self.output(x)


BLOCKS_DOC = (
    "one block spec per block, in order, instead of `block` (RAVE v2: the last encoder block "
    "has dilations [1, 3]); null: `block` for all"
)
BIAS_DOC = "give the input and output convs a bias (the blocks have their own `bias`)"
CHECKPOINT_DOC = (
    "activation checkpointing: in training, keep only each block's input (blocks and attention) "
    "and recompute the block's activations in the backward pass (torch.utils.checkpoint, "
    "non-reentrant): less memory for about one more forward pass of the blocks per step. Set "
    "for all of the coder's blocks here, not per block. Same outputs and gradients, noise "
    "included; no effect in eval mode or without gradients"
)


MAX_BLOCKS = 32
ACTIVATION_DOC = (
    "the activation before the output conv, and only that one: the blocks' activations are "
    "set in `block` (or `blocks`)"
)


@attrs.frozen(kw_only=True)
class ConvCoderSpec:
    """The fields conv_encoder and conv_decoder share: widths, blocks and conv options."""

    base_channels: int = param(
        64,
        doc="the narrowest width: the encoder's after its input conv, the decoder's last block's "
        "output",
        validator=size(MAX_CHANNELS),
    )
    c_mults: tuple[int, ...] = param(
        (2, 4, 8, 16),
        doc="each encoder block's output width as a multiple of base_channels, in encoder order "
        "(the decoder runs them backwards)",
        validator=positive_ints(MAX_FACTOR, max_items=MAX_BLOCKS),
    )
    blocks: tuple[BlockRef, ...] | None = param(None, doc=BLOCKS_DOC)
    weight_norm: bool = param(False, doc="weight-normalise the input and output convs")
    bias: bool = param(True, doc=BIAS_DOC)
    checkpoint: bool = param(False, doc=CHECKPOINT_DOC)
    causal: bool = param(
        False,
        doc="causal, streamable convs in the coder and all its blocks (also set by the model's "
        "`causal`)",
    )

    def context(self, ctx: BuildContext) -> BuildContext:
        """The build context for this coder's parts: causal when the coder is."""
        return attrs.evolve(ctx, causal=True) if self.causal else ctx

    def __attrs_post_init__(self) -> None:
        strides: tuple[int, ...] = self.strides  # type: ignore[attr-defined]
        if len(self.c_mults) != len(strides):
            raise ValueError(
                f"c_mults and strides need one entry per block: got {len(self.c_mults)} "
                f"multipliers and {len(strides)} strides"
            )
        if self.blocks is not None and len(self.blocks) != len(strides):
            raise ValueError(
                f"blocks needs one spec per block: got {len(self.blocks)} for "
                f"{len(strides)} strides"
            )


def _strides(default: tuple[int, ...], doc: str) -> Any:
    return param(default, doc=doc, validator=positive_ints(MAX_FACTOR, max_items=MAX_BLOCKS))


@attrs.frozen(kw_only=True)
class ConvEncoderSpec(ConvCoderSpec):
    """Conv encoder: input conv -> strided blocks (base_channels·c_mults) -> optional attention ->
    act -> output conv."""

    strides: tuple[int, ...] = _strides(
        (2, 4, 8, 8), "each block's downsampling factor; hop_length is their product"
    )
    block: BlockRef = param(factory=EncoderBlockSpec, doc="the downsampling block")
    attention: BlockRef | None = param(
        None,
        doc="a width-keeping block after the downsampling blocks, e.g. local_attention (SNAC); "
        "its frame_multiple becomes the encoder's",
    )
    activation: ActivationRef = param(factory=SnakeSpec, doc=f"{ACTIVATION_DOC} (SNAC: identity)")
    input_kernel: int = param(7, doc="kernel of the input conv (odd)", validator=odd())
    output_kernel: int = param(
        3, doc="kernel of the output conv (odd; the LyraCodec VAE: 3)", validator=odd()
    )
    output_conv: ConvKind = param(
        "dense",
        doc="dense, or depthwise (groups = channels; SNAC: k7, needs out_channels equal to the "
        "last width)",
    )

    def build(self, ctx: BuildContext, in_channels: int, out_channels: int) -> nn.Module:
        ctx = self.context(ctx)
        widths = _widths(self.base_channels, self.c_mults)
        width = widths[-1]
        if self.output_conv == "depthwise" and out_channels != width:
            raise BuildError(
                "conv_encoder.output_conv",
                f"a depthwise output conv keeps the width {width}, but {out_channels} output "
                f"channels are needed",
            )
        wn, bias = self.weight_norm, self.bias
        groups = width if self.output_conv == "depthwise" else 1
        output = nn.Sequential(
            self.activation.build(ctx, channels=width),
            conv(
                width,
                out_channels,
                self.output_kernel,
                weight_norm=wn,
                groups=groups,
                bias=bias,
                causal=ctx.causal,
            ),
        )
        input_conv = conv(
            in_channels, widths[0], self.input_kernel, weight_norm=wn, bias=bias, causal=ctx.causal
        )
        blocks = _build_blocks(self, ctx, widths)
        attention = _attention(self, ctx, width)
        hop = math.prod(self.strides)
        return ConvEncoder(input_conv, blocks, output, hop, attention, self.checkpoint)


@attrs.frozen(kw_only=True)
class ConvDecoderSpec(ConvCoderSpec):
    """Conv decoder: input conv -> optional attention -> upsampling blocks (widths reversed) ->
    act -> output conv."""

    strides: tuple[int, ...] = _strides(
        (8, 8, 4, 2), "each block's upsampling factor, in decoder order"
    )
    block: BlockRef = param(factory=DecoderBlockSpec, doc="the upsampling block")
    attention: BlockRef | None = param(
        None,
        doc="a width-keeping block between the input conv and the blocks, e.g. local_attention "
        "(SNAC); its frame_multiple becomes the decoder's",
    )
    activation: ActivationRef = param(factory=SnakeSpec, doc=ACTIVATION_DOC)
    input_kernel: int = param(
        7, doc="kernel of the input conv (odd; the LyraCodec VAE: 3)", validator=odd()
    )
    input_conv: ConvKind = param(
        "dense",
        doc="dense, or depthwise: a depthwise conv of input_kernel at the latent width, then a "
        "1x1 conv to the first width (SNAC)",
    )
    output_kernel: int = param(7, doc="kernel of the output conv (odd)", validator=odd())
    amplitude_modulation: bool = param(
        False,
        doc="RAVE: output 2x channels, split into amplitude a and wave w, return sigmoid(a)·w",
    )
    amplitude_half: Literal["first", "second"] = param(
        "first",
        doc="which half of the output conv's channels is the amplitude (RAVE: second)",
    )
    tanh: bool = param(False, doc="squash the output with tanh")

    def build(self, ctx: BuildContext, in_channels: int, out_channels: int) -> nn.Module:
        ctx = self.context(ctx)
        widths = _widths(self.base_channels, self.c_mults)[::-1]
        wn, bias = self.weight_norm, self.bias
        factor = 2 if self.amplitude_modulation else 1
        output = WaveformOutput(
            self.activation.build(ctx, channels=widths[-1]),
            conv(
                widths[-1],
                factor * out_channels,
                self.output_kernel,
                weight_norm=wn,
                bias=bias,
                causal=ctx.causal,
            ),
            self.amplitude_modulation,
            self.tanh,
            amplitude_first=self.amplitude_half == "first",
        )
        if self.input_conv == "depthwise":
            input_conv: nn.Module = nn.Sequential(
                conv(
                    in_channels,
                    in_channels,
                    self.input_kernel,
                    weight_norm=wn,
                    groups=in_channels,
                    bias=bias,
                    causal=ctx.causal,
                ),
                conv(in_channels, widths[0], 1, weight_norm=wn, bias=bias, causal=ctx.causal),
            )
        else:
            input_conv = conv(
                in_channels,
                widths[0],
                self.input_kernel,
                weight_norm=wn,
                bias=bias,
                causal=ctx.causal,
            )
        attention = _attention(self, ctx, widths[0])
        blocks = _build_blocks(self, ctx, widths)
        hop = math.prod(self.strides)
        return ConvDecoder(input_conv, blocks, output, hop, attention, self.checkpoint)


@hookimpl
def lyra_register_components(registry) -> None:
    registry.add("encoder", "conv_encoder", ConvEncoderSpec)
    registry.add("decoder", "conv_decoder", ConvDecoderSpec)
