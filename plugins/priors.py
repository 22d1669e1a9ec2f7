"""Latent priors: autoregressive models of a trained codec's latent sequences, for generation.

A bottleneck's own prior (N(0, I) frame by frame for a Gaussian latent) treats every frame as
independent, so sampling it gives texture, not music. A prior learns p(z_t | z_<t) over the
frames a trained codec's encoder makes of real audio; `lyra sample` then draws sequences from it
(or continues a file's) and the codec decodes them. As RAVE does, the prior trains after the
codec, on its latents, the codec frozen.

- prior `wavenet`: WaveNet's gated, dilated causal convolutions (RAVE's prior uses the same
  body) ending in a mixture of Gaussians per latent value, so its likelihood is a density over
  the continuous latent, in the same units as the bottleneck's frame-wise prior.
- model `latent_prior`: a trained codec run (frozen, in eval mode) and a prior; `lyra run`
  trains the prior on the codec's latents of the spec's data (its loss term is `nll`, nats per
  latent value; `frame_prior_nll` is the bottleneck's frame-wise prior on the same latents, the
  baseline to beat). Encoding and decoding are the codec's.
"""

from __future__ import annotations

import functools
import math
import os
import tempfile
from pathlib import Path
from typing import Literal

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from lyra_core import BuildContext, BuildError, LyraError, PriorRef, hookimpl, param
from lyra_core.interfaces import AudioModel, ModelOutput, Prior, QuantizingBottleneck
from lyra_core.loader import validate_data
from lyra_core.services import checkpoint
from lyra_core.services.model import (
    WEIGHTS,
    build_trained,
    choose_weights,
    find_bottleneck,
    find_checkpoint,
    save_model,
    stored_spec,
)
from lyra_core.spec import make_converter
from lyra_core.validators import MAX_CHANNELS, size

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
LOG_SCALE_RANGE = (-7.0, 5.0)  # a mixture component's log σ, kept where gradients stay finite


# --- the wavenet prior ---------------------------------------------------------------------------


class GatedBlock(nn.Module):
    """A dilated conv (unpadded: the output is `trim` frames shorter), tanh · sigmoid gate, and
    1×1 skip and residual outputs (the last block has no residual: nothing reads it)."""

    def __init__(self, channels: int, kernel: int, dilation: int, last: bool = False):
        super().__init__()
        self.trim = (kernel - 1) * dilation
        self.conv = nn.Conv1d(channels, 2 * channels, kernel, dilation=dilation)
        self.skip = nn.Conv1d(channels, channels, 1)
        self.residual = None if last else nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = self.conv(x).chunk(2, dim=1)
        h = torch.tanh(a) * torch.sigmoid(b)
        x = x[..., self.trim :]
        return (x if self.residual is None else x + self.residual(h)), self.skip(h)


