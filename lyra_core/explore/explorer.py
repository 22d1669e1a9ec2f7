"""`lyra explore`'s logic, without a browser: latent PCA, sliders, presets, uploads and export.

The page (`lyra_core.explore.explorer.page`, Gradio) only wires widgets to an `Explorer`:

- PCA: the principal directions of the latents of the run's validation examples (every frame's
  vector for time-series latents, one vector per example for single-vector ones), fitted once
  and cached in `RUN/explore/pca.pt` (plain tensors, read with `weights_only=True`); a cache
  made from another checkpoint (path, size, mtime, step or spec changed) is refitted.
- Descriptor sliders (`lyra_core.explore.descriptors`): directions fitted by ridge regression of
  loudness, brightness, pitch and noisiness, measured per frame on the decoded validation audio,
  on the same latents; cached with the PCA in `pca.pt`.
- Sliders: slider k moves the latent by `value · σ_k · v_k` (σ_k the standard deviation of the
  latents along the unit direction v_k), on every frame of a time-series latent; the PCA sliders
  come first, the descriptor sliders after them.
- Presets: slider values saved by name as `RUN/explore/presets/NAME.json`.
- Export: WAV or FLAC at a chosen rate and bit depth (TPDF dither below float), via
  `lyra_core.services.audio.write_audio`.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import soundfile as sf
import torch

from lyra_core.errors import LyraError
from lyra_core.explore.descriptors import (
    Descriptors,
    describe_examples,
    describe_frames,
    fit_descriptors,
)
from lyra_core.services.atomic import atomic_write, write_bytes
from lyra_core.services.audio import (
    AUDIO_EXTENSIONS,
    BIT_DEPTHS,
    make_folder,
    read_audio,
    write_audio,
)
from lyra_core.services.chunking import Chunking, decode_latent, encode_audio, slerp
from lyra_core.services.compress import Codec, open_codec
from lyra_core.services.metrics import distances, metrics
from lyra_core.services.model import LoadedModel

SLIDER_RANGE = 3.0  # sliders run over ±3 standard deviations
PRESET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}")
EXPORT_FORMATS = ("wav", "flac")
BITSTREAM = "lyra"  # the compressed export (`lyra decode` reads it)
MAX_PCA_ROWS = 200_000


# -- PCA ------------------------------------------------------------------------------------------


@attrs.frozen
class PCA:
    """Principal directions of latent vectors: `components` [K, D] orthonormal rows."""

    mean: torch.Tensor  # [D]
    components: torch.Tensor  # [K, D]
    scales: torch.Tensor  # [K]: standard deviation along each direction
    explained: torch.Tensor  # [K]: share of the total variance
    key: str = ""
    examples: int = 0

    @property
    def count(self) -> int:
        return int(self.components.shape[0])

    def offset(self, values: Sequence[float]) -> torch.Tensor:
        """The latent offset [D] of slider values (in standard deviations)."""
        v = torch.zeros(self.count)
        given = torch.as_tensor([float(x) for x in values][: self.count])
        v[: given.numel()] = given
        return (v * self.scales) @ self.components

    def to_state(self) -> dict[str, Any]:
        return {
            "mean": self.mean,
            "components": self.components,
            "scales": self.scales,
            "explained": self.explained,
            "key": self.key,
            "examples": self.examples,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> PCA:
        return cls(
            state["mean"].float(),
            state["components"].float(),
            state["scales"].float(),
            state["explained"].float(),
            str(state.get("key", "")),
            int(state.get("examples", 0)),
        )


def latent_rows(z: torch.Tensor) -> torch.Tensor:
    """Latents [B, D, F] -> one row per frame [B·F, D]; [B, D] stays as it is."""
    return z if z.dim() == 2 else z.transpose(1, 2).reshape(-1, z.shape[1])


def fit_pca(rows: torch.Tensor, count: int, key: str = "", examples: int = 0) -> PCA:
    """PCA of the rows [N, D] by SVD: up to `count` directions, signs made deterministic."""
    rows = rows.detach().double()
    if rows.dim() != 2 or rows.shape[0] < 2:
        raise LyraError("PCA needs at least two latent vectors (more validation examples)")
    mean = rows.mean(0)
    centred = rows - mean
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    variance = s.square() / (rows.shape[0] - 1)
    keep = min(count, int((variance > variance.sum() * 1e-9).sum()))
    if keep < 1:
        raise LyraError("the validation latents have no variance to find directions in")
    comps = vh[:keep]
    # sign: the largest coefficient of each direction is positive
    signs = torch.sign(comps.gather(1, comps.abs().argmax(1, keepdim=True)))
    comps = comps * signs
    total = variance.sum()
    return PCA(
        mean.float(),
        comps.float(),
        variance[:keep].sqrt().float(),
        (variance[:keep] / total).float(),
        key,
        examples,
    )


def decoded_descriptors(
    loaded: LoadedModel, z: torch.Tensor, length: int, chunking: Chunking
) -> torch.Tensor:
    """The descriptors of the latent's decoded audio, one row per latent row: [B·F, 4] for a
    time-series latent [B, D, F], [B, 4] for single vectors [B, D]."""
    audio = decode_latent(loaded, z, length, chunking)
    if z.dim() == 2:
        return describe_examples(audio, loaded.sample_rate).float()
    values = describe_frames(audio, loaded.sample_rate, loaded.hop_length, z.shape[-1])
    return values.reshape(-1, values.shape[-1]).float()


def validation_latents(
    loaded: LoadedModel, max_examples: int, chunking: Chunking | None = None
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Latent rows [N, D] of up to `max_examples` validation examples, the descriptors [N, 4]
    of each row's decoded audio (NaN where undefined), and how many examples were used.

    The validation data is built from the run's resolved spec as training builds it.
    """
    d = loaded.spec.data
    ctx = loaded.spec.context(loaded.registry)
    dataset = d.dataset.build(ctx, "validation")
    n = min(len(dataset), max_examples)
    if n < 1:
        raise LyraError("the validation split is empty: no latents to fit the sliders to")
    chunking = chunking or Chunking()
    rows, described = [], []
    for start in range(0, n, d.batch_size):
        batch = torch.stack([dataset[i] for i in range(start, min(n, start + d.batch_size))])
        z = encode_audio(loaded, batch.float(), chunking)
        rows.append(latent_rows(z))
        described.append(decoded_descriptors(loaded, z, batch.shape[-1], chunking))
    out, values = torch.cat(rows), torch.cat(described)
    if out.shape[0] > MAX_PCA_ROWS:
        pick = torch.randperm(out.shape[0], generator=torch.Generator().manual_seed(0))
        out, values = out[pick[:MAX_PCA_ROWS]], values[pick[:MAX_PCA_ROWS]]
    return out, values, n


