"""`lyra evaluate`: a model's reconstructions of real audio, scored, beside simple codecs.

For each file the model encodes and decodes (in chunks, as `lyra reconstruct` does); the
reconstruction is scored with `lyra_core.services.metrics` (mel and STFT distance as DAC's
evaluation defines them, SI-SDR, ViSQOL when installed). The report says what the model
transmits per second:

- a quantizing bottleneck: exactly its codes, Σ over codebooks of frames/s ÷ stride × log2(size);
- a continuous latent: frames/s × dimensions × bits, at float32, or at `latent_bits` when the
  latent is uniformly quantized (per file and dimension, over its range) before decoding.

With baselines, the same files go through μ-law PCM and Opus/Vorbis at that bitrate and through
resampling to as many samples per second as the model sends values, and are scored the same way.
Encode and decode real-time factors (seconds of compute per second of audio) are measured here.
For a run with a latent prior (`latent_prior`), each file's latent is also scored by the prior
and by the bottleneck's frame-wise prior: `prior_nll`, `frame_prior_nll`, nats per value.

Files that cannot be read are named and skipped. A file at another sample rate or channel count
than the model's is converted as training converts it (`lyra_core.services.audio`: band-limited
resampling; the channel mean for mono, a mono file copied to every channel, 5.1 downmixed) and
the report lists the conversions.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch

from lyra_core.errors import LyraError
from lyra_core.inference.baselines import Baseline, baselines_for, unavailable
from lyra_core.services.atomic import write_text
from lyra_core.services.audio import read_audio_source, write_audio
from lyra_core.services.chunking import Chunking, decode_latent, encode_audio
from lyra_core.services.compress import Codec, step_for_kbps
from lyra_core.services.metrics import distances, metrics
from lyra_core.services.model import LoadedModel

MODEL = "model"
MAX_LATENT_BITS = 24


@attrs.frozen
class Transmission:
    """What the model sends per second of audio."""

    bits_per_second: float
    values_per_second: float
    precision: str


def transmission(loaded: LoadedModel, latent_bits: int | None = None) -> Transmission:
    frames_per_second = loaded.sample_rate / loaded.hop_length
    quantizer = loaded.quantizer
    if quantizer is not None:
        per_frame = loaded.codes_per_frame
        bits = math.log2(quantizer.codebook_size)
        values = frames_per_second * sum(per_frame)
        what = f"{len(per_frame)} codebook(s) of {quantizer.codebook_size} codes"
        return Transmission(values * bits, values, what)
    dims = loaded.latent_channels
    values = dims if loaded.single_vector else frames_per_second * dims
    bits = latent_bits or 32
    what = f"{dims}-dim latent, " + (f"{bits}-bit uniform" if latent_bits else "float32")
    return Transmission(values * bits, values, what)


def quantize_uniform(z: torch.Tensor, bits: int) -> torch.Tensor:
    """Each latent dimension rounded to 2^bits levels over its range in this file."""
    dims = tuple(d for d in range(z.dim()) if d != 1)
    lo, hi = z.amin(dim=dims, keepdim=True), z.amax(dim=dims, keepdim=True)
    step = (hi - lo).clamp_min(1e-12) / (2**bits - 1)
    return lo + torch.round((z - lo) / step) * step


@attrs.frozen
class Coding:
    """The model's latent sent as `.lyra` files: quantized at `step` (default: the run's
    operating point) or at the finest step that meets `kbps`, entropy-coded by `codec`."""

    codec: Codec
    step: float | None = None
    kbps: float | None = None

    def roundtrip(self, audio: torch.Tensor, name: str) -> tuple[torch.Tensor, int]:
        """The decoded audio of the file's `.lyra` bytes, and how many bytes they are."""
        step = self.step
        if self.kbps is not None:
            step = step_for_kbps(self.codec, audio, self.kbps, name)
        data = self.codec.encode(audio, step)
        return self.codec.decode(data, name), len(data)


@attrs.define
class Row:
    system: str
    file: str
    bits_per_second: float
    metrics: dict[str, float]


