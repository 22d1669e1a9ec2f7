"""Using a trained model: load it, encode and decode any length in chunks, sample, interpolate.

A model loads from a run directory (its `checkpoints/best.pt`, else `last.pt`), a checkpoint file,
or an MLflow run id (the run's `lyra.run_dir` tag). The checkpoint is read with
`weights_only=True`; its resolved spec is validated against the live registry before anything is
built, and a component that no loaded plugin provides is reported with the plugins the run was
trained with that are missing now.

For inference the model is put in eval mode, its parametrizations (weight norm) are folded into
plain weights, and modules that offer an eager `implementation` (Snake) use it: the fused Snake's
first call compiles for tens of seconds and is no faster without gradients.

Long audio runs in chunks of `chunk` latent frames, each with `context` frames of real audio (or
latent) on both sides that the model sees but whose output is discarded, except for a
raised-cosine crossfade `context / 2` frames wide centred on each seam. When 3/4 of the context
covers the model's receptive field, the chunked result equals the one-pass result.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from lyra_core import checkpoint
from lyra_core.audio_files import BitDepth, read_audio, write_audio
from lyra_core.context import BuildContext
from lyra_core.errors import LyraError
from lyra_core.experiment import ExperimentSpec
from lyra_core.interfaces import AudioModel, Bottleneck, ModelOutput, QuantizingBottleneck
from lyra_core.loader import validate_data
from lyra_core.plugins import Plugins
from lyra_core.training.distributed import pick_device

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"  # the `mlflow` tracker's default store
MLFLOW_RUN_ID = re.compile(r"[0-9a-f]{32}")


def spec_hash(data: dict[str, Any]) -> str:
    """The hash of a resolved spec, as the run's `lyra.spec_hash` tag has it."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


# -- finding and loading -----------------------------------------------------------------------


def mlflow_run_dir(run_id: str, tracking_uri: str | None = None) -> Path:
    """The run directory an MLflow run points to through its `lyra.run_dir` tag."""
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise LyraError(
            f"--run {run_id}: looks like an MLflow run id, but there is no MLflow store at {uri} "
            "(set --tracking-uri or MLFLOW_TRACKING_URI)"
        )
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        run = MlflowClient(tracking_uri=uri).get_run(run_id)
    except MlflowException as exc:
        raise LyraError(f"MLflow run {run_id}: not found in {uri} ({exc.message})") from exc
    run_dir = run.data.tags.get("lyra.run_dir")
    if not run_dir:
        raise LyraError(f"MLflow run {run_id} has no 'lyra.run_dir' tag: not a Lyra training run")
    return Path(run_dir)


def find_checkpoint(source: str | Path, tracking_uri: str | None = None) -> Path:
    """A checkpoint file from a run directory, a checkpoint path or an MLflow run id."""
    path = Path(source)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / "checkpoints" / name).is_file():
                return path / "checkpoints" / name
        what = "has no checkpoint yet" if (path / "spec.json").is_file() else "is not a Lyra run"
        raise LyraError(f"{path}: {what} (no checkpoints/best.pt or checkpoints/last.pt)")
    if path.is_file():
        return path
    if MLFLOW_RUN_ID.fullmatch(str(source)):
        return find_checkpoint(mlflow_run_dir(str(source), tracking_uri))
    raise LyraError(
        f"--run {source}: no such run directory or checkpoint file, and not an MLflow run id"
    )


def plugin_differences(recorded: dict[str, str], plugins: Plugins) -> tuple[list[str], list[str]]:
    """Plugins the run was trained with that are not loaded now, and those whose version changed."""
    now = plugins.versions()
    missing = [
        f"'{name}' from {dist}" for name, dist in sorted(recorded.items()) if name not in now
    ]
    changed = [
        f"'{name}' (trained with {dist}, loaded {now[name]})"
        for name, dist in sorted(recorded.items())
        if name in now and now[name] != dist
    ]
    return missing, changed


