"""`lyra report`: a static listening page, a run's `.lyra` round trip beside the original and Opus.

Per file, three versions at the model's sample rate and channels, each a 16-bit FLAC player with
its spectrogram (one colour scale for all) and `lyra evaluate`'s metrics against the original:

- the original, as the model hears it (converted as training converts it);
- the model: the file's `.lyra` bytes (`Codec.encode` at the step `lyra encode --bitstream`
  takes), written beside the page, and their decoding (`Codec.decode`);
- Opus (libsndfile) at the level whose bitrate is nearest the `.lyra` file's measured bitrate,
  bytes × 8 / seconds (libopus goes no lower than about 6 kbps; its Ogg headers are left out).

The run's rate–distortion plot (`lyra evaluate --rd`) is copied in where one exists. DIR holds
index.html and a folder per file under relative links: it opens without a server, the network
or a script.
"""

from __future__ import annotations

import html
import io
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from string import Template
from urllib.parse import quote

import attrs
import numpy as np
import torch
from PIL import Image

from lyra_core import __version__
from lyra_core.errors import LyraError
from lyra_core.inference.baselines import ogg, unavailable
from lyra_core.inference.evaluate import Scoring
from lyra_core.inference.files import load_input, output_paths
from lyra_core.services.atomic import write_bytes, write_text
from lyra_core.services.audio import make_folder, write_audio
from lyra_core.services.compress import Codec, step_for_kbps
from lyra_core.services.metrics import distances

RD_PLOT = "rd.png"  # what `lyra evaluate --rd DIR` writes in DIR
SPECTROGRAM = (600, 200)  # pixels
N_FFT, HOP = 1024, 256
DECIBELS = (-100.0, 20.0)  # the spectrograms' colour scale
COLOURS = 64
LABELS = {  # a metric's name on the page, and which way is better
    "mel_distance": "mel distance ↓",
    "stft_distance": "STFT distance ↓",
    "si_sdr": "SI-SDR (dB) ↑",
    "visqol": "ViSQOL ↑",
}


@attrs.frozen
class Version:
    """One player: a system's audio [C, T] of one file, its measured kbps (None: the original)
    and its metrics against the original."""

    system: str
    audio: np.ndarray
    kbps: float | None = None
    metrics: dict[str, float] = attrs.field(factory=dict)


@attrs.frozen
class Listening:
    """One file on the page: its versions, and what its `.lyra` file holds."""

    source: Path
    folder: str
    seconds: float
    lyra_bytes: int
    step: float | None  # None: the operating point was fixed in training
    versions: list[Version]


@attrs.frozen
class Page:
    index: Path
    files: list[Path]

    @property
    def size(self) -> int:
        return sum(p.stat().st_size for p in self.files)


def rd_plot(run_dir: Path, given: Path | None) -> Path | None:
    """The rate–distortion plot in `given` (it must hold one), else in RUN/rd, else None."""
    if given is None:
        found = run_dir / "rd" / RD_PLOT
        return found if found.is_file() else None
    if not (given / RD_PLOT).is_file():
        raise LyraError(
            f"--rd {given}: no {RD_PLOT} in this folder; make one with "
            f"`lyra evaluate FILES --run RUN --rd {given}`, or leave --rd out"
        )
    return given / RD_PLOT


def write_page(
    codec: Codec,
    paths: Sequence[Path],
    out_dir: Path,
    step: float | None = None,
    kbps: float | None = None,
    with_visqol: bool = False,
    rd: Path | None = None,
) -> Page:
    """Write DIR/index.html and, per file, DIR/STEM/ with its audio, spectrograms and `.lyra`."""
    loaded = codec.loaded
    audios = [load_input(loaded, p) for p in paths]  # every file read before any work
    folders = output_paths(paths, out_dir, "")
    score = Scoring(distances(loaded), loaded.sample_rate, with_visqol)
    items, written = [], []
    for path, audio, folder in zip(paths, audios, folders, strict=True):
        item = listen(codec, audio, path, folder, step, kbps, score)
        written += write_versions(item, folder, loaded.sample_rate)
        items.append(item)
    if rd is not None:
        write_bytes(out_dir / RD_PLOT, rd.read_bytes(), "the rate–distortion plot")
        written.append(out_dir / RD_PLOT)
    index = out_dir / "index.html"
    write_text(index, render(codec, items, step, kbps, rd is not None), "the listening page")
    return Page(index, [index, *written])