def read_sliders(cache: Path, key: str, requested: list[int]) -> tuple[PCA, Descriptors] | None:
    """The cached PCA and descriptor directions, if made from `key` with `requested` settings."""
    try:
        state = torch.load(cache, map_location="cpu", weights_only=True)
        pca, descriptors = PCA.from_state(state), Descriptors.from_state(state["descriptors"])
    except Exception:  # a corrupt, foreign or older cache is refitted
        return None
    dim = pca.components.shape[-1]
    if (
        pca.key == key
        and state.get("requested") == requested
        and pca.mean.numel() == dim == descriptors.directions.shape[-1]
    ):
        return pca, descriptors
    return None


def load_or_fit_sliders(
    loaded: LoadedModel,
    cache: Path,
    count: int = 8,
    max_examples: int = 64,
    chunking: Chunking | None = None,
    refit: bool = False,
    log: Callable[[str], None] | None = None,
) -> tuple[PCA, Descriptors]:
    """The cached PCA and descriptor directions if made from this checkpoint with these settings,
    else a new fit of both on the same validation latents."""
    key, requested = loaded.cache_key(), [count, max_examples]
    if cache.is_file() and not refit:
        found = read_sliders(cache, key, requested)
        if found is not None:
            return found
    if log is not None:
        log(f"fitting the sliders (PCA, descriptors) on up to {max_examples} validation examples")
    rows, values, examples = validation_latents(loaded, max_examples, chunking)
    pca = fit_pca(rows, count, key, examples)
    descriptors = fit_descriptors(rows, values)
    state = {**pca.to_state(), "descriptors": descriptors.to_state(), "requested": requested}
    with atomic_write(cache, what="the sliders' cache") as f:
        torch.save(state, f)
    return pca, descriptors


