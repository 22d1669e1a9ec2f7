"""Blocks, conv encoder and conv decoder: shapes, options, and clear errors for bad values."""

from __future__ import annotations

import math

import attrs
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from lyra_core import BuildContext, BuildError, EncoderRef, SpecError
from lyra_core.discovery import load_plugins
from lyra_core.spec import structure

REGISTRY = load_plugins().registry
CTX = BuildContext(registry=REGISTRY, channels=1)


pytestmark = pytest.mark.usefixtures("small_and_eager")


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
    encoder: EncoderRef


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


# --- options for the reference codecs (SNAC, RAVE) ------------------------------------------------


def test_depthwise_units_group_the_dilated_conv_only():
    enc = block("encoder_block", 4, 8, 2, depthwise=True)
    unit = enc[0]
    assert unit.conv1.groups == 4 and unit.conv2.groups == 1 and enc[-1].groups == 1


def test_bias_false_removes_every_bias():
    dec = block("decoder_block", 4, 2, 2, bias=False, order="upsample_first")
    assert convs(dec) and all(c.bias is None for c in convs(dec))


def test_asymmetric_padding_pads_stride_minus_one_left_and_stride_right():
    sym, asym = (block("encoder_block", 2, 3, 4, padding=p) for p in ("symmetric", "asymmetric"))
    down = asym[-1]
    assert down.pad == (3, 4) and down.padding == (0,)
    x = torch.randn(1, 2, 32)
    assert sym(x).shape == asym(x).shape == (1, 3, 8)
    h = torch.randn(1, 2, 32)
    expected = nn.functional.conv1d(nn.functional.pad(h, (3, 4)), down.weight, down.bias, 4)
    torch.testing.assert_close(down(h), expected)


def test_noise_injection_draws_from_the_global_generator():
    noise = block("noise_injection", 3, 3, 1)
    x = torch.randn(2, 3, 10)
    torch.manual_seed(5)
    a = noise(x)
    torch.manual_seed(5)
    n = torch.randn(2, 1, 10)
    torch.testing.assert_close(a, x + n * noise.linear(x))
    assert noise.linear.bias is None and parametrize.is_parametrized(noise.linear, "weight")
    dec = block("decoder_block", 4, 2, 2, order="upsample_first", noise=True)
    assert type(dec[2]).__name__ == "NoiseInjection"
    with pytest.raises(BuildError, match="in_channels == out_channels"):
        block("noise_injection", 3, 4, 1)


def test_local_attention_keeps_shape_and_needs_whole_windows():
    attention = block("local_attention", 128, 128, 1, window_size=4)
    assert attention.heads == 2 and attention.frame_multiple == 4
    assert attention(torch.randn(2, 128, 12)).shape == (2, 128, 12)
    with pytest.raises(ValueError, match="multiple of window_size=4"):
        attention(torch.randn(1, 128, 10))
    with pytest.raises(BuildError, match="multiple of head_dim"):
        block("local_attention", 96, 96, 1)


def test_local_attention_attends_within_windows_only():
    attention = block("local_attention", 64, 64, 1, window_size=4)
    x = torch.randn(1, 64, 8)
    y = x.clone()
    y[..., 4:] += 1.0  # change the second window only
    with torch.no_grad():
        torch.testing.assert_close(attention(x)[..., :4], attention(y)[..., :4])


def test_coders_with_attention_expose_its_window_as_frame_multiple():
    attention = spec("block", "local_attention", window_size=2)
    fields = {"base_channels": 32, "c_mults": (2,), "strides": (2,), "attention": attention}
    enc = spec("encoder", "conv_encoder", **fields).build(CTX, in_channels=1, out_channels=8)
    dec = spec("decoder", "conv_decoder", **fields).build(CTX, in_channels=8, out_channels=1)
    assert enc.frame_multiple == dec.frame_multiple == 2
    assert enc(torch.randn(1, 1, 8)).shape == (1, 8, 4)
    assert dec(torch.randn(1, 8, 4)).shape == (1, 1, 8)
    plain = spec("encoder", "conv_encoder", base_channels=4, c_mults=(2,), strides=(2,))
    assert plain.build(CTX, in_channels=1, out_channels=8).frame_multiple == 1


def test_depthwise_input_and_output_convs():
    one_stage = {"base_channels": 4, "c_mults": (2,), "strides": (2,)}
    enc = spec(
        "encoder", "conv_encoder", **one_stage, output_conv="depthwise", output_kernel=7
    ).build(CTX, in_channels=1, out_channels=8)
    assert enc.output[-1].groups == 8 and enc.output[-1].kernel_size == (7,)
    with pytest.raises(BuildError, match="depthwise output conv keeps the width 8"):
        spec("encoder", "conv_encoder", **one_stage, output_conv="depthwise").build(
            CTX, in_channels=1, out_channels=6
        )
    dec = spec("decoder", "conv_decoder", **one_stage, input_conv="depthwise").build(
        CTX, in_channels=6, out_channels=1
    )
    assert [(c.groups, c.kernel_size, c.out_channels) for c in dec.input_conv] == [
        (6, (7,), 6),
        (1, (1,), 8),
    ]


def test_blocks_list_sets_each_block():
    blocks = [spec("block", "encoder_block", dilations=d) for d in [(1, 3, 9), (1, 3)]]
    enc = spec(
        "encoder", "conv_encoder", base_channels=4, c_mults=(2, 4), strides=(2, 2), blocks=blocks
    ).build(CTX, in_channels=1, out_channels=8)
    assert [len(b) - 2 for b in enc.blocks] == [3, 2]
    with pytest.raises(ValueError, match="one spec per block"):
        spec("encoder", "conv_encoder", c_mults=(2, 4), strides=(2, 2), blocks=blocks[:1])


def test_amplitude_half_second_is_raves_order():
    dec = _decoder(amplitude_modulation=True, amplitude_half="second")
    raw = {}
    dec.output.conv.register_forward_hook(lambda m, i, o: raw.setdefault("y", o))
    y = dec(torch.randn(2, 3, 6))
    wave, amplitude = raw["y"][:, :2], raw["y"][:, 2:]
    torch.testing.assert_close(y, wave * torch.sigmoid(amplitude))