class WaveNetPrior(Prior):
    """Mixture-of-Gaussians parameters for each latent value from the frames before it.

    The layers are unpadded and the input is padded with zero frames once, so a frame's
    prediction sees zeros before the sequence exactly as `next_frame` sees its zero-padded
    window (padding every layer would feed the later layers zeros where a zero input gives
    the biases' values).
    """

    def __init__(
        self, latent_channels: int, channels: int, layers: int, kernel: int, cycle: int, mixtures
    ):
        super().__init__()
        self.latent_channels, self.mixtures = latent_channels, mixtures
        dilations = [2 ** (i % cycle) for i in range(layers)]
        self.pre = nn.Conv1d(latent_channels, channels, kernel)
        self.blocks = nn.ModuleList(
            GatedBlock(channels, kernel, d, last=i == layers - 1) for i, d in enumerate(dilations)
        )
        self.post = nn.Sequential(
            nn.LeakyReLU(0.2),
            nn.Conv1d(channels, channels, 1),
            nn.LeakyReLU(0.2),
            nn.Conv1d(channels, 3 * mixtures * latent_channels, 1),
        )
        # frames of input the last output sees, itself included
        self.receptive_field = 1 + (kernel - 1) * (1 + sum(dilations))

    def mixture(self, context: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Log weights, means and log σ [B, D, M, T]: at t, of the value after context[..., t]."""
        self.check(context)
        b, d, t = context.shape
        h = self.pre(F.pad(context, (self.receptive_field - 1, 0)))
        skips = h.new_zeros(b, h.shape[1], t)
        for block in self.blocks:
            h, skip = block(h)
            skips = skips + skip[..., -t:]
        out = self.post(skips).view(b, d, 3, self.mixtures, t)
        logits, mean, log_scale = out.unbind(dim=2)
        return logits.log_softmax(dim=2), mean, log_scale.clamp(*LOG_SCALE_RANGE)

    def check(self, z: torch.Tensor) -> None:
        if z.dim() != 3 or z.shape[1] != self.latent_channels:
            raise LyraError(
                f"wavenet prior: expected latents [batch, {self.latent_channels}, frames], "
                f"got {list(z.shape)}"
            )

    def nll(self, z: torch.Tensor) -> torch.Tensor:
        z = z.float()
        log_w, mean, log_scale = self.mixture(F.pad(z, (1, 0))[..., :-1])
        x = z.unsqueeze(2)
        log_p = log_w - log_scale - HALF_LOG_2PI - 0.5 * ((x - mean) / log_scale.exp()).square()
        return -torch.logsumexp(log_p, dim=2).mean(dim=(1, 2))

    def next_mixture(self, past: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Log weights, means and log σ [B, D, M] of the frame after `past` [B, D, T]."""
        window = self.receptive_field
        past = F.pad(past.float(), (max(0, window - past.shape[-1]), 0))[..., -window:]
        return tuple(p[..., -1] for p in self.mixture(past))

    def next_cdf(self, past: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        log_w, mean, log_scale = (p.double().unsqueeze(-1) for p in self.next_mixture(past))
        normal = torch.special.ndtr((values.unsqueeze(2) - mean) / log_scale.exp())
        return (log_w.exp() * normal).sum(dim=2)  # [B, D, M, K] -> [B, D, K]

    def next_frame(
        self,
        past: torch.Tensor,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        log_w, mean, log_scale = self.next_mixture(past)  # [B, D, M]
        if temperature == 0:
            pick = log_w.argmax(dim=-1, keepdim=True)
            return mean.gather(-1, pick)
        flat = log_w.exp().reshape(-1, self.mixtures)
        pick = torch.multinomial(flat, 1, generator=generator).view(*log_w.shape[:2], 1)
        noise = torch.randn(pick.shape, generator=generator, device=past.device)
        scale = log_scale.gather(-1, pick).exp()
        return mean.gather(-1, pick) + temperature * scale * noise


@attrs.frozen(kw_only=True)
class WaveNetPriorSpec:
    """WaveNet over latent frames: gated dilated causal convolutions (dilations 1, 2, 4, ... in
    cycles) predicting a mixture of Gaussians for each latent value from the frames before it."""

    channels: int = param(128, doc="channels of every layer", validator=size(MAX_CHANNELS))
    layers: int = param(8, doc="gated residual layers", validator=size(64))
    kernel: int = param(3, doc="kernel size of the dilated convolutions", validator=size(64, 2))
    cycle: int = param(
        4, doc="dilations double for this many layers, then start again at 1", validator=size(16)
    )
    mixtures: int = param(4, doc="Gaussian components per latent value", validator=size(64))

    def build(self, ctx: BuildContext, latent_channels: int) -> Prior:
        return WaveNetPrior(
            latent_channels, self.channels, self.layers, self.kernel, self.cycle, self.mixtures
        ).to(ctx.device)


# --- the model: a frozen codec and its prior -----------------------------------------------------


class LatentPriorModel(AudioModel):
    """A trained codec, frozen in eval mode, and a prior over its latents (see the module doc)."""

    def __init__(self, codec: AudioModel, prior: Prior):
        super().__init__()
        self.codec, self.prior = codec, prior
        self.bottleneck = find_bottleneck(codec)
        self.hop_length = int(codec.hop_length)
        self.frame_multiple = int(getattr(codec, "frame_multiple", 1))

    @property
    def delay(self) -> int:
        return int(getattr(self.codec, "delay", 0))

    def train(self, mode: bool = True) -> LatentPriorModel:
        super().train(mode)
        self.codec.eval()  # the posterior mean, as inference encodes, never a sample
        return self

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.codec.encode(x)

    def decode(self, z: torch.Tensor, length: int | None = None) -> torch.Tensor:
        return self.codec.decode(z, length)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        """The latent, the prior's `nll` of it and the bottleneck's `frame_prior_nll` of it,
        and in eval mode the codec's reconstruction (validation reports its distances); in
        training, where only the terms count, the codec does not decode and the
        reconstruction is `x` itself."""
        with torch.no_grad():
            if self.training:
                z, y = self.codec.encode(x)[0], x
            else:
                out = self.codec(x)
                z, y = out.latent, out.reconstruction
            z = z.float()
            terms = {"frame_prior_nll": self.bottleneck.prior_nll(z)}
        terms["nll"] = self.prior.nll(z)
        return ModelOutput(y, z, terms)


def load_codec(source: str, weights: str | None, ctx: BuildContext) -> AudioModel:
    """The trained codec of a run directory, checkpoint or MLflow run id, in eval mode."""
    try:
        path = find_checkpoint(source, ctx.registry)
    except LyraError as exc:
        raise BuildError(
            "model.codec",
            f"{exc} (relative paths are from the working directory); train the codec first "
            "with `lyra run` and give its run directory",
        ) from None
    state = checkpoint.load(path, map_location="cpu")
    spec = validate_data(stored_spec(path, state), ctx.registry, f"{path} (its spec)")
    data = spec.data
    if (data.sample_rate, data.channels) != (ctx.sample_rate, ctx.channels):
        raise BuildError(
            "model.codec",
            f"the codec works on {data.channels}-channel audio at {data.sample_rate} Hz, the "
            f"spec's data section on {ctx.channels} at {ctx.sample_rate} Hz: set "
            "data.sample_rate and data.channels to the codec's",
        )
    _, state_dict = choose_weights(path, state, weights)
    codec = build_trained(path, spec, state_dict, ctx.registry, torch.device("cpu"))
    return codec.to(ctx.device)


def check_latent(codec: AudioModel, source: str, channels: int) -> int:
    """The codec's latent width; refuses latents a density over frames cannot model."""
    bottleneck = find_bottleneck(codec)
    if bottleneck is None or isinstance(bottleneck, QuantizingBottleneck):
        what = "discrete codes" if bottleneck is not None else "no single bottleneck"
        raise BuildError(
            "model.codec",
            f"{source}: the codec has {what}; this prior models continuous time-series "
            "latents (a gaussian or deterministic bottleneck)",
        )
    device = next(codec.parameters()).device
    with torch.no_grad():
        z, _ = codec.encode(torch.zeros(1, channels, codec.hop_length, device=device))
    if z.dim() != 3:
        raise BuildError(
            "model.codec",
            f"{source}: the codec's latent is one vector per example; a prior needs a latent "
            "sequence (frames)",
        )
    return int(z.shape[1])


@attrs.frozen(kw_only=True)
class LatentPriorSpec:
    """A prior over a trained codec's latents: `lyra run` trains it with the codec frozen
    (loss term `nll`), `lyra sample` generates latent sequences with it for the codec to decode.
    The data section must be the codec's audio format."""

    codec: str = param(
        doc="the trained codec: its run directory (best checkpoint, else last), a checkpoint "
        "file or an MLflow run id; relative paths are from the working directory"
    )
    weights: Literal[WEIGHTS] | None = param(
        None,
        doc="the codec's weights: ema (its moving average), raw, or none (the moving average "
        "when its run kept one)",
    )
    prior: PriorRef = param(doc="the autoregressive model over the codec's latent frames")

    @staticmethod
    def example() -> LatentPriorSpec:
        """A prior over a small untrained codec, for the contract tests."""
        return LatentPriorSpec(codec=str(example_codec()), prior=WaveNetPriorSpec(channels=8))

    def build(self, ctx: BuildContext) -> AudioModel:
        codec = load_codec(self.codec, self.weights, ctx)
        prior = self.prior.build(ctx, latent_channels=check_latent(codec, self.codec, ctx.channels))
        return LatentPriorModel(codec, prior)


@functools.cache
def example_codec() -> Path:
    """A run directory holding a small untrained mono 22,050 Hz codec (the contract tests')."""
    from lyra_core.discovery import load_plugins

    from .models import AutoencoderSpec

    user = getattr(os, "getuid", lambda: "user")()
    run = Path(tempfile.gettempdir()) / f"lyra-example-codec-{user}"
    if not (run / "checkpoints" / "last.pt").is_file():
        registry = load_plugins(builtins_only=True).registry
        model = make_converter(registry).unstructure(AutoencoderSpec.example(), AutoencoderSpec)
        data = {
            "name": "example_codec",
            "data": {"dataset": {"type": "synthetic"}, "sample_rate": 22050},
            "model": {"type": "autoencoder", **model},
            "training": {"optimizer": {"type": "adam"}},
        }
        spec = validate_data(data, registry, "example codec")
        torch.manual_seed(0)
        save_model(spec.model.build(spec.context(registry)), spec, registry, run)
    return run


@hookimpl
def lyra_register_components(registry) -> None:
    registry.add("prior", "wavenet", WaveNetPriorSpec)
    registry.add("model", "latent_prior", LatentPriorSpec)
