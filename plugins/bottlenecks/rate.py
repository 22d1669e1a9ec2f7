"""The entropy bottleneck: a latent trained for its rate together with the distortion.

As in learned compression (Ballé et al. 2017, "End-to-end optimized image compression"), the
latent y is sent as integers round(y), and each channel has a learned density p whose
−log2 p(round(y)) is what an entropy coder spends on it. Training relaxes rounding with additive
uniform noise, y + U(−½, ½), and reports the rate under the density as the term `"rate"` (bits per
latent value), so a spec weights it with a `term` loss and chooses its operating point. The
integers are in units of `step` of the encoder's output: y = h / step, and the decoder gets step·z.

The density is factorized (one per channel): a learned monotone CDF c = sigmoid ∘ f_K ∘ … ∘ f_1,
each f_k(x) = g_k(softplus(H_k)·x + b_k) with g_k(x) = x + tanh(a_k)·tanh(x) (no g on the last
layer), and the likelihood of a value is c(y + ½) − c(y − ½), bounded below at 1e-9.
"""

from __future__ import annotations

import math
from itertools import pairwise

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from lyra_core import BuildContext, LyraError, param
from lyra_core.interfaces import Bottleneck
from lyra_core.validators import MAX_CHANNELS, positive, positive_ints, size

from . import LatentBottleneck

LIKELIHOOD_BOUND = 1e-9
TAIL = 1e-9  # the probability each tail may leave outside `support`
MAX_SUPPORT = 1 << 16  # integers per channel that `pmf` tabulates at most
MAX_WIDTH = 64  # hidden width of a density network
MAX_DEPTH = 16  # its hidden layers


