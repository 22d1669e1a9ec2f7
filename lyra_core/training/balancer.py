"""EnCodec's gradient balancer (Défossez et al. 2022, section 3.4; audiocraft's `Balancer`).

For the losses ℓᵢ that reach the reconstruction ŷ, with weights wᵢ, the gradient at ŷ is

    Σᵢ (wᵢ / Σⱼ wⱼ) · total_norm · ∂ℓᵢ/∂ŷ / (ε + ⟨‖∂ℓᵢ/∂ŷ‖⟩)

where ⟨·⟩ is a bias-corrected moving average of the norm (averaged over DDP ranks), so each
loss's share of the update is its weight's share whatever its scale. Losses that do not reach
ŷ (a KL or commitment term on the latent) enter with their plain weights. One backward pass
through the model: the balanced gradient becomes a surrogate ⟨ŷ, g⟩ whose gradient is g.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist

from lyra_core.experiment import BalancerSpec

EPSILON = 1e-12


class GradientBalancer:
    def __init__(self, spec: BalancerSpec):
        self.spec = spec
        self.total: dict[str, float] = {}  # decayed sums of norms
        self.fix: dict[str, float] = {}  # decayed counts (bias correction)

    def averaged(self, norms: Mapping[str, float]) -> dict[str, float]:
        """Each loss's moving-average gradient norm, after this batch's `norms`."""
        beta = self.spec.decay
        for name, norm in norms.items():
            self.total[name] = self.total.get(name, 0.0) * beta + norm
            self.fix[name] = self.fix.get(name, 0.0) * beta + 1.0
        return {name: self.total[name] / self.fix[name] for name in norms}

    def _norm(self, grad: torch.Tensor) -> torch.Tensor:
        if self.spec.per_example:
            return grad.flatten(1).norm(dim=1).mean()
        return grad.norm()

    def surrogate(
        self, values: Mapping[str, torch.Tensor], weights: Mapping[str, float], output: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """A scalar whose gradient is the balanced one, and each balanced loss's scale."""
        grads, rest = {}, output.new_zeros(())
        for name, value in values.items():
            (grad,) = torch.autograd.grad(value, output, retain_graph=True, allow_unused=True)
            if grad is None:  # does not reach the reconstruction
                rest = rest + weights[name] * value
            else:
                grads[name] = grad
        if not grads:
            return rest, {}
        norms = torch.stack([self._norm(g) for g in grads.values()]).detach()
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(norms)
            norms /= dist.get_world_size()
        average = self.averaged(dict(zip(grads, norms.tolist(), strict=True)))
        total_weight = sum(weights[name] for name in grads)
        scales = {
            name: weights[name] / total_weight * self.spec.total_norm / (EPSILON + average[name])
            for name in grads
        }
        balanced = sum(scales[name] * grad for name, grad in grads.items())
        return rest + (output * balanced.detach()).sum(), scales

    def state_dict(self) -> dict[str, Any]:
        return {"total": dict(self.total), "fix": dict(self.fix)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.total, self.fix = dict(state["total"]), dict(state["fix"])
