"""Activation checkpointing of the conv coders' blocks (`checkpoint`): same outputs and gradients,
recomputation only in training with gradients, less memory, and it composes with torch.compile."""

from __future__ import annotations

from collections.abc import Iterator

import attrs
import pytest
import torch
from torch import nn

from lyra_core import BuildContext, ModelRef, SpecError
from lyra_core.discovery import load_plugins
from lyra_core.loader import validate_data
from lyra_core.schema import experiment_schema
from lyra_core.spec import structure
from lyra_core.testing import peak_allocated_bytes, torch_threads
from tests.helpers import EAGER_SNAKE, coder

REGISTRY = load_plugins().registry
FUSED_SNAKE_BETA = {"type": "snake_beta", "implementation": "fused"}
LENGTH = 256


@attrs.frozen
class _Holder:
    model: ModelRef


@pytest.fixture(autouse=True)
def small_and_eager() -> Iterator[None]:
    """One thread, and torch.compile'd functions run eagerly: the fused Snake keeps its own
    autograd Function but skips compiling its kernels (the benchmark runs them compiled)."""
    with torch_threads(1), torch.compiler.set_stance("force_eager"):
        yield


def coders(checkpoint: bool, variant: str) -> tuple[dict, dict]:
    """The tiny conv encoder and decoder of tests/helpers.py, with `checkpoint` and a variant:
    plain; fused SnakeBeta, weight norm and decoder noise; a second noise block and attention."""
    enc, dec = coder("conv_encoder"), coder("conv_decoder")
    if variant == "fused_weight_norm_noise":
        for part in (enc, dec):
            part["activation"] = FUSED_SNAKE_BETA
            part["weight_norm"] = True
            part["block"] |= {"activation": FUSED_SNAKE_BETA, "weight_norm": True}
        dec["block"]["noise"] = True
    if variant == "noise_and_attention":
        attention = {"type": "local_attention", "window_size": 2, "head_dim": 2}
        enc |= {"attention": attention, "c_mults": [1, 2], "strides": [1, 4]}
        noisy = {"type": "decoder_block", "activation": EAGER_SNAKE, "noise": True}
        dec |= {"attention": attention, "c_mults": [1, 2], "strides": [4, 1]}
        dec |= {"blocks": [noisy, {"type": "noise_injection"}]}
    return enc | {"checkpoint": checkpoint}, dec | {"checkpoint": checkpoint}


def model_data(checkpoint: bool, variant: str = "plain") -> dict:
    """A tiny autoencoder's spec, with a Gaussian bottleneck (which samples in training)."""
    enc, dec = coders(checkpoint, variant)
    bottleneck = {"type": "gaussian", "latent_dim": 3}
    return {"type": "autoencoder", "encoder": enc, "bottleneck": bottleneck, "decoder": dec}


def model(checkpoint: bool, variant: str = "plain", seed: int = 0) -> nn.Module:
    """The tiny autoencoder, its weights drawn from `seed`."""
    spec = structure({"model": model_data(checkpoint, variant)}, _Holder, REGISTRY).model
    torch.manual_seed(seed)
    return spec.build(BuildContext(registry=REGISTRY, channels=1, segment_length=LENGTH))


def signal(length: int = LENGTH) -> torch.Tensor:
    return torch.randn(2, 1, length, generator=torch.Generator().manual_seed(7))


def step(net: nn.Module, x: torch.Tensor, seed: int = 1) -> tuple[torch.Tensor, dict]:
    """One forward and backward from the RNG state `seed`: the output and every gradient."""
    net.zero_grad()
    torch.manual_seed(seed)
    out = net(x)
    (out.reconstruction.square().mean() + out.terms["kl"]).backward()
    grads = {name: p.grad.clone() for name, p in net.named_parameters()}
    return out.reconstruction.detach(), grads


def blocks(net: nn.Module) -> list[nn.Module]:
    """The modules that `checkpoint` wraps: each coder's blocks and its attention."""
    coders_ = (net.encoder, net.decoder)
    attention = [c.attention for c in coders_ if c.attention is not None]
    return [b for c in coders_ for b in c.blocks] + attention


def count_calls(net: nn.Module) -> list[int]:
    """A live list of how often each of `blocks(net)` has run forward."""
    calls = [0] * len(blocks(net))
    for i, block in enumerate(blocks(net)):

        def hook(module: nn.Module, args: tuple, i: int = i) -> None:
            calls[i] += 1

        block.register_forward_pre_hook(hook)
    return calls


