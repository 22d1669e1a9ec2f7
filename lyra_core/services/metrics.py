"""How close a reconstruction is to its reference: the numbers codec papers report.

- `mel_distance`: DAC's `evaluate.py` mel distance, its `MelSpectrogramLoss` at its defaults
  (windows 2048 and 512, hop a quarter, 150 and 80 Slaney mel bands, L1 of log10 of the clamped
  squared mel plus L1 of the mel, summed over both scales), computed by the registered `mel` loss.
- `stft_distance`: DAC's `MultiScaleSTFTLoss` at its defaults (windows 2048 and 512, L1 of log10
  of the clamped squared magnitude plus L1 of the magnitude); the registered `stft` loss.
- `si_sdr`: scale-invariant SDR in dB (higher is better).
- `visqol`: ViSQOL v3 MOS-LQO in audio mode at 48 kHz (1 to 5, higher is better), from the
  pure-Python `visqol-python` package when it is installed (the `eval` extra).
- `stoi`: short-time objective intelligibility (0 to 1) from `pystoi`, for speech.
- `pesq`: wideband PESQ (ITU-T P.862.2, MOS-LQO about 1 to 4.6) at 16 kHz from `pesq`, for speech;
  NaN where it finds no utterance (silence, or no speech).

Lower is better for the distances. Training's validation (`val/NAME`), `lyra reconstruct`,
`explore` and `lyra evaluate` report them under these names, so a run's charts and an
evaluation agree.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from lyra_core.context import BuildContext
from lyra_core.errors import LyraError
from lyra_core.interfaces import ModelOutput
from lyra_core.registry import Registry
from lyra_core.services.audio import resample
from lyra_core.services.model import LoadedModel

# The registered losses, and their settings, that are DAC's evaluation distances.
DISTANCES: dict[str, tuple[str, dict[str, Any]]] = {
    "mel_distance": (
        "mel",
        {"window_lengths": (2048, 512), "n_mels": (150, 80), "power": 2.0, "mag_weight": 1.0},
    ),
    "stft_distance": ("stft", {"window_lengths": (2048, 512), "power": 2.0, "mag_weight": 1.0}),
}
VISQOL_RATE = 48000  # ViSQOL's audio mode works at 48 kHz
PESQ_RATE = 16000  # wideband PESQ works at 16 kHz
SPEECH_METRICS = ("stoi", "pesq")


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
    """The DISTANCES, built from the registered losses with DAC's settings, by metric name."""
    found = {}
    for metric, (name, settings) in DISTANCES.items():
        try:
            found[metric] = registry.get("loss", name).spec(**settings).build(ctx)
        except LyraError:
            print(
                f"note: no '{name}' loss is registered; {metric} is not reported", file=sys.stderr
            )
    return found


def distances(loaded: LoadedModel) -> dict[str, nn.Module]:
    """The mel and STFT distances, built for this model."""
    ctx = BuildContext(
        registry=loaded.registry, sample_rate=loaded.sample_rate, channels=loaded.channels
    )
    return distance_losses(loaded.registry, ctx)


@functools.cache
def _visqol() -> Callable[[np.ndarray, np.ndarray], float] | None:
    try:
        from visqol.api import VisqolApi
    except ImportError:
        return None
    api = VisqolApi()
    api.create(mode="audio")
    return lambda ref, deg: float(api.measure_from_arrays(ref, deg, VISQOL_RATE).moslqo)


def visqol_available() -> bool:
    return _visqol() is not None


def visqol(recon: np.ndarray, target: np.ndarray, rate: int) -> float:
    """ViSQOL audio-mode MOS of the channel mean [C, T], both resampled to 48 kHz; NaN for a
    clip shorter than ViSQOL's smallest patch (about a second), which it cannot score."""
    score = _visqol()
    if score is None:
        raise LyraError("ViSQOL needs the eval extra: pip install -e '.[eval]'")
    ref = resample(target.mean(0, keepdims=True), rate, VISQOL_RATE)[0].astype(np.float64)
    deg = resample(recon.mean(0, keepdims=True), rate, VISQOL_RATE)[0].astype(np.float64)
    try:
        return score(ref, deg)
    except ValueError as exc:
        if "patch" not in str(exc):
            raise
        return math.nan


def speech_available() -> bool:
    try:
        import pesq  # noqa: F401
        import pystoi  # noqa: F401
    except ImportError:
        return False
    return True


def speech_scores(recon: np.ndarray, target: np.ndarray, rate: int) -> dict[str, float]:
    """STOI and wideband PESQ of the channel means of [C, T] arrays."""
    if not speech_available():
        raise LyraError("STOI and PESQ need the eval extra: pip install -e '.[eval]'")
    from pesq import PesqError, pesq
    from pystoi import stoi

    ref, deg = target.mean(0).astype(np.float64), recon.mean(0).astype(np.float64)
    scores = {"stoi": float(stoi(ref, deg, rate))}
    ref16 = resample(target.mean(0, keepdims=True), rate, PESQ_RATE)[0].astype(np.float64)
    deg16 = resample(recon.mean(0, keepdims=True), rate, PESQ_RATE)[0].astype(np.float64)
    try:
        scores["pesq"] = float(pesq(PESQ_RATE, ref16, deg16, "wb"))
    except PesqError:  # no utterance found
        scores["pesq"] = float("nan")
    return scores


@torch.inference_mode()
def metrics(
    recon: torch.Tensor,
    target: torch.Tensor,
    losses: dict[str, nn.Module],
    rate: int = 0,
    with_visqol: bool = False,
    with_speech: bool = False,
) -> dict[str, float]:
    """The distances (lower is better), SI-SDR in dB and, of audio at sample `rate`, ViSQOL and
    STOI and PESQ when asked for (higher is better).

    `recon` and `target` are [B, C, T]; ViSQOL, STOI and PESQ score the first example.
    """
    out = ModelOutput(recon, recon.new_zeros(0))
    values: dict[str, float] = {}
    for name, loss in losses.items():
        try:
            values[name] = float(loss(out, target))
        except LyraError:  # too short for the largest FFT
            values[name] = float("nan")
    values["si_sdr"] = float(si_sdr(recon, target))
    first, reference = recon[0].cpu().numpy(), target[0].cpu().numpy()
    if with_visqol:
        values["visqol"] = visqol(first, reference, rate)
    if with_speech:
        values |= speech_scores(first, reference, rate)
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
