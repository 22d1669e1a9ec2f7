"""The autoencoder model and `lyra summary`: lengths, gradients, padding modes, errors, stages."""

from __future__ import annotations

import math
import types

import attrs
import pytest
import torch

from lyra_core import BuildContext, BuildError, LyraError, ModelRef, hookimpl
from lyra_core.cli.summary import build_on_meta, summarize
from lyra_core.discovery import load_plugins
from lyra_core.interfaces import AudioModel, Filterbank, ModelOutput
from lyra_core.spec import structure


class Fold(Filterbank):
    """A perfect-reconstruction test filterbank: sample n goes to band n mod M (polyphase)."""

    def __init__(self, bands: int):
        super().__init__()
        self.bands = bands

    def analysis(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t = x.shape
        return (
            x.reshape(b, c, t // self.bands, self.bands)
            .transpose(2, 3)
            .reshape(b, -1, t // self.bands)
        )

    def synthesis(self, y: torch.Tensor) -> torch.Tensor:
        b, cm, f = y.shape
        c = cm // self.bands
        return y.reshape(b, c, self.bands, f).transpose(2, 3).reshape(b, c, f * self.bands)


pytestmark = pytest.mark.usefixtures("small_and_eager")


@attrs.frozen(kw_only=True)
class FoldSpec:
    """Polyphase fold into `bands` bands (test-only)."""

    bands: int = 4

    def build(self, ctx: BuildContext) -> Filterbank:
        return Fold(self.bands)


@hookimpl
def lyra_register_components(registry) -> None:
    registry.add("filterbank", "test_fold", FoldSpec)


REGISTRY = load_plugins(
    extra=[
        (
            "model_testparts",
            types.SimpleNamespace(lyra_register_components=lyra_register_components),
        )
    ]
).registry


@attrs.frozen
class _Holder:
    model: ModelRef


def small_model(
    channels: int = 1,
    bands: int | None = None,
    pad: str = "hop",
    bottleneck: dict | None = None,
    strides: tuple[int, ...] = (2, 3),
    decoder_strides: tuple[int, ...] | None = None,
    **decoder,
) -> AudioModel:
    data = {
        "type": "autoencoder",
        "pad": pad,
        "filterbank": None if bands is None else {"type": "test_fold", "bands": bands},
        "encoder": {
            "type": "conv_encoder",
            "base_channels": 4,
            "c_mults": [2, 4],
            "strides": list(strides),
            "block": {"type": "encoder_block", "dilations": [1, 3]},
        },
        "bottleneck": bottleneck or {"type": "gaussian", "latent_dim": 3},
        "decoder": {
            "type": "conv_decoder",
            "base_channels": 4,
            "c_mults": [2, 4],
            "strides": list(decoder_strides or strides[::-1]),
            "block": {"type": "decoder_block", "dilations": [1, 3]},
            **decoder,
        },
    }
    spec = structure({"model": data}, _Holder, REGISTRY).model
    torch.manual_seed(0)
    return spec.build(BuildContext(registry=REGISTRY, channels=channels, segment_length=96))


def test_fold_test_filterbank_is_a_perfect_reconstruction():
    x = torch.randn(2, 3, 40)
    fold = Fold(4)
    assert fold.analysis(x).shape == (2, 12, 10)
    assert torch.equal(fold.synthesis(fold.analysis(x)), x)


@pytest.mark.parametrize("length", [1, 5, 47, 97, 301])
@pytest.mark.parametrize(("bands", "pad"), [(None, "hop"), (4, "hop"), (2, "bands")])
def test_reconstruction_matches_odd_input_lengths(length, bands, pad):
    model = small_model(channels=2, bands=bands, pad=pad).eval()
    out = model(torch.randn(3, 2, length))
    assert isinstance(out, ModelOutput)
    assert out.reconstruction.shape == (3, 2, length)
    hop = 6 * (bands or 1)
    assert model.hop_length == hop
    if pad == "hop":  # every frame covers real audio: ceil(T / hop) frames
        assert out.latent.shape == (3, 3, math.ceil(length / hop))
    assert torch.isfinite(out.reconstruction).all() and set(out.terms) == {"kl"}


def test_bands_padding_rounds_down_like_the_seed():
    model = small_model(pad="bands", strides=(2, 4)).eval()
    z, _ = model.encode(torch.randn(1, 1, 100))  # 100 -> 50 -> 12 frames (floor at each stride)
    assert z.shape == (1, 3, 12)
    y = model.decode(z, 100)
    assert y.shape == (1, 1, 100) and torch.all(y[..., 96:] == 0)  # 12·8 = 96, zero-padded
    assert model.encode(torch.randn(1, 1, 3))[0].shape == (1, 3, 1)  # at least one frame


def test_decode_without_length_gives_frames_times_hop():
    model = small_model(bands=2).eval()
    z, _ = model.encode(torch.randn(2, 1, 50))
    assert z.shape[-1] == 5
    assert model.decode(z).shape == (2, 1, 60)


def test_gradients_reach_every_parameter():
    model = small_model(channels=2, bands=2, amplitude_modulation=True).train()
    out = model(torch.randn(2, 2, 77))
    loss = out.reconstruction.pow(2).mean() + out.terms["kl"]
    loss.backward()
    missing = [
        name
        for name, p in model.named_parameters()
        if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0
    ]
    assert not missing


def test_training_samples_and_eval_is_deterministic():
    model = small_model()
    x = torch.randn(1, 1, 48)
    model.train()
    assert not torch.equal(model.encode(x)[0], model.encode(x)[0])
    model.eval()
    assert torch.equal(model(x).reconstruction, model(x).reconstruction)


def test_single_vector_latent_decodes_to_the_input_length():
    model = small_model(bottleneck={"type": "single_vector", "latent_dim": 3}).eval()
    out = model(torch.randn(2, 1, 61))
    assert out.latent.shape == (2, 3)
    assert out.reconstruction.shape == (2, 1, 61)
    assert model.decode(out.latent).shape == (2, 1, 96)  # the context's segment length


def test_wrong_audio_shape_is_a_lyra_error():
    model = small_model(channels=2)
    for bad in (torch.randn(1, 1, 32), torch.randn(2, 32), torch.randn(1, 2, 0)):
        with pytest.raises(LyraError, match=r"audio \[batch, 2, samples\]"):
            model.encode(bad)


def test_mismatched_encoder_and_decoder_strides_fail_to_build():
    with pytest.raises(BuildError, match="must multiply to the encoder's"):
        small_model(strides=(2, 3), decoder_strides=(2, 2))


def test_summary_matches_a_real_run():
    """The meta-device summary reports the shapes and counts a real CPU run produces."""
    model = small_model(channels=2, bands=2).eval()
    real: dict[str, list[int]] = {}

    def record(name: str):
        return lambda module, inputs, output: real.update({name: list(output.shape)}) and None

    hooks = [
        module.register_forward_hook(record(name))
        for name, module in model.named_modules()
        if name.count(".") == 1 or name in ("encoder", "decoder")
    ]
    with torch.no_grad():
        out = model(torch.randn(1, 2, 70))
    for h in hooks:
        h.remove()

    summary = summarize(model.to("meta"), (1, 2, 70))  # the same weights' shapes, on meta
    rows = {s.name: s for s in summary.stages}
    for name, shape in real.items():
        assert rows[name].output == str(shape), name
    assert rows["encoder"].params == sum(p.numel() for p in model.encoder.parameters())
    assert summary.total_params == sum(p.numel() for p in model.parameters())
    assert [name for name, _ in summary.parts] == ["filterbank", "encoder", "bottleneck", "decoder"]
    assert sum(count for _, count in summary.parts) == summary.total_params
    assert summary.output_shape == str(list(out.reconstruction.shape))
    assert summary.latent_shape == "[1, 3, 6]"  # 70 -> padded to 72 = 6 frames of 12
    assert rows["filterbank.analysis"].output == "[1, 4, 36]"
    assert rows["bottleneck.posterior"].output == "[1, 3, 6], [1, 3, 6]"
    names = [s.name for s in summary.stages]
    assert names.index("encode") < names.index("encoder") < names.index("encoder.blocks.1")
    text = summary.format()
    assert f"total parameters: {summary.total_params:,}" in text


def test_summary_of_a_spec_builds_on_meta():
    spec = types.SimpleNamespace(model=structure({"model": _small_dict()}, _Holder, REGISTRY).model)
    model = build_on_meta(spec, BuildContext(registry=REGISTRY))
    assert all(p.is_meta for p in model.parameters())
    assert not model.training


def _small_dict() -> dict:
    return {
        "type": "autoencoder",
        "encoder": {"type": "conv_encoder", "base_channels": 2, "c_mults": [2], "strides": [2]},
        "bottleneck": {"type": "deterministic", "latent_dim": 2},
        "decoder": {"type": "conv_decoder", "base_channels": 2, "c_mults": [2], "strides": [2]},
    }
