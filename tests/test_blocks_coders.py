"""Blocks, conv encoder and conv decoder: shapes, options, and clear errors for bad values."""

from __future__ import annotations

import math

import attrs
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from lyra_core import BuildContext, BuildError, Encoder, SpecError
from lyra_core.plugins import load_plugins
from lyra_core.spec import structure

REGISTRY = load_plugins().registry
CTX = BuildContext(registry=REGISTRY, channels=1)


@pytest.fixture(autouse=True, scope="module")
def small_and_eager():
    """Tiny tensors: one intra-op thread avoids OpenMP's overhead on a busy 2-core machine, and
    eager kernels avoid compiling (these tests are about shapes and wiring, not speed)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with torch.compiler.set_stance("force_eager"):
        yield
    torch.set_num_threads(threads)


def spec(kind: str, name: str, **fields):
    return REGISTRY.get(kind, name).spec(**fields)


def block(name: str, cin: int, cout: int, stride: int, **fields) -> nn.Module:
    return spec("block", name, **fields).build(
        CTX, in_channels=cin, out_channels=cout, stride=stride
    )


def convs(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, nn.Conv1d | nn.ConvTranspose1d)]


def test_residual_unit_keeps_shape_and_adds_the_skip():
    unit = block("residual_unit", 6, 6, 1, dilation=3)
    x = torch.randn(2, 6, 37)
    for conv in convs(unit):
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
    assert torch.equal(unit(x), x)  # zero branch: only the skip remains
    nn.init.normal_(convs(unit)[-1].bias)
    assert unit(x).shape == x.shape and not torch.allclose(unit(x), x)
    assert convs(unit)[0].dilation == (3,) and convs(unit)[0].kernel_size == (7,)


@pytest.mark.parametrize(("cin", "cout", "stride"), [(4, 8, 1), (4, 4, 2)])
def test_residual_unit_rejects_width_or_length_changes(cin, cout, stride):
    with pytest.raises(BuildError, match="in_channels == out_channels and stride 1"):
        block("residual_unit", cin, cout, stride)


@pytest.mark.parametrize("stride", [1, 2, 3, 4, 5, 8])
def test_encoder_block_downsamples_by_its_stride(stride):
    enc = block("encoder_block", 3, 5, stride, dilations=(1, 2))
    assert enc(torch.randn(2, 3, 7 * stride)).shape == (2, 5, 7)
    units = [m for m in enc if type(m).__name__ == "ResidualUnit"]
    assert len(units) == 2 and all(convs(u)[0].in_channels == 3 for u in units)
    down = convs(enc)[-1]
    if stride > 1:
        assert down.kernel_size == (2 * stride,) and down.padding == (math.ceil(stride / 2),)


@pytest.mark.parametrize("upsample", ["transposed", "resize"])
@pytest.mark.parametrize("order", ["units_first", "upsample_first"])
@pytest.mark.parametrize("stride", [1, 2, 3, 8])
def test_decoder_block_upsamples_by_its_stride(upsample, order, stride):
    dec = block("decoder_block", 6, 4, stride, order=order, upsample=upsample)
    assert dec(torch.randn(2, 6, 5)).shape == (2, 4, 5 * stride)
    has_transposed = any(isinstance(m, nn.ConvTranspose1d) for m in dec.modules())
    assert has_transposed == (upsample == "transposed" and stride > 1)
    if upsample == "resize":
        assert any(isinstance(m, nn.Upsample) for m in dec.modules())


def test_decoder_block_order_sets_where_the_units_run():
    first = block("decoder_block", 6, 4, 2, order="units_first")
    after = block("decoder_block", 6, 4, 2, order="upsample_first")
    unit_width = {
        name: {convs(m)[0].in_channels for m in b if type(m).__name__ == "ResidualUnit"}
        for name, b in [("first", first), ("after", after)]
    }
    assert unit_width == {"first": {6}, "after": {4}}
    assert type(first[0]).__name__ == "ResidualUnit"  # seed 001: units, act, upsample
    assert isinstance(after[1], nn.ConvTranspose1d)  # DAC: act, upsample, units


@pytest.mark.parametrize("name", ["residual_unit", "encoder_block", "decoder_block"])
def test_weight_norm_parametrizes_every_conv(name):
    stride = 1 if name == "residual_unit" else 2
    plain, normed = (block(name, 4, 4, stride, weight_norm=wn) for wn in (False, True))
    assert not any(parametrize.is_parametrized(c) for c in convs(plain))
    assert all(parametrize.is_parametrized(c, "weight") for c in convs(normed))
    # Weight norm adds one gain per output channel of every conv.
    extra = sum(c.out_channels for c in convs(normed))
    count = sum(p.numel() for p in normed.parameters())
    assert count == sum(p.numel() for p in plain.parameters()) + extra


def test_block_activation_slot_is_used():
    leaky = block("encoder_block", 4, 4, 2, activation=spec("activation", "leaky_relu"))
    assert sum(isinstance(m, nn.LeakyReLU) for m in leaky.modules()) == 7  # 2 per unit + 1


def test_conv_encoder_shapes_and_hop():
    enc = spec(
        "encoder", "conv_encoder", base_channels=4, c_mults=(1, 2, 4), strides=(2, 3, 4)
    ).build(CTX, in_channels=2, out_channels=10)
    assert enc.hop_length == 24
    assert enc(torch.randn(3, 2, 24 * 5)).shape == (3, 10, 5)
    widths = [(b[-1].in_channels, b[-1].out_channels) for b in enc.blocks]
    assert widths == [(4, 4), (4, 8), (8, 16)]  # b·[1, m1, m2] -> b·[m1, m2, m3]
    assert enc.input_conv.kernel_size == (7,) and enc.output[-1].kernel_size == (3,)


def test_conv_decoder_runs_the_widths_backwards():
    dec = spec(
        "decoder", "conv_decoder", base_channels=4, c_mults=(1, 2, 4), strides=(4, 3, 2)
    ).build(CTX, in_channels=3, out_channels=2)
    assert dec.hop_length == 24
    assert dec(torch.randn(2, 3, 5)).shape == (2, 2, 120)
    ups = [m for m in dec.modules() if isinstance(m, nn.ConvTranspose1d)]
    assert [(u.in_channels, u.out_channels, u.stride[0]) for u in ups] == [
        (16, 8, 4),
        (8, 4, 3),
        (4, 4, 2),
    ]


def _decoder(**fields) -> nn.Module:
    torch.manual_seed(0)
    return spec(
        "decoder", "conv_decoder", base_channels=4, c_mults=(2,), strides=(2,), **fields
    ).build(CTX, in_channels=3, out_channels=2)


def test_amplitude_modulation_multiplies_sigmoid_amplitude_by_wave():
    dec = _decoder(amplitude_modulation=True)
    assert dec.output.conv.out_channels == 4
    raw = {}
    dec.output.conv.register_forward_hook(lambda m, i, o: raw.setdefault("y", o))
    y = dec(torch.randn(2, 3, 6))
    amplitude, wave = raw["y"][:, :2], raw["y"][:, 2:]
    assert y.shape == (2, 2, 12)
    torch.testing.assert_close(y, torch.sigmoid(amplitude) * wave)
    assert _decoder(amplitude_modulation=False).output.conv.out_channels == 2


def test_tanh_bounds_the_output():
    dec = _decoder(tanh=True)
    nn.init.constant_(dec.output.conv.bias, 50.0)
    y = dec(torch.randn(1, 3, 6))
    assert y.abs().max() <= 1.0 and y.min() > 0.99


@attrs.frozen
class _Holder:
    encoder: Encoder


@pytest.mark.parametrize(
    ("fields", "path", "message"),
    [
        ({"c_mults": [1, 2], "strides": [2]}, "$.encoder", "one entry per block"),
        ({"strides": [2, 0, 2, 2]}, "$.encoder", "positive integers"),
        ({"input_kernel": 4}, "$.encoder", "positive odd number"),
        ({"block": {"type": "encoder_block", "kernel_size": 6}}, "$.encoder.block", "odd"),
        ({"block": {"type": "decoder_block", "order": "sideways"}}, "$.encoder.block", "sideways"),
    ],
)
def test_bad_values_are_spec_errors_with_paths(fields, path, message):
    with pytest.raises(SpecError) as info:
        structure({"encoder": {"type": "conv_encoder", **fields}}, _Holder, REGISTRY)
    assert any(p.startswith(path) and message in m for p, m in info.value.problems), (
        info.value.problems
    )
