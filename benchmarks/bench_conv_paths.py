"""One conv layer at inference, plain conv1d beside the channels-last path Stream switches to.

The layers are those of the causal RAVE v2-sized model (experiments/reference/rave_v2.json with
`"causal": true`) at one 2048-sample chunk, batch 1, 1 thread: the frames each layer sees after
the 16-band PQMF and the strides before it. `plain` is PyTorch's conv1d (at batch 1 on the CPU its
im2col + GEMM path); `channels_last` is the layer after `use_channels_last()`: a channels-last
conv2d of height 1, which oneDNN runs with its direct kernels. `extra_info` holds the shape and,
on the channels-last row, its speed relative to the plain row of the same layer.

Run: `OMP_WAIT_POLICY=PASSIVE .venv/bin/pytest benchmarks/bench_conv_paths.py --benchmark-only`.
"""

from __future__ import annotations

import pytest
import torch

from lyra_core.testing import torch_threads
from lyra_plugins.blocks import conv

# (name, in, out, kernel, stride, dilation, transposed, frames in)
LAYERS = [
    ("unit_96_d9", 96, 96, 3, 1, 9, False, 128),
    ("down_96_192", 96, 192, 8, 4, 1, False, 128),
    ("down_384_768", 384, 768, 8, 4, 1, False, 8),
    ("unit_768_d1", 768, 768, 3, 1, 1, False, 2),
    ("pointwise_768", 768, 768, 1, 1, 1, False, 2),
    ("up_768_384", 768, 384, 8, 4, 1, True, 2),
    ("up_192_96", 192, 96, 8, 4, 1, True, 32),
]
MEDIANS: dict[str, float] = {}


def layer(spec: tuple) -> torch.nn.Module:
    _, c_in, c_out, kernel, stride, dilation, transposed, _ = spec
    torch.manual_seed(0)
    extra = {"transposed": True} if transposed else {"dilation": dilation}
    built = conv(c_in, c_out, kernel, stride=stride, weight_norm=False, causal=True, **extra)
    return built.eval()


@pytest.mark.parametrize("path", ["plain", "channels_last"])
@pytest.mark.parametrize("spec", LAYERS, ids=[s[0] for s in LAYERS])
def test_conv_path(benchmark, spec, path):
    net = layer(spec)
    if path == "channels_last":
        assert net.use_channels_last()
    x = torch.randn(1, spec[1], spec[-1], generator=torch.Generator().manual_seed(0))
    benchmark.group = f"conv layer {spec[0]}, batch 1, 1 thread"
    with torch_threads(1), torch.inference_mode():
        net(x)  # oneDNN builds its primitive on the first call
        y = benchmark(net, x)
    assert torch.isfinite(y).all()
    benchmark.extra_info["shape"] = list(spec[1:])
    stats = getattr(benchmark, "stats", None)
    if not stats:  # --benchmark-disable: no timings
        return
    MEDIANS[f"{spec[0]}-{path}"] = stats.stats.median
    if path == "channels_last" and f"{spec[0]}-plain" in MEDIANS:
        ratio = MEDIANS[f"{spec[0]}-plain"] / stats.stats.median
        benchmark.extra_info["speed_vs_plain"] = round(ratio, 2)
