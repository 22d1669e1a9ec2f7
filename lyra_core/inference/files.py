"""The inference commands' files: latents and codes on disk, decoded audio, samples, blends."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import attrs
import numpy as np
import torch

from lyra_core.errors import LyraError
from lyra_core.services.atomic import atomic_write, write_bytes, write_text
from lyra_core.services.audio import (
    BitDepth,
    check_fits,
    make_folder,
    read_audio,
    write_audio,
)
from lyra_core.services.bitstream import EXTENSION, Header, Reader, read_header, short_id
from lyra_core.services.chunking import (
    Chunking,
    decode_latent,
    encode_audio,
    encode_codes,
    reconstruct_audio,
    slerp,
)
from lyra_core.services.compress import Codec, open_codec, step_for_kbps
from lyra_core.services.metrics import distances, metrics
from lyra_core.services.model import LoadedModel

ENCODED = "an encoded file"  # what a WriteError names


def output_paths(inputs: Sequence[str | Path], out_dir: Path, suffix: str) -> list[Path]:
    """One output path per input, refusing two inputs that would write the same file."""
    stems = [Path(p).name.removesuffix(".codes.npz").removesuffix(Path(p).suffix) for p in inputs]
    targets = [out_dir / (stem + suffix) for stem in stems]
    seen: dict[Path, str] = {}
    for src, target in zip(inputs, targets, strict=True):
        if target in seen:
            raise LyraError(f"{src} and {seen[target]} would both write {target}; rename one")
        seen[target] = str(src)
    return targets


def load_input(loaded: LoadedModel, path: str | Path) -> torch.Tensor:
    audio = read_audio(path, loaded.sample_rate, loaded.channels)
    return torch.from_numpy(audio)[None]


def encode_files(
    loaded: LoadedModel, inputs: Sequence[str | Path], out_dir: Path, chunking: Chunking
) -> list[Path]:
    """Write `<stem>.npy` (the latent [D, frames] or [D]) and a `<stem>.json` sidecar per file.

    A quantizing model also writes `<stem>.codes.npz`: one int array [frames // stride] per
    codebook (`level0`, `level1`, ...), which `lyra decode` takes in place of the latent.
    """
    written = []
    for src, target in zip(inputs, output_paths(inputs, out_dir, ".npy"), strict=True):
        audio = load_input(loaded, src)
        make_folder(out_dir)
        sidecar = {**loaded.describe(), "length": audio.shape[-1], "source": str(src)}
        if loaded.quantizer is not None:
            z, codes = encode_codes(loaded, audio, chunking)
            z = z[0]
            levels = {f"level{i}": c[0].numpy() for i, c in enumerate(codes)}
            with atomic_write(codes_path(target), what=ENCODED) as f:
                np.savez(f, **levels)  # type: ignore[arg-type]
            sidecar["codes_shape"] = [list(c.shape) for c in levels.values()]
        else:
            z = encode_audio(loaded, audio, chunking)[0]
        with atomic_write(target, what=ENCODED) as f:
            np.save(f, z.numpy().astype(np.float32))
        sidecar["latent_shape"] = list(z.shape)
        write_text(target.with_suffix(".json"), json.dumps(sidecar, indent=2) + "\n", ENCODED)
        written.append(target)
    return written


@attrs.frozen
class Coded:
    """One `.lyra` file written: where, its size, the audio's seconds and the step used."""

    path: Path
    size: int
    seconds: float
    step: float

    @property
    def kbps(self) -> float:
        return self.size * 8 / max(self.seconds, 1e-9) / 1000


def encode_bitstreams(
    codec: Codec,
    inputs: Sequence[str | Path],
    out_dir: Path,
    step: float | None = None,
    kbps: float | None = None,
) -> list[Coded]:
    """Write `<stem>.lyra` per file at `step` (default: the run's operating point) or at the
    finest step that meets `kbps`."""
    written = []
    for src, target in zip(inputs, output_paths(inputs, out_dir, EXTENSION), strict=True):
        audio = load_input(codec.loaded, src)
        if kbps is not None:
            step = step_for_kbps(codec, audio, kbps, str(src))
        data = codec.encode(audio, step)
        make_folder(out_dir)
        write_bytes(target, data, what="a .lyra file")
        seconds = audio.shape[-1] / codec.loaded.sample_rate
        written.append(Coded(target, len(data), seconds, step or codec.default_step))
    return written


def decode_bitstream(loaded: LoadedModel, path: Path, chunking: Chunking) -> torch.Tensor:
    """A `.lyra` file's audio [1, C, T], with the entropy model its header names."""
    try:
        with path.open("rb") as f:
            name = entropy_model_of(loaded, read_header(Reader(f, str(path))), str(path))
            f.seek(0)
            return open_codec(loaded, name, chunking).decode(f, str(path))
    except OSError as exc:
        raise LyraError(f"{path}: cannot read ({exc.strerror})") from None


def entropy_model_of(loaded: LoadedModel, header: Header, name: str) -> str:
    names = loaded.registry.names("entropy_model")
    found = [n for n in names if short_id(n, 2) == header.entropy_name]
    if not found:
        raise LyraError(
            f"{name}: coded with an entropy model no loaded plugin provides (id "
            f"{header.entropy_name.hex()}; loaded: {', '.join(names)}); install the plugin that "
            "wrote it"
        )
    return found[0]


def codes_path(latent: Path) -> Path:
    return latent.with_name(latent.stem + ".codes.npz")


def read_codes(loaded: LoadedModel, path: Path) -> torch.Tensor:
    """A `.codes.npz` file (from `lyra encode`) dequantized to a latent [1, D, frames]."""
    quantizer = loaded.quantizer
    if quantizer is None:
        raise LyraError(f"{path}: codes need a model with a quantizing bottleneck")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = [data[f"level{i}"] for i in range(len(data.files))]
    except (OSError, ValueError, KeyError) as exc:
        raise LyraError(f"{path}: not a readable codes file ({exc})") from exc
    for i, a in enumerate(arrays):
        if a.dtype.kind not in "iu" or a.ndim != 1 or a.size == 0:
            raise LyraError(f"{path}: level{i} must be a 1-D integer array, got {a.shape}")
        if a.min() < 0 or a.max() >= quantizer.codebook_size:
            raise LyraError(f"{path}: level{i} has codes outside 0..{quantizer.codebook_size - 1}")
    codes = [torch.from_numpy(a.astype(np.int64))[None].to(loaded.device) for a in arrays]
    with torch.inference_mode():
        try:
            return quantizer.dequantize(codes).cpu()
        except (RuntimeError, IndexError, ValueError) as exc:
            raise LyraError(f"{path}: the codes do not fit this model's quantizer ({exc})") from exc


def read_sidecar(loaded: LoadedModel, latent: Path) -> int | None:
    """The audio length recorded in a latent's `.json` sidecar (None without one); warns when
    another model wrote it."""
    sidecar = latent.with_suffix(".json")
    if not sidecar.is_file():
        return None
    try:
        meta = json.loads(sidecar.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise LyraError(
            f"{sidecar}: not a readable JSON sidecar ({exc}); fix or delete it"
        ) from None
    if not isinstance(meta, dict):
        raise LyraError(f"{sidecar}: the sidecar must be a JSON object (as `lyra encode` writes)")
    length = meta.get("length")
    if length is not None:
        if type(length) is not int or length < 1:
            raise LyraError(
                f"{sidecar}: 'length' must be a positive whole number of samples, got "
                f"{length!r}; fix or delete the sidecar"
            )
        check_fits(length * loaded.channels, f"{sidecar}: 'length' {length:,}")
    if meta.get("spec_hash") != loaded.spec_hash:
        print(
            f"warning: {latent} was encoded by model '{meta.get('model')}' (spec "
            f"{meta.get('spec_hash')}), not this one ({loaded.spec_hash})",
            file=sys.stderr,
        )
    return length


def check_latent(path: Path, z: np.ndarray) -> None:
    """A float latent [D, frames] or [D] with finite values and at least one frame."""
    if z.dtype.kind != "f" or z.ndim not in (1, 2):
        raise LyraError(f"{path}: expected a float latent [D, frames] or [D], got {z.shape}")
    if z.size == 0:
        raise LyraError(f"{path}: the latent is empty (shape {list(z.shape)}): nothing to decode")
    if not np.isfinite(z).all():
        bad = int(z.size - np.count_nonzero(np.isfinite(z)))
        raise LyraError(f"{path}: the latent has {bad:,} NaN or infinite value(s)")


def read_latent(loaded: LoadedModel, path: str | Path) -> tuple[torch.Tensor, int | None]:
    """A latent (`.npy`) or codes (`.codes.npz`) file as [1, ...] and the audio length its
    sidecar records (if any)."""
    path = Path(path)
    if path.name.endswith(".codes.npz"):
        z = read_codes(loaded, path).numpy()[0]
        path = path.with_name(path.name.removesuffix(".codes.npz") + ".npy")
    elif not path.is_file():
        what = "is a folder" if path.is_dir() else "no such file"
        raise LyraError(f"{path}: {what}; give .npy latents or .codes.npz codes (`lyra encode`)")
    else:
        try:
            z = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            raise LyraError(
                f"{path}: not a .npy array; give the .npy latents or .codes.npz codes that "
                "`lyra encode` writes"
            ) from None
    check_latent(path, z)
    if z.shape[0] != loaded.latent_channels:
        raise LyraError(
            f"{path}: a latent of {z.shape[0]} channels; this model's has {loaded.latent_channels}"
        )
    length = read_sidecar(loaded, path)
    return torch.from_numpy(z.astype(np.float32))[None], length


@attrs.frozen
class AudioOutput:
    """How audio is written: extension, bit depth, dither, output rate."""

    extension: str = ".wav"
    bits: BitDepth = "16"
    dither: bool = True
    rate: int | None = None

    def write(self, loaded: LoadedModel, path: Path, audio: torch.Tensor) -> Path:
        return write_audio(path, audio, loaded.sample_rate, self.bits, self.dither, self.rate)


def decode_files(
    loaded: LoadedModel,
    latents: Sequence[str | Path],
    out_dir: Path,
    chunking: Chunking,
    output: AudioOutput,
) -> list[Path]:
    written = []
    for src, target in zip(latents, output_paths(latents, out_dir, output.extension), strict=True):
        if Path(src).suffix == EXTENSION:
            audio = decode_bitstream(loaded, Path(src), chunking)
            written.append(output.write(loaded, target, audio[0]))
            continue
        z, length = read_latent(loaded, src)
        try:
            audio = decode_latent(loaded, z, length, chunking)
        except LyraError as exc:
            raise LyraError(f"{src}: {exc}") from exc
        except RuntimeError as exc:  # e.g. too few frames for the decoder's kernels
            first = str(exc).splitlines()[0]
            raise LyraError(f"{src}: this model cannot decode the latent ({first})") from None
        written.append(output.write(loaded, target, audio[0]))
    return written


def reconstruct_files(
    loaded: LoadedModel,
    inputs: Sequence[str | Path],
    out_dir: Path,
    chunking: Chunking,
    output: AudioOutput,
) -> list[tuple[str, dict[str, float]]]:
    """Encode and decode each file, write the result; per-file metrics against the input."""
    losses = distances(loaded)
    rows = []
    for src, target in zip(inputs, output_paths(inputs, out_dir, output.extension), strict=True):
        audio = load_input(loaded, src)
        recon = reconstruct_audio(loaded, audio, chunking)
        output.write(loaded, target, recon[0])
        rows.append((str(src), metrics(recon, audio, losses)))
    return rows


def sample_files(
    loaded: LoadedModel,
    count: int,
    seconds: float,
    out_dir: Path,
    chunking: Chunking,
    output: AudioOutput,
    seed: int = 0,
    temperature: float = 1.0,
    prompt: str | Path | None = None,
) -> list[Path]:
    """Decode `count` latents `seconds` long each, drawn from the model's latent prior (a
    `latent_prior` run) or else the bottleneck's frame-wise prior; with `prompt`, an audio file
    whose latent the prior continues (each output is the prompt, then `seconds` more)."""
    if count < 1 or not 0 < seconds < math.inf:
        raise LyraError("sample: need -n >= 1 and a finite --seconds > 0")
    length = max(1, round(seconds * loaded.sample_rate))
    check_fits(length * loaded.channels, f"sample: {seconds:g} seconds of audio")
    frames = loaded.latent_frames(length)
    check_fits(count * frames * loaded.latent_channels, f"sample: {count} latents", 4)
    start = None
    if prompt is not None:
        audio = load_input(loaded, prompt)
        start = encode_audio(loaded, audio, chunking)
        length += round(start.shape[-1] * loaded.hop_length)
    gen = torch.Generator(device=loaded.device).manual_seed(seed)
    with torch.inference_mode():
        z = loaded.sample_latents(count, frames, temperature, gen, start).cpu()
    written = []
    for i in range(count):
        audio = decode_latent(loaded, z[i : i + 1], length, chunking)
        written.append(
            output.write(loaded, out_dir / f"sample_{i:03d}{output.extension}", audio[0])
        )
    return written


def interpolate_files(
    loaded: LoadedModel,
    first: str | Path,
    second: str | Path,
    steps: int,
    out_dir: Path,
    chunking: Chunking,
    output: AudioOutput,
    mode: str = "auto",
) -> list[Path]:
    """Decode `steps` latents on the path from `first`'s to `second`'s (both ends included).

    Time-series latents are cut to the shorter file's frames. `auto` is spherical when the
    latent is variational (`LoadedModel.variational`), else linear.
    """
    if steps < 2:
        raise LyraError("interpolate: --steps must be at least 2 (both ends are included)")
    if mode not in ("auto", "linear", "slerp"):
        raise LyraError(f"interpolate: mode {mode!r}; expected auto, linear or slerp")
    a_audio, b_audio = load_input(loaded, first), load_input(loaded, second)
    za, zb = (encode_audio(loaded, x, chunking) for x in (a_audio, b_audio))
    if za.dim() == 3:
        frames = min(za.shape[-1], zb.shape[-1])
        za, zb = za[..., :frames], zb[..., :frames]
    length = min(a_audio.shape[-1], b_audio.shape[-1])
    if mode == "auto":
        mode = "slerp" if loaded.variational else "linear"
    written = []
    for i in range(steps):
        t = i / (steps - 1)
        z = slerp(za, zb, t) if mode == "slerp" else torch.lerp(za, zb, t)
        audio = decode_latent(loaded, z, length, chunking)
        name = f"{Path(first).stem}_{Path(second).stem}_{i:03d}{output.extension}"
        written.append(output.write(loaded, out_dir / name, audio[0]))
    return written
