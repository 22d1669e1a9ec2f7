"""Causal convolutions that stream: the layers `causal` components are built from.

A causal layer's output at time t depends on its input up to t only. Offline, that is a conv
padded on the left alone; streaming, the left padding is the end of the previous chunk instead
of zeros (cached_conv's idea, RAVE; EnCodec's and Mimi's streamable convs), so a stream cut into
chunks (each a multiple of the layer's stride) gives exactly the offline output:

- `CachedPad(n)`: n zeros (offline) or the last n input samples seen (streaming) on the left.
- `CausalConv1d`: a Conv1d after a CachedPad of dilation·(kernel − 1) + 1 − stride.
- `CausalConvTranspose1d`: the transposed conv's full output, of which the first T·stride
  samples are kept; streaming, the kernel − stride samples that spill past a chunk are added to
  the start of the next one (overlap-add), the bias added once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lyra_core.interfaces import StreamingState


class CachedPad(StreamingState):
    """Left padding of `size` samples along the last axis: zeros, or the stream's past."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size
        self.streaming = False
        self.register_buffer("cache", torch.zeros(0), persistent=False)

    def reset(self) -> None:
        self.cache = torch.zeros(0, device=self.cache.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return x
        if not self.streaming:
            return F.pad(x, (self.size, 0))
        if self.cache.shape[:-1] != x.shape[:-1]:
            self.cache = x.new_zeros(list(x.shape[:-1]) + [self.size])  # noqa: RUF005 (TorchScript)
        x = torch.cat([self.cache, x], dim=-1)
        self.cache = x[..., -self.size :]
        return x

    def extra_repr(self) -> str:
        return f"size={self.size}"


class CausalConv1d(nn.Conv1d):
    """A Conv1d padded on the left only, so output frame m sees input up to m·stride + stride − 1.

    Parameters are a plain Conv1d's (`weight`, `bias`), so weights move between a causal and a
    non-causal model unchanged.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, padding=0, **kwargs)
        (k,), (d,), (s,) = self.kernel_size, self.dilation, self.stride
        self.left = CachedPad(d * (k - 1) + 1 - s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.left(x))


class CausalConvTranspose1d(nn.ConvTranspose1d):
    """A ConvTranspose1d whose T input frames give the first T·stride samples of its output."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, padding=0, output_padding=0, **kwargs)
        self.overlap = OverlapAdd()  # kernel − stride samples spill past each chunk (≤ T·stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[-1] * self.stride[0]
        y = F.conv_transpose1d(x, self.weight, None, self.stride, 0, 0, self.groups, self.dilation)
        y = self.overlap(y, length)
        return y if self.bias is None else y + self.bias[:, None]


class OverlapAdd(StreamingState):
    """Keeps the first `length` samples of y; streaming, what lay past them in the previous
    chunk is added to their start."""

    def __init__(self):
        super().__init__()
        self.streaming = False
        self.register_buffer("cache", torch.zeros(0), persistent=False)

    def reset(self) -> None:
        self.cache = torch.zeros(0, device=self.cache.device)

    def forward(self, y: torch.Tensor, length: int) -> torch.Tensor:
        if not self.streaming:
            return y[..., :length]
        spill = y.shape[-1] - length
        if self.cache.shape[:-1] == y.shape[:-1] and spill > 0:
            y = torch.cat([y[..., :spill] + self.cache, y[..., spill:]], dim=-1)
        self.cache = y[..., length:]
        return y[..., :length]
