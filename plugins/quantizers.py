"""Quantizing bottlenecks: residual vector quantization (DAC's RVQ and SNAC's multi-scale RVQ as
one bottleneck, `rvq`) and finite scalar quantization (`fsq`, and `residual_fsq` in stages).

Contract (kind `bottleneck`): `build(ctx)` returns a `lyra_core.interfaces.QuantizingBottleneck`.

FSQ (Mentzer et al. 2023) has no codebook to learn and no loss terms: each projected dimension is
bounded with tanh to a few levels and rounded; a code is the mixed-radix number of the levels.
Residual FSQ quantizes what the earlier stages left at a finer scale per stage.

RVQ:

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
    Check,
    EachCheck,
    between,
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


# -- finite scalar quantization -------------------------------------------------------------------


def round_ste(x: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """`x` rounded and clamped to [low, high], with the gradient passed straight through: the
    forward value is exactly the rounded one, the backward the identity."""
    return x.detach().round().clamp(low, high) + (x - x.detach())


class LevelGrid(nn.Module):
    """FSQ's implicit codebook: dimension d of a [B, len(levels), F] tensor takes L_d levels.

    `bound` squashes each dimension with tanh onto L_d integer levels (even L_d: shifted by half
    a step so that zero stays zero); `quantize` rounds (straight through) and divides by L_d // 2,
    so values lie in [-1, 1]. A code is the mixed-radix number of the level indices. The tanh's
    half width is (L_d - 1)/2 · (1 + eps): the slack keeps the shift finite for L_d = 2 and the
    extreme levels reachable; the rounded steps are clamped to the grid.
    """

    def __init__(self, levels: tuple[int, ...], eps: float = 1e-3) -> None:
        super().__init__()
        self.size = math.prod(levels)
        lv = torch.tensor(levels, dtype=torch.float64)
        half_width = (lv - 1) / 2 * (1 + eps)
        offset = (lv % 2 == 0).double() * 0.5
        basis = torch.cumprod(torch.tensor((1, *levels[:-1])), 0)
        column = {"persistent": False}  # derived from the spec: not part of the state dict
        self.register_buffer("levels", torch.tensor(levels)[:, None], **column)
        self.register_buffer("basis", basis[:, None], **column)
        self.register_buffer("half_levels", (lv // 2).float()[:, None], **column)
        self.register_buffer("half_width", half_width.float()[:, None], **column)
        self.register_buffer("offset", offset.float()[:, None], **column)
        self.register_buffer("lowest", -(lv // 2).float()[:, None], **column)
        self.register_buffer("highest", ((lv - 1) // 2).float()[:, None], **column)
        self.register_buffer("shift", torch.atanh(offset / half_width).float()[:, None], **column)

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        """z squashed per dimension to about (-L//2, (L-1)//2), before rounding."""
        return torch.tanh(z + self.shift) * self.half_width - self.offset

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(values [B, D, F] on the grid in [-1, 1], codes [B, F])."""
        steps = round_ste(self.bound(z), self.lowest, self.highest)
        return steps / self.half_levels, self.codes(steps.detach())

    def codes(self, steps: torch.Tensor) -> torch.Tensor:
        """Codes [B, F] of integer level steps [B, D, F] (in -L//2 .. (L-1)//2)."""
        index = steps.round().long() + self.half_levels.long()
        return (index * self.basis).sum(1)

    def steps(self, codes: torch.Tensor) -> torch.Tensor:
        """The integer level steps [B, D, F] (as floats) of codes [B, F]."""
        index = torch.div(codes[:, None, :], self.basis, rounding_mode="floor") % self.levels
        return index.to(self.half_levels.dtype) - self.half_levels

    def values(self, codes: torch.Tensor) -> torch.Tensor:
        """The grid values [B, D, F] in [-1, 1] of codes [B, F]."""
        return self.steps(codes) / self.half_levels


@torch.no_grad()
def perplexity(codes: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """exp(entropy) of the histogram of `codes` (1: one code; codebook_size: all equally used)."""
    flat = codes.flatten()
    counts = torch.zeros(codebook_size, device=flat.device).index_add_(
        0, flat, torch.ones_like(flat, dtype=torch.float32)
    )
    p = counts / counts.sum().clamp_min(1)
    return torch.exp(-torch.special.xlogy(p, p).sum())


class FiniteScalarQuantizer(QuantizingBottleneck):
    """(Residual) finite scalar quantization of `dim`-wide features.

    A 1x1 conv projects the features to len(levels) dimensions; stage k (of `n_stages`)
    quantizes what the earlier stages left, divided by scale_k = (levels - 1)^-k per dimension,
    and adds scale_k · its values back, so later stages refine finely; a 1x1 conv projects the
    sum back to `dim`. Each stage sends one code of prod(levels) per frame. There are no loss
    terms: `perplexity` (exp of the entropy of each stage's code histogram in the batch,
    averaged over the stages) is a detached diagnostic that carries no gradient.
    """

    def __init__(self, dim: int, levels: tuple[int, ...], n_stages: int, name: str) -> None:
        super().__init__()
        self.name = name
        self.input_channels = self.latent_channels = dim
        self.levels = tuple(levels)
        self.n_codebooks = n_stages
        self.grid = LevelGrid(self.levels)
        self.codebook_size = self.grid.size
        self.in_proj = nn.Conv1d(dim, len(levels), 1)
        self.out_proj = nn.Conv1d(len(levels), dim, 1)
        lv = torch.tensor(levels, dtype=torch.float64)
        scales = torch.stack([(lv - 1) ** -k for k in range(n_stages)]).float()
        self.register_buffer("scales", scales[:, :, None], persistent=False)

    def own_precision(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, contextlib.AbstractContextManager]:
        """`x` in the projections' dtype and a context with autocast off (exact levels)."""
        x = x.to(self.in_proj.weight.dtype)
        if torch.amp.is_autocast_available(x.device.type):
            return x, torch.autocast(x.device.type, enabled=False)
        return x, contextlib.nullcontext()

    def stages(self, n_quantizers: int | None) -> int:
        """How many stages to use: all in training; the first `n_quantizers` in eval."""
        if self.training or n_quantizers is None:
            return self.n_codebooks
        if not 1 <= n_quantizers <= self.n_codebooks:
            raise LyraError(
                f"{self.name} bottleneck: n_quantizers must be in 1..{self.n_codebooks}, "
                f"got {n_quantizers}"
            )
        return n_quantizers

    def residual_quantize(
        self, z: torch.Tensor, stages: int
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(sum of the first `stages` stages' scaled values [B, D, F], their codes) for the
        projected features z [B, D, F]."""
        out, residual, codes = torch.zeros_like(z), z, []
        for scale in self.scales[:stages]:
            values, stage_codes = self.grid.quantize(residual / scale)
            step = values * scale
            residual = residual - step.detach()
            out = out + step
            codes.append(stage_codes)
        return out, codes

    def quantize(
        self, h: torch.Tensor, n_quantizers: int | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor], dict[str, torch.Tensor]]:
        """(latent [B, dim, F], codes per stage [B, F], {perplexity})."""
        if h.dim() != 3 or h.shape[1] != self.input_channels:
            raise LyraError(
                f"{self.name} bottleneck: expected encoder features [batch, "
                f"{self.input_channels}, frames], got {list(h.shape)}; the encoder's output "
                f"channels must equal the bottleneck's dim ({self.input_channels})"
            )
        stages = self.stages(n_quantizers)
        h, precision = self.own_precision(h)
        with precision:
            q, codes = self.residual_quantize(self.in_proj(h), stages)
            return self.out_proj(q), codes, {"perplexity": self.perplexity(codes).mean()}

    def dequantize(self, codes: list[torch.Tensor]) -> torch.Tensor:
        """The latent [B, dim, F] for codes of the first len(codes) stages."""
        if not 1 <= len(codes) <= self.n_codebooks:
            raise LyraError(
                f"{self.name} bottleneck: expected codes for 1..{self.n_codebooks} stages, "
                f"got {len(codes)}"
            )
        _, precision = self.own_precision(codes[0].new_empty(0, dtype=torch.float32))
        with precision:
            steps = [
                self.grid.values(c.long()) * scale
                for scale, c in zip(self.scales, codes, strict=False)
            ]
            return self.out_proj(sum(steps[1:], steps[0]))  # summed in quantize's order

    def sample_prior(
        self,
        batch: int,
        frames: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Dequantised uniform random codes: a shape-compatible draw, not a trained prior
        (`temperature` is ignored)."""
        if batch < 1 or frames < 1:
            raise LyraError(f"sample_prior needs batch >= 1 and frames >= 1, got {batch}, {frames}")
        device = self.in_proj.weight.device
        shape = (self.n_codebooks, batch, frames)
        codes = torch.randint(self.codebook_size, shape, generator=generator, device=device)
        return self.dequantize(list(codes))

    def perplexity(self, codes: list[torch.Tensor]) -> torch.Tensor:
        """Each stage's code perplexity in `codes` ([stages], a diagnostic without gradient)."""
        return torch.stack([perplexity(c, self.codebook_size) for c in codes])


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


MAX_FSQ_DIMS = MAX_CODEBOOK_SIZE.bit_length() - 1  # levels of 2 each: the largest codebook


def _within_codebook(levels: tuple[int, ...]) -> bool:
    return math.prod(levels) <= MAX_CODEBOOK_SIZE


FSQ_LEVELS = [
    EachCheck(
        between(2, MAX_CODEBOOK_SIZE, integer=True),
        max_items=MAX_FSQ_DIMS,
        what=f"integers from 2 to {MAX_CODEBOOK_SIZE}",
    ),
    Check(
        _within_codebook,
        lambda v: (
            f"must multiply to at most {MAX_CODEBOOK_SIZE} codes per stage "
            f"(use fewer or smaller levels; their product is {math.prod(v)})"
        ),
        {},
    ),
]


@attrs.frozen(kw_only=True)
class FSQSpec:
    """Finite scalar quantization (Mentzer et al. 2023, "VQ-VAE made simple"): no codebook.

    A 1x1 conv projects the features to one dimension per entry of `levels`; each is bounded
    with tanh to its number of levels, rounded (gradients pass straight through), scaled to
    [-1, 1] and projected back to `dim`. One code of prod(levels) per frame: [8, 5, 5, 5] gives
    1000 codes (about 10 bits). There are no loss terms to weigh; the `perplexity` term (exp of
    the entropy of the batch's code histogram, at most prod(levels)) carries no gradient: a
    `term` loss on it with weight 0 reports it at validation as val/perplexity.
    """

    dim: int = param(
        64, doc="latent width (the encoder's output channels)", validator=size(MAX_CHANNELS)
    )
    levels: tuple[int, ...] = param(
        (8, 5, 5, 5),
        doc="levels of each quantized dimension (each >= 2); a frame's code is one of their "
        "product",
        validator=FSQ_LEVELS,
    )

    @staticmethod
    def example() -> FSQSpec:
        """A small quantizer with an odd and an even level count, for the contract tests."""
        return FSQSpec(dim=16, levels=(5, 4))

    def build(self, ctx: BuildContext) -> FiniteScalarQuantizer:
        return FiniteScalarQuantizer(self.dim, tuple(self.levels), 1, "fsq")


@attrs.frozen(kw_only=True)
class ResidualFSQSpec(FSQSpec):
    """Residual finite scalar quantization: stages of FSQ on one projection, each quantizing
    what the earlier ones left.

    Stage k quantizes the residual divided by (levels - 1)^-k per dimension and adds back its
    values times that scale, so later stages refine finely. Each stage sends one code of
    prod(levels) per frame: n_stages · log2(prod(levels)) bits per frame. In eval,
    `quantize(h, n_quantizers=k)` uses the first k stages.
    """

    n_stages: int = param(
        2, doc="residual quantizer stages (each a code per frame)", validator=size(MAX_CODEBOOKS)
    )

    @staticmethod
    def example() -> ResidualFSQSpec:
        """A small three-stage quantizer for the contract tests."""
        return ResidualFSQSpec(dim=16, levels=(5, 4), n_stages=3)

    def build(self, ctx: BuildContext) -> FiniteScalarQuantizer:
        return FiniteScalarQuantizer(self.dim, tuple(self.levels), self.n_stages, "residual_fsq")


@hookimpl
def lyra_register_components(registry) -> None:
    registry.add("bottleneck", "rvq", RVQSpec)
    registry.add("bottleneck", "fsq", FSQSpec)
    registry.add("bottleneck", "residual_fsq", ResidualFSQSpec)
