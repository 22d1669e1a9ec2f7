"""Causal models stream: chunk after chunk gives the offline pass of the same model, for every
chunk size that is a multiple of the hop, and no output depends on later input."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from lyra_core.errors import LyraError
from lyra_core.loader import validate_data
from lyra_core.services.streaming import Stream, channels_last_inference, set_streaming
from lyra_plugins.blocks import conv
from lyra_plugins.blocks.causal import CausalConv1d, CausalConvTranspose1d
from lyra_plugins.filterbanks import PQMF

from .helpers import EAGER_SNAKE
from .test_inference import TINY


def streamed(fn, x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """`fn` over consecutive chunks of x of the given sizes (the last takes the rest)."""
    outs, start = [], 0
    for size in sizes:
        if start >= x.shape[-1]:
            break
        outs.append(fn(x[..., start : start + size]))
        start += size
    if start < x.shape[-1]:
        outs.append(fn(x[..., start:]))
    return torch.cat(outs, dim=-1)


def conv_stack() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        CausalConv1d(2, 6, 7, dilation=3),
        CausalConv1d(6, 8, 8, stride=4),
        weight_norm(CausalConvTranspose1d(8, 4, 8, stride=4)),
        CausalConv1d(4, 2, 3, bias=False),
    ).eval()


@settings(max_examples=12, deadline=None)
@given(
    frames=st.integers(1, 60),
    sizes=st.lists(st.integers(1, 12), min_size=1, max_size=12),
)
def test_causal_convs_stream_exactly_for_any_chunks_of_their_stride(frames, sizes):
    net = conv_stack()
    x = torch.randn(2, 2, 4 * frames, generator=torch.Generator().manual_seed(frames))
    with torch.no_grad():
        offline = net(x)
        set_streaming(net, True)
        online = streamed(net, x, [4 * s for s in sizes])
        set_streaming(net, False)
    assert online.shape == offline.shape
    assert torch.allclose(online, offline, atol=1e-5)


def test_causal_convs_do_not_look_ahead():
    net, x = conv_stack(), torch.randn(1, 2, 400)
    later = x.clone()
    later[..., 300:] += 1.0
    with torch.no_grad():
        assert torch.equal(net(x)[..., :300], net(later)[..., :300])


@settings(max_examples=6, deadline=None)
@given(frames=st.integers(80, 160), sizes=st.lists(st.integers(1, 9), min_size=1, max_size=8))
def test_a_causal_pqmf_streams_and_reconstructs_with_its_delay(frames, sizes):
    bank = PQMF(16, 100.0, causal=True)
    x = torch.randn(1, 2, 16 * frames, generator=torch.Generator().manual_seed(frames))
    offline = bank.synthesis(bank.analysis(x))
    set_streaming(bank, True)
    online = streamed(lambda c: bank.synthesis(bank.analysis(c)), x, [16 * s for s in sizes])
    set_streaming(bank, False)
    assert torch.allclose(online, offline, atol=1e-5)
    delay = bank.delay
    assert delay == 384
    err = (offline[..., delay:] - x[..., :-delay])[..., 512:]  # past the filters' start-up
    assert err.abs().max() < 0.01


def causal_model(registry, **model):
    spec = json.loads(json.dumps(TINY))
    spec["model"] |= {"causal": True, **model}
    built = validate_data(spec, registry, "spec.json")
    torch.manual_seed(0)
    return built.model.build(built.context(registry)).eval()


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(frames=st.integers(4, 40), sizes=st.lists(st.integers(1, 6), min_size=1, max_size=8))
def test_a_causal_model_streams_its_offline_pass(registry, frames, sizes):
    model = causal_model(registry)
    hop = model.hop_length
    x = torch.randn(1, 1, hop * frames, generator=torch.Generator().manual_seed(frames))
    with torch.no_grad():
        offline = model.decode(model.encode(x)[0])
    stream = Stream(model, TINY["data"]["sample_rate"])
    online = streamed(stream, x, [hop * s for s in sizes])
    stream.close()
    assert online.shape == offline.shape
    assert torch.allclose(online, offline, atol=1e-5)


def test_a_causal_models_forward_compensates_its_delay(registry):
    model = causal_model(registry)
    x = torch.randn(2, 1, 64 * model.hop_length)
    delay = model.delay
    assert delay > 0 and model.causal
    with torch.no_grad():
        raw = model.decode(model.encode(x)[0])
        aligned = model(x).reconstruction
    assert aligned.shape == x.shape
    assert torch.allclose(aligned[..., : x.shape[-1] - delay], raw[..., delay:], atol=1e-6)


def test_a_stream_pads_or_refuses_a_chunk_off_the_hop(registry):
    model = causal_model(registry)
    hop = model.hop_length
    with pytest.raises(LyraError, match=f"multiples of {hop} samples"):
        Stream(model, 8000)(torch.zeros(1, 1, hop + 1))
    padded = Stream(model, 8000, pad=True)
    assert padded(torch.zeros(1, 1, hop + 1)).shape[-1] == 2 * hop and padded.padded == hop - 1
    latency = padded.latency(2048)
    assert latency.samples == 2048 + model.delay
    assert latency.milliseconds == pytest.approx(1000 * (2048 + model.delay) / 8000)


def test_a_non_causal_model_cannot_stream_and_noise_cannot_be_causal(registry):
    spec = json.loads(json.dumps(TINY))
    built = validate_data(spec, registry, "spec.json")
    with pytest.raises(LyraError, match="not causal"):
        Stream(built.model.build(built.context(registry)), 8000)
    decoder = {**TINY["model"]["decoder"], "block": {"type": "decoder_block", "noise": True,
                                                      "activation": EAGER_SNAKE}}  # fmt: skip
    with pytest.raises(LyraError, match="fresh noise"):
        causal_model(registry, decoder=decoder)


def fast_and_plain_convs() -> torch.nn.Sequential:
    """One of each conv the blocks build: dilated, strided, depthwise, 1x1, transposed."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        CausalConv1d(3, 8, 3, dilation=9),
        conv(8, 8, 1, weight_norm=False),
        CausalConv1d(8, 8, 3, groups=8, bias=False),
        conv(8, 16, 8, stride=4, padding=(3, 4), weight_norm=False),
        CausalConvTranspose1d(16, 8, 8, stride=4),
        conv(8, 4, 4, stride=2, padding=1, output_padding=0, transposed=True, weight_norm=False),
        conv(4, 2, 7, weight_norm=False, causal=True),
    ).eval()


