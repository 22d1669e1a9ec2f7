"""Adversarial losses: hinge and least-squares GAN objectives, and feature matching.

Contract (kind `adversarial`): `build(ctx)` returns a `lyra_core.interfaces.AdversarialLoss`
whose `discriminator_loss(real, fake)` and `generator_loss(real, fake)` take the critiques
(lists of `Critique`, one per sub-discriminator) of real and generated audio and return
unweighted scalars. Every spec has `weight` and `schedule`: the trainer multiplies the value by
`weight * schedule(step)` once; nothing here applies a weight (RAVE applies its
feature-matching weight twice, PR 358).

Per sub-discriminator the objectives are means over its logits; `reduction` then sums them
(HiFi-GAN, DAC, RAVE) or averages them over the sub-discriminators. Values are computed in
float32, so they work under autocast.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import attrs
import torch
import torch.nn.functional as F

from lyra_core import BuildContext, LyraError, hookimpl, param
from lyra_core.interfaces import AdversarialLoss, Critique
from lyra_plugins.losses import LossSpec

Reduction = Literal["sum", "mean"]
REDUCTION_DOC = "combine the sub-discriminators' terms by their sum or their mean"
RELATIVE_EPS = 1e-8  # floor of relative L1's denominator, so all-zero real features stay finite


def _reduce(terms: Sequence[torch.Tensor], how: Reduction) -> torch.Tensor:
    total = torch.stack(terms).sum()
    return total / len(terms) if how == "mean" else total


def _check_pairs(name: str, real: Sequence[Critique], fake: Sequence[Critique]) -> None:
    if not fake:
        raise LyraError(f"{name}: no critiques to score (the discriminator returned none)")
    if len(real) != len(fake):
        raise LyraError(
            f"{name}: {len(real)} critiques of real audio but {len(fake)} of generated audio; "
            "both must come from the same discriminator"
        )


class _LogitLoss(AdversarialLoss):
    """A GAN objective over each sub-discriminator's logits."""

    name = "adversarial"

    def __init__(self, reduction: Reduction):
        super().__init__()
        self.reduction = reduction

    def real_term(self, logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def fake_term(self, logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def generator_term(self, logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def discriminator_loss(self, real: list[Critique], fake: list[Critique]) -> torch.Tensor:
        _check_pairs(self.name, real, fake)
        terms = [
            self.real_term(r.logits.float()) + self.fake_term(f.logits.float())
            for r, f in zip(real, fake, strict=True)
        ]
        return _reduce(terms, self.reduction)

    def generator_loss(self, real: list[Critique], fake: list[Critique]) -> torch.Tensor:
        if not fake:
            raise LyraError(f"{self.name}: no critiques to score (the discriminator returned none)")
        return _reduce([self.generator_term(f.logits.float()) for f in fake], self.reduction)


class HingeLoss(_LogitLoss):
    """D: mean(relu(1 − D(y))) + mean(relu(1 + D(ŷ))); G: −mean(D(ŷ))."""

    name = "hinge"

    def real_term(self, logits: torch.Tensor) -> torch.Tensor:
        return F.relu(1 - logits).mean()

    def fake_term(self, logits: torch.Tensor) -> torch.Tensor:
        return F.relu(1 + logits).mean()

    def generator_term(self, logits: torch.Tensor) -> torch.Tensor:
        return -logits.mean()


class LeastSquaresLoss(_LogitLoss):
    """D: mean((1 − D(y))²) + mean(D(ŷ)²); G: mean((1 − D(ŷ))²)."""

    name = "lsgan"

    def real_term(self, logits: torch.Tensor) -> torch.Tensor:
        return (1 - logits).square().mean()

    def fake_term(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.square().mean()

    def generator_term(self, logits: torch.Tensor) -> torch.Tensor:
        return (1 - logits).square().mean()


@attrs.frozen(kw_only=True)
class HingeSpec(LossSpec):
    """Hinge GAN loss (MelGAN, RAVE): D pushes real logits above 1 and fake ones below −1."""

    reduction: Reduction = param("sum", doc=REDUCTION_DOC)

    def build(self, ctx: BuildContext) -> AdversarialLoss:
        return HingeLoss(self.reduction)


@attrs.frozen(kw_only=True)
class LSGANSpec(LossSpec):
    """Least-squares GAN loss (HiFi-GAN, DAC): real logits towards 1, fake ones towards 0."""

    reduction: Reduction = param("sum", doc=REDUCTION_DOC)

    def build(self, ctx: BuildContext) -> AdversarialLoss:
        return LeastSquaresLoss(self.reduction)


# --- feature matching ----------------------------------------------------------------------------

Distance = Literal["l1", "relative_l1"]


def l1(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """mean |real − fake|."""
    return F.l1_loss(fake, real)


def relative_l1(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """mean |real − fake| / mean |real| (RAVE's `mean_difference(..., relative=True)`)."""
    return F.l1_loss(fake, real) / real.abs().mean().clamp_min(RELATIVE_EPS)


DISTANCES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "l1": l1,
    "relative_l1": relative_l1,
}


class FeatureMatchingLoss(AdversarialLoss):
    """Distance between the discriminator's feature maps of real and generated audio; the real
    maps are detached, so the gradient reaches the generator through the fake maps only."""

    name = "feature_matching"

    def __init__(self, spec: FeatureMatchingSpec):
        super().__init__()
        self.distance = DISTANCES[spec.distance]
        self.include_logits = spec.include_logits
        self.over_layers, self.over_discriminators = spec.over_layers, spec.over_discriminators

    def maps(self, critique: Critique) -> list[torch.Tensor]:
        return [*critique.features, critique.logits] if self.include_logits else critique.features

    def generator_loss(self, real: list[Critique], fake: list[Critique]) -> torch.Tensor:
        _check_pairs(self.name, real, fake)
        per_discriminator = []
        for i, (r, f) in enumerate(zip(real, fake, strict=True)):
            real_maps, fake_maps = self.maps(r), self.maps(f)
            if not fake_maps or len(real_maps) != len(fake_maps):
                raise LyraError(
                    f"{self.name}: sub-discriminator {i} has {len(real_maps)} maps for real "
                    f"audio and {len(fake_maps)} for generated audio; expected the same, at least 1"
                )
            terms = []
            for j, (a, b) in enumerate(zip(real_maps, fake_maps, strict=True)):
                if a.shape != b.shape:
                    raise LyraError(
                        f"{self.name}: sub-discriminator {i}, map {j}: real {tuple(a.shape)} and "
                        f"generated {tuple(b.shape)} differ; judge equally long audio"
                    )
                terms.append(self.distance(a.detach().float(), b.float()))
            per_discriminator.append(_reduce(terms, self.over_layers))
        return _reduce(per_discriminator, self.over_discriminators)


@attrs.frozen(kw_only=True)
class FeatureMatchingSpec(LossSpec):
    """Feature matching: distance between D's feature maps of real and generated audio.

    Projects differ: DAC and HiFi-GAN use L1 summed over layers and sub-discriminators (HiFi-GAN
    also matches the logits); RAVE uses relative L1 averaged over each sub-discriminator's layers
    and summed over sub-discriminators. The defaults are DAC's."""

    distance: Distance = param(
        "l1",
        doc="'l1': mean |real − fake| per map; 'relative_l1': that divided by mean |real| (RAVE)",
    )
    include_logits: bool = param(
        False,
        doc="also match the final logit map (HiFi-GAN does; DAC and RAVE match hidden layers only)",
    )
    over_layers: Reduction = param(
        "sum", doc="combine a sub-discriminator's maps by sum (DAC, HiFi-GAN) or mean (RAVE)"
    )
    over_discriminators: Reduction = param(
        "sum", doc="combine the sub-discriminators by sum (DAC, HiFi-GAN, RAVE) or mean"
    )

    def build(self, ctx: BuildContext) -> AdversarialLoss:
        return FeatureMatchingLoss(self)


@hookimpl
def lyra_register_components(registry) -> None:
    registry.add("adversarial", "hinge", HingeSpec)
    registry.add("adversarial", "lsgan", LSGANSpec)
    registry.add("adversarial", "feature_matching", FeatureMatchingSpec)