def listen(
    codec: Codec,
    audio: torch.Tensor,
    path: Path,
    folder: Path,
    step: float | None,
    kbps: float | None,
    score: Scoring,
) -> Listening:
    """The file's three versions; its `.lyra` file is written in `folder`."""
    rate = codec.loaded.sample_rate
    seconds = audio.shape[-1] / rate
    if kbps is not None:
        step = step_for_kbps(codec, audio, kbps, str(path))
    data = codec.encode(audio, step)
    make_folder(folder)
    write_bytes(folder / f"{folder.name}.lyra", data, "a .lyra file")
    decoded = codec.decode(data, str(path))
    bits = len(data) * 8 / seconds
    versions = [
        Version("original", audio[0].numpy()),
        Version("model", decoded[0].numpy(), bits / 1000, score(decoded, audio)),
    ]
    opus = ogg("OPUS", rate, audio[0].numpy(), bits)
    if opus is not None:
        heard = torch.from_numpy(opus.roundtrip(audio[0].numpy()))[None]
        kbps_opus = opus.bits_per_second / 1000
        versions.append(Version("opus", heard[0].numpy(), kbps_opus, score(heard, audio)))
    used = None if codec.fixed else codec.check_step(codec.default_step if step is None else step)
    return Listening(path, folder.name, seconds, len(data), used, versions)


def write_versions(item: Listening, folder: Path, rate: int) -> list[Path]:
    """Each version's FLAC and spectrogram PNG in `folder` (its `.lyra` file is there already)."""
    written = [folder / f"{item.folder}.lyra"]
    for v in item.versions:
        written.append(write_audio(folder / f"{v.system}.flac", v.audio, rate, bits="16", seed=0))
        png = folder / f"{v.system}.png"
        write_bytes(png, spectrogram(v.audio, rate), "a spectrogram")
        written.append(png)
    return written


def spectrogram(audio: np.ndarray, rate: int) -> bytes:
    """A small PNG of the channel mean's log-magnitude spectrogram, in seconds and kHz."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = torch.from_numpy(audio).mean(0)
    magnitude = torch.stft(
        x, N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True
    ).abs()
    width, height = SPECTROGRAM
    fig = plt.figure(figsize=(width / 100, height / 100), dpi=100)
    ax = fig.add_axes((0.08, 0.22, 0.9, 0.74))
    ax.imshow(
        20 * torch.log10(magnitude + 1e-5).numpy(),
        origin="lower",
        aspect="auto",
        vmin=DECIBELS[0],
        vmax=DECIBELS[1],
        cmap="magma",
        extent=(0.0, x.shape[-1] / rate, 0.0, rate / 2000),
    )
    ax.set_xlabel("time (s)", fontsize=8, labelpad=1)
    ax.set_ylabel("kHz", fontsize=8, labelpad=1)
    ax.tick_params(labelsize=7, pad=1)
    rendered, buffer = io.BytesIO(), io.BytesIO()
    fig.savefig(rendered, format="png")
    plt.close(fig)
    with Image.open(rendered) as image:  # a palette of COLOURS: a third of the bytes
        image.convert("RGB").quantize(COLOURS).save(buffer, format="png", optimize=True)
    return buffer.getvalue()


# -- the page ----------------------------------------------------------------------------------

PAGE = Template("""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<link rel="icon" href="data:,">
<style>
body { font: 15px/1.5 system-ui, sans-serif; color: #222; margin: 2em auto; max-width: 1240px;
       padding: 0 1em; }