@attrs.define
class Report:
    transmission: Transmission
    rows: list[Row] = attrs.field(factory=list)
    coded_bytes: int = 0  # of the model's `.lyra` files, headers included (when coded)
    notes: dict[str, str] = attrs.field(factory=dict)
    skipped: dict[str, str] = attrs.field(factory=dict)  # file -> why it could not be read
    converted: dict[str, str] = attrs.field(factory=dict)  # file -> its own rate and channels
    timing: dict[str, float] = attrs.field(
        factory=lambda: {"audio": 0.0, "encode": 0.0, "decode": 0.0}
    )

    def systems(self) -> list[str]:
        return list(dict.fromkeys(r.system for r in self.rows))

    def means(self, system: str) -> dict[str, float]:
        rows = [r.metrics for r in self.rows if r.system == system]
        return {k: _mean_of_measured([m[k] for m in rows]) for k in rows[0]}

    def bitrate(self, system: str) -> float:
        return float(np.mean([r.bits_per_second for r in self.rows if r.system == system]))

    def real_time_factors(self) -> dict[str, float]:
        audio = max(self.timing["audio"], 1e-9)
        return {"encode": self.timing["encode"] / audio, "decode": self.timing["decode"] / audio}

    def measured_bits_per_second(self) -> float | None:
        """The model's `.lyra` files' bytes × 8 over the audio's seconds (None: not coded)."""
        if not self.coded_bytes:
            return None
        return self.coded_bytes * 8 / max(self.timing["audio"], 1e-9)

    def to_json(self) -> dict[str, Any]:
        return {
            "transmission": attrs.asdict(self.transmission),
            "measured_bits_per_second": self.measured_bits_per_second(),
            "real_time_factor": self.real_time_factors(),
            "systems": {
                s: {
                    "bits_per_second": self.bitrate(s),
                    "mean": self.means(s),
                    "note": self.notes.get(s, ""),
                }
                for s in self.systems()
            },
            "files": [attrs.asdict(r) for r in self.rows],
            "skipped": self.skipped,
            "converted": self.converted,
        }


def _mean_of_measured(values: list[float]) -> float:
    """The mean of the values that are not NaN (NaN: not measurable for that file), else NaN."""
    measured = [v for v in values if not math.isnan(v)]
    return float(np.mean(measured)) if measured else math.nan


def _reconstruct(
    loaded: LoadedModel,
    audio: torch.Tensor,
    chunking: Chunking,
    latent_bits: int | None,
    report: Report,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The reconstruction and the latent the model encoded (before any latent quantization)."""
    start = time.perf_counter()
    z = encode_audio(loaded, audio, chunking)
    middle = time.perf_counter()
    sent = quantize_uniform(z, latent_bits) if latent_bits and loaded.quantizer is None else z
    recon = decode_latent(loaded, sent, audio.shape[-1], chunking)
    report.timing["encode"] += middle - start
    report.timing["decode"] += time.perf_counter() - middle
    report.timing["audio"] += audio.shape[-1] / loaded.sample_rate
    return recon, z


def _reconstruct_coded(
    coding: Coding, audio: torch.Tensor, path: Path, report: Report
) -> tuple[torch.Tensor, float]:
    """The `.lyra` round trip's audio and its measured bits per second (encode and decode
    timed together, under encode)."""
    start = time.perf_counter()
    recon, size = coding.roundtrip(audio, str(path))
    seconds = audio.shape[-1] / coding.codec.loaded.sample_rate
    report.timing["encode"] += time.perf_counter() - start
    report.timing["audio"] += seconds
    report.coded_bytes += size
    return recon, size * 8 / seconds


def latent_likelihoods(loaded: LoadedModel, z: torch.Tensor) -> dict[str, float]:
    """For a run with a latent prior: the latent's negative log-likelihood under it and under
    the bottleneck's frame-wise prior, in nats per latent value."""
    with torch.inference_mode():
        z = z.to(loaded.device)
        return {
            "prior_nll": float(loaded.prior.nll(z)[0]),
            "frame_prior_nll": float(loaded.bottleneck.prior_nll(z)[0]),
        }


@attrs.frozen
class Scoring:
    """What to measure on each file."""

    losses: dict[str, torch.nn.Module]
    rate: int
    with_visqol: bool = False
    with_speech: bool = False

    def __call__(self, decoded: torch.Tensor, audio: torch.Tensor) -> dict[str, float]:
        return metrics(decoded, audio, self.losses, self.rate, self.with_visqol, self.with_speech)


def evaluate_files(
    loaded: LoadedModel,
    paths: Sequence[Path],
    chunking: Chunking,
    latent_bits: int | None = None,
    with_baselines: bool = False,
    with_visqol: bool = False,
    with_speech: bool = False,
    out_dir: Path | None = None,
    coding: Coding | None = None,
) -> Report:
    """Score each file's reconstruction (its `.lyra` round trip with `coding`) and, with
    baselines, the simple codecs at the model's (measured, when coded) bitrate."""
    if latent_bits is not None and not 1 <= latent_bits <= MAX_LATENT_BITS:
        raise LyraError(f"--latent-bits {latent_bits}: give 1 to {MAX_LATENT_BITS}")
    if latent_bits is not None and coding is not None:
        raise LyraError("--latent-bits counts fixed-width values; --bitstream codes them: give one")
    report = Report(transmission(loaded, latent_bits))
    score = Scoring(distances(loaded), loaded.sample_rate, with_visqol, with_speech)
    for path in paths:
        audio = read_scored(loaded, path, report)
        if audio is None:
            continue
        bits = report.transmission.bits_per_second
        if coding is None:
            recon, z = _reconstruct(loaded, audio, chunking, latent_bits, report)
        else:
            recon, bits = _reconstruct_coded(coding, audio, path, report)
            z = encode_audio(loaded, audio, chunking) if loaded.prior is not None else None
        scores = score(recon, audio)
        if z is not None and loaded.prior is not None:
            scores |= latent_likelihoods(loaded, z)
        report.rows.append(Row(MODEL, str(path), bits, scores))
        _write(out_dir, MODEL, path, recon[0].numpy(), loaded.sample_rate)
        if with_baselines:
            _score_baselines(audio, path, score, report, out_dir, bits)
    if not report.rows:
        raise LyraError(
            f"none of the {len(paths)} file(s) could be read: {next(iter(report.skipped.values()))}"
        )
    if with_baselines:
        report.notes |= {n.split(":")[0].lower(): n for n in unavailable()}
    return report


