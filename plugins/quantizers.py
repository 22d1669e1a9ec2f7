"""Residual vector quantization: DAC's RVQ and SNAC's multi-scale RVQ as one bottleneck, `rvq`.

Contract (kind `bottleneck`): `build(ctx)` returns a `lyra_core.interfaces.QuantizingBottleneck`.

Each level projects the residual to `codebook_dim` with a 1x1 conv, picks the codebook entry
nearest in cosine terms (both sides L2-normalised, Improved VQGAN), passes the gradient straight
through to the projection, and projects the (unnormalised) entry back to `dim` with another 1x1
conv; the next level quantizes what is left. A level with stride s (SNAC) average-pools the
residual by s first and repeats its output s times, so it has frames/s codes.

Loss terms, as DAC computes them: `commitment` = MSE(z_e, sg(z_q)) and `codebook` =
MSE(z_q, sg(z_e)) per example in each level's projected space, zeroed for the examples that
quantizer dropout cut off at that level, averaged over the batch and summed over the levels.
SNAC trains without these terms in its code; here its configuration gets them too.

State dicts: `quantizers.{i}.in_proj`, `quantizers.{i}.out_proj` (weight-normalised through
`torch.nn.utils.parametrizations`) and `quantizers.{i}.codebook`, the references' order, so
`lyra import` maps SNAC's and DAC's weights by position.
"""

from __future__ import annotations

import contextlib
import math

import attrs
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm as _weight_norm

from lyra_core import BuildContext, LyraError, hookimpl, param
from lyra_core.interfaces import QuantizingBottleneck
from lyra_core.validators import (
    MAX_CHANNELS,
    MAX_CODEBOOK_SIZE,
    MAX_CODEBOOKS,
    MAX_FACTOR,
    fraction,
    positive_ints,
    size,
)


def _pointwise(in_channels: int, out_channels: int, weight_norm: bool) -> nn.Module:
    layer = nn.Conv1d(in_channels, out_channels, 1)
    return _weight_norm(layer) if weight_norm else layer