@pytest.mark.parametrize("variant", ["plain", "fused_weight_norm_noise", "noise_and_attention"])
def test_checkpointing_gives_the_same_output_and_gradients(variant):
    plain, checkpointed = model(False, variant), model(True, variant)
    assert plain.state_dict().keys() == checkpointed.state_dict().keys()
    checkpointed.load_state_dict(plain.state_dict())
    calls = count_calls(checkpointed)
    x = signal()
    y, grads = step(plain, x)
    rng = torch.get_rng_state()
    y_ck, grads_ck = step(checkpointed, x)
    assert calls == [2] * len(calls)  # the forward, and the recomputation in the backward pass
    assert torch.equal(y, y_ck)
    assert grads.keys() == grads_ck.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grads_ck[name], grad, rtol=0, atol=1e-6, msg=name)
    assert all(g.abs().max() > 0 for g in grads.values())
    # The recomputation draws on a copy of the RNG state: the global one ends where it did.
    assert torch.equal(torch.get_rng_state(), rng)


def test_the_noise_is_drawn_again_identically_not_skipped():
    """With noise the outputs differ from one RNG state to the next, yet a checkpointed step
    matches the plain one: the backward recomputation replays the forward's draws."""
    variant = "fused_weight_norm_noise"
    plain, checkpointed = model(False, variant), model(True, variant)
    checkpointed.load_state_dict(plain.state_dict())
    plain.bottleneck.eval()  # the decoder's noise is then the only random draw
    checkpointed.bottleneck.eval()
    x = signal()
    y1, grads1 = step(plain, x, seed=1)
    y2, _ = step(plain, x, seed=2)
    assert not torch.allclose(y1, y2)
    y1_ck, grads1_ck = step(checkpointed, x, seed=1)
    assert torch.equal(y1, y1_ck)
    for name, grad in grads1.items():
        torch.testing.assert_close(grads1_ck[name], grad, rtol=0, atol=1e-6, msg=name)


def test_no_recomputation_in_eval_mode_or_without_gradients():
    plain, checkpointed = model(False), model(True)
    checkpointed.load_state_dict(plain.state_dict())
    calls = count_calls(checkpointed)
    x = signal()
    plain.eval()
    checkpointed.eval()
    torch.manual_seed(3)
    expected = plain(x).reconstruction
    torch.manual_seed(3)
    out = checkpointed(x).reconstruction
    assert torch.equal(out, expected)
    out.square().mean().backward()  # gradients in eval mode: the blocks are not run again
    assert calls == [1] * len(calls)
    checkpointed.train()
    with torch.no_grad():
        assert checkpointed(x).reconstruction.grad_fn is None
    assert calls == [2] * len(calls)


def test_checkpointing_lowers_the_peak_memory_of_a_step():
    """The blocks' activations are freed after the forward pass: a lower peak of tensor bytes."""
    x = signal(16384)
    peaks = []
    for checkpoint in (False, True):
        net = model(checkpoint)
        peaks.append(peak_allocated_bytes(lambda net=net: step(net, x)))
    plain, checkpointed = peaks
    assert checkpointed < 0.8 * plain, peaks


def test_the_option_is_in_the_schema_and_validated():
    defs = experiment_schema(load_plugins(builtins_only=True).registry)["$defs"]
    for name in ("encoder.conv_encoder", "decoder.conv_decoder"):
        field = defs[name]["properties"]["checkpoint"]
        assert field["type"] == "boolean" and field["default"] is False
        assert "recompute" in field["description"]
    experiment = {
        "data": {"dataset": {"type": "synthetic"}, "segment_length": LENGTH},
        "model": model_data(True),
        "losses": [{"type": "l1"}],
        "training": {"optimizer": {"type": "adam"}, "steps": 1},
    }
    spec = validate_data(experiment, REGISTRY)
    assert spec.model.encoder.checkpoint and spec.model.decoder.checkpoint
    experiment["model"]["decoder"]["checkpoint"] = "yes"
    with pytest.raises(SpecError) as info:
        validate_data(experiment, REGISTRY)
    assert [path for path, _ in info.value.problems] == ["$.model.decoder.checkpoint"]


def test_checkpointing_under_torch_compile_of_the_whole_model():
    """torch.compile (through AOTAutograd; `training.compile` adds Inductor's code generation)
    traces the checkpointed blocks and gives the eager model's gradients."""
    variant = "fused_weight_norm_noise"
    plain, checkpointed = model(False, variant), model(True, variant)
    checkpointed.load_state_dict(plain.state_dict())
    x = signal()
    y, grads = step(plain, x)
    torch._dynamo.reset()
    with torch.compiler.set_stance("default"):
        compiled = torch.compile(checkpointed, backend="aot_eager")
        y_ck, grads_ck = step(compiled, x)
    torch._dynamo.reset()
    torch.testing.assert_close(y_ck, y, rtol=0, atol=1e-6)
    for name, grad in grads.items():
        torch.testing.assert_close(grads_ck[f"_orig_mod.{name}"], grad, rtol=0, atol=1e-6, msg=name)