def read_scored(loaded: LoadedModel, path: Path, report: Report) -> torch.Tensor | None:
    """The file as the model hears it, [1, C, T]; None (and the reason noted) if unreadable."""
    try:
        audio, rate, channels = read_audio_source(path, loaded.sample_rate, loaded.channels)
    except LyraError as exc:
        report.skipped[str(path)] = str(exc)
        return None
    model = (loaded.sample_rate, loaded.channels)
    if (rate, channels) != model:
        report.converted[str(path)] = f"{_format(rate, channels)} -> {_format(*model)}"
    return torch.from_numpy(audio)[None]


def _format(rate: int, channels: int) -> str:
    return f"{rate} Hz, {channels} channel{'s' if channels > 1 else ''}"


def _score_baselines(
    audio: torch.Tensor,
    path: Path,
    score: Scoring,
    report: Report,
    out_dir: Path | None,
    bits_per_second: float,
) -> None:
    samples = audio[0].numpy()
    for baseline in _baselines(samples, score.rate, report, bits_per_second):
        decoded = torch.from_numpy(baseline.roundtrip(samples))[None]
        row = Row(baseline.name, str(path), baseline.bits_per_second, score(decoded, audio))
        report.rows.append(row)
        _write(out_dir, baseline.name, path, decoded[0].numpy(), score.rate)


def _baselines(audio: np.ndarray, rate: int, report: Report, bits: float) -> list[Baseline]:
    found = baselines_for(audio, rate, bits, report.transmission.values_per_second)
    report.notes |= {b.name: b.note for b in found}
    return found


def _write(out_dir: Path | None, system: str, source: Path, audio: np.ndarray, rate: int) -> None:
    if out_dir is not None:
        write_audio(out_dir / system / f"{Path(source).stem}.wav", audio, rate, bits="float")


def format_report(report: Report) -> str:
    """Per file and system, then each system's mean with its bitrate, then real-time factors."""
    names = list(report.rows[0].metrics) if report.rows else []
    width = max([len("file"), *(len(Path(r.file).name) for r in report.rows)]) + 2
    head = f"{'system':<10}{'file':<{width}}{'kbps':>9}" + "".join(f"{n:>15}" for n in names)
    lines = [head]
    for r in report.rows:
        kbps = r.bits_per_second / 1000
        lines.append(_line(r.system, Path(r.file).name, width, kbps, r.metrics, names))
    lines.append("")
    for system in report.systems():
        kbps = report.bitrate(system) / 1000
        lines.append(_line(system, "mean", width, kbps, report.means(system), names))
    rtf = report.real_time_factors()
    t = report.transmission
    lines.append(
        f"\nthe model sends {t.precision}: {t.bits_per_second / 1000:.2f} kbps, "
        f"{t.values_per_second:.0f} values/s"
    )
    measured = report.measured_bits_per_second()
    if measured is not None:
        lines.append(
            f"as .lyra files: {measured / 1000:.2f} kbps measured ({report.coded_bytes:,} bytes, "
            f"headers included; {measured / t.values_per_second:.2f} bits per value); the "
            "encode real-time factor below is the whole round trip"
        )
    lines.append(
        f"real-time factor on {torch.get_num_threads()} thread(s): "
        f"encode {rtf['encode']:.3f}, decode {rtf['decode']:.3f} (below 1: faster than real time)"
    )
    lines += [f"{s}: {note}" for s, note in report.notes.items() if note]
    return "\n".join(lines + _input_notes(report))


def _input_notes(report: Report) -> list[str]:
    lines = [f"skipped {reason}" for reason in report.skipped.values()]
    if report.converted:
        lines.append("converted as training converts (resampled, channels mapped):")
        lines += [f"  {Path(f).name}: {what}" for f, what in report.converted.items()]
    return lines


def _line(system: str, label: str, width: int, kbps: float, values: dict, names: list) -> str:
    cells = "".join(f"{values.get(n, math.nan):>15.4f}" for n in names)  # nan: not measured
    return f"{system:<10}{label:<{width}}{kbps:>9.2f}{cells}"


def write_json(report: Report, path: Path) -> None:
    write_text(path, json.dumps(report.to_json(), indent=2) + "\n", "the report")
