"""The `rvq` bottleneck against DAC's and SNAC's quantizers, codes, losses, dropout and specs."""

from __future__ import annotations

import warnings

import pytest
import torch

from lyra_core import BuildContext, LyraError, SpecError
from lyra_core.interfaces import QuantizingBottleneck
from lyra_core.spec import structure
from lyra_core.testing import check_component
from lyra_plugins.importers.weights import onto_parameters
from lyra_plugins.quantizers import RVQSpec

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the reference packages warn on import
    import dac.nn.quantize as dac_quantize
    import snac.vq as snac_vq

DIM, SIZE, CODE_DIM = 32, 64, 8
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # DAC's legacy weight norm


def build(registry, **fields) -> QuantizingBottleneck:
    fields = {"dim": DIM, "codebook_size": SIZE, "codebook_dim": CODE_DIM, **fields}
    return registry.get("bottleneck", "rvq").spec(**fields).build(BuildContext(registry=registry))


def dac_pair(registry, n_codebooks: int = 4, dropout: float = 0.0):
    torch.manual_seed(0)
    ref = dac_quantize.ResidualVectorQuantize(DIM, n_codebooks, SIZE, CODE_DIM, dropout)
    mine = build(registry, n_codebooks=n_codebooks, quantizer_dropout=dropout)
    mine.load_state_dict(onto_parameters(ref.state_dict(), mine, "dac rvq"))  # as lyra import
    return ref, mine


def snac_pair(registry, strides: list[int]):
    torch.manual_seed(0)
    ref = snac_vq.ResidualVectorQuantize(DIM, SIZE, CODE_DIM, strides)
    mine = build(registry, n_codebooks=len(strides), strides=tuple(strides))
    mine.load_state_dict(ref.state_dict())  # SNAC's keys map one for one
    return ref.eval(), mine.eval()


def assert_close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_contract(registry):
    built = check_component(registry, "bottleneck", "rvq")
    assert isinstance(built, QuantizingBottleneck)
    assert built.frame_multiple == 4 and built.input_channels == built.latent_channels == 16


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_matches_dac(registry, train):
    ref, mine = dac_pair(registry)
    ref.train(train), mine.train(train)
    x = torch.randn(3, DIM, 10)
    z_ref, codes_ref, _, commitment, codebook = ref(x)
    z, codes, terms = mine.quantize(x)
    assert_close(z, z_ref)
    assert torch.equal(torch.stack(codes, 1), codes_ref)
    assert_close(terms["commitment"], commitment)
    assert_close(terms["codebook"], codebook)
    if not train:
        assert_close(mine.dequantize(codes), ref.from_codes(codes_ref)[0])


def test_matches_dac_quantizer_dropout_under_one_seed(registry):
    ref, mine = dac_pair(registry, dropout=0.5)
    ref.train(), mine.train()
    x = torch.randn(8, DIM, 6)
    torch.manual_seed(3)
    z_ref, _, _, commitment, codebook = ref(x)
    torch.manual_seed(3)
    z, _, terms = mine.quantize(x)
    assert_close(z, z_ref)
    assert_close(terms["commitment"], commitment)
    assert_close(terms["codebook"], codebook)


def test_eval_n_quantizers_matches_dac(registry):
    ref, mine = dac_pair(registry)
    ref.eval(), mine.eval()
    x = torch.randn(2, DIM, 5)
    z_ref, codes_ref, _, commitment, _ = ref(x, n_quantizers=2)
    z, codes, terms = mine.quantize(x, n_quantizers=2)
    assert len(codes) == 2
    assert_close(z, z_ref)
    assert torch.equal(torch.stack(codes, 1), codes_ref)
    assert_close(terms["commitment"], commitment)
    with pytest.raises(LyraError, match="n_quantizers"):
        mine.quantize(x, n_quantizers=5)


