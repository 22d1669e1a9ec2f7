"""Filterbanks: PQMF subband analysis/synthesis and the identity.

Contract (kind `filterbank`): `build(ctx)` returns a `lyra_core.interfaces.Filterbank`:
`analysis` maps [B, C, T] to [B, C·M, T/M] (T a multiple of M, each channel split on its own)
and `synthesis` maps it back.

PQMF recipe (RAVE's, rewritten for current SciPy): a Kaiser-window lowpass prototype whose cutoff
is optimised for near-perfect reconstruction, cosine-modulated into M bands. Analysis is the
correlation y_k[m] = Σ_t a_k[t]·x[mM + t] with centred filters a_k, synthesis its adjoint times
M, so the pair has no delay. Both run in polyphase form: time folded by M, one convolution each.
Causal (`causal: true`), each convolution sees only past folded frames (its 2p frames of padding
all on the left, cached between chunks when streaming), so each lags by p frames: the pair's
output lags its input by `delay` = 2p·M samples.
"""

from __future__ import annotations

import functools
import math

import attrs
import numpy as np
import torch
import torch.nn.functional as F

from lyra_core import BuildContext, LyraError, hookimpl, param
from lyra_core.interfaces import Filterbank
from lyra_core.validators import Check, between
from lyra_plugins.blocks.causal import CachedPad

MAX_BANDS = 64


