"""The entropy bottleneck: its learned density, rounding and noise, the rate term and training."""

from __future__ import annotations

import math

import attrs
import pytest
import torch
import torch.nn.functional as F

from lyra_core import BuildContext, LyraError, ModelRef, SpecError
from lyra_core.spec import structure
from lyra_plugins.bottlenecks.rate import EntropyBottleneck, EntropyBottleneckSpec

from .helpers import coder


@attrs.frozen
class _Holder:
    model: ModelRef


def bottleneck(latent_dim: int = 3, seed: int = 0) -> EntropyBottleneck:
    """A bottleneck whose density is far from its initial one: random weights, factors, biases."""
    torch.manual_seed(seed)
    built = EntropyBottleneck(latent_dim, (3, 3, 3), 10.0)
    with torch.no_grad():
        for p in built.density.parameters():
            p.add_(torch.randn_like(p))
    return built


def tiny_model(registry, seed: int = 0):
    """An 8 kHz autoencoder with hop 16 (4 PQMF bands, one stride-4 block), 2 latent channels."""
    data = {
        "type": "autoencoder",
        "filterbank": {"type": "pqmf", "bands": 4},
        "encoder": coder("conv_encoder"),
        "bottleneck": {"type": "entropy_bottleneck", "latent_dim": 2},
        "decoder": coder("conv_decoder"),
    }
    spec = structure({"model": data}, _Holder, registry).model
    torch.manual_seed(seed)
    return spec.build(BuildContext(registry=registry, sample_rate=8000, segment_length=1024))


def tones(batch: int = 4, length: int = 1024) -> torch.Tensor:
    """Seeded sums of two sines with random frequencies and amplitudes, [batch, 1, length]."""
    g = torch.Generator().manual_seed(3)
    t = torch.arange(length) / 8000
    freqs = 100 + 1500 * torch.rand(batch, 2, 1, generator=g)
    amps = 0.2 + 0.3 * torch.rand(batch, 2, 1, generator=g)
    return (amps * torch.sin(2 * math.pi * freqs * t)).sum(1, keepdim=True)


def test_density_is_a_cdf_and_its_integer_probabilities_sum_to_one():
    density = bottleneck(4).density
    grid = torch.linspace(-200, 200, 4001, dtype=torch.float64).expand(4, -1)
    with torch.no_grad():
        logits = density.double().logits(grid)  # c = sigmoid(logits): in (0, 1) when finite
    density.float()
    assert torch.isfinite(logits).all()
    assert (logits.diff(dim=1) > 0).all()  # strictly increasing
    cdf = torch.sigmoid(logits)
    assert (cdf[:, -1] - cdf[:, 0] > 0.999).all()  # the grid holds nearly all the mass
    first, table = density.pmf()
    low, high = density.support()
    assert (first <= low).all() and (low < high).all()
    torch.testing.assert_close(table.sum(1), torch.ones(4), atol=1e-6, rtol=0)
    # the table is c(k + ½) − c(k − ½): telescoping over the support gives the CDF's ends
    k = torch.arange(table.shape[1]) + first[0]
    with torch.no_grad():
        ends = torch.sigmoid(density.logits(torch.stack([low - 0.5, high + 0.5], 1).float()))
    torch.testing.assert_close(table.sum(1), ends[:, 1] - ends[:, 0], atol=1e-6, rtol=0)
    assert (table[(k < low.unsqueeze(1)) | (k > high.unsqueeze(1))] == 0).all()


def test_likelihoods_are_bounded_below_and_precise_in_the_upper_tail():
    density = bottleneck(1).density
    with torch.no_grad():
        p = density.likelihood(torch.tensor([[1e6, -1e6, 0.0]]))
        far = density.support()[1].float() + 5
        tail = density.likelihood(far.view(1, 1))
        exact = torch.sigmoid(-density.logits(far.view(1, 1) - 0.5)) - torch.sigmoid(
            -density.logits(far.view(1, 1) + 0.5)
        )
    assert p[0, 0] == p[0, 1] == pytest.approx(1e-9)
    assert p[0, 2] > 1e-9
    torch.testing.assert_close(tail, exact.clamp_min(1e-9), rtol=1e-5, atol=0)


def test_eval_rounds_and_its_rate_is_the_bits_of_the_integers():
    b = bottleneck().eval()
    h = 4 * torch.randn(2, 3, 50)
    z, terms = b.encode(h)
    assert torch.equal(z, torch.round(h))
    with torch.no_grad():
        p = b.density.likelihood(z.transpose(0, 1).reshape(3, -1))
    torch.testing.assert_close(terms["rate"], -torch.log2(p).mean())
    assert EntropyBottleneck.integer_latent