class FactorizedDensity(nn.Module):
    """A learned CDF per channel over the real line (Ballé et al. 2017, appendix 6.1).

    `widths` are the hidden widths of the per-channel network R -> R; `init_scale` makes the
    initial CDF spread over about ±init_scale (each of the K layers scales by init_scale^(−1/K)).
    """

    def __init__(self, channels: int, widths: tuple[int, ...], init_scale: float) -> None:
        super().__init__()
        sizes = list(pairwise((1, *widths, 1)))
        per_layer = init_scale ** (1 / len(sizes))
        self.matrices, self.biases, self.factors = (nn.ParameterList() for _ in range(3))
        for n_in, n_out in sizes:
            # softplus(H) = 1 / (per_layer · n_in): each layer's n_in inputs sum to 1/per_layer
            raw = math.log(math.expm1(1 / (per_layer * n_in)))
            self.matrices.append(nn.Parameter(torch.full((channels, n_out, n_in), raw)))
            self.biases.append(nn.Parameter(torch.rand(channels, n_out, 1) - 0.5))
        for _, n_out in sizes[:-1]:
            self.factors.append(nn.Parameter(torch.zeros(channels, n_out, 1)))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The CDF's logits (c = sigmoid of them) at x [D, N], each row under its channel."""
        x = x.unsqueeze(1)  # [D, 1, N]
        for k, (matrix, bias) in enumerate(zip(self.matrices, self.biases, strict=True)):
            x = F.softplus(matrix) @ x + bias
            if k < len(self.factors):
                x = x + torch.tanh(self.factors[k]) * torch.tanh(x)
        return x.squeeze(1)

    def likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """c(x + ½) − c(x − ½) at x [D, N], bounded below at 1e-9 (the gradient passes)."""
        lower, upper = self.logits(x - 0.5), self.logits(x + 0.5)
        # In the upper tail both CDFs are near 1: subtract the mirrored ones, which are near 0.
        sign = -torch.sign(lower + upper).detach()
        p = (torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower)).abs()
        return p + (p.clamp_min(LIKELIHOOD_BOUND) - p).detach()

    def support(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per channel, the integers [low, high] outside which each tail holds under 1e-9."""
        channels = self.biases[0].shape[0]
        with torch.no_grad():
            edge = torch.full((channels, 2), 1.0, device=self.biases[0].device)
            tail = math.log(TAIL / (1 - TAIL))  # the logit of 1e-9
            for _ in range(int(math.log2(MAX_SUPPORT))):  # double until both tails are small
                logits = self.logits(edge * torch.tensor([-1.0, 1.0], device=edge.device))
                done = (logits[:, 0] < tail) & (logits[:, 1] > -tail)
                if done.all():
                    break
                edge = torch.where(done.unsqueeze(1), edge, 2 * edge)
            else:
                raise LyraError(
                    f"entropy_bottleneck: the learned density spreads beyond ±{MAX_SUPPORT} "
                    "on some channel; it cannot be tabulated (was the model trained with a "
                    "rate term?)"
                )
        return -edge[:, 0].long(), edge[:, 1].long()

    def pmf(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The probability of each integer on every channel's support: the first integer per
        channel [D] and the table [D, N] (zero past a channel's own support; rows sum to ~1)."""
        low, high = self.support()
        grid = low.min() + torch.arange(int(high.max() - low.min()) + 1, device=low.device)
        with torch.no_grad():
            p = self.likelihood(grid.float().expand(low.numel(), -1))
        inside = (grid >= low.unsqueeze(1)) & (grid <= high.unsqueeze(1))
        return low.min().expand_as(low), p * inside


class EntropyBottleneck(LatentBottleneck):
    """An integer latent round(y) with a learned factorized density; its rate is the term."""

    name = "entropy_bottleneck"
    integer_latent = True  # the latent sent is on the integer grid: an entropy coder's symbols

    def __init__(
        self, latent_dim: int, widths: tuple[int, ...], init_scale: float, step: float = 1.0
    ) -> None:
        super().__init__(latent_dim, latent_dim)
        self.density = FactorizedDensity(latent_dim, widths, init_scale)
        self.step = step  # one integer of the latent in the encoder's output units

    def bits(self, z: torch.Tensor) -> torch.Tensor:
        """−log2 of each value's likelihood, [B, D, T] as `z`."""
        rows = z.transpose(0, 1).reshape(z.shape[1], -1)
        bits = -torch.log2(self.density.likelihood(rows))
        return bits.reshape(z.shape[1], z.shape[0], -1).transpose(0, 1)

    def encode(self, h: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        self.check_features(h)
        h, precision = self.own_precision(h)
        with precision:
            h = h / self.step
            # training: the noise that relaxes rounding; eval: round(h), the identity's gradient
            delta = torch.rand_like(h) - 0.5 if self.training else (torch.round(h) - h).detach()
            z = h + delta
            return z, {"rate": self.bits(z).mean()}

    def decoder_input(self, z: torch.Tensor, frames: int) -> torch.Tensor:
        return super().decoder_input(z, frames) * self.step

    def sample_prior(
        self,
        batch: int,
        frames: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Integers drawn from each channel's learned probabilities, sharpened to p^(1/T)
        (temperature 0: each channel's most likely integer)."""
        if batch < 1 or frames < 1 or temperature < 0:
            raise LyraError(
                f"sample_prior needs batch >= 1, frames >= 1 and temperature >= 0, got "
                f"{batch}, {frames}, {temperature}"
            )
        first, p = self.density.pmf()
        if temperature == 0:
            index = p.argmax(1, keepdim=True).expand(-1, batch * frames)
        else:
            scaled = p.log() / temperature  # -inf past a channel's support
            p = (scaled - scaled.max(1, keepdim=True).values).exp()
            cdf = p.cumsum(1) / p.sum(1, keepdim=True)
            u = torch.rand(p.shape[0], batch * frames, generator=generator, device=p.device)
            index = torch.searchsorted(cdf, u).clamp_max(p.shape[1] - 1)  # invert the CDF
        z = (first.unsqueeze(1) + index).to(self._probe.dtype)
        return z.reshape(-1, batch, frames).transpose(0, 1)

    def prior_nll(self, z: torch.Tensor) -> torch.Tensor:
        """Nats per value of the latent under the learned density, [B]."""
        if z.dim() != 3 or z.shape[1] != self.latent_channels:
            raise LyraError(
                f"{self.name} bottleneck: prior_nll takes a latent [batch, "
                f"{self.latent_channels}, frames], got {list(z.shape)}"
            )
        with torch.no_grad():
            return (self.bits(z.to(self._probe.dtype)) * math.log(2)).mean(dim=(1, 2))


@attrs.frozen(kw_only=True)
class EntropyBottleneckSpec:
    """A latent trained for its rate: round(y) sent as integers, a learned density per channel.

    Training adds U(−½, ½) noise instead of rounding and reports the term `rate`, bits per latent
    value under the learned density; weight it with `{"type": "term", "name": "rate", "weight":
    λ}` (a larger λ: fewer bits, more distortion). Bits per second = rate × latent_dim × frames
    per second. The eval latent is round(h / step) itself, integers an entropy coder codes with
    step 1 (no offset); `sample_prior` draws such integers from the learned probabilities.
    """

    latent_dim: int = param(
        64,
        doc="latent dimensions (the encoder gives exactly these)",
        validator=size(MAX_CHANNELS),
    )
    widths: tuple[int, ...] = param(
        (3, 3, 3),
        doc="hidden widths of each channel's density network (Ballé et al. 2017: 3, 3, 3)",
        validator=positive_ints(MAX_WIDTH, max_items=MAX_DEPTH),
    )
    init_scale: float = param(
        10.0, doc="the initial density spreads over about ±init_scale", validator=positive
    )
    step: float = param(
        1.0,
        doc="the quantization step in the encoder's output units: the latent is round(h / step) "
        "and the decoder receives step · latent (a smaller step starts training at more bits)",
        validator=positive,
    )

    def build(self, ctx: BuildContext) -> Bottleneck:
        return EntropyBottleneck(self.latent_dim, tuple(self.widths), self.init_scale, self.step)
