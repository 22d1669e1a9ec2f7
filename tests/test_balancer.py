"""`training.balancer`: EnCodec's gradient balancer gives each loss its weight's share of the
gradient at the reconstruction whatever the loss's scale; other terms keep their weights; the
averaged norms are bias-corrected and restored exactly (a killed and resumed balanced run:
tests/test_training.py)."""

from __future__ import annotations

import pytest
import torch

from lyra_core.experiment import BalancerSpec
from lyra_core.training.balancer import GradientBalancer


def test_each_loss_gets_its_weights_share_whatever_its_scale():
    gen = torch.Generator().manual_seed(0)
    leaf = torch.randn(2, 1, 64, generator=gen, requires_grad=True)
    output = leaf * 1.0  # the reconstruction: a non-leaf tensor
    target = torch.randn(2, 1, 64, generator=gen)
    values = {
        "huge": 1e4 * (output - target).pow(2).mean(),
        "tiny": 1e-3 * (output.abs() - 0.5).abs().mean(),
    }
    weights = {"huge": 3.0, "tiny": 1.0}
    grads = {n: torch.autograd.grad(v, output, retain_graph=True)[0] for n, v in values.items()}
    balancer = GradientBalancer(BalancerSpec(total_norm=2.0, per_example=False))
    surrogate, scales = balancer.surrogate(values, weights, output)
    (balanced,) = torch.autograd.grad(surrogate, output)
    # balanced = a·g_huge + b·g_tiny: each part's norm is its share of total_norm
    basis = torch.stack([grads["huge"].flatten(), grads["tiny"].flatten()], dim=1)
    a, b = torch.linalg.lstsq(basis.double(), balanced.flatten().double()[:, None]).solution
    assert float(a) * grads["huge"].norm() == pytest.approx(2.0 * 3 / 4, rel=1e-5)
    assert float(b) * grads["tiny"].norm() == pytest.approx(2.0 * 1 / 4, rel=1e-5)
    assert scales == pytest.approx({"huge": float(a), "tiny": float(b)}, rel=1e-5)


def test_terms_that_do_not_reach_the_reconstruction_keep_their_weights():
    latent = torch.randn(3, 4, requires_grad=True)
    output = torch.randn(3, 1, 16, requires_grad=True) * 1.0
    values = {"l1": output.abs().mean(), "kl": latent.pow(2).sum()}
    balancer = GradientBalancer(BalancerSpec())
    surrogate, scales = balancer.surrogate(values, {"l1": 1.0, "kl": 0.25}, output)
    (grad,) = torch.autograd.grad(surrogate, latent)
    assert torch.allclose(grad, 0.25 * 2 * latent)
    assert set(scales) == {"l1"}


def test_the_norms_are_a_bias_corrected_moving_average():
    balancer = GradientBalancer(BalancerSpec(decay=0.5))
    for norm in (4.0, 2.0, 1.0):
        averaged = balancer.averaged({"mel": norm})
    # weights 0.25, 0.5, 1 over the three norms, normalised by their sum
    assert averaged["mel"] == pytest.approx((0.25 * 4 + 0.5 * 2 + 1.0 * 1) / 1.75)
    restored = GradientBalancer(BalancerSpec(decay=0.5))
    restored.load_state_dict(balancer.state_dict())
    assert restored.averaged({"mel": 3.0}) == balancer.averaged({"mel": 3.0})
