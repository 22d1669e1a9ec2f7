"""RealNVP normalizing flows on D-vectors (Dinh et al. 2017), used by the `realnvp` bottleneck.

A flow maps [N, D] to [N, D] and returns the log|det J| of each row. Each affine coupling layer
keeps the dimensions under its mask and transforms the others: y = x·exp(s(x_m)) + t(x_m), so
log|det J| = Σ s. Masks alternate between even and odd dimensions from layer to layer.
"""

from __future__ import annotations

import torch
from torch import nn


class AffineCoupling(nn.Module):
    """One affine coupling layer; `mask` (0/1 over D) marks the dimensions it conditions on.

    The log-scale is soft-clamped, s = c·tanh(s_raw / c), so one layer scales by at most e^±c.
    With `identity_init` the net's last layer starts at zero and the layer is the identity.
    """

    def __init__(
        self, mask: torch.Tensor, hidden: int, max_log_scale: float, identity_init: bool
    ) -> None:
        super().__init__()
        dim = mask.numel()
        self.register_buffer("mask", mask.float())
        self.max_log_scale = max_log_scale
        self.net = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.ELU(),
            nn.Linear(hidden, hidden),
            nn.ELU(),
            nn.Linear(hidden, 2 * dim),
        )
        if identity_init:
            nn.init.zeros_(self.net[-1].weight)
            nn.init.zeros_(self.net[-1].bias)

    def _scale_shift(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw_s, t = self.net(x * self.mask).chunk(2, dim=-1)
        free = 1.0 - self.mask
        s = self.max_log_scale * torch.tanh(raw_s / self.max_log_scale)
        return s * free, t * free

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = self._scale_shift(x)
        return x * s.exp() + t, s.sum(-1)

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = self._scale_shift(y)  # the conditioning dimensions pass through unchanged
        return (y - t) * (-s).exp(), -s.sum(-1)


class RealNVP(nn.Module):
    """`depth` affine coupling layers with alternating masks on [N, dim] inputs."""

    def __init__(
        self,
        dim: int,
        depth: int,
        hidden: int,
        max_log_scale: float = 2.0,
        identity_init: bool = True,
    ) -> None:
        super().__init__()
        index = torch.arange(dim)
        self.layers = nn.ModuleList(
            AffineCoupling((index + k) % 2, hidden, max_log_scale, identity_init)
            for k in range(depth)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """y = f(x) and log|det ∂f/∂x| per row."""
        logdet = x.new_zeros(x.shape[:-1])
        for layer in self.layers:
            x, ld = layer(x)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x = f⁻¹(y) and log|det ∂f⁻¹/∂y| per row."""
        logdet = y.new_zeros(y.shape[:-1])
        for layer in reversed(self.layers):
            y, ld = layer.inverse(y)
            logdet = logdet + ld
        return y, logdet
