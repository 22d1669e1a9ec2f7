"""The module interfaces that built components share with the framework and with each other.

A spec's `build()` returns a torch object; for the kinds that other components call into, that
object follows one of these base classes. Third-party components subclass them too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn


class StreamingState(nn.Module):
    """A layer of a causal model that keeps what streaming needs of earlier chunks.

    Offline (`streaming` False) it sees zeros before the signal; streaming, it sees the end of
    the chunks before instead, so chunk after chunk gives the offline output. `reset()` forgets
    them (a new stream). `lyra_core.services.streaming` switches every such layer of a model.
    """

    streaming: bool = False

    def reset(self) -> None:
        raise NotImplementedError


class Filterbank(nn.Module):
    """Splits [B, C, T] audio into `bands` subbands [B, C·bands, T/bands] and back.

    `T` must be a multiple of `bands`; the model pads before analysis and crops after synthesis.
    `delay` is how many samples synthesis(analysis(x)) lags x (0 for a non-causal bank).
    """

    bands: int = 1
    delay: int = 0

    def analysis(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def synthesis(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class Bottleneck(nn.Module):
    """Between encoder and decoder: turns the encoder's features into a latent, and back.

    `input_channels` is the width the encoder must produce; `latent_channels` the width the
    decoder receives. `encode` returns the latent (sampled in training, the mean in eval, for
    variational bottlenecks) and named loss terms, e.g. `{"kl": tensor}`, that losses pick up by
    name. `decoder_input` maps a latent to the decoder's [B, latent_channels, frames] input
    (identity for time-series latents; broadcast or upsampled for a single vector).
    """

    input_channels: int
    latent_channels: int

    def encode(self, h: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def decoder_input(self, z: torch.Tensor, frames: int) -> torch.Tensor:
        return z

    def sample_prior(
        self,
        batch: int,
        frames: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Latents drawn from the prior, shaped like `encode`'s output for `frames` frames."""
        raise NotImplementedError

    def prior_nll(self, z: torch.Tensor) -> torch.Tensor:
        """The negative log-likelihood of a time-series latent [B, D, T] under the frame-wise
        prior `sample_prior` draws from, [B], in nats per value (as `Prior.nll`)."""
        raise NotImplementedError


