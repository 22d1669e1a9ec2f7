"""Encoding and decoding any length with a loaded model, in chunks.

Long audio runs in chunks of `chunk` latent frames, each with `context` frames of real audio (or
latent) on both sides that the model sees but whose output is discarded, except for a
raised-cosine crossfade `context / 2` frames wide centred on each seam. When 3/4 of the context
covers the model's receptive field, the chunked result equals the one-pass result.

A causal model whose output lags its input by `delay` samples (a causal filterbank) encodes its
input followed by `delay` samples of silence, and its decoded audio drops the first `delay`
samples, so reconstructions line up with the input.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs
import torch

from lyra_core.errors import LyraError

if TYPE_CHECKING:
    from lyra_core.services.model import LoadedModel


def crossfade(length: int) -> torch.Tensor:
    """A rising sin² ramp of `length` samples; 1 − ramp is its complement."""
    return torch.sin(0.5 * math.pi * (torch.arange(length) + 0.5) / length).square()


def chunk_bounds(frames: int, chunk: int, half: int) -> list[tuple[int, int]]:
    """(start, end) frames of each chunk; a last chunk shorter than the crossfade's half joins
    the one before it, so every crossfade fits inside its chunks."""
    starts = list(range(0, frames, chunk))
    if len(starts) > 1 and frames - starts[-1] < half:
        starts.pop()
    return list(zip(starts, [*starts[1:], frames], strict=True))


def overlapped(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    step_in: int,
    step_out: int,
    chunk: int,
    context: int,
    device: torch.device,
) -> torch.Tensor:
    """`fn` over x [B, C, frames·step_in] in chunks of `chunk` frames; -> [B, C', frames·step_out].

    Each chunk sees `context` extra frames on both sides; neighbouring outputs are crossfaded
    over `context / 2` frames (at most the chunk) centred on each seam, so 3/4 of the context is
    never heard. The result stays on the CPU.
    """
    frames = x.shape[-1] // step_in
    chunk, context = max(1, chunk), max(0, context)
    if frames <= chunk + context:
        return fn(x.to(device)).cpu()
    half = min(context // 4, chunk // 2)  # frames of crossfade on each side of a seam
    ramp = crossfade(2 * half * step_out) if half else None
    out: torch.Tensor | None = None
    for start, end in chunk_bounds(frames, chunk, half):
        lo_in, hi_in = max(0, start - context), min(frames, end + context)
        y = fn(x[..., lo_in * step_in : hi_in * step_in].to(device)).cpu()
        lo = start - half if start > 0 else 0
        hi = end + half if end < frames else frames
        piece = y[..., (lo - lo_in) * step_out : (hi - lo_in) * step_out].clone()
        if ramp is not None:
            n = ramp.numel()
            if start > 0:
                piece[..., :n] *= ramp
            if end < frames:
                piece[..., -n:] *= 1 - ramp
        if out is None:
            out = y.new_zeros(*y.shape[:-1], frames * step_out)
        out[..., lo * step_out : hi * step_out] += piece
    assert out is not None
    return out


@attrs.frozen
class Chunking:
    """Chunk and context lengths in seconds; converted to latent frames per model."""

    chunk_seconds: float = 10.0
    context_seconds: float = 0.5

    def frames(self, loaded: LoadedModel) -> tuple[int, int]:
        per_second = loaded.sample_rate / loaded.hop_length
        if not 0 < self.chunk_seconds < math.inf or not 0 <= self.context_seconds < math.inf:
            raise LyraError(
                f"chunk seconds must be positive and context seconds not negative, both finite; "
                f"got {self.chunk_seconds} and {self.context_seconds}"
            )
        chunk = max(1, round(self.chunk_seconds * per_second))
        return chunk, math.ceil(self.context_seconds * per_second)


@torch.inference_mode()
def encode_audio(loaded: LoadedModel, audio: torch.Tensor, chunking: Chunking) -> torch.Tensor:
    """Audio [B, C, T] (CPU) -> latent [B, D, ceil(T/hop)], or [B, D] for single-vector models."""
    model, hop = loaded.model, loaded.hop_length
    if loaded.quantizer is not None:
        return encode_codes(loaded, audio, chunking)[0]
    if loaded.single_vector:
        return model.encode(audio.to(loaded.device))[0].cpu()
    audio = torch.nn.functional.pad(audio, (0, loaded.delay))
    frames = math.ceil(audio.shape[-1] / hop)
    x = torch.nn.functional.pad(audio, (0, frames * hop - audio.shape[-1]))
    chunk, context = chunking.frames(loaded)
    return overlapped(lambda s: model.encode(s)[0], x, hop, 1, chunk, context, loaded.device)


@torch.inference_mode()
def encode_codes(
    loaded: LoadedModel, audio: torch.Tensor, chunking: Chunking
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Audio [B, C, T] -> (latent [B, D, ceil(T/hop)], codes) for a quantizing model.

    The encoder's features are computed in chunks like any latent, then quantized in one pass,
    so the latent is exactly the codes' dequantisation (a crossfade of quantized chunks is not).
    Codes cover the frames padded to the quantizer's frame multiple.
    """
    quantizer, hop = loaded.quantizer, loaded.hop_length
    assert quantizer is not None
    audio = torch.nn.functional.pad(audio, (0, loaded.delay))
    frames = math.ceil(audio.shape[-1] / hop)
    x = torch.nn.functional.pad(audio, (0, frames * hop - audio.shape[-1]))
    chunk, context = chunking.frames(loaded)
    h = overlapped(loaded.model.features, x, hop, 1, chunk, context, loaded.device)
    h = h[..., :frames]
    h = torch.nn.functional.pad(h, (0, -frames % quantizer.frame_multiple))
    z, codes, _ = quantizer.quantize(h.to(loaded.device))
    return z[..., :frames].cpu(), [c.cpu() for c in codes]


@torch.inference_mode()
def decode_latent(
    loaded: LoadedModel, z: torch.Tensor, length: int | None, chunking: Chunking
) -> torch.Tensor:
    """Latent (CPU) -> audio [B, C, length] on the CPU (length None: frames·hop)."""
    model, hop = loaded.model, loaded.hop_length
    if z.dim() == 2:  # a single vector per example: one pass
        return model.decode(z.to(loaded.device), length).cpu()
    chunk, context = chunking.frames(loaded)
    y = overlapped(
        lambda s: model.decode(s, s.shape[-1] * hop), z, 1, hop, chunk, context, loaded.device
    )[..., loaded.delay :]
    return y if length is None else y[..., :length]


def reconstruct_audio(loaded: LoadedModel, audio: torch.Tensor, chunking: Chunking) -> torch.Tensor:
    return decode_latent(loaded, encode_audio(loaded, audio, chunking), audio.shape[-1], chunking)


def slerp(a: torch.Tensor, b: torch.Tensor, t: float, dim: int = 1) -> torch.Tensor:
    """Spherical interpolation of the vectors along `dim`; linear where they are parallel."""
    dot = (a * b).sum(dim, keepdim=True)
    norms = a.norm(dim=dim, keepdim=True) * b.norm(dim=dim, keepdim=True)
    omega = torch.arccos((dot / norms.clamp_min(1e-12)).clamp(-1, 1))
    sin = torch.sin(omega)
    parallel = sin.abs() < 1e-6
    wa = torch.where(parallel, 1 - t, torch.sin((1 - t) * omega) / sin.where(~parallel, 1.0))
    wb = torch.where(parallel, t, torch.sin(t * omega) / sin.where(~parallel, 1.0))
    return wa * a + wb * b
