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

Inference speed: at batch 1 on the CPU, PyTorch runs conv1d through its im2col + GEMM path,
several times slower here than oneDNN's direct kernels, which it picks for a channels-last
conv2d. `FastConv.use_channels_last` (run on every layer by `Stream` and the streaming export,
through `lyra_core.services.streaming.channels_last_inference`) lays the layer's weight out
channels-last in place (same values, same parameter) and switches it to that conv2d of height 1
whenever no gradient is recorded (`torch.no_grad`, `torch.inference_mode`, tracing for the
export) on the CPU: the same output to float rounding. With gradients (training) every layer
runs the plain conv1d as before.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

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


class FastConv:
    """A Conv1d or ConvTranspose1d that can switch to oneDNN's path at inference."""

    fast: bool = False  # set by use_channels_last, with the weight laid out for it

    def use_channels_last(self, on: bool = True) -> bool:
        """Lay the weight out for the channels-last inference path in place and take that path
        where no gradient is recorded (`on` False: back to plain); True if the layer changed.

        A computed weight (weight norm not folded) is laid out plainly on every pass, and off the
        CPU the plain path is the fast one: such layers stay as they are.
        """
        plain = self.padding_mode == "zeros" and not isinstance(self.padding, str)
        if not plain or parametrize.is_parametrized(self, "weight"):
            return False
        if on and self.weight.device.type != "cpu":
            return False
        with torch.inference_mode(False), torch.no_grad():  # a plain tensor, even in inference
            self.weight.data = _laid_out(self.weight.data, on)
        changed, self.fast = self.fast != on, on
        return changed


def _fast(layer: FastConv, x: torch.Tensor) -> bool:
    return layer.fast and x.device.type == "cpu" and not torch.is_grad_enabled()


def _height_one(x: torch.Tensor) -> torch.Tensor:
    """[B, C, T] as a channels-last [B, C, 1, T] (no copy when x is laid out [B, T, C])."""
    return x.unsqueeze(2).contiguous(memory_format=torch.channels_last)


def conv1d(layer: nn.Conv1d, x: torch.Tensor, bias: bool = True) -> torch.Tensor:
    """`layer`'s convolution of x (its padding, without the bias when `bias` is False)."""
    b = layer.bias if bias else None
    if _fast(layer, x):
        (s,), (p,), (d,) = layer.stride, layer.padding, layer.dilation
        w = layer.weight.unsqueeze(2)
        return F.conv2d(_height_one(x), w, b, (1, s), (0, p), (1, d), layer.groups).squeeze(2)
    w = layer.weight.contiguous()  # a switched weight: PyTorch's kernels pick by its layout
    return F.conv1d(x, w, b, layer.stride, layer.padding, layer.dilation, layer.groups)


def conv_transpose1d(layer: nn.ConvTranspose1d, x: torch.Tensor, bias: bool = True) -> torch.Tensor:
    """`layer`'s transposed convolution of x (without the bias when `bias` is False)."""
    b = layer.bias if bias else None
    (s,), (p,), (o,), (d,) = layer.stride, layer.padding, layer.output_padding, layer.dilation
    if _fast(layer, x):
        w = layer.weight.unsqueeze(2)
        y = F.conv_transpose2d(_height_one(x), w, b, (1, s), (0, p), (0, o), layer.groups, (1, d))
        return y.squeeze(2)
    return F.conv_transpose1d(x, layer.weight.contiguous(), b, s, p, o, layer.groups, d)


def _laid_out(weight: torch.Tensor, fast: bool) -> torch.Tensor:
    """The weight [A, B, K] in memory as [A, K, B] (channels-last once unsqueezed), or plain."""
    if not fast:
        return weight.contiguous()
    return weight.unsqueeze(2).contiguous(memory_format=torch.channels_last).squeeze(2)


class CausalConv1d(FastConv, nn.Conv1d):
    """A Conv1d padded on the left only, so output frame m sees input up to m·stride + stride − 1.

    Parameters are a plain Conv1d's (`weight`, `bias`), so weights move between a causal and a
    non-causal model unchanged.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, padding=0, **kwargs)
        (k,), (d,), (s,) = self.kernel_size, self.dilation, self.stride
        self.left = CachedPad(d * (k - 1) + 1 - s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv1d(self, self.left(x))


class CausalConvTranspose1d(FastConv, nn.ConvTranspose1d):
    """A ConvTranspose1d whose T input frames give the first T·stride samples of its output."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, padding=0, output_padding=0, **kwargs)
        self.overlap = OverlapAdd()  # kernel − stride samples spill past each chunk (≤ T·stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[-1] * self.stride[0]
        y = self.overlap(conv_transpose1d(self, x, bias=False), length)
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