def apply_sliders(
    z: torch.Tensor,
    pca: PCA,
    values: Sequence[float],
    descriptors: Descriptors | None = None,
) -> torch.Tensor:
    """The latent moved by the sliders (the PCA's, then the descriptors'): [B, D] or every
    frame of [B, D, F]."""
    values = [float(v) for v in values]
    offset = pca.offset(values[: pca.count])
    if descriptors is not None and descriptors.count:
        offset = offset + descriptors.offset(values[pca.count :])
    offset = offset.to(z.dtype)
    if z.dim() == 3:
        return z + offset[None, :, None]
    if z.dim() == 2:
        return z + offset[None, :]
    raise LyraError(f"expected a latent [B, D] or [B, D, frames], got {list(z.shape)}")


# -- presets -------------------------------------------------------------------------------------


def preset_path(folder: Path, name: str) -> Path:
    name = name.strip()
    if not PRESET_NAME.fullmatch(name):
        raise LyraError(
            f"preset name {name!r}: use 1-64 letters, digits, spaces, '_', '.' or '-' "
            "(starting with a letter or digit)"
        )
    return folder / f"{name}.json"


def save_preset(folder: Path, name: str, values: Sequence[float], spec_hash: str = "") -> Path:
    """Write the slider values as `folder/NAME.json`."""
    path = preset_path(folder, name)
    folder.mkdir(parents=True, exist_ok=True)
    data = {"name": name.strip(), "sliders": [float(v) for v in values], "spec_hash": spec_hash}
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def load_preset(folder: Path, name: str, count: int) -> list[float]:
    """The slider values of a preset, `count` of them (missing ones 0), clamped to the range."""
    path = preset_path(folder, name)
    if not path.is_file():
        raise LyraError(f"no preset named {name!r} in {folder}")
    try:
        data = json.loads(path.read_text())
        values = [float(v) for v in data["sliders"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise LyraError(f"{path}: not a preset file ({exc})") from exc
    if not all(math.isfinite(v) for v in values):
        raise LyraError(f"{path}: slider values must be finite numbers")
    values = (values + [0.0] * count)[:count]
    return [max(-SLIDER_RANGE, min(SLIDER_RANGE, v)) for v in values]


def list_presets(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


# -- audio in and out -----------------------------------------------------------------------------


def read_upload(loaded: LoadedModel, path: str | Path | None, max_seconds: float) -> torch.Tensor:
    """An uploaded file as audio [1, C, T] for the model; a LyraError saying what is wrong."""
    if path is None or str(path) == "":
        raise LyraError("no file: upload an audio file or pick an example")
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise LyraError(f"{name}: the file is gone (upload it again)")
    if path.stat().st_size == 0:
        raise LyraError(f"{name}: the file is empty")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
        reason = getattr(exc, "error_string", None) or str(exc)  # without the server's path
        raise LyraError(f"{name}: not an audio file that can be read ({reason})") from exc
    if info.frames == 0:
        raise LyraError(f"{name}: has no audio frames")
    seconds = info.frames / info.samplerate
    if seconds > max_seconds:
        raise LyraError(
            f"{name}: {seconds:.1f} s is too long; the limit is {max_seconds:g} s "
            "(lyra explore --max-seconds)"
        )
    audio = read_audio(path, loaded.sample_rate, loaded.channels)
    return torch.from_numpy(audio)[None]


def export_audio(
    audio: torch.Tensor,
    sample_rate: int,
    folder: Path,
    name: str,
    fmt: str = "wav",
    rate: int | None = None,
    bits: str = "16",
    dither: bool = True,
) -> Path:
    """Write audio [C, T] as `folder/NAME.FMT` at `rate` Hz (None: the model's) and `bits`;
    an existing file is kept and the new one numbered (`NAME-2.FMT`, ...)."""
    fmt = fmt.lower().lstrip(".")
    if fmt not in EXPORT_FORMATS:
        raise LyraError(f"export format {fmt!r}: expected one of {', '.join(EXPORT_FORMATS)}")
    if bits not in BIT_DEPTHS:
        raise LyraError(f"bit depth {bits!r}: expected one of {', '.join(BIT_DEPTHS)}")
    if rate is not None and not 1000 <= int(rate) <= 384_000:
        raise LyraError(f"export rate {rate}: expected 1000 to 384000 Hz")
    path = unique_path(folder, name, fmt)
    return write_audio(path, audio, sample_rate, bits, dither, None if rate is None else int(rate))


def unique_path(folder: Path, name: str, fmt: str) -> Path:
    """`folder/NAME.FMT` with NAME made file-safe; an existing file is kept and the new one
    numbered (`NAME-2.FMT`, ...)."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "sound"
    path = folder / f"{stem}.{fmt}"
    for n in itertools.count(2):
        if not path.exists():
            return path
        path = folder / f"{stem}-{n}.{fmt}"
    raise AssertionError("unreachable")


def example_files(run_dir: Path, extra: Path | None = None, limit: int = 200) -> list[Path]:
    """Files to pick from: the run's newest validation originals, then audio in `extra`."""
    found: list[Path] = []
    steps = sorted((run_dir / "validation").glob("step-*"))
    if steps:
        found += sorted(steps[-1].glob("*_original.wav"))
    if extra is not None:
        if not extra.is_dir():
            raise LyraError(f"--examples {extra}: not a directory")
        found += sorted(
            p for p in extra.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
        )
    return found[:limit]


# -- the explorer ---------------------------------------------------------------------------------


@attrs.define
class Sound:
    """What the page currently plays: a base latent, its length and the input it came from."""

    latent: torch.Tensor  # [1, D, F] or [1, D]
    length: int
    label: str
    source: torch.Tensor | None = None  # the input audio [1, C, T], if any


@attrs.define
class Explorer:
    """One loaded model with its PCA; every method is what a button on the page does."""

    loaded: LoadedModel
    run_dir: Path
    pca: PCA
    chunking: Chunking = attrs.field(factory=Chunking)
    max_seconds: float = 60.0
    examples: list[Path] = attrs.field(factory=list)
    descriptors: Descriptors | None = None
    preview_dir: Path = attrs.field(factory=lambda: Path(tempfile.mkdtemp(prefix="lyra-explore-")))
    _counter: itertools.count = attrs.field(factory=itertools.count)
    _losses: dict[str, Any] | None = None
    _codec: Codec | None = None

    @classmethod
    def open(
        cls,
        loaded: LoadedModel,
        components: int = 8,
        pca_examples: int = 64,
        chunking: Chunking | None = None,
        max_seconds: float = 60.0,
        examples: Path | None = None,
        refit: bool = False,
        log: Callable[[str], None] | None = None,
    ) -> Explorer:
        if components < 1 or pca_examples < 1 or max_seconds <= 0:
            raise LyraError("explore: --components, --pca-examples and --max-seconds must be > 0")
        run_dir = loaded.run_dir
        chunking = chunking or Chunking()
        cache = run_dir / "explore" / "pca.pt"
        pca, descriptors = load_or_fit_sliders(
            loaded, cache, components, pca_examples, chunking, refit, log
        )
        files = example_files(run_dir, examples)
        return cls(loaded, run_dir, pca, chunking, max_seconds, files, descriptors)

    def close(self) -> None:
        """Remove the preview files."""
        shutil.rmtree(self.preview_dir, ignore_errors=True)

    @property
    def presets_dir(self) -> Path:
        return self.run_dir / "explore" / "presets"

    @property
    def exports_dir(self) -> Path:
        return self.run_dir / "explore" / "exports"

    @property
    def slider_count(self) -> int:
        """The PCA sliders and the descriptor sliders."""
        return self.pca.count + (self.descriptors.count if self.descriptors else 0)

    def describe(self) -> str:
        m = self.loaded
        kind = (
            "one vector per example" if m.single_vector else f"a vector per {m.hop_length} samples"
        )
        share = float(self.pca.explained.sum()) * 100
        named = ", ".join(self.descriptors.names) if self.descriptors else ""
        return (
            f"model '{m.name}' at step {m.step}, {m.sample_rate} Hz, {m.channels} channel(s); "
            f"latent: {self.pca.components.shape[1]} dimensions, {kind}; "
            f"{self.pca.count} slider(s) cover {share:.0f}% of the variance of "
            f"{self.pca.examples} validation example(s); descriptor sliders: {named or 'none'}"
        )

    # sources of a sound

    def from_file(self, path: str | Path | None) -> Sound:
        audio = read_upload(self.loaded, path, self.max_seconds)
        z = encode_audio(self.loaded, audio, self.chunking)
        return Sound(z, audio.shape[-1], Path(str(path)).stem, audio)

    def from_prior(self, seed: int, temperature: float, seconds: float) -> Sound:
        if not 0 < seconds <= self.max_seconds:
            raise LyraError(f"seconds must be in (0, {self.max_seconds:g}], got {seconds}")
        length = max(1, round(seconds * self.loaded.sample_rate))
        frames = self.loaded.latent_frames(length)
        gen = torch.Generator(device=self.loaded.device).manual_seed(int(seed))
        with torch.inference_mode():
            z = self.loaded.sample_latents(1, frames, float(temperature), gen).cpu()
        return Sound(z, length, f"sample_seed{int(seed)}_t{float(temperature):g}")

    def between(self, first: Sound, second: Sound, t: float) -> Sound:
        """The latent at `t` on the path from `first` to `second` (slerp for Gaussian latents)."""
        za, zb = first.latent, second.latent
        if za.dim() == 3:
            frames = min(za.shape[-1], zb.shape[-1])
            za, zb = za[..., :frames], zb[..., :frames]
        z = slerp(za, zb, t) if self.loaded.variational else torch.lerp(za, zb, t)
        length = min(first.length, second.length)
        return Sound(z, length, f"{first.label}_{second.label}_{t:.2f}")

    # rendering

    def render(self, sound: Sound, values: Sequence[float]) -> torch.Tensor:
        """The sound's latent moved by the sliders, decoded: audio [C, T]."""
        z = apply_sliders(sound.latent, self.pca, values, self.descriptors)
        return decode_latent(self.loaded, z, sound.length, self.chunking)[0]

    def metrics(self, sound: Sound, audio: torch.Tensor) -> dict[str, float]:
        """Distances of the rendered audio to the sound's input (empty without one)."""
        if sound.source is None:
            return {}
        if self._losses is None:
            self._losses = distances(self.loaded)
        return metrics(audio[None], sound.source, self._losses)

    def preview(self, audio: torch.Tensor) -> Path:
        """A 16-bit WAV (no dither, so the same audio gives the same file) to play on the page."""
        path = self.preview_dir / f"sound-{next(self._counter):05d}.wav"
        return write_audio(path, audio.clamp(-1, 1), self.loaded.sample_rate, "16", False)

    def export(
        self, sound: Sound, audio: torch.Tensor, fmt: str, rate: int | None, bits: str
    ) -> Path:
        """The rendered audio as a WAV or FLAC file, or compressed as a `.lyra` file (the
        model's rate, the run's operating point; rate and bits do not apply)."""
        if fmt.lower().lstrip(".") == BITSTREAM:
            if self._codec is None:
                self._codec = open_codec(self.loaded, chunking=self.chunking)
            path = unique_path(self.exports_dir, sound.label, BITSTREAM)
            make_folder(path.parent)
            write_bytes(path, self._codec.encode(audio[None]), what="a .lyra file")
            return path
        return export_audio(
            audio, self.loaded.sample_rate, self.exports_dir, sound.label, fmt, rate, bits
        )
