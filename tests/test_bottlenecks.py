"""Bottlenecks: KL against closed forms, RealNVP inverses and log-determinants, priors, shapes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from lyra_core import BuildContext, LyraError, SpecError
from lyra_core.spec import structure
from lyra_core.testing import check_component
from lyra_plugins.bottlenecks import RealNVPSpec, gaussian_kl
from lyra_plugins.bottlenecks.flows import RealNVP

NAMES = ["gaussian", "deterministic", "single_vector", "realnvp"]

# Every configuration whose latent shape or prior differs, small enough to be fast.
CONFIGS = [
    ("gaussian", {}),
    ("gaussian", {"scale": "softplus", "kl_reduction": "sum_latent"}),
    ("deterministic", {}),
    ("single_vector", {}),
    ("single_vector", {"pooling": "attention", "expand": "learned", "anchors": 3}),
    ("realnvp", {}),
    ("realnvp", {"prior": "standard"}),
    ("realnvp", {"single_vector": True, "pooling": "attention", "expand": "learned"}),
    ("realnvp", {"single_vector": True, "prior": "standard"}),
]
IDS = [f"{name}-{'-'.join(map(str, fields.values())) or 'defaults'}" for name, fields in CONFIGS]


def build(registry, name: str, latent_dim: int = 4, **fields):
    if name == "realnvp":
        fields.setdefault("hidden", 16)
        fields.setdefault("depth", 3)
    spec = registry.get("bottleneck", name).spec(latent_dim=latent_dim, **fields)
    return spec.build(BuildContext(registry=registry))


def untrained_flow(dim: int, depth: int = 4, gain: float = 3.0) -> RealNVP:
    """A float64 flow far from the identity: random last layers, scaled up."""
    flow = RealNVP(dim, depth, hidden=8, max_log_scale=2.0, identity_init=False).double()
    with torch.no_grad():
        for layer in flow.layers:
            layer.net[-1].weight.mul_(gain)
            layer.net[-1].bias.normal_()
    return flow


@pytest.mark.parametrize("name", NAMES)
def test_contract(registry, name):
    assert check_component(registry, "bottleneck", name).input_channels > 0


# -- RealNVP flows ------------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [1, 2, 5])
def test_realnvp_inverse_of_forward_is_identity(dim):
    torch.manual_seed(dim)
    flow = untrained_flow(dim).float()
    z = torch.randn(64, dim)
    y, logdet = flow(z)
    back, inv_logdet = flow.inverse(y)
    assert not torch.allclose(y, z, atol=1e-2)  # the flow does something
    torch.testing.assert_close(back, z, atol=1e-5, rtol=0)
    torch.testing.assert_close(inv_logdet, -logdet, atol=1e-5, rtol=0)


@pytest.mark.parametrize("dim", [2, 3, 6])
def test_realnvp_logdet_matches_autograd_jacobian(dim):
    torch.manual_seed(10 + dim)
    flow = untrained_flow(dim)
    for x in torch.randn(3, dim, dtype=torch.float64):
        jac = torch.autograd.functional.jacobian(lambda v: flow(v[None])[0][0], x)
        _, expected = torch.linalg.slogdet(jac)
        _, logdet = flow(x[None])
        torch.testing.assert_close(logdet[0], expected)
        y = flow(x[None])[0][0]
        jac_inv = torch.autograd.functional.jacobian(lambda v: flow.inverse(v[None])[0][0], y)
        torch.testing.assert_close(flow.inverse(y[None])[1][0], torch.linalg.slogdet(jac_inv)[1])
        assert abs(expected.item()) > 0.1  # not a volume-preserving map in disguise


def test_realnvp_scale_is_soft_clamped():
    flow = untrained_flow(4, depth=1, gain=1000.0)
    x = torch.randn(256, 4, dtype=torch.float64)
    logdet = flow(x)[1]
    # one layer transforms 2 of 4 dimensions, each by a log-scale in (−2, 2)
    assert logdet.abs().max() <= 2 * 2.0
    assert torch.isfinite(flow(x)[0]).all()


def test_identity_init_flow_is_the_identity():
    flow = RealNVP(5, depth=3, hidden=8)
    z = torch.randn(10, 5)
    y, logdet = flow(z)
    torch.testing.assert_close(y, z)
    assert torch.equal(logdet, torch.zeros(10))


# -- Gaussian KL --------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "sum_latent"])
@pytest.mark.parametrize("scale", ["logvar", "softplus"])
def test_gaussian_kl_matches_closed_form_and_torch(registry, reduction, scale):
    torch.manual_seed(0)
    bottleneck = build(registry, "gaussian", latent_dim=3, scale=scale, kl_reduction=reduction)
    h = torch.randn(2, 6, 5) * 2
    mu, s = h.chunk(2, dim=1)
    if scale == "logvar":
        logvar = s.clamp(-10, 10)
        sigma = (0.5 * logvar).exp()
    else:
        sigma = F.softplus(s) + 1e-4
        logvar = 2 * sigma.log()
    seed_form = -0.5 * (1 + logvar - mu**2 - logvar.exp())  # the seed's formula, elementwise
    reference = kl_divergence(Normal(mu, sigma), Normal(torch.zeros_like(mu), 1.0))
    torch.testing.assert_close(seed_form, reference, atol=1e-5, rtol=1e-5)
    expected = reference.mean() if reduction == "mean" else reference.sum(1).mean()
    assert torch.allclose(bottleneck.encode(h)[1]["kl"], expected, atol=1e-5)
    bottleneck.eval()
    assert torch.allclose(bottleneck.encode(h)[1]["kl"], expected, atol=1e-5)


def test_logvar_is_clamped(registry):
    bottleneck = build(registry, "gaussian", latent_dim=2, logvar_clamp=(-1.0, 1.0))
    h = torch.tensor([[[0.0], [0.0], [50.0], [-50.0]]])  # μ = 0, logvar = ±50
    mu, logvar = bottleneck.posterior(h)
    assert logvar.flatten().tolist() == [1.0, -1.0]
    kl = bottleneck.encode(h)[1]["kl"]
    assert torch.allclose(kl, gaussian_kl(mu, logvar).mean())
    assert torch.isfinite(kl)


def test_single_vector_kl_and_mean_pooling(registry):
    torch.manual_seed(1)
    bottleneck = build(registry, "single_vector", latent_dim=3).eval()
    h = torch.randn(2, 6, 7)
    z, terms = bottleneck.encode(h)
    mu, logvar = h.mean(-1).chunk(2, dim=1)
    torch.testing.assert_close(z, mu)
    torch.testing.assert_close(terms["kl"], gaussian_kl(mu, logvar).mean())


# -- train vs eval ------------------------------------------------------------------------------


def test_gaussian_samples_in_training_and_returns_mean_in_eval(registry):
    torch.manual_seed(2)
    bottleneck = build(registry, "gaussian", latent_dim=2)
    mu = torch.tensor([1.5, -0.5])
    logvar = torch.tensor([math.log(0.25), math.log(4.0)])
    h = torch.cat([mu, logvar])[None, :, None].expand(1, 4, 20000)
    z = bottleneck.train().encode(h)[0][0]
    assert not torch.allclose(bottleneck.train().encode(h)[0][0], z)  # fresh noise each call
    torch.testing.assert_close(z.mean(-1), mu, atol=0.05, rtol=0)
    torch.testing.assert_close(z.std(-1), (0.5 * logvar).exp(), atol=0.05, rtol=0)
    bottleneck.eval()
    assert torch.equal(bottleneck.encode(h)[0][0], mu[:, None].expand(2, 20000))


@pytest.mark.parametrize("single_vector", [False, True])
def test_realnvp_eval_latent_is_flow_of_mean(registry, single_vector):
    torch.manual_seed(3)
    bottleneck = build(registry, "realnvp", latent_dim=4, single_vector=single_vector)
    h = torch.randn(2, 8, 6)
    mu, _ = bottleneck.posterior(h)
    bottleneck.eval()
    z = bottleneck.encode(h)[0]
    torch.testing.assert_close(z, mu)  # identity-initialised flow: f(μ) = μ
    bottleneck.train()
    assert not torch.allclose(bottleneck.encode(h)[0], mu)


def test_realnvp_time_series_flow_acts_on_each_frame_vector(registry):
    torch.manual_seed(13)
    bottleneck = build(registry, "realnvp", latent_dim=4, identity_init=False).eval()
    h = torch.randn(2, 8, 5)
    z = bottleneck.encode(h)[0]
    mu, _ = bottleneck.posterior(h)
    for t in range(5):
        torch.testing.assert_close(z[:, :, t], bottleneck.posterior_flow(mu[:, :, t])[0])
    assert not torch.allclose(z, mu, atol=1e-3)


def test_deterministic_passes_features_through(registry):
    bottleneck = build(registry, "deterministic", latent_dim=3)
    h = torch.randn(2, 3, 5)
    for mode in (True, False):
        z, terms = bottleneck.train(mode).encode(h)
        assert torch.equal(z, h) and terms == {}
    assert bottleneck.input_channels == bottleneck.latent_channels == 3


# -- priors and shapes --------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "fields"), CONFIGS, ids=IDS)
def test_prior_samples_have_encode_shape_and_decode(registry, name, fields):
    bottleneck = build(registry, name, latent_dim=4, **fields)
    frames = 7
    h = torch.randn(3, bottleneck.input_channels, frames)
    z = bottleneck.encode(h)[0]
    sample = bottleneck.sample_prior(3, frames)
    assert sample.shape == z.shape
    for latent in (z, sample):
        assert bottleneck.decoder_input(latent, frames).shape == (3, 4, frames)
    longer = bottleneck.sample_prior(3, 11)  # any frame count
    assert bottleneck.decoder_input(longer, 11).shape == (3, 4, 11)
    first = bottleneck.sample_prior(2, 5, 0.5, torch.Generator().manual_seed(4))
    again = bottleneck.sample_prior(2, 5, 0.5, torch.Generator().manual_seed(4))
    assert torch.equal(first, again)


def test_flow_prior_samples_are_the_flow_of_scaled_noise(registry):
    bottleneck = build(registry, "realnvp", latent_dim=4, identity_init=False)
    sample = bottleneck.sample_prior(2, 3, 0.7, torch.Generator().manual_seed(5))
    noise = 0.7 * torch.randn((2, 4, 3), generator=torch.Generator().manual_seed(5))
    rows = sample.transpose(1, 2).reshape(-1, 4)
    assert not torch.allclose(rows, noise.transpose(1, 2).reshape(-1, 4), atol=1e-3)
    u, _ = bottleneck.prior_flow.inverse(rows)
    torch.testing.assert_close(u.reshape(2, 3, 4).transpose(1, 2), noise, atol=1e-5, rtol=0)
    zero = bottleneck.sample_prior(2, 3, temperature=0.0)
    g_of_zero = bottleneck.prior_transform(torch.zeros(1, 4))[0]
    torch.testing.assert_close(zero, g_of_zero[None, :, None].expand(2, 4, 3))


def test_learned_expansion_starts_as_broadcast_and_attention_pool_weights_frames(registry):
    torch.manual_seed(6)
    bottleneck = build(
        registry, "single_vector", latent_dim=2, pooling="attention", expand="learned", anchors=4
    )
    z = torch.randn(3, 2)
    assert torch.equal(bottleneck.decoder_input(z, 5), z[:, :, None].expand(3, 2, 5))
    constant = torch.randn(3, 4, 1).expand(3, 4, 9)
    torch.testing.assert_close(bottleneck.pool(constant), constant[..., 0])
    h = torch.randn(3, 4, 9)
    pooled = bottleneck.pool(h)
    assert not torch.allclose(pooled, h.mean(-1))  # not the mean: the query weights frames
    assert ((pooled >= h.min(-1).values - 1e-6) & (pooled <= h.max(-1).values + 1e-6)).all()


# -- gradients ----------------------------------------------------------------------------------


def objective(bottleneck, h: torch.Tensor) -> torch.Tensor:
    z, terms = bottleneck.encode(h)
    decoded = bottleneck.decoder_input(z, h.shape[-1])
    return decoded.sin().pow(2).mean() + sum(terms.values(), torch.zeros(()))


@pytest.mark.parametrize(("name", "fields"), CONFIGS, ids=IDS)
def test_gradients_reach_every_parameter_and_the_features(registry, name, fields):
    torch.manual_seed(7)
    if name == "realnvp":
        fields = {**fields, "identity_init": False}
    bottleneck = build(registry, name, latent_dim=4, **fields)
    h = torch.randn(2, bottleneck.input_channels, 6, requires_grad=True)
    objective(bottleneck, h).backward()
    assert h.grad is not None and h.grad.abs().sum() > 0
    for pname, p in bottleneck.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


def test_identity_initialised_flows_train_every_parameter(registry):
    torch.manual_seed(8)
    bottleneck = build(
        registry, "realnvp", latent_dim=4, single_vector=True, pooling="attention", expand="learned"
    )
    optimizer = torch.optim.SGD(bottleneck.parameters(), lr=0.1)
    h = torch.randn(4, 8, 6)
    for _ in range(2):  # the first step moves the zero-initialised last layers
        optimizer.zero_grad()
        objective(bottleneck, h).backward()
        optimizer.step()
    for pname, p in bottleneck.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


# -- the RealNVP KL estimate --------------------------------------------------------------------


@pytest.mark.parametrize("prior", ["standard", "flow"])
@pytest.mark.parametrize("reduction", ["mean", "sum_latent"])
def test_realnvp_kl_estimate_matches_closed_form_on_average(registry, prior, reduction):
    torch.manual_seed(9)
    kwargs = {"latent_dim": 3, "prior": prior, "kl_reduction": reduction}
    bottleneck = build(registry, "realnvp", **kwargs)
    gaussian = build(registry, "gaussian", latent_dim=3, kl_reduction=reduction)
    h = torch.tensor([1.0, -2.0, 0.5, math.log(0.3), 0.0, math.log(2.0)])[None, :, None]
    h = h.expand(400, 6, 1)
    closed = gaussian.encode(h)[1]["kl"]
    with torch.no_grad():
        estimates = torch.stack([bottleneck.encode(h)[1]["kl"] for _ in range(50)])
    standard_error = estimates.std() / math.sqrt(len(estimates))
    assert abs(estimates.mean() - closed) < 4 * standard_error
    assert estimates.std() > 0  # really a Monte-Carlo estimate


def test_realnvp_kl_is_zero_when_prior_equals_posterior(registry):
    """q = f(N(0, I)) and p = g(N(0, I)) with g = f: every sample's estimate is exactly 0."""
    torch.manual_seed(10)
    bottleneck = build(registry, "realnvp", latent_dim=4, identity_init=False)
    bottleneck.prior_flow.load_state_dict(bottleneck.posterior_flow.state_dict())
    h = torch.zeros(3, 8, 5)  # μ = 0, log σ² = 0
    terms = bottleneck.encode(h)[1]
    assert bottleneck.posterior_flow(torch.randn(5, 4))[1].abs().min() > 0.01  # not the identity
    assert abs(terms["kl"].item()) < 1e-5
    bottleneck.prior_flow = build(registry, "realnvp", latent_dim=4).prior_flow  # identity g
    assert bottleneck.encode(h)[1]["kl"].item() != pytest.approx(0.0, abs=1e-3)