def test_the_channels_last_inference_path_gives_the_plain_convs_output():
    net, x = fast_and_plain_convs(), torch.randn(2, 3, 64)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        plain = net(x)
        assert channels_last_inference(net) == 7
        fast = net(x)
        assert channels_last_inference(net) == 0  # already on
    assert all(layer.fast for layer in net) and not net[0].weight.is_contiguous()
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert fast.shape == plain.shape and torch.allclose(fast, plain, atol=1e-5)
    channels_last_inference(net, on=False)
    assert net[0].weight.is_contiguous() and not net[0].fast
    with torch.no_grad():
        assert torch.equal(net(x), plain)


def test_with_gradients_the_convs_run_as_before_the_switch():
    x = torch.randn(2, 3, 64)
    grads = []
    for switched in (False, True):
        net = fast_and_plain_convs().train()
        if switched:
            channels_last_inference(net)
        net(x).square().sum().backward()
        grads.append([p.grad for p in net.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*grads, strict=True))


def test_a_stream_switches_its_models_convs_and_hands_back_plain_tensors(registry):
    model = causal_model(registry)
    x = torch.randn(1, 1, 4 * model.hop_length)
    with torch.no_grad():
        offline = model.encode(x)[0]
    stream = Stream(model, 8000)
    convs = [m for m in model.modules() if hasattr(m, "use_channels_last")]
    plain = [parametrize.is_parametrized(m) for m in convs]  # weight norm: left as it is
    assert any(plain) and not all(plain)
    assert [m.fast for m in convs] == [not p for p in plain]
    latent = stream.encode(x)
    assert latent.shape[-1] == 4 and latent.is_contiguous()
    assert torch.allclose(latent, offline, atol=1e-5)


def test_a_weight_normed_conv_and_one_off_the_cpu_keep_their_plain_path():
    layer = weight_norm(CausalConv1d(2, 4, 3))
    assert channels_last_inference(layer) == 0 and not layer.fast
    off_the_cpu = CausalConv1d(2, 4, 3, device="meta")
    assert channels_last_inference(off_the_cpu) == 0 and off_the_cpu.weight.is_contiguous()
