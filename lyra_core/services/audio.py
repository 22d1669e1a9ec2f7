"""Audio files: read anything soundfile decodes, write WAV/FLAC at a chosen depth, or MP3.

Training data (`audio_folder`) and inference read through the same functions. Channel rule
(target `C` from a file's `N` channels):
  - N == C: unchanged.
  - C == 1: the mean of all N channels.
  - N == 1: the mono channel copied to every output channel.
  - C == 2, N == 6 (5.1 in WAV/SMPTE order L R C LFE Ls Rs): ITU-R BS.775 downmix,
    L' = L + 0.707·C + 0.707·Ls and R' = R + 0.707·C + 0.707·Rs, LFE dropped, each divided by
    2.414 (the sum of its coefficients) so nothing clips.
  - C == 2, any other N > 2: even-numbered channels (0, 2, ...) averaged into left, odd ones into
    right.
  - anything else (e.g. stereo to 4 channels): an error.
Resampling is band-limited (a 64-zero-crossing Kaiser sinc).
Writing quantises float audio to 16 or 24 bits with TPDF dither (the sum of two independent
uniform variables of ±½ LSB, so the error is signal-independent noise of ½ LSB RMS) or keeps
32-bit float; it can resample to another rate first. MP3 (MPEG layer III, where the installed
libsndfile encodes it) gets the float samples, clipped to [-1, 1]: it has no bit depth (16, the
default, is accepted; 24 and float are refused) and no dither.
"""

from __future__ import annotations

import inspect
import io
import math
import os
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from lyra_core.errors import LyraError
from lyra_core.services.atomic import write_bytes

BitDepth = Literal["16", "24", "float"]
BIT_DEPTHS: tuple[str, ...] = ("16", "24", "float")
FORMATS = {".wav": "WAV", ".flac": "FLAC", ".mp3": "MP3"}
MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)  # MPEG-1, 2 and 2.5
MIN_RATE, MAX_RATE = 1_000, 768_000  # output sample rates, Hz
BYTES_PER_SAMPLE = 32  # what writing one float sample costs at its peak (float64 dither, int32)

# A 64-zero-crossing Kaiser sinc (librosa/resampy's "kaiser_best" settings).
RESAMPLE = {
    "lowpass_filter_width": 64,
    "rolloff": 0.9475937167399596,
    "resampling_method": "sinc_interp_kaiser",
    "beta": 14.769656459379492,
}


# What Lyra reads as audio: datasets, `explore` and `evaluate` folders (matched case-insensitively).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc")


def resample(audio: np.ndarray, rate: int, target: int) -> np.ndarray:
    """[C, T] float32 at `rate` -> [C, T'] at `target`."""
    if rate == target:
        return audio
    with torch.inference_mode():
        out = AF.resample(torch.from_numpy(np.ascontiguousarray(audio)), rate, target, **RESAMPLE)
    return out.numpy()


def check_rate(rate: int) -> None:
    if not MIN_RATE <= rate <= MAX_RATE:
        raise LyraError(f"output rate {rate} Hz: expected {MIN_RATE:,} to {MAX_RATE:,} Hz")


def memory_bytes() -> int:
    """This machine's physical memory (bytes), or 0 where the system does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def check_fits(values: int, what: str, bytes_per_value: int = BYTES_PER_SAMPLE) -> None:
    """Refuse, before allocating, `values` numbers that this machine's memory cannot hold."""
    need, have = values * bytes_per_value, memory_bytes()
    if have and need > have:
        raise LyraError(
            f"{what}: {values:,} values need about {need / 1e9:,.0f} GB, more than this machine's "
            f"{have / 1e9:,.0f} GB of memory; ask for less"
        )


class AudioReadError(LyraError):
    """A file that cannot be used; the message is the reason, without the path."""


def decode(path: Path) -> tuple[np.ndarray, int]:
    """The file's samples as float32 [frames, channels] and its sample rate."""
    if path.stat().st_size == 0:
        raise AudioReadError("empty file (0 bytes)")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
        raise AudioReadError(f"cannot decode: {exc}") from exc
    if data.shape[0] == 0:
        raise AudioReadError("no audio frames")
    if not np.isfinite(data).all():
        bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
        raise AudioReadError(f"{bad} NaN or infinite samples")
    return data, int(rate)


def convert_channels(data: np.ndarray, channels: int) -> np.ndarray:
    """[frames, N] -> [channels, frames] by the rule in this module's docstring."""
    have = data.shape[1]
    if have == channels:
        return np.ascontiguousarray(data.T)
    if channels == 1:
        return data.mean(axis=1, dtype=np.float32)[None, :]
    if have == 1:
        return np.repeat(data.T, channels, axis=0)
    if channels == 2 and have == 6:
        c = math.sqrt(0.5)
        left = data[:, 0] + c * (data[:, 2] + data[:, 4])
        right = data[:, 1] + c * (data[:, 2] + data[:, 5])
        return (np.stack([left, right]) / np.float32(1.0 + 2.0 * c)).astype(np.float32)
    if channels == 2 and have > 2:
        return np.stack([data[:, 0::2].mean(axis=1), data[:, 1::2].mean(axis=1)]).astype(np.float32)
    raise AudioReadError(f"cannot map {have} channels to {channels}")


def read_audio(path: str | Path, sample_rate: int, channels: int) -> np.ndarray:
    """The file as float32 [channels, T] at `sample_rate`; a LyraError if it cannot be used."""
    return read_audio_source(path, sample_rate, channels)[0]


