"""The distances every run reports and every inference command prints: MR-STFT, mel, SI-SDR."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from lyra_core.context import BuildContext
from lyra_core.errors import LyraError
from lyra_core.interfaces import ModelOutput
from lyra_core.registry import Registry
from lyra_core.runs.model import LoadedModel

# Distances every run reports, computed with the registered losses of these names (at their
# defaults) and reported under the same names: `val/multi_resolution_stft`, `val/mel`.
DISTANCES = ("multi_resolution_stft", "mel")


def si_sdr(estimate: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale-invariant SDR in dB per example and channel, averaged ([B, C, T] inputs)."""
    target = target - target.mean(-1, keepdim=True)
    estimate = estimate - estimate.mean(-1, keepdim=True)
    scale = (estimate * target).sum(-1, keepdim=True) / (target.pow(2).sum(-1, keepdim=True) + eps)
    projection = scale * target
    noise = estimate - projection
    ratio = projection.pow(2).sum(-1) / (noise.pow(2).sum(-1) + eps)
    return (10 * torch.log10(ratio + eps)).mean()


def distance_losses(registry: Registry, ctx: BuildContext) -> dict[str, nn.Module]:
    """The registered losses named in DISTANCES, at their defaults, by name."""
    found = {}
    for name in DISTANCES:
        try:
            found[name] = registry.get("loss", name).spec().build(ctx)
        except LyraError:
            print(
                f"note: no '{name}' loss is registered; val/{name} is not reported",
                file=sys.stderr,
            )
    return found


def distances(loaded: LoadedModel) -> dict[str, nn.Module]:
    """The registered MR-STFT and mel distances that validation reports, built for this model."""
    ctx = BuildContext(
        registry=loaded.registry, sample_rate=loaded.sample_rate, channels=loaded.channels
    )
    return distance_losses(loaded.registry, ctx)


@torch.inference_mode()
def metrics(
    recon: torch.Tensor, target: torch.Tensor, losses: dict[str, nn.Module]
) -> dict[str, float]:
    """MR-STFT and mel distances (lower is better) and SI-SDR in dB (higher is better)."""
    out = ModelOutput(recon, recon.new_zeros(0))
    values: dict[str, float] = {}
    for name, loss in losses.items():
        try:
            values[name] = float(loss(out, target))
        except LyraError:  # too short for the largest FFT
            values[name] = float("nan")
    values["si_sdr"] = float(si_sdr(recon, target))
    return values


def format_metrics(rows: Sequence[tuple[str, dict[str, float]]]) -> str:
    """A table: one line per file, then the mean of each column over the files."""
    names = list(rows[0][1]) if rows else []
    width = max([len("file"), len("mean")] + [len(f) for f, _ in rows]) + 2
    columns = {n: max(12, len(n) + 2) for n in names}
    lines = [f"{'file':<{width}}" + "".join(f"{n:>{w}}" for n, w in columns.items())]
    for label, values in rows:
        lines.append(f"{label:<{width}}" + _cells(values, columns))
    if rows:
        means = {n: float(np.nanmean([v[n] for _, v in rows])) for n in names}
        lines.append(f"{'mean':<{width}}" + _cells(means, columns))
    return "\n".join(lines)


def _cells(values: dict[str, float], columns: dict[str, int]) -> str:
    return "".join(f"{values[n]:>{w}.4f}" for n, w in columns.items())
