"""`lyra evaluate --rd DIR`: a model's rate–distortion curve from its `.lyra` files, beside Opus.

The model is coded at each target bitrate (the finest grid step whose file meets it, per file;
a model whose operating point training fixed gives one point), Opus (libsndfile) at the level
whose measured bitrate is nearest each of its targets; both are scored on the same files with
`lyra evaluate`'s metrics. Bitrates are measured: file bytes × 8 / seconds, headers included.
Writes DIR/rd.json, DIR/rd.md (a table) and DIR/rd.png (mel distance and ViSQOL against kbps).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lyra_core.inference.baselines import ogg
from lyra_core.inference.evaluate import (
    MODEL,
    Coding,
    Report,
    Scoring,
    evaluate_files,
    read_scored,
    transmission,
)
from lyra_core.services.chunking import Chunking
from lyra_core.services.compress import Codec
from lyra_core.services.metrics import distances

MODEL_KBPS = (3.0, 4.5, 6.0, 8.0, 12.0, 16.0, 24.0)
OPUS_KBPS = (6.0, 8.0, 12.0, 16.0, 24.0)  # libopus goes no lower than 6 kbps


def sweep(
    codec: Codec, paths: Sequence[Path], chunking: Chunking, with_visqol: bool
) -> dict[str, list[dict[str, Any]]]:
    """Mean measured kbps and metrics per target, for the model and for Opus."""
    loaded = codec.loaded
    model = []
    for kbps in (None,) if codec.fixed else MODEL_KBPS:
        report = evaluate_files(
            loaded, paths, chunking, with_visqol=with_visqol, coding=Coding(codec, kbps=kbps)
        )
        measured = report.measured_bits_per_second() or 0.0
        model.append({"target_kbps": kbps, "kbps": measured / 1000, **report.means(MODEL)})
    return {"model": model, "opus": opus_points(codec, paths, with_visqol)}


def opus_points(codec: Codec, paths: Sequence[Path], with_visqol: bool) -> list[dict[str, Any]]:
    loaded = codec.loaded
    score = Scoring(distances(loaded), loaded.sample_rate, with_visqol)
    report = Report(transmission(loaded))
    files = [(p, a) for p in paths if (a := read_scored(loaded, p, report)) is not None]
    points = []
    for kbps in OPUS_KBPS:
        rows, bits = [], []
        for _, audio in files:
            samples = audio[0].numpy()
            opus = ogg("OPUS", loaded.sample_rate, samples, kbps * 1000)
            if opus is None:
                return []
            rows.append(score(torch.from_numpy(opus.roundtrip(samples))[None], audio))
            bits.append(opus.bits_per_second * samples.shape[-1] / loaded.sample_rate)
        seconds = sum(a.shape[-1] for _, a in files) / loaded.sample_rate
        means = {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0]}
        points.append({"target_kbps": kbps, "kbps": sum(bits) / seconds / 1000, **means})
    return points


def write(points: dict[str, list[dict[str, Any]]], out_dir: Path, title: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "rd.json").write_text(json.dumps(points, indent=2) + "\n")
    (out_dir / "rd.md").write_text(table(points))
    plot(points, out_dir / "rd.png", title)
    return [out_dir / n for n in ("rd.json", "rd.md", "rd.png")]


def table(points: dict[str, list[dict[str, Any]]]) -> str:
    lines = [
        "| system | target kbps | measured kbps | mel distance | ViSQOL |",
        "|---|---|---|---|---|",
    ]
    for system, rows in points.items():
        for r in rows:
            target = "run's" if r["target_kbps"] is None else f"{r['target_kbps']:g}"
            visqol = r.get("visqol", float("nan"))
            lines.append(
                f"| {system} | {target} | {r['kbps']:.2f} | {r['mel_distance']:.3f} | "
                f"{visqol:.3f} |"
            )
    return "\n".join(lines) + "\n"


def plot(points: dict[str, list[dict[str, Any]]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in ("mel_distance", "visqol") if points["model"] and m in points["model"][0]]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 4), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for system, rows in points.items():
            xs = [r["kbps"] for r in rows]
            ax.plot(xs, [r[metric] for r in rows], "o-", label=system)
        ax.set_xlabel("measured kbps (file bytes × 8 / s)")
        better = "lower" if metric == "mel_distance" else "higher"
        ax.set_ylabel(f"{metric} ({better} is better)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