def test_realnvp_kl_reductions_differ_by_latent_dim(registry):
    kwargs = {"latent_dim": 4, "identity_init": False}
    bottleneck = build(registry, "realnvp", kl_reduction="sum_latent", **kwargs)
    h = torch.randn(2, 8, 5)
    torch.manual_seed(11)
    summed = bottleneck.encode(h)[1]["kl"]
    bottleneck2 = build(registry, "realnvp", kl_reduction="mean", **kwargs)
    bottleneck2.load_state_dict(bottleneck.state_dict())
    torch.manual_seed(11)
    assert torch.allclose(bottleneck2.encode(h)[1]["kl"] * 4, summed, atol=1e-5)


VARIATIONAL = [(c, i) for c, i in zip(CONFIGS, IDS, strict=True) if c[0] != "deterministic"]


@pytest.mark.parametrize(
    ("name", "fields"), [c for c, _ in VARIATIONAL], ids=[i for _, i in VARIATIONAL]
)
def test_bf16_autocast_keeps_the_bottleneck_in_float32(registry, name, fields):
    if name == "realnvp":
        fields = {**fields, "identity_init": False}
    bottleneck = build(registry, name, latent_dim=4, **fields)
    h = torch.randn(2, bottleneck.input_channels, 6).bfloat16()  # an autocast encoder's output
    torch.manual_seed(12)
    reference = bottleneck.encode(h.float())
    torch.manual_seed(12)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z, terms = bottleneck.encode(h)
        sample = bottleneck.sample_prior(2, 6, generator=torch.Generator().manual_seed(0))
    assert z.dtype == sample.dtype == torch.float32
    torch.testing.assert_close(z, reference[0], atol=1e-6, rtol=1e-6)
    for key, value in terms.items():
        torch.testing.assert_close(value, reference[1][key], atol=1e-6, rtol=1e-6)
    expected = bottleneck.sample_prior(2, 6, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(sample, expected, atol=1e-6, rtol=1e-6)


def test_a_bf16_model_stays_in_bf16(registry):
    bottleneck = build(registry, "realnvp", latent_dim=4, single_vector=True).bfloat16()
    z, terms = bottleneck.encode(torch.randn(2, 8, 6).bfloat16())
    sample = bottleneck.sample_prior(2, 6)
    assert z.dtype == terms["kl"].dtype == sample.dtype == torch.bfloat16
    assert bottleneck.decoder_input(z, 6).dtype == torch.bfloat16


# -- errors -------------------------------------------------------------------------------------


def test_wrong_feature_width_is_a_clear_error(registry):
    bottleneck = build(registry, "gaussian", latent_dim=4)
    with pytest.raises(LyraError, match=r"expected encoder features \[batch, 8, frames\]"):
        bottleneck.encode(torch.randn(2, 6, 5))
    single = build(registry, "single_vector", latent_dim=4)
    with pytest.raises(LyraError, match=r"expected a latent \[batch, D\] with D = 4"):
        single.decoder_input(torch.randn(2, 4, 5), 5)
    with pytest.raises(LyraError, match="temperature >= 0"):
        single.sample_prior(2, 5, temperature=-1.0)


@pytest.mark.parametrize(
    ("data", "path", "message"),
    [
        ({"depth": 0}, "$.depth", "depth must be positive, got 0"),
        (
            {"logvar_clamp": [5, -5]},
            "$.logvar_clamp",
            "logvar_clamp must be [low, high] with low < high",
        ),
        ({"max_log_scale": 0}, "$.max_log_scale", "max_log_scale must be positive"),
        ({"prior": "glow"}, "$.prior", "glow"),
    ],
)
def test_bad_fields_are_spec_errors_with_paths(registry, data, path, message):
    with pytest.raises(SpecError) as info:
        structure(data, RealNVPSpec, registry)
    assert any(p == path and message in m for p, m in info.value.problems), info.value.problems