def fold_parametrizations(model: nn.Module) -> None:
    """Replace every parametrized tensor (weight norm, ...) by its current value, in place."""
    for module in list(model.modules()):
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations.keys()):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)


def use_eager_implementations(model: nn.Module) -> None:
    """Switch modules that offer an eager `implementation` (e.g. the fused Snake) to it."""
    for module in model.modules():
        if getattr(module, "implementation", None) not in (None, "eager"):
            module.implementation = "eager"


def find_bottleneck(model: nn.Module) -> Bottleneck | None:
    found = [m for m in model.modules() if isinstance(m, Bottleneck)]
    return found[0] if len(found) == 1 else None


@attrs.define(slots=False)
class LoadedModel:
    """A trained model ready for inference, with what its outputs need to be described."""

    model: AudioModel
    spec: ExperimentSpec
    spec_hash: str
    checkpoint: Path
    step: int
    device: torch.device
    registry: Any

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def sample_rate(self) -> int:
        return self.spec.data.sample_rate

    @property
    def channels(self) -> int:
        return self.spec.data.channels

    @property
    def hop_length(self) -> int:
        return int(self.model.hop_length)

    @property
    def bottleneck(self) -> Bottleneck:
        found = find_bottleneck(self.model)
        if found is None:
            raise LyraError(f"model '{self.name}': no single Bottleneck module to sample from")
        return found

    @property
    def quantizer(self) -> QuantizingBottleneck | None:
        """The bottleneck if it has discrete codes (and the model exposes `features`)."""
        found = find_bottleneck(self.model)
        if isinstance(found, QuantizingBottleneck) and hasattr(self.model, "features"):
            return found
        return None

    @functools.cached_property
    def single_vector(self) -> bool:
        """Whether the latent is one vector per example ([B, D]) instead of a time series."""
        probe = torch.zeros(1, self.channels, self.hop_length, device=self.device)
        with torch.inference_mode():
            return self.model.encode(probe)[0].dim() == 2

    def describe(self) -> dict[str, Any]:
        return {
            "sample_rate": self.sample_rate,
            "hop_length": self.hop_length,
            "channels": self.channels,
            "model": self.name,
            "spec_hash": self.spec_hash,
            "checkpoint": str(self.checkpoint.resolve()),
            "step": self.step,
        }


def load_model(
    source: str | Path,
    plugins: Plugins,
    device: str = "auto",
    tracking_uri: str | None = None,
) -> LoadedModel:
    """Load a trained model for inference (see the module docstring)."""
    path = find_checkpoint(source, tracking_uri)
    state = checkpoint.load(path, map_location="cpu")
    if not isinstance(state.get("spec"), str) or not isinstance(state.get("model"), dict):
        raise LyraError(f"{path}: the checkpoint has no spec or no model weights")
    recorded = state.get("plugins") or {}
    missing, changed = plugin_differences(recorded, plugins)
    data = json.loads(state["spec"])
    try:
        spec: ExperimentSpec = validate_data(data, plugins.registry, f"{path} (its spec)")
    except LyraError as exc:
        if missing:
            raise LyraError(
                f"{exc}\nthe run was trained with plugin(s) not loaded now: {', '.join(missing)}; "
                "install (or enable) them to use this model (see `lyra plugins`)"
            ) from exc
        raise
    if changed:
        print(
            f"warning: plugin versions differ from training: {', '.join(changed)}", file=sys.stderr
        )
    dev = pick_device(device)
    ctx = spec.context(plugins.registry, str(dev))
    model = spec.model.build(ctx)
    if not isinstance(model, AudioModel):
        raise LyraError(f"{path}: the model is a {type(model).__name__}, not an AudioModel")
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise LyraError(f"{path}: the weights do not fit the spec's model: {exc}") from exc
    model.eval().requires_grad_(False)
    fold_parametrizations(model)
    use_eager_implementations(model)
    model.to(dev)
    return LoadedModel(
        model, spec, spec_hash(data), path, int(state.get("step", 0)), dev, plugins.registry
    )


# -- chunked processing -------------------------------------------------------------------------


