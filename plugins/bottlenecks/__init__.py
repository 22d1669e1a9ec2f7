"""Bottlenecks: Gaussian VAE, deterministic, single-vector and RealNVP-flow latents.

Contract (kind `bottleneck`): `build(ctx)` returns a `lyra_core.interfaces.Bottleneck`. The
variational ones read μ and a scale from the encoder's 2·latent_dim channels and report the KL
divergence to their prior as the term `"kl"`.

KL conventions. Lyra's KL keeps the textbook ½: per latent element
KL = ½(μ² + σ² − 1 − log σ²). `kl_reduction="mean"` averages it over every element (the
LyraCodec VAE's −0.5·mean(1 + logvar − μ² − exp logvar)); `"sum_latent"` sums over the latent
dimensions and averages over batch and frames (the per-frame KL of a D-dimensional Gaussian). RAVE
and stable-audio-tools use "sum_latent" without the ½: their KL weight β matches Lyra's 2β.
Under autocast the bottlenecks still compute in float32: KLs and log-determinants sum many terms.
"""

from __future__ import annotations

import contextlib
import math
from typing import Literal

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from lyra_core import BuildContext, LyraError, hookimpl, param
from lyra_core.interfaces import Bottleneck
from lyra_core.validators import MAX_CHANNELS, positive, size

from .flows import RealNVP

MAX_ANCHORS = 4096
MAX_FLOW_DEPTH = 64

Scale = Literal["logvar", "softplus"]
KLReduction = Literal["mean", "sum_latent"]
LOG_2PI = math.log(2 * math.pi)
SOFTPLUS_FLOOR = 1e-4  # RAVE and SAT: σ = softplus(s) + 1e-4


def _increasing(_: object, a: attrs.Attribute, value: tuple[float, float]) -> None:
    if not value[0] < value[1]:
        raise ValueError(f"{a.name} must be [low, high] with low < high, got {list(value)}")


# -- the math -------------------------------------------------------------------------------------


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Elementwise KL(N(μ, σ²) ‖ N(0, 1)) = ½(μ² + σ² − 1 − log σ²)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def reduce_kl(kl: torch.Tensor, reduction: KLReduction) -> torch.Tensor:
    """Reduce elementwise KL [B, D, ...]: mean over all, or sum over D (dim 1) and mean the rest."""
    return kl.mean() if reduction == "mean" else kl.sum(1).mean()


def standard_normal_logpdf(x: torch.Tensor) -> torch.Tensor:
    """log N(x; 0, I) of each row of [..., D]."""
    return -0.5 * (x.pow(2) + LOG_2PI).sum(-1)


def to_rows(z: torch.Tensor) -> torch.Tensor:
    """[B, D, F] -> [B·F, D] (each frame's vector a row); [B, D] stays as it is."""
    return z if z.dim() == 2 else z.transpose(1, 2).reshape(-1, z.shape[1])


