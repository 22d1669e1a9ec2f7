"""Descriptor sliders: latent directions along which a sound gets louder, brighter, higher, noisier.

Each descriptor is measured per latent frame on the decoded audio of the run's validation
examples, over an analysis window centred on the frame (48 ms, at least one hop; when the hop is
short, one window per quarter window, shared by the frames it covers):

- loudness: plain (unweighted) RMS level in dB full scale, 10·log10(mean x²), floored at -100 dB;
- brightness: the spectral centroid Σ f·|X(f)| / Σ |X(f)| of the Hann-windowed frame, fitted in
  octaves (log2 Hz);
- pitch: f0 from the frame's autocorrelation divided by its window's (Boersma's normalisation),
  at the first peak within 90% of the highest between 60 Hz (or what the window allows) and
  2 kHz (or a quarter of the rate), parabolically refined; only frames whose peak (their
  periodicity) is at least 0.5; fitted as a MIDI note number (semitones);
- noisiness: spectral flatness, the geometric over the arithmetic mean of the power spectrum
  (1 for white noise, near 0 for a tone), fitted in dB.

Brightness, pitch and noisiness are undefined on near-silent frames (below -70 dB). For each
descriptor, a ridge regression of its values on the latent frames (each dimension centred and
scaled to unit variance, as ridge regression usually is, so that a dimension's units, such as a
DDSP latent's f0 in Hz, do not decide the direction; the ridge a 1e-3 share of the mean variance
per dimension) gives weights w; in those standardised coordinates the slider moves the latent
along the unit vector w/|w| by `value · σ`, σ the standardised latents' standard deviation along
it, as a PCA slider does (stored as the offset's unit direction in the latent's own coordinates
and its length per step). `gains` is the fit's predicted change of the descriptor per step (σ·|w|),
`r2` its R².
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import attrs
import torch

NAMES = ("loudness", "brightness", "pitch", "noisiness")
UNITS = {"loudness": "dB", "brightness": "octaves", "pitch": "semitones", "noisiness": "dB"}
WINDOW_SECONDS = 0.048
FLOOR_DB = -100.0  # loudness of digital silence
SILENCE_DB = -70.0  # below this, a frame has no brightness, pitch or noisiness
PERIODICITY = 0.5  # normalised autocorrelation peak a frame needs to have a pitch
RIDGE = 1e-3
MIN_ROWS = 3
CHUNK = 256  # analysis windows per example measured at once (bounds the FFTs' memory)


# -- measuring ------------------------------------------------------------------------------------


def analysis_window(sample_rate: int, hop: int) -> int:
    """Samples in a descriptor's analysis window: 48 ms, at least one hop, even."""
    size = max(hop, round(WINDOW_SECONDS * sample_rate), 8)
    return size + size % 2