table { border-collapse: collapse; margin: .5em 0 2em; }
th, td { padding: .3em .6em; border-bottom: 1px solid #ddd; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
audio { width: 260px; }
img { display: block; }
table.file td { vertical-align: top; }
table.scores { margin: .4em 0 0; font-size: 13px; }
table.scores td { border: 0; padding: .05em .6em .05em 0; }
.note { color: #555; }
</style>
</head>
<body>
<h1>$title</h1>
$about
<h2>Means over the files</h2>
$summary
$rd
$files
<p class="note">Written by lyra report $version.</p>
</body>
</html>
""")


def render(
    codec: Codec, items: list[Listening], step: float | None, kbps: float | None, with_rd: bool
) -> str:
    loaded = codec.loaded
    rd = (
        f'<h2>Rate and distortion</h2>\n<img src="{RD_PLOT}" alt="rate–distortion curves">'
        if with_rd
        else ""
    )
    return PAGE.substitute(
        title=html.escape(f"{loaded.name}: listening to its .lyra files"),
        about=about(codec, step, kbps),
        summary=summary(items),
        rd=rd,
        files="\n".join(file_section(item) for item in items),
        version=html.escape(__version__),
    )


def about(codec: Codec, step: float | None, kbps: float | None) -> str:
    loaded = codec.loaded
    channels = f"{loaded.channels} channel{'s' if loaded.channels > 1 else ''}"
    if codec.fixed:
        point = "at the operating point training fixed"
    elif kbps is not None:
        point = f"each at the finest grid step that meets {kbps:g} kbps"
    else:
        point = f"at grid step {codec.default_step if step is None else step:g}"
    opus = " ".join(n for n in unavailable() if n.startswith("OPUS")) or (
        "Opus: libopus through libsndfile at the level whose bitrate is nearest the model's "
        "(its Ogg headers left out; libopus goes no lower than about 6 kbps)."
    )
    lines = [
        f"Model <b>{html.escape(loaded.name)}</b> (training step {loaded.step}, "
        f"{loaded.sample_rate} Hz, {channels}), its latent sent as .lyra files {point}, coded "
        f"with the '{html.escape(codec.name)}' entropy model.",
        "Per file: the original as the model hears it; the model, decoded from its .lyra file "
        "(kbps: the file's bytes × 8 / seconds, header included); "
        + html.escape(opus, quote=False),
        "Audio is 16-bit FLAC at the model's sample rate; the spectrograms share one colour "
        f"scale ({DECIBELS[0]:g} to {DECIBELS[1]:g} dB). Metrics are those of lyra evaluate, "
        "against the original (↓: lower is better, ↑: higher is better).",
    ]
    return "\n".join(f"<p>{line}</p>" for line in lines)


def metric_names(items: list[Listening]) -> list[str]:
    return list(next((v.metrics for i in items for v in i.versions if v.metrics), {}))


def header(names: list[str]) -> str:
    cells = ["system", "kbps", *(LABELS.get(n, n) for n in names)]
    return "<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cells) + "</tr>"


def number(value: float | None, digits: int = 3) -> str:
    if value is None or math.isnan(value):
        return '<td class="n">–</td>'  # not measured
    return f'<td class="n">{value:.{digits}f}</td>'


def summary(items: list[Listening]) -> str:
    """Per coded system: kbps over all the audio (bytes over seconds), each metric's mean."""
    names = metric_names(items)
    rows = [header(names)]
    seconds = sum(i.seconds for i in items)
    for system in dict.fromkeys(v.system for i in items for v in i.versions if v.metrics):
        found = [(i, v) for i in items for v in i.versions if v.system == system]
        bits = [v.kbps * i.seconds for i, v in found if v.kbps is not None]
        kbps = sum(bits) / seconds if bits else None
        cells = number(kbps, 2) + "".join(
            number(mean(v.metrics.get(n) for _, v in found)) for n in names
        )
        rows.append(f"<tr><td>{system}</td>{cells}</tr>")
    return "<table>\n" + "\n".join(rows) + "\n</table>"


def mean(values: Iterable[float | None]) -> float | None:
    """The mean of the measured values (None or NaN: not measured), else None."""
    measured = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(measured)) if measured else None


def file_section(item: Listening) -> str:
    """The file's versions, a row each: name and kbps; player and metrics; spectrogram."""
    folder = quote(item.folder)
    lyra = f"{folder}/{quote(item.folder)}.lyra"
    step = "" if item.step is None else f" at grid step {item.step:.4g}"
    width, height = SPECTROGRAM
    rows = []
    for v in item.versions:
        label = html.escape(f"{v.system}, {item.source.name}")
        kbps = "" if v.kbps is None else f"<br>{v.kbps:.2f} kbps"
        rows.append(
            f"<tr><td><b>{v.system}</b>{kbps}</td>"
            f'<td><audio controls preload="metadata" src="{folder}/{v.system}.flac" '
            f'aria-label="{label}"></audio>{scores(v.metrics)}</td>'
            f'<td><img src="{folder}/{v.system}.png" width="{width}" height="{height}" '
            f'alt="spectrogram: {label}"></td></tr>'
        )
    return (
        f"<h2>{html.escape(item.source.name)}</h2>\n"
        f'<p>{item.seconds:.2f} s; <a href="{lyra}">its .lyra file</a>: '
        f"{item.lyra_bytes:,} bytes{step}.</p>\n"
        '<table class="file">\n' + "\n".join(rows) + "\n</table>"
    )


def scores(metrics: dict[str, float]) -> str:
    """A version's metrics as a small table under its player."""
    rows = [
        f"<tr><td>{html.escape(LABELS.get(n, n))}</td>{number(v)}</tr>" for n, v in metrics.items()
    ]
    return '<table class="scores">' + "".join(rows) + "</table>" if rows else ""
