"""Validation: every loss, the mel and STFT distances, SI-SDR, plugin metrics, audio examples.

Each metric is reported once, as `val/NAME`: every training loss, and the distances of
lyra_core.services.metrics (`mel_distance`, `stft_distance`, `si_sdr`) as `lyra evaluate` and
`lyra reconstruct` compute them. Audio examples are a few seconds long: consecutive validation
segments, each reconstructed as the model sees it in training, played one after another.
"""

from __future__ import annotations

import io
import math
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from torch import nn

from lyra_core.services.atomic import write_bytes, writing
from lyra_core.services.metrics import si_sdr

KEEP_FRAMES = 1 << 21  # validation audio kept for examples (per channel; ~47 s at 44.1 kHz)
EXAMPLE_SECONDS = (2.0, 4.0)  # an example's length: at least, and at most when there is plenty
N_FFT, HOP = 1024, 256
EXAMPLES = "a validation example"  # what a WriteError names


@torch.no_grad()
def validate(
    model: nn.Module,
    batches: list[torch.Tensor],
    losses: dict[str, nn.Module],
    distances: dict[str, nn.Module],
    extra: Callable[[torch.Tensor, torch.Tensor], list],
    device: torch.device,
    autocast: Callable[[], Any],
    keep_frames: int = KEEP_FRAMES,
) -> tuple[dict[str, float], tuple[torch.Tensor, torch.Tensor]]:
    """Average metrics over `batches`; also the leading segments (up to `keep_frames` of audio)
    and their reconstructions, [N, C, T] each, for `write_examples`."""
    was_training = model.training
    model.eval()
    sums: dict[str, float] = defaultdict(float)
    kept: list[tuple[torch.Tensor, torch.Tensor]] = []
    try:
        for batch in batches:
            x = batch.to(device)
            with autocast():
                out = model(x)
            out.reconstruction = out.reconstruction.float()
            for k, v in _values(out, x, losses, distances, extra).items():
                sums[k] += float(v)
            if sum(t.shape[0] * t.shape[-1] for t, _ in kept) < keep_frames:
                kept.append((x.cpu(), out.reconstruction.cpu()))
    finally:
        model.train(was_training)
    targets, recons = zip(*kept, strict=True) if kept else ((), ())
    first = (torch.cat(targets), torch.cat(recons)) if kept else (torch.empty(0), torch.empty(0))
    return {k: v / len(batches) for k, v in sums.items()}, first


def _values(
    out: Any,
    x: torch.Tensor,
    losses: dict[str, nn.Module],
    distances: dict[str, nn.Module],
    extra: Callable[[torch.Tensor, torch.Tensor], list],
) -> dict[str, Any]:
    """One batch's metrics, each under one name (a distance replaces a same-named loss)."""
    values = {f"val/{n}": loss(out, x) for n, loss in losses.items() if n not in distances}
    values |= {f"val/{n}": d(out, x) for n, d in distances.items()}
    values["val/si_sdr"] = si_sdr(out.reconstruction, x)
    for metrics in extra(x, out.reconstruction):
        values |= {f"val/{k}": v for k, v in (metrics or {}).items()}
    return values


def segments_per_example(segments: int, count: int, length: int, sample_rate: int) -> int:
    """How many consecutive segments of `length` frames make one example: at least
    EXAMPLE_SECONDS[0] of audio, up to EXAMPLE_SECONDS[1] when `segments` suffice for `count`."""
    shortest, longest = (math.ceil(s * sample_rate / length) for s in EXAMPLE_SECONDS)
    return max(1, shortest, min(longest, segments // max(count, 1)))


def write_examples(
    folder: Path, target: torch.Tensor, recon: torch.Tensor, sample_rate: int, count: int
) -> list[Path]:
    """WAV files (original and reconstruction) and a spectrogram PNG per example, each
    rendered in memory and written whole (lyra_core.services.atomic).

    `target` and `recon` are [N, C, T] segments; an example joins consecutive ones (see
    `segments_per_example`); with fewer segments than one example needs, all of them make one.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with writing(folder, EXAMPLES):
        folder.mkdir(parents=True, exist_ok=True)
    n, length = target.shape[0], target.shape[-1]
    per = segments_per_example(n, count, length, sample_rate)
    written = []
    for i in range(min(count, max(1, n // per)) if n else 0):
        part = slice(i * per, (i + 1) * per)
        pair = {"original": _joined(target[part]), "reconstruction": _joined(recon[part])}
        for label, audio in pair.items():
            wav = folder / f"example{i}_{label}.wav"
            data = audio.clamp(-1, 1).numpy().T.astype(np.float32)
            buffer = io.BytesIO()
            sf.write(buffer, data, sample_rate, subtype="PCM_16", format="WAV")
            write_bytes(wav, buffer.getvalue(), EXAMPLES)
            written.append(wav)
        fig = spectrogram_figure(pair, sample_rate, joins=length)
        png, buffer = folder / f"example{i}_spectrogram.png", io.BytesIO()
        fig.savefig(buffer, format="png", dpi=80)
        plt.close(fig)
        write_bytes(png, buffer.getvalue(), EXAMPLES)
        written.append(png)
    return written


def _joined(segments: torch.Tensor) -> torch.Tensor:
    """[N, C, T] -> [C, N * T]: the segments one after another."""
    return segments.permute(1, 0, 2).reshape(segments.shape[1], -1)


def spectrogram_figure(
    pair: dict[str, torch.Tensor], sample_rate: int, joins: int | None = None
) -> Any:
    """One log-magnitude spectrogram per [C, T] signal, in seconds and Hz; dashed lines mark
    where segments of `joins` frames meet."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(pair), 1, figsize=(10, 2.6 * len(pair)), sharex=True)
    for ax, (label, audio) in zip(np.atleast_1d(axes), pair.items(), strict=True):
        seconds = audio.shape[-1] / sample_rate
        spec = torch.stft(
            audio.mean(0), N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True
        ).abs()
        image = ax.imshow(
            20 * torch.log10(spec + 1e-5).numpy(),
            origin="lower",
            aspect="auto",
            vmin=-100,
            vmax=20,
            cmap="magma",
            extent=(0.0, seconds, 0.0, sample_rate / 2),
        )
        for k in range(1, audio.shape[-1] // joins if joins else 0):
            ax.axvline(k * joins / sample_rate, color="white", lw=0.5, ls="--", alpha=0.4)
        ax.set_title(label)
        ax.set_ylabel("frequency (Hz)")
        fig.colorbar(image, ax=ax, label="dB")
    np.atleast_1d(axes)[-1].set_xlabel("time (s)")
    fig.tight_layout()
    return fig
