"""Streaming: a causal model run chunk by chunk, each layer keeping what it needs of the past.

A causal model (`"causal": true` on the model) is built from layers that implement
`lyra_core.interfaces.StreamingState`. `Stream` switches them to streaming, so that feeding
the audio chunk after chunk (each a multiple of `chunk_multiple` samples: the hop times the
frame multiple) gives exactly the offline pass of the same model, delayed by its `delay`.

Latency (what a live performer hears): a chunk must be complete before it is encoded, so the
output lags the input by the chunk plus the model's `delay` (a causal PQMF's filters). A
non-causal model has no streaming form; chunked offline with context (`runs.chunking`), its
latency is the chunk plus the context to the right it waits for.

Speed: a `Stream` switches the model's convs to their channels-last inference path
(`channels_last_inference`: oneDNN's kernels, several times faster at batch 1 on the CPU, the
same output to float rounding); it stays on after `close` and takes effect only where no
gradient is recorded.
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from lyra_core.errors import LyraError
from lyra_core.interfaces import StreamingState


def streaming_layers(model: nn.Module) -> list[StreamingState]:
    return [m for m in model.modules() if isinstance(m, StreamingState)]


def chunk_multiple(model: nn.Module) -> int:
    """What every streamed chunk's length must be a multiple of: hop times frame multiple."""
    return int(model.hop_length) * int(getattr(model, "frame_multiple", 1))


def channels_last_inference(model: nn.Module, on: bool = True) -> int:
    """Switch every layer of `model` that has a channels-last inference path (a
    `use_channels_last(on)` method, as the convs of the built-in blocks have) to it, or back;
    returns how many layers changed."""
    layers = [m for m in model.modules() if callable(getattr(m, "use_channels_last", None))]
    return sum(bool(m.use_channels_last(on)) for m in layers)


def set_streaming(model: nn.Module, on: bool) -> None:
    """Switch every streaming layer of `model` on or off, forgetting what it has seen."""
    for layer in streaming_layers(model):
        layer.streaming = on
        layer.reset()


@attrs.frozen
class Latency:
    """How far the output of a stream lags its input, in samples and milliseconds."""

    chunk: int  # samples buffered before a chunk can be processed
    delay: int  # the model's own lag (a causal filterbank's)
    sample_rate: int

    @property
    def samples(self) -> int:
        return self.chunk + self.delay

    @property
    def milliseconds(self) -> float:
        return 1000.0 * self.samples / self.sample_rate

    def describe(self) -> str:
        return (
            f"latency {self.samples} samples ({self.milliseconds:.1f} ms): a chunk of "
            f"{self.chunk} plus the model's delay of {self.delay}"
        )


class Stream:
    """A causal model's encode, decode and encode+decode over consecutive chunks.

    `pad` True: a chunk that is not a multiple of `chunk_multiple` samples is zero-padded up to
    one (and `padded` counts the samples added); False: it is refused with the multiple named.
    """

    def __init__(self, model: nn.Module, sample_rate: int, pad: bool = False):
        if not getattr(model, "causal", False):
            raise LyraError("this model is not causal: it cannot stream (set model.causal: true)")
        self.model, self.sample_rate, self.pad = model, sample_rate, pad
        self.hop = int(model.hop_length)
        self.chunk_multiple = chunk_multiple(model)
        self.padded = 0
        channels_last_inference(model)
        set_streaming(model, True)

    def reset(self) -> None:
        """Start a new stream: forget the past."""
        set_streaming(self.model, True)
        self.padded = 0

    def close(self) -> None:
        """Back to offline use."""
        set_streaming(self.model, False)

    def _fit(self, chunk: torch.Tensor) -> torch.Tensor:
        short = -chunk.shape[-1] % self.chunk_multiple
        if short == 0:
            return chunk
        if not self.pad:
            raise LyraError(
                f"a chunk of {chunk.shape[-1]} samples: streaming takes multiples of "
                f"{self.chunk_multiple} samples (the model's hop of {self.hop} times its frame "
                "multiple); send such chunks, or let the stream pad them"
            )
        self.padded += short
        return F.pad(chunk, (0, short))

    @torch.inference_mode()
    def encode(self, chunk: torch.Tensor) -> torch.Tensor:
        """[B, C, N] audio -> [B, D, N / hop] latent frames."""
        return self.model.encode(self._fit(chunk))[0].contiguous()

    @torch.inference_mode()
    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """[B, D, F] latent frames -> [B, C, F·hop] audio."""
        return self.model.decode(latent).contiguous()

    def __call__(self, chunk: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(chunk))

    def latency(self, chunk: int) -> Latency:
        return Latency(chunk, int(getattr(self.model, "delay", 0)), self.sample_rate)
