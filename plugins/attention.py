"""Local (windowed) multi-head self-attention with rotary position embeddings (SNAC's LocalMHA).

Contract (kind `block`, name `local_attention`): `build(ctx, in_channels, out_channels, stride)`
with in_channels == out_channels and stride 1 returns a module mapping [B, C, T] to [B, C, T],
T a multiple of `window_size`, and exposing `frame_multiple` = window_size (the conv encoder and
decoder pass it on, so the autoencoder pads the input to hop·window frames, as SNAC does).

x + to_out(attention(to_qkv(LayerNorm(x)))): the frames are cut into windows of `window_size`
frames that attend only within themselves, C // head_dim heads, rotary embeddings (positions
0…window−1 inside each window, the two halves of each head rotated: GPT-NeoX style) on queries
and keys, softmax(q·kᵀ/√head_dim), no biases. Submodules `norm`, `to_qkv`, `to_out` as in SNAC;
the rotary frequencies are computed, not stored (SNAC's `rel_pos.inv_freq` buffer has no
counterpart).
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from lyra_core import BuildContext, BuildError, hookimpl, param
from lyra_core.validators import MAX_CHANNELS, MAX_SAMPLES, size


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """[x1, x2] -> [−x2, x1] over the last axis."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def rotary(x: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Rotary embedding of x [..., n, d] for positions 0…n−1 (d even)."""
    n, d = x.shape[-2], x.shape[-1]
    inv_freq = 1.0 / (base ** (torch.arange(0, d, 2, device=x.device).float() / d))
    angles = torch.outer(torch.arange(n, device=x.device).float(), inv_freq)
    angles = torch.cat((angles, angles), dim=-1).to(x.dtype)
    return x * angles.cos() + rotate_half(x) * angles.sin()


class LocalAttention(nn.Module):
    """Pre-norm windowed self-attention over [B, C, T], with the skip; see the module doc."""

    def __init__(self, dim: int, window_size: int, head_dim: int, use_rotary: bool):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.to_out = nn.Linear(dim, dim, bias=False)
        self.heads = dim // head_dim
        self.window_size = window_size
        self.frame_multiple = window_size
        self.use_rotary = use_rotary

    def extra_repr(self) -> str:
        return f"heads={self.heads}, window_size={self.window_size}, rotary={self.use_rotary}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t = x.shape
        if t % self.window_size:
            raise ValueError(
                f"local attention needs a multiple of window_size={self.window_size} frames, "
                f"got {t}"
            )
        windows, n = t // self.window_size, self.window_size

        def heads(y: torch.Tensor) -> torch.Tensor:  # [B, T, C] -> [B, heads, windows, n, d]
            return y.reshape(b, windows, n, self.heads, c // self.heads).permute(0, 3, 1, 2, 4)

        q, k, v = map(heads, self.to_qkv(self.norm(x.transpose(1, 2))).chunk(3, dim=-1))
        if self.use_rotary:
            q, k = rotary(q), rotary(k)
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.permute(0, 2, 3, 1, 4).reshape(b, t, c)
        return self.to_out(out).transpose(1, 2) + x


@attrs.frozen(kw_only=True)
class LocalAttentionSpec:
    """Windowed multi-head self-attention with rotary embeddings and the skip (SNAC's LocalMHA)."""

    window_size: int = param(32, doc="frames per attention window", validator=size(MAX_SAMPLES))
    head_dim: int = param(
        64, doc="width of each head; heads = channels // head_dim", validator=size(MAX_CHANNELS)
    )
    rotary: bool = param(True, doc="rotary position embeddings on queries and keys")

    @staticmethod
    def example() -> LocalAttentionSpec:
        """Two heads of width 2, for the contract check's 4 channels."""
        return LocalAttentionSpec(window_size=4, head_dim=2)

    def build(
        self, ctx: BuildContext, in_channels: int, out_channels: int, stride: int = 1
    ) -> nn.Module:
        if in_channels != out_channels or stride != 1:
            raise BuildError(
                "local_attention",
                f"keeps its width and length: needs in_channels == out_channels and stride 1, "
                f"got {in_channels} -> {out_channels}, stride {stride}",
            )
        if in_channels % self.head_dim or self.head_dim % 2:
            raise BuildError(
                "local_attention",
                f"channels ({in_channels}) must be a multiple of head_dim ({self.head_dim}), "
                f"and head_dim even",
            )
        return LocalAttention(in_channels, self.window_size, self.head_dim, self.rotary)


@hookimpl
def lyra_register_components(registry) -> None:
    registry.add("block", "local_attention", LocalAttentionSpec)
