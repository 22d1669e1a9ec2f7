"""Validation: every loss, MR-STFT and mel distances, SI-SDR, plugin metrics, audio examples."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from torch import nn

from lyra_core.runs.metrics import si_sdr


@torch.no_grad()
def validate(
    model: nn.Module,
    batches: list[torch.Tensor],
    losses: dict[str, nn.Module],
    distances: dict[str, nn.Module],
    extra: Callable[[torch.Tensor, torch.Tensor], list],
    device: torch.device,
    autocast: Callable[[], Any],
) -> tuple[dict[str, float], tuple]:
    """Average metrics over `batches`; also returns the first batch and its reconstruction."""
    was_training = model.training
    model.eval()
    sums: dict[str, float] = defaultdict(float)
    first = None
    try:
        for batch in batches:
            x = batch.to(device)
            with autocast():
                out = model(x)
            out.reconstruction = out.reconstruction.float()
            values = {f"val/{n}": loss(out, x) for n, loss in losses.items()}
            values |= {f"val/{n}": d(out, x) for n, d in distances.items()}
            values["val/si_sdr"] = si_sdr(out.reconstruction, x)
            for metrics in extra(x, out.reconstruction):
                values |= {f"val/{k}": v for k, v in (metrics or {}).items()}
            for k, v in values.items():
                sums[k] += float(v)
            if first is None:
                first = (x.cpu(), out.reconstruction.cpu())
    finally:
        model.train(was_training)
    return {k: v / len(batches) for k, v in sums.items()}, first


def write_examples(
    folder: Path, target: torch.Tensor, recon: torch.Tensor, sample_rate: int, count: int
) -> list[Path]:
    """WAV files (original and reconstruction) and a spectrogram PNG per example."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i in range(min(count, target.shape[0])):
        pair = {"original": target[i], "reconstruction": recon[i]}
        fig, axes = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
        for ax, (label, audio) in zip(axes, pair.items(), strict=True):
            wav = folder / f"example{i}_{label}.wav"
            data = audio.clamp(-1, 1).numpy().T.astype(np.float32)
            sf.write(wav, data, sample_rate, subtype="PCM_16")
            written.append(wav)
            spec = torch.stft(
                audio.mean(0), 1024, 256, window=torch.hann_window(1024), return_complex=True
            ).abs()
            ax.imshow(
                20 * torch.log10(spec + 1e-5).numpy(),
                origin="lower",
                aspect="auto",
                vmin=-100,
                vmax=20,
                cmap="magma",
            )
            ax.set_title(label)
        png = folder / f"example{i}_spectrogram.png"
        fig.tight_layout()
        fig.savefig(png, dpi=80)
        plt.close(fig)
        written.append(png)
    return written