def kaiser_lowpass(cutoff: float, attenuation: float) -> np.ndarray:
    """Odd-length Kaiser-window lowpass, `cutoff` in rad/sample, transition width `cutoff`/π."""
    from scipy import signal  # imported here: scipy.signal adds a second to every `lyra` start

    taps, beta = signal.kaiserord(attenuation, cutoff / np.pi)
    taps = 2 * (taps // 2) + 1
    return signal.firwin(taps, cutoff, window=("kaiser", beta), scale=False, fs=2 * np.pi)


def nyquist_residue(prototype: np.ndarray, bands: int) -> float:
    """max_k≥1 |g[centre + 2Mk]| with g = h ⊛ h[::-1]: zero for perfect reconstruction."""
    g = np.convolve(prototype, prototype[::-1])
    return float(np.abs(g[len(g) // 2 :: 2 * bands][1:]).max())


@functools.cache
def pqmf_prototype(bands: int, attenuation: float) -> np.ndarray:
    """The prototype lowpass with the cutoff that minimises the Nyquist residue (cached)."""
    from scipy import optimize

    result = optimize.minimize_scalar(
        lambda w: nyquist_residue(kaiser_lowpass(w, attenuation), bands),
        bounds=(0.5 / bands, np.pi / bands),
        method="bounded",
        options={"xatol": 1e-12},
    )
    h = kaiser_lowpass(result.x, attenuation)
    h.setflags(write=False)
    return h


def pqmf_bank(bands: int, attenuation: float) -> np.ndarray:
    """Centred analysis filters [M, N]: a_k[t] = 2·h[t]·cos((2k+1)π/(2M)·t + (−1)^k·π/4)."""
    h = pqmf_prototype(bands, attenuation)
    half = len(h) // 2
    t = np.arange(-half, half + 1)
    k = np.arange(bands)[:, None]
    return 2 * h * np.cos((2 * k + 1) * np.pi / (2 * bands) * t + (-1) ** k * np.pi / 4)


@functools.cache
def polyphase_filters(bands: int, attenuation: float) -> tuple[np.ndarray, int]:
    """Analysis weights W[k, r, q] = a_k[qM + r − pM] and the padding p (in folded frames).

    With X[r, j] = x[jM + r], y_k[m] = Σ_{r,q} W[k, r, q]·X[r, m + q − p].
    """
    bank = pqmf_bank(bands, attenuation)
    half = bank.shape[1] // 2
    pad = -(-half // bands)  # ceil: the filter centre lands on a frame boundary
    padded = np.zeros((bands, (2 * pad + 1) * bands))
    padded[:, pad * bands - half : pad * bands + half + 1] = bank
    weights = padded.reshape(bands, 2 * pad + 1, bands).transpose(0, 2, 1).copy()
    weights.setflags(write=False)
    return weights, pad


def _as_conv2d(weight: np.ndarray) -> torch.Tensor:
    # Channels-last 2-D convolution lets oneDNN pick its direct (brgemm) kernel on the CPU, an
    # order of magnitude faster than the im2col path conv1d takes for these small, long filters.
    return torch.tensor(weight, dtype=torch.float32)[:, :, None, :].contiguous(
        memory_format=torch.channels_last
    )


class PQMF(Filterbank):
    """Polyphase PQMF bank; filters computed once per (bands, attenuation), kept as buffers."""

    analysis_weight: torch.Tensor
    synthesis_weight: torch.Tensor

    def __init__(self, bands: int, attenuation: float, causal: bool = False):
        super().__init__()
        weights, pad = polyphase_filters(bands, attenuation)
        self.bands = bands
        self.attenuation = attenuation
        self.causal = causal
        self.padding = 0 if causal else pad  # in folded frames, each side
        self.delay = 2 * pad * bands if causal else 0
        self.analysis_pad = CachedPad(2 * pad if causal else 0)
        self.synthesis_pad = CachedPad(2 * pad if causal else 0)
        # Synthesis is the adjoint of analysis times M: swap bands and phases, reverse time.
        synthesis = bands * weights.transpose(1, 0, 2)[..., ::-1]
        self.register_buffer("analysis_weight", _as_conv2d(weights), persistent=False)
        self.register_buffer("synthesis_weight", _as_conv2d(synthesis), persistent=False)

    def extra_repr(self) -> str:
        return f"bands={self.bands}, attenuation={self.attenuation}, causal={self.causal}"

    def analysis(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3:
            raise LyraError(f"pqmf analysis expects [batch, channels, time], got {list(x.shape)}")
        batch, channels, length = x.shape
        if length % self.bands:
            fit = math.ceil(length / self.bands) * self.bands
            raise LyraError(
                f"pqmf analysis: length {length} is not a multiple of {self.bands} bands; "
                f"pad the input to {fit} samples"
            )
        frames = length // self.bands
        # [B·C, T] → [B·C, M phases, 1, T/M] as a channels-last view (no copy).
        folded = x.reshape(batch * channels, 1, frames, self.bands).permute(0, 3, 1, 2)
        folded = self.analysis_pad(folded)
        y = F.conv2d(folded, self.analysis_weight.to(x.dtype), padding=(0, self.padding))
        return y.reshape(batch, channels * self.bands, frames)

    def synthesis(self, y: torch.Tensor) -> torch.Tensor:
        if y.dim() != 3 or y.shape[1] % self.bands:
            expected = f"[batch, channels·{self.bands}, frames]"
            raise LyraError(f"pqmf synthesis expects {expected}, got {list(y.shape)}")
        batch, channels_bands, frames = y.shape
        channels = channels_bands // self.bands
        bands = y.reshape(batch * channels, self.bands, 1, frames)
        bands = bands.contiguous(memory_format=torch.channels_last)
        bands = self.synthesis_pad(bands)
        phases = F.conv2d(bands, self.synthesis_weight.to(y.dtype), padding=(0, self.padding))
        # [B·C, M phases, 1, T/M] channels-last is [B·C, T/M, M] in memory: unfold for free.
        return phases.permute(0, 2, 3, 1).reshape(batch, channels, frames * self.bands)


class IdentityFilterbank(Filterbank):
    """One band: analysis and synthesis return their input."""

    bands = 1

    def analysis(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def synthesis(self, y: torch.Tensor) -> torch.Tensor:
        return y


_power_of_two_bands = Check(
    lambda v: 2 <= v <= MAX_BANDS and not v & (v - 1),
    lambda _: f"must be a power of two from 2 to {MAX_BANDS}",
    {"minimum": 2, "maximum": MAX_BANDS},
)


@attrs.frozen(kw_only=True)
class PQMFSpec:
    """Pseudo-QMF bank (Kaiser prototype, cosine modulation, polyphase), as in RAVE."""

    bands: int = param(
        16,
        doc="number of subbands M: a power of two from 2 to 64",
        validator=_power_of_two_bands,
    )
    attenuation: float = param(
        100.0, doc="stopband attenuation of the prototype in dB", validator=between(20, 200)
    )
    causal: bool = param(
        False,
        doc="causal filters that can stream (also set by the model's `causal`): the output "
        "lags the input by the filters' length",
    )

    def build(self, ctx: BuildContext) -> PQMF:
        return PQMF(self.bands, float(self.attenuation), self.causal or ctx.causal)


@attrs.frozen(kw_only=True)
class IdentityFilterbankSpec:
    """No subband split: one band, analysis and synthesis are the identity."""

    def build(self, ctx: BuildContext) -> IdentityFilterbank:
        return IdentityFilterbank()


@hookimpl
def lyra_register_components(registry) -> None:
    registry.add("filterbank", "pqmf", PQMFSpec)
    registry.add("filterbank", "identity", IdentityFilterbankSpec)