def crossfade(length: int) -> torch.Tensor:
    """A rising sin² ramp of `length` samples; 1 − ramp is its complement."""
    return torch.sin(0.5 * math.pi * (torch.arange(length) + 0.5) / length).square()


def overlapped(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    step_in: int,
    step_out: int,
    chunk: int,
    context: int,
    device: torch.device,
) -> torch.Tensor:
    """`fn` over x [B, C, frames·step_in] in chunks of `chunk` frames; -> [B, C', frames·step_out].

    Each chunk sees `context` extra frames on both sides; neighbouring outputs are crossfaded
    over `context / 2` frames centred on each seam, so 3/4 of the context is never heard. The
    result stays on the CPU.
    """
    frames = x.shape[-1] // step_in
    chunk, context = max(1, chunk), max(0, context)
    if frames <= chunk + context:
        return fn(x.to(device)).cpu()
    half = context // 4  # frames of crossfade on each side of a seam
    ramp = crossfade(2 * half * step_out) if half else None
    out: torch.Tensor | None = None
    for start in range(0, frames, chunk):
        end = min(start + chunk, frames)
        lo_in, hi_in = max(0, start - context), min(frames, end + context)
        y = fn(x[..., lo_in * step_in : hi_in * step_in].to(device)).cpu()
        lo = start - half if start > 0 else 0
        hi = end + half if end < frames else frames
        piece = y[..., (lo - lo_in) * step_out : (hi - lo_in) * step_out].clone()
        if ramp is not None:
            n = ramp.numel()
            if start > 0:
                piece[..., :n] *= ramp
            if end < frames:
                piece[..., -n:] *= 1 - ramp
        if out is None:
            out = y.new_zeros(*y.shape[:-1], frames * step_out)
        out[..., lo * step_out : hi * step_out] += piece
    assert out is not None
    return out


@attrs.frozen
class Chunking:
    """Chunk and context lengths in seconds; converted to latent frames per model."""

    chunk_seconds: float = 10.0
    context_seconds: float = 0.5

    def frames(self, loaded: LoadedModel) -> tuple[int, int]:
        per_second = loaded.sample_rate / loaded.hop_length
        if self.chunk_seconds <= 0 or self.context_seconds < 0:
            raise LyraError("chunk seconds must be positive and context seconds not negative")
        chunk = max(1, round(self.chunk_seconds * per_second))
        return chunk, math.ceil(self.context_seconds * per_second)


@torch.inference_mode()
def encode_audio(loaded: LoadedModel, audio: torch.Tensor, chunking: Chunking) -> torch.Tensor:
    """Audio [B, C, T] (CPU) -> latent [B, D, ceil(T/hop)], or [B, D] for single-vector models."""
    model, hop = loaded.model, loaded.hop_length
    if loaded.quantizer is not None:
        return encode_codes(loaded, audio, chunking)[0]
    if loaded.single_vector:
        return model.encode(audio.to(loaded.device))[0].cpu()
    frames = math.ceil(audio.shape[-1] / hop)
    x = torch.nn.functional.pad(audio, (0, frames * hop - audio.shape[-1]))
    chunk, context = chunking.frames(loaded)
    return overlapped(lambda s: model.encode(s)[0], x, hop, 1, chunk, context, loaded.device)


