"""An example third-party Lyra plugin.

It adds a component of an existing kind (the `soft_clip` activation), declares a new kind
(`envelope`, with an `rms` component), and contributes a validation metric (`crest_factor_db`).
Importing this module registers nothing: Lyra calls the hooks below.
"""

from __future__ import annotations

import attrs
import torch
from torch import nn

from lyra_core import BuildContext, Ref, hookimpl, param

Envelope = Ref["envelope"]  # the slot type of the new kind, for other components to use


class SoftClip(nn.Module):
    def __init__(self, threshold: float):
        super().__init__()
        self.threshold = threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.threshold * torch.tanh(x / self.threshold)


@attrs.frozen(kw_only=True)
class SoftClipSpec:
    """Smooth saturation threshold·tanh(x/threshold)."""

    threshold: float = param(1.0, doc="output magnitude limit", validator=attrs.validators.gt(0))

    def build(self, ctx: BuildContext, channels: int) -> nn.Module:
        return SoftClip(self.threshold)


class RMSEnvelope(nn.Module):
    def __init__(self, window: int):
        super().__init__()
        self.window = window

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        power = nn.functional.avg_pool1d(
            x.pow(2), self.window, stride=1, padding=self.window // 2, count_include_pad=False
        )
        return power[..., : x.shape[-1]].sqrt()


@attrs.frozen(kw_only=True)
class RMSEnvelopeSpec:
    """Moving RMS amplitude envelope over a centred window."""

    window: int = param(
        1025, doc="window length in samples (odd)", validator=attrs.validators.gt(0)
    )

    def build(self, ctx: BuildContext) -> nn.Module:
        return RMSEnvelope(self.window)


@hookimpl
def lyra_register_kinds(registry) -> None:
    registry.add_kind("envelope", "build(ctx) -> module mapping [B, C, T] audio to its envelope")


@hookimpl
def lyra_register_components(registry) -> None:
    registry.add("activation", "soft_clip", SoftClipSpec)
    registry.add("envelope", "rms", RMSEnvelopeSpec)


@hookimpl
def lyra_validation_metrics(run, target: torch.Tensor, reconstruction: torch.Tensor):
    """Crest factor (peak over RMS, in dB) of the reconstruction."""
    peak = reconstruction.abs().amax(dim=-1)
    rms = reconstruction.pow(2).mean(dim=-1).sqrt().clamp_min(1e-8)
    return {"crest_factor_db": float((20 * torch.log10(peak.clamp_min(1e-8) / rms)).mean())}
