"""Models: the autoencoder, filterbank -> encoder -> bottleneck -> decoder -> inverse filterbank.

Contract (kind `model`): `build(ctx)` returns a `lyra_core.interfaces.AudioModel` for audio of
`ctx.channels` channels.
"""

from __future__ import annotations

import math
from typing import Literal

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from lyra_core import (
    BottleneckRef,
    BuildContext,
    BuildError,
    DecoderRef,
    EncoderRef,
    FilterbankRef,
    LyraError,
    hookimpl,
    interfaces,
    param,
)
from lyra_core.interfaces import AudioModel

PadMode = Literal["hop", "bands"]


def fit_length(x: torch.Tensor, length: int) -> torch.Tensor:
    """Crop the last axis to `length`, or zero-pad it on the right."""
    excess = x.shape[-1] - length
    return x[..., :length] if excess >= 0 else F.pad(x, (0, -excess))


class Autoencoder(AudioModel):
    """[B, C, T] audio -> latent -> [B, C, T] audio; see `AutoencoderSpec` for the padding."""

    def __init__(
        self,
        filterbank: nn.Module | None,
        encoder: nn.Module,
        bottleneck: interfaces.Bottleneck,
        decoder: nn.Module,
        channels: int,
        pad: PadMode,
        default_length: int,
        causal: bool = False,
    ):
        super().__init__()
        self.causal = causal  # built from causal components: it can stream
        self.filterbank = filterbank
        self.encoder = encoder
        self.bottleneck = bottleneck
        self.decoder = decoder
        self.channels = channels
        self.pad = pad
        self.bands = int(getattr(filterbank, "bands", 1)) if filterbank is not None else 1
        self.hop_length = self.bands * int(encoder.hop_length)
        # frames must be a multiple of this: a multi-scale quantizer's largest stride, an
        # attention window (SNAC pads to hop · lcm of the two)
        self.frame_multiple = math.lcm(
            *(int(getattr(m, "frame_multiple", 1)) for m in (encoder, bottleneck, decoder))
        )
        self.default_length = default_length

    @property
    def delay(self) -> int:
        """Samples the output lags the input by (a causal filterbank's), compensated in
        `forward`; streaming, it is part of the latency."""
        return int(getattr(self.filterbank, "delay", 0)) if self.filterbank is not None else 0

    def forward(self, x: torch.Tensor) -> interfaces.ModelOutput:
        """The reconstruction aligned with `x`: a causal model with a delay D hears D samples
        of silence after `x`, and its first D output samples are dropped."""
        delay, length = self.delay, x.shape[-1]
        z, terms = self.encode(F.pad(x, (0, delay)) if delay else x)
        y = self.decode(z, length + delay)
        return interfaces.ModelOutput(y[..., delay:], z, terms)

    def padded_length(self, length: int) -> int:
        """The length the encoder's input is padded to: a multiple of bands·hop, or of bands."""
        if self.pad == "hop" or length <= self.hop_length:  # "bands": still at least one frame
            unit = self.hop_length * self.frame_multiple
            return math.ceil(length / unit) * unit
        return math.ceil(length / self.bands) * self.bands

    def frames(self, length: int) -> int:
        """Latent frames for `length` input samples."""
        return self.padded_length(length) // self.hop_length

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's output for audio [B, C, T]: what the bottleneck turns into a latent."""
        if x.dim() != 3 or x.shape[1] != self.channels or x.shape[-1] < 1:
            raise LyraError(
                f"the model takes audio [batch, {self.channels}, samples], got {list(x.shape)}"
            )
        x = fit_length(x, self.padded_length(x.shape[-1]))
        if self.filterbank is not None:
            x = self.filterbank.analysis(x)
        return self.encoder(x)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.bottleneck.encode(self.features(x))

    def decode(self, z: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """Audio [B, C, length] from a latent; `length` None: the decoder's own length."""
        if length is not None:
            frames = self.frames(length)
        elif z.dim() == 3:
            frames = z.shape[-1]
        else:  # a single-vector latent has no frame count of its own
            frames = self.frames(self.default_length)
        y = self.decoder(self.bottleneck.decoder_input(z, frames))
        if self.filterbank is not None:
            y = self.filterbank.synthesis(y)
        return y if length is None else fit_length(y, length)


@attrs.frozen(kw_only=True)
class AutoencoderSpec:
    """Autoencoder: filterbank -> encoder -> bottleneck -> decoder -> inverse filterbank."""

    filterbank: FilterbankRef | None = param(
        None, doc="subband analysis before the encoder and synthesis after the decoder (none: off)"
    )
    encoder: EncoderRef = param(doc="maps the (subband) audio to the bottleneck's input channels")
    bottleneck: BottleneckRef = param(doc="turns the encoder's features into the latent")
    decoder: DecoderRef = param(doc="maps the latent back to (subband) audio")
    causal: bool = param(
        False,
        doc="build every component in its causal, streamable form (each output sample depends "
        "on past and present input only), so the model can run chunk by chunk with cached "
        "state (`lyra export --streaming`); components with no causal form are an error",
    )
    pad: PadMode = param(
        "hop",
        doc="hop: pad the input to a multiple of bands·hop_length, so every latent frame sees "
        "real audio and the decoder's output is cropped; bands: pad only to a multiple of the "
        "filterbank's bands and let the strided convs round down (the LyraCodec VAE: "
        "88,200 samples -> 43 frames; inputs shorter than one hop are padded to one), the "
        "decoder's output then zero-padded to the input length",
    )

    @staticmethod
    def example() -> AutoencoderSpec:
        """A small model for the contract tests."""
        from lyra_plugins.bottlenecks import GaussianSpec
        from lyra_plugins.coders import ConvDecoderSpec, ConvEncoderSpec

        return AutoencoderSpec(
            encoder=ConvEncoderSpec(base_channels=4, c_mults=(2, 4), strides=(2, 4)),
            bottleneck=GaussianSpec(latent_dim=4),
            decoder=ConvDecoderSpec(base_channels=4, c_mults=(2, 4), strides=(4, 2)),
        )

    def build(self, ctx: BuildContext) -> AudioModel:
        if self.causal:
            ctx = attrs.evolve(ctx, causal=True)
        bottleneck = self.bottleneck.build(ctx)
        filterbank = self.filterbank.build(ctx) if self.filterbank is not None else None
        bands = int(getattr(filterbank, "bands", 1)) if filterbank is not None else 1
        audio = ctx.channels * bands
        encoder = self.encoder.build(ctx, in_channels=audio, out_channels=bottleneck.input_channels)
        decoder = self.decoder.build(
            ctx, in_channels=bottleneck.latent_channels, out_channels=audio
        )
        hops = [getattr(m, "hop_length", None) for m in (encoder, decoder)]
        if hops[0] is None:
            raise BuildError("model.encoder", "the built encoder has no hop_length")
        if hops[1] is not None and hops[0] != hops[1]:
            raise BuildError(
                "model.decoder",
                f"upsamples by {hops[1]} but the encoder downsamples by {hops[0]}: "
                "the decoder's strides must multiply to the encoder's",
            )
        model = Autoencoder(
            filterbank,
            encoder,
            bottleneck,
            decoder,
            ctx.channels,
            self.pad,
            ctx.segment_length,
            causal=ctx.causal,
        )
        if self.pad == "bands" and model.frame_multiple > 1:
            raise BuildError(
                "model.pad",
                f"'bands' lets the frame count be anything, but the encoder, bottleneck or "
                f"decoder needs a multiple of {model.frame_multiple} frames: use pad 'hop'",
            )
        return model


@hookimpl
def lyra_register_components(registry) -> None:
    registry.add("model", "autoencoder", AutoencoderSpec)