def test_the_step_scales_the_integers_to_the_encoders_units():
    b = bottleneck().eval()
    b.step = 0.25
    h = torch.randn(2, 3, 50)
    z, _ = b.encode(h)
    assert torch.equal(z, torch.round(h / 0.25))
    torch.testing.assert_close(b.decoder_input(z, 50), 0.25 * torch.round(h / 0.25))
    assert (b.decoder_input(z, 50) - h).abs().max() <= 0.125 + 1e-6


def test_training_adds_uniform_noise_of_width_one():
    b = bottleneck().train()
    h = 4 * torch.randn(4, 3, 2000)
    torch.manual_seed(5)
    z, _ = b.encode(h)
    noise = z - h
    assert noise.abs().max() <= 0.5
    assert abs(noise.mean().item()) < 0.01
    assert noise.std().item() == pytest.approx(1 / math.sqrt(12), rel=0.02)  # U(−½, ½)
    assert not torch.equal(z, torch.round(h))


def test_rate_gradient_reaches_the_encoder_and_the_density(registry):
    model = tiny_model(registry).train()
    out = model(tones(2))
    out.terms["rate"].backward()
    for module in (model.encoder, model.bottleneck.density):
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert any(g.abs().sum() > 0 for g in grads)
    assert all(p.grad is None for p in model.decoder.parameters())  # the rate ignores the decoder


def heldout_rate(registry, weight: float, steps: int = 100) -> float:
    """Bits per value in eval after `steps` of L1 + weight·rate on the tones (seeded)."""
    model = tiny_model(registry, seed=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = tones()
    torch.manual_seed(2)
    for _ in range(steps):
        out = model(x)
        loss = F.l1_loss(out.reconstruction, x) + weight * out.terms["rate"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return model.eval()(x).terms["rate"].item()


@pytest.mark.usefixtures("small_and_eager")
def test_a_higher_rate_weight_trains_a_lower_rate(registry):
    low, high = heldout_rate(registry, 0.001), heldout_rate(registry, 0.1)
    assert high < low - 1, (low, high)  # bits per value


def test_prior_samples_follow_the_learned_probabilities():
    b = bottleneck(2)
    first, table = b.density.pmf()
    g = torch.Generator().manual_seed(0)
    z = b.sample_prior(4, 5000, generator=g)
    assert z.shape == (4, 2, 5000) and torch.equal(z, z.round())
    values = first[0] + torch.arange(table.shape[1])
    for channel in range(2):
        counts = torch.bincount((z[:, channel] - first[0]).long().flatten(), minlength=len(values))
        freq = counts.float() / counts.sum()
        assert (freq - table[channel]).abs().max() < 0.01
    mode = b.sample_prior(1, 3, temperature=0)
    assert torch.equal(mode[0, :, 0], values[table.argmax(1)].float())
    assert torch.equal(mode[0, :, 0], mode[0, :, 2])
    again = b.sample_prior(4, 5000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(z, again)
    cold = b.sample_prior(1, 200, temperature=0.01, generator=g)  # p^100: only the likeliest
    p = table.gather(1, (cold[0] - first[0]).long())
    assert (p >= 0.9 * table.max(1, keepdim=True).values).all()


def test_prior_nll_is_the_rate_in_nats():
    b = bottleneck().eval()
    z, terms = b.encode(4 * torch.randn(1, 3, 40))
    assert b.prior_nll(z).item() == pytest.approx(terms["rate"].item() * math.log(2), rel=1e-5)
    with pytest.raises(LyraError, match=r"prior_nll takes a latent \[batch, 3, frames\]"):
        b.prior_nll(torch.zeros(1, 2, 4))


def test_a_density_too_wide_to_tabulate_is_a_clear_error():
    b = bottleneck()
    with torch.no_grad():
        b.density.matrices[0].fill_(-40.0)  # slope e^-40: the CDF spans far beyond ±65536
    with pytest.raises(LyraError, match="spreads beyond"):
        b.sample_prior(1, 1)


@pytest.mark.parametrize(
    ("data", "path", "message"),
    [
        ({"widths": []}, "$.widths", "must not be empty"),
        ({"widths": [3, 0]}, "$.widths", "positive integers up to 64"),
        ({"init_scale": 0}, "$.init_scale", "must be positive"),
    ],
)
def test_bad_fields_are_spec_errors_with_paths(registry, data, path, message):
    with pytest.raises(SpecError) as info:
        structure(data, EntropyBottleneckSpec, registry)
    assert any(p == path and message in m for p, m in info.value.problems), info.value.problems
