"""Timbre transfer: re-synthesise audio through a conditioned model with another timbre.

A conditioned model's latent holds, besides its timbre rows z, control rows measured from the
audio; the model names them in a `controls` attribute (`{"f0": row, "loudness": row}`, as the
`ddsp` model does), and every other row is timbre. Transfer encodes each input (so f0 and
loudness are the input's own), replaces its timbre rows with one timbre vector held over every
frame, scales f0 by 2^(semitones / 12), offsets loudness by some dB and decodes in chunks as
`lyra reconstruct` does.

The timbre vector is the mean z over the frames of the run's validation examples (its training
timbre, up to `MAX_TIMBRE_EXAMPLES` examples), or over the frames of a given file. Input files
that cannot be read are named and skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import attrs
import torch

from lyra_core.errors import LyraError
from lyra_core.inference.files import AudioOutput, output_paths
from lyra_core.services.audio import make_folder, read_audio_source
from lyra_core.services.chunking import Chunking, decode_latent, encode_audio
from lyra_core.services.model import LoadedModel

CONTROLS = ("f0", "loudness")
MAX_TIMBRE_EXAMPLES = 256  # validation examples averaged for the default timbre


@attrs.frozen
class Layout:
    """Where a conditioned model's latent keeps its controls and its timbre."""

    f0: int
    loudness: int
    timbre: tuple[int, ...]


@attrs.frozen
class Transferred:
    """What `transfer_files` wrote, and the inputs it skipped (file -> why)."""

    written: list[Path]
    skipped: dict[str, str]


def _model_type(loaded: LoadedModel) -> str:
    try:
        return loaded.registry.name_of(loaded.spec.model)[1]
    except LyraError:  # a spec the registry cannot name: the run's name says enough
        return loaded.name


def layout(loaded: LoadedModel) -> Layout:
    """The control and timbre rows of the model's latent; a LyraError for a model without."""
    rows = loaded.latent_channels
    controls = getattr(loaded.model, "controls", None)
    if not isinstance(controls, dict) or loaded.single_vector:
        raise LyraError(
            f"model '{loaded.name}' (type '{_model_type(loaded)}') has no f0 and loudness rows "
            "in its latent; `lyra transfer` needs a conditioned model such as `ddsp`"
        )
    found = {name: controls.get(name) for name in CONTROLS}
    if any(type(i) is not int or not 0 <= i < rows for i in found.values()) or len(
        set(found.values())
    ) != len(found):
        raise LyraError(
            f"model '{loaded.name}': its controls {controls!r} do not name distinct f0 and "
            f"loudness rows of its {rows}-row latent"
        )
    timbre = tuple(i for i in range(rows) if i not in set(controls.values()))
    if not timbre:
        raise LyraError(f"model '{loaded.name}': its latent has no timbre rows to transfer")
    return Layout(found["f0"], found["loudness"], timbre)


def mean_timbre(z: torch.Tensor, rows: Layout) -> torch.Tensor:
    """The mean over examples and frames of the latents' [B, D, F] timbre rows -> [len(timbre)]."""
    return z[:, list(rows.timbre)].double().mean((0, 2)).float()


def training_timbre(
    loaded: LoadedModel, chunking: Chunking, max_examples: int = MAX_TIMBRE_EXAMPLES
) -> torch.Tensor:
    """The mean timbre z of up to `max_examples` of the run's validation examples.

    The validation data is built from the run's resolved spec as training builds it.
    """
    rows, data = layout(loaded), loaded.spec.data
    dataset = data.dataset.build(loaded.spec.context(loaded.registry), "validation")
    n = min(len(dataset), max_examples)
    if n < 1:
        raise LyraError(
            f"run '{loaded.name}': the validation split is empty, so there is no training "
            "timbre; give one with --timbre FILE"
        )
    total, frames = torch.zeros(len(rows.timbre), dtype=torch.float64), 0
    for start in range(0, n, data.batch_size):
        batch = torch.stack([dataset[i] for i in range(start, min(n, start + data.batch_size))])
        z = encode_audio(loaded, batch.float(), chunking)
        total += z[:, list(rows.timbre)].double().sum((0, 2))
        frames += z.shape[0] * z.shape[-1]
    return (total / frames).float()


def read_input(loaded: LoadedModel, path: str | Path) -> torch.Tensor:
    """The file as the model hears it, [1, C, T] (converted as training converts)."""
    audio, _, _ = read_audio_source(path, loaded.sample_rate, loaded.channels)
    return torch.from_numpy(audio)[None]


def file_timbre(loaded: LoadedModel, path: str | Path, chunking: Chunking) -> torch.Tensor:
    """The mean timbre z over the frames of one audio file."""
    try:
        audio = read_input(loaded, path)
    except LyraError as exc:
        raise LyraError(f"--timbre: {exc}") from None
    return mean_timbre(encode_audio(loaded, audio, chunking), layout(loaded))


def transfer_latent(
    z: torch.Tensor, rows: Layout, timbre: torch.Tensor, semitones: float, db: float
) -> torch.Tensor:
    """z [B, D, F] with `timbre` in its timbre rows, f0 times 2^(semitones/12), loudness + db."""
    out = z.clone()
    out[:, list(rows.timbre)] = timbre.to(out.dtype)[None, :, None]
    out[:, rows.f0] *= 2.0 ** (semitones / 12.0)
    out[:, rows.loudness] += db
    return out


def transfer_audio(
    loaded: LoadedModel,
    audio: torch.Tensor,
    timbre: torch.Tensor,
    chunking: Chunking,
    semitones: float = 0.0,
    db: float = 0.0,
) -> torch.Tensor:
    """Audio [1, C, T] re-synthesised with `timbre` (and shifted controls) -> [1, C, T]."""
    z = encode_audio(loaded, audio, chunking)
    moved = transfer_latent(z, layout(loaded), timbre, semitones, db)
    return decode_latent(loaded, moved, audio.shape[-1], chunking)


def transfer_files(
    loaded: LoadedModel,
    inputs: Sequence[str | Path],
    out_dir: Path,
    chunking: Chunking,
    output: AudioOutput,
    semitones: float = 0.0,
    db: float = 0.0,
    timbre_file: str | Path | None = None,
) -> Transferred:
    """Transfer each readable input into `out_dir` (named as `lyra reconstruct` names them)."""
    layout(loaded)  # refuse an unconditioned model before reading anything
    targets = output_paths(inputs, out_dir, output.extension)
    if timbre_file is not None:
        timbre = file_timbre(loaded, timbre_file, chunking)
    else:
        timbre = training_timbre(loaded, chunking)
    written, skipped = [], {}
    for src, target in zip(inputs, targets, strict=True):
        try:
            audio = read_input(loaded, src)
        except LyraError as exc:
            skipped[str(src)] = str(exc)
            continue
        y = transfer_audio(loaded, audio, timbre, chunking, semitones, db)
        make_folder(out_dir)
        written.append(output.write(loaded, target, y[0]))
    if not written:
        raise LyraError(
            f"none of the {len(inputs)} file(s) could be read: {next(iter(skipped.values()))}"
        )
    return Transferred(written, skipped)