class QuantizingBottleneck(Bottleneck):
    """A bottleneck with discrete codes (residual vector quantization and the like).

    `quantize(h)` returns the dequantised latent [B, latent_channels, frames] (straight-through
    gradients in training), the codes, one LongTensor [B, frames // stride] per codebook, and
    named loss terms (e.g. `commitment`, `codebook`). `dequantize(codes)` maps codes back to the
    latent, so `dequantize(quantize(h)[1]) == quantize(h)[0]` in eval. `encode` is `quantize`
    without the codes. `frame_multiple` is what the frame count must be a multiple of (the
    largest stride of a multi-scale quantizer); the model pads its input accordingly.
    """

    codebook_size: int
    frame_multiple: int = 1

    def quantize(
        self, h: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor], dict[str, torch.Tensor]]:
        raise NotImplementedError

    def dequantize(self, codes: list[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def encode(self, h: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        z, _, terms = self.quantize(h)
        return z, terms


class Prior(nn.Module):
    """An autoregressive density over latent sequences [B, D, T]: p(z) = Π_t p(z_t | z_<t).

    `nll(z)` is the negative log-likelihood of each sequence, [B], in nats per latent value
    (averaged over D and T), so it compares with a bottleneck's frame-wise prior
    (`Bottleneck.prior_nll`). `next_frame(past, temperature, generator)` draws the frame that
    follows `past` [B, D, T] (T = 0: a sequence's first frame; only the last `receptive_field`
    frames matter), [B, D, 1]; temperature 0 takes the most likely value. `generate` continues
    a prompt frame by frame.
    """

    latent_channels: int
    receptive_field: int = 1

    def nll(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def next_frame(
        self,
        past: torch.Tensor,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        raise NotImplementedError

    def next_cdf(self, past: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """P(z ≤ v) for each value of the frame after `past` [B, D, T], at `values` [B, D, K]
        (float64), [B, D, K]: what an entropy coder tabulates to code a quantized latent."""
        raise NotImplementedError

    def generate(
        self,
        prompt: torch.Tensor,
        frames: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """`prompt` [B, D, P] followed by `frames` new frames, [B, D, P + frames]; an empty
        prompt (P = 0) starts a sequence as training saw its first frames."""
        z, window = prompt, self.receptive_field
        for _ in range(frames):
            z = torch.cat([z, self.next_frame(z[..., -window:], temperature, generator)], -1)
        return z


@dataclass(frozen=True)
class SymbolSpace:
    """The integer symbols a latent is sent as: `rows` rows (latent dimensions, or a quantizer's
    codebooks), each symbol in 0..size-1. For a continuous latent on a grid, `edges` [rows,
    size + 1] holds the latent values that bound each symbol's interval (the outermost ±inf);
    for codes it is None."""

    rows: int
    size: int
    edges: Any = None  # np.ndarray [rows, size + 1] | None


class EntropyModel:
    """Probabilities of a latent's integer symbols, for the entropy coder of `.lyra` files.

    `fit(examples, space)` learns from the run's training latents ([D, T] float arrays for a
    continuous latent, [codebooks, T] integer arrays for codes); `state()` / `load_state()` are
    plain arrays stored with the run. A static model gives one probability table per row,
    `tables(space)` [rows, size]; a `conditional` one gives each frame's from the latent frames
    before it, `frame_tables(past, space)` with past [rows, t] latent values. Tables are float64,
    each row summing to 1; the coder gives every symbol a minimum probability.
    """

    conditional: bool = False
    context: int = 0  # frames of the past a conditional model looks at (0: all of them)

    def bind(self, model: nn.Module) -> None:
        """The trained model whose latents are coded (a conditional model takes its prior)."""

    def fit(self, examples: list[Any], space: SymbolSpace) -> None:
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        pass

    def tables(self, space: SymbolSpace) -> Any:
        raise NotImplementedError

    def frame_tables(self, past: torch.Tensor, space: SymbolSpace) -> Any:
        raise NotImplementedError


class Augmentation(nn.Module):
    """A random transform of a [B, C, T] training batch, on the batch's device.

    Each example is transformed with probability `p`. Every random number comes from
    `generator` (the run's seeded `torch.Generator`), so one seed gives one batch. The output
    has the input's shape, except that a crop may shorten T.
    """

    p: float = 1.0

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError


@dataclass
class ModelOutput:
    """What a model's `forward(x)` returns: the reconstruction, the latent and the loss terms."""

    reconstruction: torch.Tensor
    latent: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)


class AudioModel(nn.Module):
    """A trainable codec: `forward(x) -> ModelOutput`, plus `encode` and `decode` for inference.

    `hop_length` is the number of input samples per latent frame.
    """

    hop_length: int = 1

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def decode(self, z: torch.Tensor, length: int | None = None) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> ModelOutput:
        z, terms = self.encode(x)
        return ModelOutput(self.decode(z, x.shape[-1]), z, terms)


@dataclass
class Critique:
    """One sub-discriminator's verdict on a batch: its feature maps and its logits."""

    features: list[torch.Tensor]
    logits: torch.Tensor


class Discriminator(nn.Module):
    """Judges [B, C, T] audio: `forward(x)` returns one `Critique` per sub-discriminator."""

    def forward(self, x: torch.Tensor) -> list[Critique]:
        raise NotImplementedError


class AdversarialLoss(nn.Module):
    """A GAN objective over critiques of real and generated audio (lists of `Critique`).

    `discriminator_loss` trains the discriminator (None if this loss has no discriminator part,
    e.g. feature matching); `generator_loss` trains the generator. Both are unweighted: the
    trainer multiplies by the spec's `weight` (and schedule) exactly once.
    """

    def discriminator_loss(self, real: list[Critique], fake: list[Critique]) -> torch.Tensor | None:
        return None

    def generator_loss(self, real: list[Critique], fake: list[Critique]) -> torch.Tensor:
        raise NotImplementedError


RUN_DIR_TAG = "lyra.run_dir"  # the tag a tracker's run keeps its Lyra run directory in


class Tracker:
    """What a `tracker` component builds: a run's parameters and metrics, sent elsewhere.

    Every method may raise: the trainer wraps the tracker (`runs.tracking.SafeTracker`), so
    training goes on and the metrics stay in the run directory.
    """

    def start(self, name: str, tags: dict[str, str]) -> str | None:
        """Open a run, or continue the one a resumed run directory (`tags[RUN_DIR_TAG]`) had;
        return its id (or None). After a resume, steps the run already holds are logged again
        (the run re-trains from its checkpoint): a tracker keeps each step once."""
        return None

    def log_params(self, params: dict[str, str]) -> None: ...

    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...

    def log_artifact(self, path: Path, folder: str | None = None) -> None: ...

    def end(self, status: str) -> None:
        """Close the run; status is 'FINISHED', 'KILLED' or 'FAILED'."""

    def describe(self) -> str:
        """One line telling the user where to look (e.g. the command to open the UI)."""
        return ""

    def run_dir(self, run_id: str) -> Path | None:
        """The run directory of this tracker's run `run_id` (its `RUN_DIR_TAG`), so that a model
        loads by run id; None when `run_id` is not one of this tracker's ids. A LyraError says
        why when it is one but its run cannot be read."""
        return None


class Importer:
    """Turns a reference codec's checkpoint into a Lyra experiment spec and model weights.

    `read(source)` returns the reference's configuration (JSON-able) and its state dict, from a
    checkpoint path, or from the installed reference package for `source == "default"` (its
    default configuration, random weights; `config` overrides its constructor's arguments).
    `experiment(config)` is the Lyra experiment spec (JSON) that builds the same model and
    trains it; `convert(state, config, model)` maps the reference's weights onto `model` (built
    from that spec) as its state dict. `lyra import` loads them strictly: nothing missing.
    """

    def read(
        self, source: str, config: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        raise NotImplementedError

    def experiment(self, config: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def convert(
        self, state: dict[str, torch.Tensor], config: dict[str, Any], model: nn.Module
    ) -> dict[str, torch.Tensor]:
        raise NotImplementedError