@torch.inference_mode()
def encode_codes(
    loaded: LoadedModel, audio: torch.Tensor, chunking: Chunking
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Audio [B, C, T] -> (latent [B, D, ceil(T/hop)], codes) for a quantizing model.

    The encoder's features are computed in chunks like any latent, then quantized in one pass,
    so the latent is exactly the codes' dequantisation (a crossfade of quantized chunks is not).
    Codes cover the frames padded to the quantizer's frame multiple.
    """
    quantizer, hop = loaded.quantizer, loaded.hop_length
    assert quantizer is not None
    frames = math.ceil(audio.shape[-1] / hop)
    x = torch.nn.functional.pad(audio, (0, frames * hop - audio.shape[-1]))
    chunk, context = chunking.frames(loaded)
    h = overlapped(loaded.model.features, x, hop, 1, chunk, context, loaded.device)
    h = h[..., :frames]
    h = torch.nn.functional.pad(h, (0, -frames % quantizer.frame_multiple))
    z, codes, _ = quantizer.quantize(h.to(loaded.device))
    return z[..., :frames].cpu(), [c.cpu() for c in codes]


@torch.inference_mode()
def decode_latent(
    loaded: LoadedModel, z: torch.Tensor, length: int | None, chunking: Chunking
) -> torch.Tensor:
    """Latent (CPU) -> audio [B, C, length] on the CPU (length None: frames·hop)."""
    model, hop = loaded.model, loaded.hop_length
    if z.dim() == 2:  # a single vector per example: one pass
        return model.decode(z.to(loaded.device), length).cpu()
    chunk, context = chunking.frames(loaded)
    y = overlapped(
        lambda s: model.decode(s, s.shape[-1] * hop), z, 1, hop, chunk, context, loaded.device
    )
    return y if length is None else y[..., :length]


def reconstruct_audio(loaded: LoadedModel, audio: torch.Tensor, chunking: Chunking) -> torch.Tensor:
    return decode_latent(loaded, encode_audio(loaded, audio, chunking), audio.shape[-1], chunking)


# -- metrics ------------------------------------------------------------------------------------


def distances(loaded: LoadedModel) -> dict[str, nn.Module]:
    """The registered MR-STFT and mel distances that validation reports, built for this model."""
    from lyra_core.training.validation import distance_losses

    ctx = BuildContext(
        registry=loaded.registry, sample_rate=loaded.sample_rate, channels=loaded.channels
    )
    return distance_losses(loaded.registry, ctx)


@torch.inference_mode()
def metrics(
    recon: torch.Tensor, target: torch.Tensor, losses: dict[str, nn.Module]
) -> dict[str, float]:
    """MR-STFT and mel distances (lower is better) and SI-SDR in dB (higher is better)."""
    from lyra_core.training.validation import si_sdr

    out = ModelOutput(recon, recon.new_zeros(0))
    values: dict[str, float] = {}
    for name, loss in losses.items():
        try:
            values[name] = float(loss(out, target))
        except LyraError:  # too short for the largest FFT
            values[name] = float("nan")
    values["si_sdr"] = float(si_sdr(recon, target))
    return values


def format_metrics(rows: Sequence[tuple[str, dict[str, float]]]) -> str:
    """A table: one line per file, then the mean of each column over the files."""
    names = list(rows[0][1]) if rows else []
    width = max([len("file"), len("mean")] + [len(f) for f, _ in rows]) + 2
    lines = [f"{'file':<{width}}" + "".join(f"{n:>12}" for n in names)]
    for label, values in rows:
        lines.append(f"{label:<{width}}" + "".join(f"{values[n]:>12.4f}" for n in names))
    if rows:
        means = {n: float(np.nanmean([v[n] for _, v in rows])) for n in names}
        lines.append(f"{'mean':<{width}}" + "".join(f"{means[n]:>12.4f}" for n in names))
    return "\n".join(lines)


# -- latents on disk ----------------------------------------------------------------------------


def _outputs(inputs: Sequence[str | Path], out_dir: Path, suffix: str) -> list[Path]:
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
    for src, target in zip(inputs, _outputs(inputs, out_dir, ".npy"), strict=True):
        audio = load_input(loaded, src)
        out_dir.mkdir(parents=True, exist_ok=True)
        sidecar = {**loaded.describe(), "length": audio.shape[-1], "source": str(src)}
        if loaded.quantizer is not None:
            z, codes = encode_codes(loaded, audio, chunking)
            z = z[0]
            levels = {f"level{i}": c[0].numpy() for i, c in enumerate(codes)}
            np.savez(codes_path(target), **levels)  # type: ignore[arg-type]
            sidecar["codes_shape"] = [list(c.shape) for c in levels.values()]
        else:
            z = encode_audio(loaded, audio, chunking)[0]
        np.save(target, z.numpy().astype(np.float32))
        sidecar["latent_shape"] = list(z.shape)
        target.with_suffix(".json").write_text(json.dumps(sidecar, indent=2) + "\n")
        written.append(target)
    return written


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


def read_latent(loaded: LoadedModel, path: str | Path) -> tuple[torch.Tensor, int | None]:
    """A latent (`.npy`) or codes (`.codes.npz`) file as [1, ...] and the audio length its
    sidecar records (if any)."""
    path = Path(path)
    if path.name.endswith(".codes.npz"):
        z = read_codes(loaded, path).numpy()[0]
        path = path.with_name(path.name.removesuffix(".codes.npz") + ".npy")
    else:
        try:
            z = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise LyraError(f"{path}: not a readable .npy latent ({exc})") from exc
    length = None
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        meta = json.loads(sidecar.read_text())
        length = meta.get("length")
        if meta.get("spec_hash") != loaded.spec_hash:
            print(
                f"warning: {path} was encoded by model '{meta.get('model')}' (spec "
                f"{meta.get('spec_hash')}), not this one ({loaded.spec_hash})",
                file=sys.stderr,
            )
    if z.dtype.kind != "f" or z.ndim not in (1, 2):
        raise LyraError(f"{path}: expected a float latent [D, frames] or [D], got {z.shape}")
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
    for src, target in zip(latents, _outputs(latents, out_dir, output.extension), strict=True):
        z, length = read_latent(loaded, src)
        try:
            audio = decode_latent(loaded, z, length, chunking)
        except LyraError as exc:
            raise LyraError(f"{src}: {exc}") from exc
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
    for src, target in zip(inputs, _outputs(inputs, out_dir, output.extension), strict=True):
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
) -> list[Path]:
    """Decode `count` draws from the bottleneck's prior, `seconds` long each."""
    if count < 1 or seconds <= 0:
        raise LyraError("sample: need -n >= 1 and --seconds > 0")
    length = max(1, round(seconds * loaded.sample_rate))
    frames = math.ceil(length / loaded.hop_length)
    gen = torch.Generator(device=loaded.device).manual_seed(seed)
    with torch.inference_mode():
        z = loaded.bottleneck.sample_prior(count, frames, temperature, gen).cpu()
    written = []
    for i in range(count):
        audio = decode_latent(loaded, z[i : i + 1], length, chunking)
        written.append(
            output.write(loaded, out_dir / f"sample_{i:03d}{output.extension}", audio[0])
        )
    return written


def slerp(a: torch.Tensor, b: torch.Tensor, t: float, dim: int = 1) -> torch.Tensor:
    """Spherical interpolation of the vectors along `dim`; linear where they are parallel."""
    dot = (a * b).sum(dim, keepdim=True)
    norms = a.norm(dim=dim, keepdim=True) * b.norm(dim=dim, keepdim=True)
    omega = torch.arccos((dot / norms.clamp_min(1e-12)).clamp(-1, 1))
    sin = torch.sin(omega)
    parallel = sin.abs() < 1e-6
    wa = torch.where(parallel, 1 - t, torch.sin((1 - t) * omega) / sin.where(~parallel, 1.0))
    wb = torch.where(parallel, t, torch.sin(t * omega) / sin.where(~parallel, 1.0))
    return wa * a + wb * b


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
    bottleneck is variational (it reports a "kl" term: Gaussian latents), else linear.
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
        with torch.inference_mode():
            probe = torch.zeros(1, loaded.channels, loaded.hop_length, device=loaded.device)
            mode = "slerp" if "kl" in loaded.model.encode(probe)[1] else "linear"
    written = []
    for i in range(steps):
        t = i / (steps - 1)
        z = slerp(za, zb, t) if mode == "slerp" else torch.lerp(za, zb, t)
        audio = decode_latent(loaded, z, length, chunking)
        name = f"{Path(first).stem}_{Path(second).stem}_{i:03d}{output.extension}"
        written.append(output.write(loaded, out_dir / name, audio[0]))
    return written