class VectorQuantizer(nn.Module):
    """One level: factorised, L2-normalised codebook lookup with a straight-through estimator."""

    def __init__(
        self, dim: int, codebook_size: int, codebook_dim: int, stride: int, weight_norm: bool
    ) -> None:
        super().__init__()
        self.codebook_size, self.codebook_dim, self.stride = codebook_size, codebook_dim, stride
        self.in_proj = _pointwise(dim, codebook_dim, weight_norm)
        self.out_proj = _pointwise(codebook_dim, dim, weight_norm)
        self.codebook = nn.Embedding(codebook_size, codebook_dim)

    def nearest(self, z_e: torch.Tensor) -> torch.Tensor:
        """Codes [B, F] of the entries nearest to z_e [B, codebook_dim, F] after L2 norm."""
        rows = F.normalize(z_e.transpose(1, 2).reshape(-1, z_e.shape[1]), dim=1)
        book = F.normalize(self.codebook.weight, dim=1)
        # squared euclidean distance, expanded as DAC and SNAC compute it (same ties)
        dist = rows.pow(2).sum(1, keepdim=True) - 2 * rows @ book.t() + book.pow(2).sum(1)[None]
        return (-dist).max(1).indices.view(z_e.shape[0], -1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Codebook entries [B, codebook_dim, F] for codes [B, F]."""
        return F.embedding(codes, self.codebook.weight).transpose(1, 2)

    def expand(self, y: torch.Tensor) -> torch.Tensor:
        return y.repeat_interleave(self.stride, dim=-1) if self.stride > 1 else y

    def forward(
        self, residual: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(output [B, dim, F], codes [B, F/stride], commitment [B], codebook loss [B])."""
        if self.stride > 1:
            residual = F.avg_pool1d(residual, self.stride, self.stride)
        z_e = self.in_proj(residual)
        codes = self.nearest(z_e)
        z_q = self.lookup(codes)
        commitment = (z_e - z_q.detach()).pow(2).mean((1, 2))
        codebook = (z_q - z_e.detach()).pow(2).mean((1, 2))
        z_q = z_e + (z_q - z_e).detach()  # straight through: forward z_q, gradient to z_e
        return self.expand(self.out_proj(z_q)), codes, commitment, codebook

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.expand(self.out_proj(self.lookup(codes)))


class ResidualVectorQuantizer(QuantizingBottleneck):
    """Residual VQ over `dim`-wide features, optionally multi-scale, with quantizer dropout.

    In training a `quantizer_dropout` fraction of the batch (its first examples, as in DAC) keeps
    a random number of levels, 1..n_codebooks, drawn from torch's global generator exactly as
    DAC draws it (so one seed gives DAC's dropout); the others keep all. In eval,
    `quantize(h, n_quantizers=k)` uses the first k levels (codes: k tensors).
    """

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        codebook_dim: int,
        strides: tuple[int, ...],
        quantizer_dropout: float,
        weight_norm: bool,
    ) -> None:
        super().__init__()
        self.input_channels = self.latent_channels = dim
        self.codebook_size, self.codebook_dim = codebook_size, codebook_dim
        self.strides = tuple(strides)
        self.n_codebooks = len(self.strides)
        self.quantizer_dropout = quantizer_dropout
        self.frame_multiple = math.lcm(*self.strides)
        self.quantizers = nn.ModuleList(
            VectorQuantizer(dim, codebook_size, codebook_dim, s, weight_norm) for s in self.strides
        )

    def own_precision(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, contextlib.AbstractContextManager]:
        """`x` in the codebooks' dtype and a context with autocast off (float32 distances)."""
        x = x.to(self.quantizers[0].codebook.weight.dtype)
        if torch.amp.is_autocast_available(x.device.type):
            return x, torch.autocast(x.device.type, enabled=False)
        return x, contextlib.nullcontext()

    def check_frames(self, frames: int) -> None:
        if frames < 1 or frames % self.frame_multiple:
            raise LyraError(
                f"rvq bottleneck: the frame count must be a positive multiple of "
                f"{self.frame_multiple} (the strides {list(self.strides)}), got {frames}"
            )

    def levels_per_example(self, batch: int, device: torch.device) -> torch.Tensor:
        """How many levels each example keeps in this training step ([B], quantizer dropout)."""
        keep = torch.full((batch,), self.n_codebooks, device=device)
        n_dropout = int(batch * self.quantizer_dropout)
        if n_dropout > 0:
            drawn = torch.randint(1, self.n_codebooks + 1, (batch,))  # DAC's draw, CPU
            keep[:n_dropout] = drawn[:n_dropout].to(device)
        return keep

    def quantize(
        self, h: torch.Tensor, n_quantizers: int | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor], dict[str, torch.Tensor]]:
        """(latent [B, dim, F], codes per level [B, F/stride], {commitment, codebook}).

        `n_quantizers` limits the levels in eval (ignored in training, as in DAC).
        """
        if h.dim() != 3 or h.shape[1] != self.input_channels:
            raise LyraError(
                f"rvq bottleneck: expected encoder features [batch, {self.input_channels}, "
                f"frames], got {list(h.shape)}; the encoder's output channels must equal the "
                f"bottleneck's dim ({self.input_channels})"
            )
        self.check_frames(h.shape[-1])
        h, precision = self.own_precision(h)
        with precision:
            if self.training:
                keep = self.levels_per_example(h.shape[0], h.device)
                levels = self.n_codebooks
            else:
                levels = self.n_codebooks if n_quantizers is None else n_quantizers
                if not 1 <= levels <= self.n_codebooks:
                    raise LyraError(
                        f"rvq bottleneck: n_quantizers must be in 1..{self.n_codebooks}, "
                        f"got {n_quantizers}"
                    )
                keep = None
            z = torch.zeros_like(h)
            residual = h
            commitment = codebook = h.new_zeros(())
            codes = []
            for i, quantizer in enumerate(self.quantizers[:levels]):
                out, level_codes, commit_i, book_i = quantizer(residual)
                residual = residual - out
                if keep is not None:
                    mask = (keep > i).to(h.dtype)
                    out = out * mask[:, None, None]
                    commit_i, book_i = commit_i * mask, book_i * mask
                z = z + out
                commitment = commitment + commit_i.mean()
                codebook = codebook + book_i.mean()
                codes.append(level_codes)
            return z, codes, {"commitment": commitment, "codebook": codebook}

    def dequantize(self, codes: list[torch.Tensor]) -> torch.Tensor:
        """The latent [B, dim, F] for codes of the first len(codes) levels."""
        if not 1 <= len(codes) <= self.n_codebooks:
            raise LyraError(
                f"rvq bottleneck: expected codes for 1..{self.n_codebooks} levels, got {len(codes)}"
            )
        _, precision = self.own_precision(codes[0].new_empty(0, dtype=torch.float32))
        with precision:
            z = self.quantizers[0].decode(codes[0].long())
            for quantizer, level_codes in zip(self.quantizers[1:], codes[1:], strict=False):
                z = z + quantizer.decode(level_codes.long())
        return z

    def sample_prior(
        self,
        batch: int,
        frames: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Dequantised uniform random codes: a shape-compatible draw, not a trained prior.

        `temperature` is ignored (codes are uniform); `frames` must be a multiple of
        `frame_multiple`.
        """
        if batch < 1:
            raise LyraError(f"sample_prior needs batch >= 1, got {batch}")
        self.check_frames(frames)
        device = self.quantizers[0].codebook.weight.device
        codes = [
            torch.randint(
                self.codebook_size, (batch, frames // s), generator=generator, device=device
            )
            for s in self.strides
        ]
        return self.dequantize(codes)

    @torch.no_grad()
    def codebook_usage(self, codes: list[torch.Tensor]) -> torch.Tensor:
        """Fraction of each level's codebook that `codes` use ([levels], a diagnostic)."""
        return torch.stack(
            [
                (torch.bincount(c.flatten(), minlength=self.codebook_size) > 0).float().mean()
                for c in codes
            ]
        )


# -- specs ----------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class RVQSpec:
    """Residual vector quantizer (DAC; multi-scale with strides: SNAC), commitment/codebook terms.

    Defaults are DAC's 44 kHz model. SNAC 24 kHz: dim 768, n_codebooks 3, codebook_size 4096,
    strides [4, 2, 1]. `sample_prior` dequantises uniform random codes.
    """

    dim: int = param(
        1024, doc="latent width (the encoder's output channels)", validator=size(MAX_CHANNELS)
    )
    n_codebooks: int = param(9, doc="quantizer levels", validator=size(MAX_CODEBOOKS))
    codebook_size: int = param(1024, doc="entries per codebook", validator=size(MAX_CODEBOOK_SIZE))
    codebook_dim: int = param(
        8, doc="width of the factorised codes (the lookup space)", validator=size(MAX_CHANNELS)
    )
    strides: tuple[int, ...] = param(
        (),
        doc="per-level temporal stride (SNAC: [8, 4, 2, 1]); one per codebook, or empty for all 1",
        validator=positive_ints(MAX_FACTOR, min_items=0, max_items=MAX_CODEBOOKS),
    )
    quantizer_dropout: float = param(
        0.0,
        doc="fraction of each training batch that keeps a random number of levels "
        "(DAC's training config: 0.5)",
        validator=fraction,
    )
    weight_norm: bool = param(True, doc="weight-normalise the in and out projections")

    def __attrs_post_init__(self) -> None:
        if self.strides and len(self.strides) != self.n_codebooks:
            raise ValueError(
                f"strides must have one entry per codebook (n_codebooks = {self.n_codebooks}), "
                f"got {len(self.strides)}: {list(self.strides)}"
            )

    @staticmethod
    def example() -> RVQSpec:
        """A small multi-scale quantizer for the contract tests."""
        return RVQSpec(dim=16, n_codebooks=3, codebook_size=32, codebook_dim=4, strides=(4, 2, 1))

    def build(self, ctx: BuildContext) -> ResidualVectorQuantizer:
        return ResidualVectorQuantizer(
            dim=self.dim,
            codebook_size=self.codebook_size,
            codebook_dim=self.codebook_dim,
            strides=tuple(self.strides) or (1,) * self.n_codebooks,
            quantizer_dropout=self.quantizer_dropout,
            weight_norm=self.weight_norm,
        )


@hookimpl
def lyra_register_components(registry) -> None:
    registry.add("bottleneck", "rvq", RVQSpec)
