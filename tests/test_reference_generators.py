"""The reference codecs as Lyra specs (experiments/reference/): DAC 44 kHz, SNAC 24/32 kHz, RAVE v2.

Parameter counts are the packages' (dac 1.0.0 `DAC()`, snac 1.2.1 `SNAC(**config)`, acids-rave
2.3.1 v2.gin). DAC's and SNAC's encoders and decoders, small, are installed here: their weights
are copied into Lyra's modules built from the reference specs (sizes reduced) through the module
path maps below, which the state-dict importer can follow, and the outputs must agree.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import attrs
import pytest
import torch
from torch import nn

from lyra_core.cli.summary import build_on_meta, summarize_spec
from lyra_core.context import BuildContext
from lyra_core.discovery import load_plugins
from lyra_core.loader import load_spec

REFERENCE = Path(__file__).resolve().parents[1] / "experiments" / "reference"
REGISTRY = load_plugins().registry
CTX = BuildContext(registry=REGISTRY, channels=1)
TOTALS = {
    "dac_44khz": 76_651_890,
    "snac_24khz": 19_842_914,
    "snac_32khz": 54_546_338,
    "rave_v2": 16_056_928 + 15_479_072,
}
UNIT = ("act1", "conv1", "act2", "conv2")  # the references' ResidualUnit.block.0…3


pytestmark = pytest.mark.usefixtures("small_and_eager")


def spec(name: str):
    return load_spec(REFERENCE / f"{name}.json", REGISTRY)


@pytest.mark.parametrize("name", sorted(TOTALS))
def test_parameter_count_is_the_packages(name):
    summary = summarize_spec(spec(name), REGISTRY)
    assert summary.total_params == summary.trainable_params == TOTALS[name]


def test_frame_multiple_is_snacs_padding():
    """SNAC pads to hop · lcm(first VQ stride, attention window)."""
    for name, hop, multiple in [("snac_24khz", 512, 4), ("snac_32khz", 384, 32)]:
        s = spec(name)
        model = build_on_meta(s, CTX)
        assert (model.hop_length, model.frame_multiple) == (hop, multiple)
        assert s.data.segment_length % (hop * multiple) == 0
    assert build_on_meta(spec("snac_32khz"), CTX).encoder.frame_multiple == 32


# --- copying a reference's weights ---------------------------------------------------------------


def lyra_key(key: str, top: dict[int, str]) -> str | None:
    """A DAC/SNAC encoder or decoder state-dict key as Lyra's; None: no counterpart.

    `top` maps the index in the reference's Sequential (`block.i` / `model.i`) to Lyra's module;
    inside an encoder or decoder block `block.j` is Lyra's `j`, and a residual unit's `block.k`
    is act1, conv1, act2, conv2. Legacy weight norm (`weight_g`, `weight_v`, DAC) becomes
    torch.nn.utils.parametrizations' `original0`, `original1`.
    """
    index, rest = re.fullmatch(r"(?:block|model)\.(\d+)\.(.+)", key).groups()
    if rest.startswith("rel_pos."):  # SNAC's rotary frequencies: computed in Lyra
        return None
    path = top[int(index)]
    if path.startswith("blocks."):
        j, rest = re.fullmatch(r"block\.(\d+)\.(.+)", rest).groups()
        path += f".{j}"
        unit = re.fullmatch(r"block\.(\d)\.(.+)", rest)
        if unit:
            path, rest = f"{path}.{UNIT[int(unit[1])]}", unit[2]
    rest = re.sub(r"weight_g$", "parametrizations.weight.original0", rest)
    rest = re.sub(r"weight_v$", "parametrizations.weight.original1", rest)
    return f"{path}.{rest}"


def copy_reference(reference: nn.Module, lyra: nn.Module, top: dict[int, str]) -> None:
    torch.manual_seed(1)
    with torch.no_grad():
        for p in reference.parameters():  # away from the initial values (Snake's α = 1 …)
            p.add_(0.1 * torch.randn_like(p))
    state = {lyra_key(k, top): v for k, v in reference.state_dict().items()}
    state.pop(None, None)
    lyra.load_state_dict(state, strict=True)


def encoder_map(n_blocks: int, attention: bool) -> dict[int, str]:
    top = {0: "input_conv", **{1 + i: f"blocks.{i}" for i in range(n_blocks)}}
    rest = ["attention", "output.1"] if attention else ["output.1"]  # output.0: identity
    return top | {n_blocks + 1 + i: path for i, path in enumerate(rest)}


def decoder_map(n_blocks: int, head: list[str]) -> dict[int, str]:
    top = {i: path for i, path in enumerate(head)}
    top |= {len(head) + i: f"blocks.{i}" for i in range(n_blocks)}
    return top | {len(top): "output.act", len(top) + 1: "output.conv"}


def assert_same(reference: nn.Module, lyra: nn.Module, x: torch.Tensor, seed: int = 0) -> None:
    with torch.no_grad():
        torch.manual_seed(seed)
        expected = reference(x)
        torch.manual_seed(seed)
        actual = lyra(x)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_dac_encoder_and_decoder_compute_the_same():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.nn.utils.weight_norm is deprecated
        from dac.model.dac import Decoder, Encoder

        reference_encoder = Encoder(8, [2, 4], 16)
        reference_decoder = Decoder(16, 32, [4, 2])
    model = spec("dac_44khz").model
    small = {"base_channels": 8, "c_mults": (2, 4)}
    encoder = attrs.evolve(model.encoder, strides=(2, 4), **small).build(CTX, 1, 16)
    decoder = attrs.evolve(model.decoder, strides=(4, 2), **small).build(CTX, 16, 1)
    copy_reference(
        reference_encoder,
        encoder,
        {0: "input_conv", 1: "blocks.0", 2: "blocks.1", 3: "output.0", 4: "output.1"},
    )
    copy_reference(reference_decoder, decoder, decoder_map(2, ["input_conv"]))
    assert_same(reference_encoder, encoder, torch.randn(2, 1, 64))
    assert_same(reference_decoder, decoder, torch.randn(2, 16, 8))


@pytest.mark.parametrize("attention", [True, False])
def test_snac_encoder_and_decoder_compute_the_same(attention):
    """SNAC 32 kHz's components (depthwise, noise, odd stride 3), small; with and without
    local attention. The noise blocks draw the same numbers from the same seed."""
    from snac.layers import Decoder, Encoder

    window = 4 if attention else None
    reference_encoder = Encoder(16, [2, 3, 2], depthwise=True, attn_window_size=window)
    reference_decoder = Decoder(
        128, 128, [2, 3, 2], noise=True, depthwise=True, attn_window_size=window
    )
    model = spec("snac_32khz").model
    local = attrs.evolve(model.encoder.attention, window_size=4) if attention else None
    small = {"base_channels": 16, "c_mults": (2, 4, 8), "strides": (2, 3, 2), "attention": local}
    encoder = attrs.evolve(model.encoder, **small).build(CTX, 1, 128)
    decoder = attrs.evolve(model.decoder, **small).build(CTX, 128, 1)
    assert encoder.frame_multiple == decoder.frame_multiple == (window or 1)
    head = ["input_conv.0", "input_conv.1"] + (["attention"] if attention else [])
    copy_reference(reference_encoder, encoder, encoder_map(3, attention))
    copy_reference(reference_decoder, decoder, decoder_map(3, head))
    assert_same(reference_encoder, encoder, torch.randn(2, 1, 12 * 4 * 2))
    assert_same(reference_decoder, decoder, torch.randn(2, 128, 8), seed=3)


# --- RAVE v2 -------------------------------------------------------------------------------------

# Measured from acids-rave 2.3.1 (rave/blocks.py, loaded by file path with gin and cached_conv on
# the path; v1.gin's `cc.Conv1d.bias = False`, `cc.ConvTranspose1d.bias = False` and weight norm
# applied): EncoderV2(data_size=16, capacity=96, ratios=[4, 4, 4, 2], latent_size=128, n_out=2,
# kernel_size=3, dilations=[[1, 3, 9]] * 3 + [[1, 3]]) and GeneratorV2 likewise with
# amplitude_modulation=True, each `net[i]` run on [1, 16, 8192] (one 131,072-sample PQMF input) and
# [1, 128, 64]: (net indices, output shape, parameters). Lyra's stages group them.
RAVE_ENCODER = {
    "encoder.input_conv": ([0], "[1, 96, 8192]", 10_848),
    "encoder.blocks.0": ([1, 2, 3, 4, 5], "[1, 192, 2048]", 3 * 37_056 + 147_648),
    "encoder.blocks.1": ([6, 7, 8, 9, 10], "[1, 384, 512]", 3 * 147_840 + 590_208),
    "encoder.blocks.2": ([11, 12, 13, 14, 15], "[1, 768, 128]", 3 * 590_592 + 2_360_064),
    "encoder.blocks.3": ([16, 17, 18, 19], "[1, 1536, 64]", 2 * 2_360_832 + 4_720_128),
    "encoder.output": ([20, 21], "[1, 256, 64]", 1_179_904),
}
RAVE_DECODER = {
    "decoder.input_conv": ([0], "[1, 1536, 64]", 591_360),
    "decoder.blocks.0": ([1, 2, 3, 4], "[1, 768, 128]", 4_720_128 + 2 * 2_360_832),
    "decoder.blocks.1": ([5, 6, 7, 8, 9], "[1, 384, 512]", 2_360_064 + 3 * 590_592),
    "decoder.blocks.2": ([10, 11, 12, 13, 14], "[1, 192, 2048]", 590_208 + 3 * 147_840),
    "decoder.blocks.3": ([15, 16, 17, 18, 19], "[1, 96, 8192]", 147_648 + 3 * 37_056),
    # RAVE's conv gives [1, 32, 8192]; amplitude modulation halves it
    "decoder.output": ([20, 21], "[1, 16, 8192]", 21_536),
}


def test_rave_v2_stages_are_the_packages():
    summary = summarize_spec(spec("rave_v2"), REGISTRY)
    rows = {s.name: (s.output, s.params) for s in summary.stages}
    for table in (RAVE_ENCODER, RAVE_DECODER):
        assert {name: rows[name] for name in table} == {n: (s, p) for n, (_, s, p) in table.items()}
    parts = dict(summary.parts)
    assert (parts["encoder"], parts["decoder"], parts["bottleneck"]) == (16_056_928, 15_479_072, 0)
    assert summary.latent_shape == "[1, 128, 64]" and summary.hop_length == 2048


def test_rave_v2_options():
    """No biases, cached_conv's uneven padding of the strided convs, the amplitude second."""
    model = build_on_meta(spec("rave_v2"), CTX)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv1d | nn.ConvTranspose1d)]
    assert convs and all(c.bias is None for c in convs)
    downs = [b[-1] for b in model.encoder.blocks]
    assert [d.pad for d in downs] == [(3, 4), (3, 4), (3, 4), (1, 2)]
    assert [len(b) - 2 for b in model.encoder.blocks] == [3, 3, 3, 2]
    assert not model.decoder.output.amplitude_first and model.decoder.output.tanh