@pytest.mark.parametrize("strides", [[4, 2, 1], [8, 4, 2, 1]], ids=["snac24k", "snac32k"])
def test_matches_snac(registry, strides):
    ref, mine = snac_pair(registry, strides)
    x = torch.randn(2, DIM, 16)
    z_ref, codes_ref = ref(x)
    z, codes, terms = mine.quantize(x)
    assert mine.frame_multiple == max(strides)
    assert_close(z, z_ref)
    assert [c.shape[-1] for c in codes] == [16 // s for s in strides]
    for c, c_ref in zip(codes, codes_ref, strict=True):
        assert torch.equal(c, c_ref)
    assert_close(mine.dequantize(codes), ref.from_codes(codes_ref))
    assert_close(terms["commitment"], snac_losses(ref, x))
    assert_close(terms["codebook"], terms["commitment"])


def snac_losses(ref, x: torch.Tensor) -> torch.Tensor:
    """DAC's commitment loss for SNAC's levels, from the reference modules (eval: no dropout)."""
    total, residual = torch.zeros(()), x
    for level in ref.quantizers:
        z_e = level.in_proj(torch.nn.functional.avg_pool1d(residual, level.stride))
        z_q, _ = level.decode_latents(z_e)
        total = total + (z_e - z_q).square().mean()
        residual = residual - level(residual)[0]
    return total


@pytest.mark.parametrize("strides", [(), (4, 2, 1)], ids=["dac", "snac"])
def test_dequantize_codes_is_the_latent_in_eval(registry, strides):
    torch.manual_seed(1)
    rvq = build(registry, n_codebooks=3, strides=strides).eval()
    z, codes, _ = rvq.quantize(torch.randn(2, DIM, 8))
    assert all(c.dtype == torch.long for c in codes)
    assert_close(rvq.dequantize(codes), z)
    assert torch.equal(
        rvq.encode(torch.zeros(1, DIM, 8))[0], rvq.quantize(torch.zeros(1, DIM, 8))[0]
    )


def test_straight_through_gradient_reaches_the_input(registry):
    torch.manual_seed(2)
    rvq = build(registry, n_codebooks=2, strides=(2, 1)).train()
    x = torch.randn(2, DIM, 8, requires_grad=True)
    z, _, terms = rvq.quantize(x)
    (z.square().mean() + terms["commitment"]).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    x = torch.randn(2, DIM, 8)
    _, _, terms = rvq.quantize(x)
    terms["codebook"].backward()
    assert rvq.quantizers[0].codebook.weight.grad.abs().sum() > 0


def test_quantizer_dropout_in_training_only(registry):
    rvq = build(registry, n_codebooks=4, quantizer_dropout=1.0)
    x = torch.randn(16, DIM, 4)
    rvq.eval()
    full, codes, _ = rvq.quantize(x)
    assert len(codes) == 4
    rvq.train()
    torch.manual_seed(0)
    keep = rvq.levels_per_example(16, x.device)
    torch.manual_seed(0)
    z, codes, _ = rvq.quantize(x)
    assert len(codes) == 4 and (keep < 4).any() and (keep >= 1).all()
    for example, levels in enumerate(keep.tolist()):
        partial = rvq.dequantize([c[example : example + 1] for c in codes[:levels]])
        assert_close(z[example : example + 1], partial)
    changed = (z - full).abs().amax((1, 2)) > 1e-6
    assert torch.equal(changed, keep < 4)


def test_sample_prior_and_frame_checks(registry):
    rvq = build(registry, n_codebooks=3, strides=(4, 2, 1))
    gen = torch.Generator().manual_seed(0)
    sample = rvq.sample_prior(2, 8, generator=gen)
    assert sample.shape == (2, DIM, 8)
    with pytest.raises(LyraError, match="multiple of 4"):
        rvq.sample_prior(2, 6)
    with pytest.raises(LyraError, match="multiple of 4"):
        rvq.quantize(torch.randn(1, DIM, 6))
    with pytest.raises(LyraError, match="encoder features"):
        rvq.quantize(torch.randn(1, DIM + 1, 8))
    usage = rvq.codebook_usage(rvq.eval().quantize(torch.randn(2, DIM, 8))[1])
    assert usage.shape == (3,) and (usage > 0).all()


def test_autocast_keeps_float32(registry):
    rvq = build(registry, n_codebooks=2).eval()
    x = torch.randn(2, DIM, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z, _, terms = rvq.quantize(x.bfloat16())
    assert z.dtype == torch.float32 and terms["commitment"].dtype == torch.float32
    z_ref, _, _ = rvq.quantize(x.bfloat16().float())
    assert_close(z, z_ref)


@pytest.mark.parametrize(
    ("data", "path", "message"),
    [
        ({"n_codebooks": 3, "strides": [2, 1]}, "$", "one entry per codebook (n_codebooks = 3)"),
        ({"strides": [2, 0]}, "$.strides", "positive integers"),
        ({"quantizer_dropout": 1.5}, "$.quantizer_dropout", "must be in [0, 1]"),
        ({"codebook_size": 0}, "$.codebook_size", "must be positive"),
    ],
)
def test_bad_fields_are_spec_errors(registry, data, path, message):
    with pytest.raises(SpecError) as info:
        structure(data, RVQSpec, registry)
    assert any(p == path and message in m for p, m in info.value.problems), info.value.problems
