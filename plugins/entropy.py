"""Entropy models: the probabilities `.lyra` files code a latent's symbols with.

Contract (kind `entropy_model`): `build(ctx)` -> a `lyra_core.interfaces.EntropyModel`.

- `factorized`: each latent dimension on its own. For a continuous latent it keeps the empirical
  distribution of the run's training latents (1,025 quantiles per dimension), so any grid step
  tabulates from it: a symbol's probability is the training mass of its interval. For codes, each
  codebook's code frequencies (add-½ smoothed).
- `prior`: a run's latent prior (a `latent_prior` model, e.g. `wavenet`) gives each frame's
  distribution given the frames before it, so a file costs about the prior's negative
  log-likelihood instead of the frame-wise entropy.

Every table is mixed with a uniform floor (`floor` of the mass), so a value the training
latents never reached still codes, at a few more bits.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np
import torch
from torch import nn

from lyra_core import BuildContext, LyraError, hookimpl, param
from lyra_core.interfaces import EntropyModel, Prior, SymbolSpace
from lyra_core.validators import between

QUANTILES = 1025
FLOOR = between(0, 0.5, low_open=True, high_open=True)


def with_floor(masses: np.ndarray, floor: float) -> np.ndarray:
    """Rows of non-negative masses, normalized and mixed with a uniform floor."""
    masses = np.clip(masses, 0.0, None)
    total = masses.sum(axis=-1, keepdims=True)
    share = np.divide(masses, total, out=np.zeros_like(masses), where=total > 0)
    share[(total <= 0)[..., 0]] = 1.0 / masses.shape[-1]
    return (1.0 - floor) * share + floor / masses.shape[-1]


def strictly_increasing(rows: np.ndarray) -> np.ndarray:
    """Rows of sorted values nudged apart where they repeat, so that interpolation is defined."""
    spread = np.maximum(np.abs(rows).max(axis=-1, keepdims=True), 1.0) * 1e-9
    return np.maximum.accumulate(rows + spread * np.arange(rows.shape[-1]), axis=-1)


class Factorized(EntropyModel):
    def __init__(self, floor: float):
        self.floor = floor
        self.quantiles: np.ndarray | None = None  # [D, QUANTILES] of a continuous latent
        self.counts: np.ndarray | None = None  # [codebooks, size] of codes

    def fit(self, examples: list[Any], space: SymbolSpace) -> None:
        rows = np.concatenate([np.asarray(e) for e in examples], axis=-1)
        if space.edges is None:
            self.counts = np.stack([np.bincount(r, minlength=space.size) for r in rows])
            self.counts = self.counts.astype(np.float64)
        else:
            levels = np.linspace(0.0, 1.0, QUANTILES)
            self.quantiles = np.quantile(rows.astype(np.float64), levels, axis=-1).T

    def state(self) -> dict[str, Any]:
        found = {"quantiles": self.quantiles, "counts": self.counts}
        return {k: v for k, v in found.items() if v is not None}

    def load_state(self, state: dict[str, Any]) -> None:
        self.quantiles, self.counts = state.get("quantiles"), state.get("counts")

    def tables(self, space: SymbolSpace) -> np.ndarray:
        if space.edges is None:
            if self.counts is None or self.counts.shape != (space.rows, space.size):
                raise LyraError("factorized entropy model: not fitted to these codes")
            return with_floor(self.counts + 0.5, self.floor)
        if self.quantiles is None or self.quantiles.shape[0] != space.rows:
            raise LyraError("factorized entropy model: not fitted to this latent")
        levels = np.linspace(0.0, 1.0, QUANTILES)
        knots = strictly_increasing(self.quantiles)
        cdf = np.stack([np.interp(e, k, levels) for e, k in zip(space.edges, knots, strict=True)])
        return with_floor(np.diff(cdf, axis=-1), self.floor)


@attrs.frozen(kw_only=True)
class FactorizedSpec:
    """Each latent dimension (or codebook) coded on its own with the distribution of the run's
    training latents: the fast default."""

    floor: float = param(
        1e-3, doc="share of probability spread evenly over all symbols", validator=FLOOR
    )

    def build(self, ctx: BuildContext) -> EntropyModel:
        return Factorized(self.floor)


class PriorModel(EntropyModel):
    """Each frame's symbols from the run's latent prior, given the decoded frames before it."""

    conditional = True

    def __init__(self, floor: float):
        self.floor = floor
        self.prior: Prior | None = None

    def bind(self, model: nn.Module) -> None:
        found = [m for m in model.modules() if isinstance(m, Prior)]
        if len(found) != 1:
            raise LyraError(
                "entropy model 'prior' needs a run with a latent prior (a `latent_prior` model "
                "trained on this codec's latents); use 'factorized' for this run"
            )
        self.prior = found[0]
        self.context = self.prior.receptive_field

    def fit(self, examples: list[Any], space: SymbolSpace) -> None:
        if space.edges is None:
            raise LyraError("entropy model 'prior' codes continuous latents, not codes")

    def frame_tables(self, past: torch.Tensor, space: SymbolSpace) -> np.ndarray:
        assert self.prior is not None
        edges = torch.from_numpy(space.edges).to(past.device)
        window = past[None]
        with torch.inference_mode():
            cdf = self.prior.next_cdf(window, edges[None])[0].cpu().numpy()
        cdf[:, 0], cdf[:, -1] = 0.0, 1.0
        return with_floor(np.diff(cdf, axis=-1), self.floor)


@attrs.frozen(kw_only=True)
class PriorEntropySpec:
    """Each frame coded with the run's latent prior given the frames before it (a
    `latent_prior` run): fewer bits than `factorized`, decoded frame by frame."""

    floor: float = param(
        1e-4, doc="share of probability spread evenly over all symbols", validator=FLOOR
    )

    def build(self, ctx: BuildContext) -> EntropyModel:
        return PriorModel(self.floor)


@hookimpl
def lyra_register_components(registry) -> None:
    registry.add("entropy_model", "factorized", FactorizedSpec)
    registry.add("entropy_model", "prior", PriorEntropySpec)