def from_rows(rows: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Inverse of `to_rows` for a tensor shaped like `like`."""
    if like.dim() == 2:
        return rows
    batch, dim, frames = like.shape
    return rows.reshape(batch, frames, dim).transpose(1, 2)


# -- modules --------------------------------------------------------------------------------------


class Pool(nn.Module):
    """[B, C, F] -> [B, C]: the mean over frames, or softmax attention with a learned query."""

    def __init__(self, channels: int, mode: Literal["mean", "attention"]) -> None:
        super().__init__()
        # The query's score for each frame is q·h_t / √C (no bias: softmax ignores a shift).
        self.query = nn.Conv1d(channels, 1, 1, bias=False) if mode == "attention" else None
        self.norm = math.sqrt(channels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.query is None:
            return h.mean(-1)
        weights = torch.softmax(self.query(h) / self.norm, dim=-1)  # [B, 1, F]
        return (h * weights).sum(-1)


class Expand(nn.Module):
    """[B, D] -> [B, D, frames]: broadcast, plus a learned upsampled offset for "learned".

    "learned" maps z to `anchors` frames with a linear layer (zero at init, so it starts as the
    broadcast) and interpolates them linearly to the frame count the decoder needs.
    """

    def __init__(self, dim: int, mode: Literal["broadcast", "learned"], anchors: int) -> None:
        super().__init__()
        self.anchors = anchors
        self.proj = nn.Linear(dim, dim * anchors) if mode == "learned" else None
        if self.proj is not None:
            nn.init.zeros_(self.proj.weight)
            nn.init.zeros_(self.proj.bias)

    def forward(self, z: torch.Tensor, frames: int) -> torch.Tensor:
        out = z.unsqueeze(-1).expand(-1, -1, frames)
        if self.proj is None:
            return out
        offsets = self.proj(z).view(z.shape[0], z.shape[1], self.anchors)
        return out + F.interpolate(offsets, size=frames, mode="linear", align_corners=True)


class LatentBottleneck(Bottleneck):
    """Shared shape checks, prior sampling and single-vector pooling/expansion."""

    name = "bottleneck"

    def __init__(
        self,
        input_channels: int,
        latent_dim: int,
        pool: Pool | None = None,
        expand: Expand | None = None,
    ) -> None:
        super().__init__()
        self.input_channels, self.latent_channels = input_channels, latent_dim
        self.pool, self.expand = pool, expand
        self.register_buffer("_probe", torch.empty(0), persistent=False)  # device and dtype

    def own_precision(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, contextlib.AbstractContextManager]:
        """`x` in this module's dtype and a context with autocast off.

        Under autocast the parameters stay float32, and so do the KL and the log-determinants,
        which sum many terms; a model converted to bf16 as a whole stays in bf16.
        """
        x = x.to(self._probe.dtype)
        if torch.amp.is_autocast_available(x.device.type):
            return x, torch.autocast(x.device.type, enabled=False)
        return x, contextlib.nullcontext()

    @property
    def single_vector(self) -> bool:
        return self.pool is not None

    def check_features(self, h: torch.Tensor) -> None:
        if h.dim() != 3 or h.shape[1] != self.input_channels:
            raise LyraError(
                f"{self.name} bottleneck: expected encoder features [batch, "
                f"{self.input_channels}, frames], got {list(h.shape)}; the encoder's output "
                f"channels must equal the bottleneck's input_channels ({self.input_channels})"
            )

    def decoder_input(self, z: torch.Tensor, frames: int) -> torch.Tensor:
        want = 2 if self.single_vector else 3
        if z.dim() != want or z.shape[1] != self.latent_channels:
            shape = "[batch, D]" if self.single_vector else "[batch, D, frames]"
            raise LyraError(
                f"{self.name} bottleneck: expected a latent {shape} with D = "
                f"{self.latent_channels}, got {list(z.shape)}"
            )
        if self.expand is None:
            return z
        return self.expand(z, frames)

    def prior_transform(self, u: torch.Tensor) -> torch.Tensor:
        """Map standard normal rows [N, D] to prior samples (identity for N(0, I))."""
        return u

    def sample_prior(
        self,
        batch: int,
        frames: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        if batch < 1 or frames < 1 or temperature < 0:
            raise LyraError(
                f"sample_prior needs batch >= 1, frames >= 1 and temperature >= 0, got "
                f"{batch}, {frames}, {temperature}"
            )
        shape = (batch, self.latent_channels)
        if not self.single_vector:
            shape = (*shape, frames)
        probe = self._probe
        u = torch.randn(shape, generator=generator, device=probe.device, dtype=probe.dtype)
        u = u * temperature
        return from_rows(self.prior_transform(to_rows(u)), u)

    def prior_nll(self, z: torch.Tensor) -> torch.Tensor:
        """Nats per value under N(0, I), the frame-wise prior of a time-series latent."""
        if self.single_vector or z.dim() != 3:
            raise LyraError(
                f"{self.name} bottleneck: prior_nll is for time-series latents [batch, D, "
                f"frames], got {list(z.shape)}"
            )
        return (0.5 * z.float().square() + 0.5 * math.log(2 * math.pi)).mean(dim=(1, 2))


class DeterministicBottleneck(LatentBottleneck):
    """The encoder's output is the latent: no sampling, no KL."""

    name = "deterministic"

    def encode(self, h: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        self.check_features(h)
        return h, {}


class GaussianBottleneck(LatentBottleneck):
    """μ and a scale from the features; z ~ N(μ, σ²) in training, μ in eval; closed-form KL."""

    name = "gaussian"

    def __init__(
        self,
        latent_dim: int,
        scale: Scale,
        logvar_clamp: tuple[float, float],
        kl_reduction: KLReduction,
        pool: Pool | None = None,
        expand: Expand | None = None,
    ) -> None:
        super().__init__(2 * latent_dim, latent_dim, pool, expand)
        self.scale, self.logvar_clamp, self.kl_reduction = scale, logvar_clamp, kl_reduction

    def posterior(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """μ and log σ² ([B, D, F], or [B, D] pooled for single-vector latents)."""
        self.check_features(h)
        if self.pool is not None:
            h = self.pool(h)
        mu, s = h.chunk(2, dim=1)
        if self.scale == "softplus":
            return mu, 2.0 * torch.log(F.softplus(s) + SOFTPLUS_FLOOR)
        return mu, s.clamp(*self.logvar_clamp)

    def encode(self, h: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        h, precision = self.own_precision(h)
        with precision:
            mu, logvar = self.posterior(h)
            z = mu + (0.5 * logvar).exp() * torch.randn_like(mu) if self.training else mu
            return z, {"kl": reduce_kl(gaussian_kl(mu, logvar), self.kl_reduction)}


class FlowBottleneck(GaussianBottleneck):
    """A Gaussian posterior pushed through a RealNVP flow, with a standard or RealNVP prior.

    z₀ = μ + σ·ε, z_K = f(z₀). The KL term is the one-sample Monte-Carlo estimate
    log q(z_K|x) − log p(z_K), with log q(z_K|x) = log N(z₀; μ, σ²) − log|det ∂f/∂z₀| and, for a
    flow prior z = g(u), log p(z_K) = log N(g⁻¹(z_K); 0, I) + log|det ∂g⁻¹/∂z_K|. It is computed
    from a fresh sample in eval too; the eval latent is f(μ).
    """

    name = "realnvp"

    def __init__(self, posterior_flow: RealNVP, prior_flow: RealNVP | None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.posterior_flow, self.prior_flow = posterior_flow, prior_flow

    def prior_transform(self, u: torch.Tensor) -> torch.Tensor:
        if self.prior_flow is None:
            return u
        u, precision = self.own_precision(u)
        with precision:
            return self.prior_flow(u)[0]

    def prior_logpdf(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) of each row of [N, D]."""
        if self.prior_flow is None:
            return standard_normal_logpdf(z)
        u, logdet = self.prior_flow.inverse(z)
        return standard_normal_logpdf(u) + logdet

    def encode(self, h: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        h, precision = self.own_precision(h)
        with precision:
            mu, logvar = self.posterior(h)
            eps = torch.randn_like(mu)
            z0 = mu + (0.5 * logvar).exp() * eps
            z_k, logdet = self.posterior_flow(to_rows(z0))
            log_q0 = -0.5 * (eps.pow(2) + logvar + LOG_2PI)  # log N(z₀; μ, σ²), elementwise
            kl = to_rows(log_q0).sum(-1) - logdet - self.prior_logpdf(z_k)  # one per vector
            if self.kl_reduction == "mean":
                kl = kl / self.latent_channels
            z = from_rows(z_k, z0) if self.training else self.mean_latent(mu)
            return z, {"kl": kl.mean()}

    def mean_latent(self, mu: torch.Tensor) -> torch.Tensor:
        """f(μ): the deterministic latent used in eval."""
        return from_rows(self.posterior_flow(to_rows(mu))[0], mu)


# -- specs ----------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class GaussianSpec:
    """Gaussian VAE latent time series: μ and log σ² from the encoder, KL to N(0, I).

    The bottleneck of the snake_pqmf demo and of the LyraCodec VAE."""

    latent_dim: int = param(
        64, doc="latent dimensions D (the encoder gives 2·D)", validator=size(MAX_CHANNELS)
    )
    scale: Scale = param(
        "logvar",
        doc="logvar: the second half is log σ² (clamped; the LyraCodec VAE); "
        "softplus: σ = softplus(s) + 1e-4 (RAVE, stable-audio-tools)",
    )
    logvar_clamp: tuple[float, float] = param(
        (-10.0, 10.0),
        doc="[low, high] clamp of log σ² (scale 'logvar' only)",
        validator=_increasing,
    )
    kl_reduction: KLReduction = param(
        "mean",
        doc="mean: KL averaged over every element (the LyraCodec VAE); sum_latent: summed over the "
        "latent dimensions, averaged over batch and frames (RAVE, SAT: these also drop the ½)",
    )

    def gaussian_args(self) -> dict:
        return {
            "latent_dim": self.latent_dim,
            "scale": self.scale,
            "logvar_clamp": tuple(self.logvar_clamp),
            "kl_reduction": self.kl_reduction,
        }

    def build(self, ctx: BuildContext) -> Bottleneck:
        return GaussianBottleneck(**self.gaussian_args())


@attrs.frozen(kw_only=True)
class DeterministicSpec:
    """Plain autoencoder latent: no sampling, no KL (a VAE's bottleneck, variational part off).

    `sample_prior` draws N(0, I)·temperature: a shape-compatible draw, not a trained prior.
    """

    latent_dim: int = param(
        64,
        doc="latent dimensions (the encoder gives exactly these)",
        validator=size(MAX_CHANNELS),
    )

    def build(self, ctx: BuildContext) -> Bottleneck:
        return DeterministicBottleneck(self.latent_dim, self.latent_dim)


@attrs.frozen(kw_only=True)
class SingleVectorSpec(GaussianSpec):
    """One Gaussian latent vector per example: frames pooled, then expanded for the decoder."""

    pooling: Literal["mean", "attention"] = param(
        "mean",
        doc="how the encoder's frames become one vector: mean, or attention with a learned query",
    )
    expand: Literal["broadcast", "learned"] = param(
        "broadcast",
        doc="how the vector reaches the decoder's frames: repeated, or repeated "
        "plus a learned offset interpolated from `anchors` frames",
    )
    anchors: int = param(
        8,
        doc="frames the learned expansion produces before interpolating",
        validator=size(MAX_ANCHORS),
    )

    def pooling_args(self) -> dict:
        return {
            "pool": Pool(2 * self.latent_dim, self.pooling),
            "expand": Expand(self.latent_dim, self.expand, self.anchors),
        }

    def build(self, ctx: BuildContext) -> Bottleneck:
        return GaussianBottleneck(**self.gaussian_args(), **self.pooling_args())


@attrs.frozen(kw_only=True)
class RealNVPSpec(SingleVectorSpec):
    """Gaussian posterior with a RealNVP flow, and a RealNVP (or standard) prior.

    The bottleneck of experiments/single_vector_flow.json."""

    single_vector: bool = param(
        False,
        doc="one latent vector per example (pooling, expand, anchors apply); "
        "else the flow acts on each frame's vector",
    )
    depth: int = param(4, doc="affine coupling layers per flow", validator=size(MAX_FLOW_DEPTH))
    hidden: int = param(
        128, doc="hidden width of each coupling layer's MLP", validator=size(MAX_CHANNELS)
    )
    max_log_scale: float = param(
        2.0, doc="soft bound c on each layer's log-scale: s = c·tanh(s_raw/c)", validator=positive
    )
    identity_init: bool = param(
        True, doc="zero each coupling net's last layer so the flows start as the identity"
    )
    prior: Literal["flow", "standard"] = param(
        "flow", doc="flow: a learned RealNVP prior z = g(u), u ~ N(0, I); standard: N(0, I)"
    )

    def _flow(self) -> RealNVP:
        return RealNVP(
            self.latent_dim, self.depth, self.hidden, self.max_log_scale, self.identity_init
        )

    def build(self, ctx: BuildContext) -> Bottleneck:
        pooling = self.pooling_args() if self.single_vector else {}
        prior = self._flow() if self.prior == "flow" else None
        return FlowBottleneck(self._flow(), prior, **self.gaussian_args(), **pooling)


@hookimpl
def lyra_register_components(registry) -> None:
    registry.add("bottleneck", "gaussian", GaussianSpec)
    registry.add("bottleneck", "deterministic", DeterministicSpec)
    registry.add("bottleneck", "single_vector", SingleVectorSpec)
    registry.add("bottleneck", "realnvp", RealNVPSpec)
    from .rate import EntropyBottleneckSpec  # here: rate.py builds on this module's classes

    registry.add("bottleneck", "entropy_bottleneck", EntropyBottleneckSpec)