def frame_windows(audio: torch.Tensor, hop: int, frames: int, window: int) -> torch.Tensor:
    """Audio [B, C, T] (mixed to mono) -> windows [B, frames, window] centred on each hop-long
    frame (f·hop + hop/2), moved inside the signal at its ends (zero-padded if shorter)."""
    x = audio.double().mean(1) if audio.dim() == 3 else audio.double()
    if x.shape[-1] < window:
        x = torch.nn.functional.pad(x, (0, window - x.shape[-1]))
    centres = torch.arange(frames) * hop + hop // 2
    starts = (centres - window // 2).clamp(0, x.shape[-1] - window)
    return x[:, starts[:, None] + torch.arange(window)]


def loudness_db(frames: torch.Tensor) -> torch.Tensor:
    """Plain RMS level of each frame [..., W] in dB full scale (a full-scale sine: -3 dB)."""
    power = frames.double().square().mean(-1)
    return (10 * torch.log10(power.clamp_min(1e-10))).clamp_min(FLOOR_DB)


def _spectrum(frames: torch.Tensor) -> torch.Tensor:
    """Magnitudes of the Hann-windowed frames' spectra [..., W/2 + 1]."""
    win = torch.hann_window(frames.shape[-1], periodic=False, dtype=torch.float64)
    return torch.fft.rfft(frames.double() * win).abs()


def _audible(frames: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    return torch.where(loudness_db(frames) >= SILENCE_DB, values, math.nan)


def spectral_centroid(frames: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Each frame's spectral centroid in Hz (NaN when near silent)."""
    mag = _spectrum(frames)
    freqs = torch.fft.rfftfreq(frames.shape[-1], 1 / sample_rate, dtype=torch.float64)
    centroid = (mag * freqs).sum(-1) / mag.sum(-1).clamp_min(1e-30)
    return _audible(frames, centroid)


def spectral_flatness(frames: torch.Tensor) -> torch.Tensor:
    """Each frame's spectral flatness in (0, 1], without the DC bin (NaN when near silent)."""
    power = _spectrum(frames)[..., 1:].square() + 1e-20
    flatness = power.log().mean(-1).exp() / power.mean(-1)
    return _audible(frames, flatness)


def pitch(
    frames: torch.Tensor, sample_rate: int, fmin: float = 60.0, fmax: float = 2000.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each frame's f0 in Hz (NaN unless periodic and audible) and its periodicity in [-1, 1]."""
    size = frames.shape[-1]
    win = torch.hann_window(size, periodic=False, dtype=torch.float64)
    x = (frames.double() - frames.double().mean(-1, keepdim=True)) * win
    n = 1 << (2 * size - 1).bit_length()
    ac = torch.fft.irfft(torch.fft.rfft(x, n).abs().square(), n)[..., :size]
    wac = torch.fft.irfft(torch.fft.rfft(win, n).abs().square(), n)[:size]
    nac = (ac / ac[..., :1].clamp_min(1e-30)) / (wac / wac[0])
    lo = max(2, math.ceil(sample_rate / min(fmax, sample_rate / 4)))
    hi = min(math.floor(sample_rate / fmin), size // 3)
    shape = frames.shape[:-1]
    if hi <= lo:  # the window is too short for any pitch in range
        return torch.full(shape, math.nan, dtype=torch.float64), torch.zeros(shape).double()
    mid, left, right = nac[..., lo : hi + 1], nac[..., lo - 1 : hi], nac[..., lo + 1 : hi + 2]
    peak = (mid > left) & (mid >= right)
    values = torch.where(peak, mid, -math.inf)
    best = values.max(-1, keepdim=True).values
    first = (peak & (values >= 0.9 * best)).double().argmax(-1, keepdim=True)
    a, b, c = (t.gather(-1, first)[..., 0] for t in (left, mid, right))
    bend = a - 2 * b + c
    shift = torch.where(bend < 0, 0.5 * (a - c) / bend.where(bend < 0, -1.0), 0.0).clamp(-0.5, 0.5)
    f0 = sample_rate / (lo + first[..., 0] + shift)
    voiced = peak.any(-1) & (b >= PERIODICITY)
    periodicity = torch.where(peak.any(-1), b, 0.0).clamp(-1, 1)
    return _audible(frames, torch.where(voiced, f0, math.nan)), periodicity


def describe(frames: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """The descriptors of frames [..., W] in their fitted units: [..., 4] in `NAMES` order."""
    f0 = pitch(frames, sample_rate)[0]
    return torch.stack(
        [
            loudness_db(frames),
            torch.log2(spectral_centroid(frames, sample_rate)),
            69 + 12 * torch.log2(f0 / 440),
            10 * torch.log10(spectral_flatness(frames)),
        ],
        -1,
    )


def describe_frames(audio: torch.Tensor, sample_rate: int, hop: int, frames: int) -> torch.Tensor:
    """Descriptors [B, frames, 4] of each hop-long frame of audio [B, C, T]."""
    window = analysis_window(sample_rate, hop)
    group = max(1, round(window / 4 / hop))  # frames that share one analysis window
    windows = frame_windows(audio, hop * group, math.ceil(frames / group), window)
    values = torch.cat([describe(part, sample_rate) for part in windows.split(CHUNK, 1)], 1)
    return values.repeat_interleave(group, 1)[:, :frames]


def describe_examples(audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Descriptors [B, 4] of whole examples [B, C, T]: the mean over their defined windows."""
    window = analysis_window(sample_rate, 1)
    values = describe_frames(
        audio, sample_rate, window // 2, math.ceil(audio.shape[-1] * 2 / window)
    )
    return values.nanmean(1)


# -- fitting -------------------------------------------------------------------------------------


@attrs.frozen
class Descriptors:
    """Descriptor directions: unit rows `directions` [K, D], one slider each."""

    names: tuple[str, ...]
    directions: torch.Tensor  # [K, D]
    scales: torch.Tensor  # [K]: standard deviation of the latents along each direction
    gains: torch.Tensor  # [K]: the fit's descriptor change per slider unit
    r2: torch.Tensor  # [K]: share of the descriptor's variance the fit explains

    @property
    def count(self) -> int:
        return len(self.names)

    def offset(self, values: Sequence[float]) -> torch.Tensor:
        """The latent offset [D] of slider values (in standard deviations)."""
        v = torch.zeros(self.count)
        given = torch.as_tensor([float(x) for x in values][: self.count])
        v[: given.numel()] = given
        return (v * self.scales) @ self.directions

    def label(self, k: int) -> str:
        name = self.names[k]
        gain, r2 = float(self.gains[k]), float(self.r2[k])
        return f"{name} ({gain:+.2g} {UNITS.get(name, '')}/step, R² {r2:.2f})"

    def to_state(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "directions": self.directions,
            "scales": self.scales,
            "gains": self.gains,
            "r2": self.r2,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Descriptors:
        names = tuple(str(n) for n in state["names"])
        tensors = [state[k].float() for k in ("directions", "scales", "gains", "r2")]
        if any(t.shape[0] != len(names) for t in tensors):
            raise ValueError("descriptor state: one row per name expected")
        return cls(names, *tensors)


def ridge_direction(rows: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """Ridge regression of `target` [N] on the standardised `rows` [N, D]: the latent offset [D]
    of one slider step (one standard deviation of the standardised rows along the fit's unit
    direction, in the rows' own units), the fit's change of `target` per step, and its R²."""
    x = rows.double() - rows.double().mean(0)
    spread = x.std(0)
    spread = torch.where(spread > 0, spread, 1.0)
    xs = x / spread
    y = target.double() - target.double().mean()
    gram = xs.T @ xs
    ridge = RIDGE * float(gram.trace()) / xs.shape[1] + 1e-12
    w = torch.linalg.solve(gram + ridge * torch.eye(xs.shape[1], dtype=gram.dtype), xs.T @ y)
    total = float(y.square().sum())
    r2 = 1 - float((y - xs @ w).square().sum()) / total if total > 0 else 0.0
    norm = float(w.norm())
    if norm == 0:
        return torch.zeros_like(w), 0.0, r2
    unit = w / norm
    sigma = float((xs @ unit).std())
    return spread * unit * sigma, sigma * norm, r2


def fit_descriptors(rows: torch.Tensor, values: torch.Tensor) -> Descriptors:
    """Directions for each descriptor column of `values` [N, 4] (NaN: undefined there) that has
    enough defined, varying rows; a descriptor without them gets no slider."""
    names, dirs, scales, gains, r2s = [], [], [], [], []
    for k, name in enumerate(NAMES):
        keep = torch.isfinite(values[:, k])
        if int(keep.sum()) < MIN_ROWS or float(values[keep, k].std()) <= 1e-9:
            continue
        step, gain, r2 = ridge_direction(rows[keep], values[keep, k])
        if gain <= 0:
            continue
        names.append(name)
        dirs.append((step / step.norm()).float())
        scales.append(float(step.norm()))
        gains.append(gain)
        r2s.append(r2)
    dim = rows.shape[1]
    return Descriptors(
        tuple(names),
        torch.stack(dirs) if dirs else torch.zeros(0, dim),
        torch.tensor(scales, dtype=torch.float32),
        torch.tensor(gains, dtype=torch.float32),
        torch.tensor(r2s, dtype=torch.float32),
    )