def read_audio_source(
    path: str | Path, sample_rate: int, channels: int
) -> tuple[np.ndarray, int, int]:
    """As `read_audio`, with the file's own sample rate and channel count."""
    path = Path(path)
    if path.is_dir():
        raise LyraError(f"{path}: is a folder; give audio files (e.g. {path / '*.wav'})")
    if not path.is_file():
        raise LyraError(f"{path}: no such audio file")
    try:
        data, rate = decode(path)
        audio = resample(convert_channels(data, channels), rate, sample_rate)
    except AudioReadError as exc:
        raise LyraError(f"{path}: {exc}") from exc
    return np.ascontiguousarray(audio, dtype=np.float32), rate, data.shape[1]


def make_folder(path: Path) -> Path:
    """Create the folder `path` (and its parents): a LyraError if a file is in the way."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise LyraError(f"{path}: is a file, not a folder; choose another output folder") from None
    except OSError as exc:
        raise LyraError(f"{path}: cannot create the folder ({exc.strerror})") from None
    return path


def output_format(path: Path, bits: BitDepth) -> tuple[str, str]:
    """soundfile's (format, subtype) for `path`'s extension and the bit depth."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise LyraError(f"{path}: unsupported output extension; use one of {', '.join(FORMATS)}")
    if bits not in BIT_DEPTHS:
        raise LyraError(f"bit depth {bits!r}: expected one of {', '.join(BIT_DEPTHS)}")
    if fmt == "MP3":
        return mp3_format(path, bits)
    if bits == "float":
        if fmt == "FLAC":
            raise LyraError(f"{path}: FLAC stores integers only; use --bits 16 or 24, or .wav")
        return fmt, "FLOAT"
    return fmt, f"PCM_{bits}"


def mp3_format(path: Path, bits: BitDepth) -> tuple[str, str]:
    """MP3's (format, subtype), if this libsndfile writes it and no bit depth is asked for."""
    if "MP3" not in sf.available_formats():
        raise LyraError(
            f"{path}: the installed libsndfile ({sf.__libsndfile_version__}) cannot write MP3 "
            "(1.1.0 or newer, built with LAME and mpg123, can); write .wav or .flac instead"
        )
    if bits != "16":
        raise LyraError(
            f"{path}: MP3 has no bit depth (the encoder takes the float samples); --bits "
            f"{bits} applies to WAV and FLAC only: leave it at 16 for .mp3, or write .wav"
        )
    return "MP3", "MPEG_LAYER_III"


def mp3_settings() -> dict[str, object]:
    """The encoder's best variable-bitrate quality where soundfile can ask for it (0.13 and newer),
    else libsndfile's default."""
    if "compression_level" in inspect.signature(sf.write).parameters:
        return {"bitrate_mode": "VARIABLE", "compression_level": 0.0}
    return {}


def check_mp3(path: Path, rate: int, channels: int) -> None:
    """Refuse what MPEG audio cannot hold: other sample rates, more than two channels."""
    if rate not in MP3_RATES:
        near = min(MP3_RATES, key=lambda r: (abs(r - rate), -r))
        raise LyraError(
            f"{path}: MP3 holds {', '.join(map(str, MP3_RATES))} Hz only, not {rate} Hz; "
            f"resample with --rate {near}, or write .wav or .flac"
        )
    if channels > 2:
        raise LyraError(f"{path}: MP3 holds one or two channels, not {channels}; write .wav")


def quantize(
    audio: np.ndarray, bits: int, dither: bool = True, generator: np.random.Generator | None = None
) -> np.ndarray:
    """Float audio in [-1, 1) to integers of `bits` bits, TPDF-dithered unless `dither` is off."""
    scale = float(2 ** (bits - 1))
    x = audio.astype(np.float64) * scale
    if dither:
        rng = generator or np.random.default_rng()
        x += rng.uniform(-0.5, 0.5, x.shape) + rng.uniform(-0.5, 0.5, x.shape)
    return np.clip(np.round(x), -scale, scale - 1).astype(np.int32)


def write_audio(
    path: str | Path,
    audio: np.ndarray | torch.Tensor,
    sample_rate: int,
    bits: BitDepth = "16",
    dither: bool = True,
    output_rate: int | None = None,
    seed: int | None = None,
) -> Path:
    """Write [C, T] float audio as WAV, FLAC or MP3 (by extension); returns the path written."""
    path = Path(path)
    fmt, subtype = output_format(path, bits)
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().float().cpu().numpy()
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 2:
        raise LyraError(f"{path}: expected audio [channels, samples], got shape {audio.shape}")
    if not np.isfinite(audio).all():
        raise LyraError(f"{path}: the audio has NaN or infinite samples; nothing written")
    if fmt == "MP3":
        check_mp3(path, output_rate or sample_rate, audio.shape[0])
    if output_rate is not None and output_rate != sample_rate:
        check_rate(output_rate)
        check_fits(math.ceil(audio.size * output_rate / sample_rate), f"{path} at {output_rate} Hz")
        audio, sample_rate = resample(audio, sample_rate, output_rate), output_rate
    make_folder(path.parent)
    settings = mp3_settings() if fmt == "MP3" else {}
    if fmt == "MP3":
        data: np.ndarray = np.clip(audio, -1.0, 1.0).T
    elif bits == "float":
        data = audio.T
    else:
        ints = quantize(audio, int(bits), dither, np.random.default_rng(seed))
        # soundfile writes the top bits of int32 samples: 24-bit values sit in bits 8..31.
        data = (ints << (32 - int(bits))).T
    data = np.ascontiguousarray(data)
    buffer = io.BytesIO()  # rendered in memory: libsndfile cannot say the disk is full
    sf.write(buffer, data, sample_rate, subtype=subtype, format=fmt, **settings)
    write_bytes(path, buffer.getvalue(), "the audio")
    return path
