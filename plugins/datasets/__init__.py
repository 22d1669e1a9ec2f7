"""Datasets: `audio_folder` (real files, through the preparation cache) and `synthetic`.

Contract (kind `dataset`): `build(ctx, split)` with split "train" or "validation" returns a
`torch.utils.data.Dataset` of float32 tensors [ctx.channels, ctx.segment_length] at
ctx.sample_rate. Both specs also have `prepare(ctx)` and `stats(ctx)`, which `lyra data prepare`
and `lyra data stats` call, and `synthetic` has `export(ctx, directory, seconds)` for
`lyra data synth`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import tempfile
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import attrs
import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset

from lyra_core import BuildContext, LyraError, hookimpl, param
from lyra_core.services.atomic import atomic_write
from lyra_core.validators import MAX_COUNT, MAX_SAMPLES, MAX_WORKERS, between, fraction, size
from lyra_plugins.datasets.audio_io import AUDIO_EXTENSIONS
from lyra_plugins.datasets.cache import (
    LOUDNESS_BLOCK,
    AudioCache,
    Entry,
    default_cache_root,
    segment_mean_square,
)
from lyra_plugins.datasets.synth import SynthParams, render

log = logging.getLogger("lyra.data")
OPEN_MAPS = 256  # memory-mapped files a dataset keeps open at once

Split = Literal["train", "validation"]
SPLITS = ("train", "validation")
Normalize = Literal["peak", "loudness", "none"]
LOUDNESS_CHANNELS = 5  # BS.1770 weights L, R, C, Ls and Rs


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise LyraError(f"unknown data split '{split}'; expected one of {', '.join(SPLITS)}")


def unit_hash(*parts: object) -> float:
    """A stable number in [0, 1) from `parts` (the same on every machine and Python run)."""
    digest = hashlib.sha1("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


# --------------------------------------------------------------------------------------------
# audio_folder


@attrs.frozen
class SourceFile:
    root: Path
    path: Path

    @property
    def relative(self) -> str:
        return (
            self.path.relative_to(self.root).as_posix()
            if self.path != self.root
            else self.path.name
        )


@attrs.frozen
class Skipped:
    path: str
    reason: str


@attrs.define
class FolderIndex:
    """What a folder holds once prepared: usable files with their segments, and skipped files."""

    files: list[SourceFile]  # the usable ones; segments refer to them by position
    frames: list[int]
    entries: list[Entry]  # the usable files' cache entries (measured for loudness normalisation)
    segments: dict[str, list[tuple[int, int]]]  # split -> (file number, start frame)
    skipped: list[Skipped]
    decoded: int  # files this preparation decoded (the others came from the cache)
    sample_rate: int
    seconds: float  # wall time the preparation took

    @property
    def found(self) -> int:
        return len(self.files) + len(self.skipped)

    @property
    def audio_seconds(self) -> float:
        return sum(self.frames) / self.sample_rate


def loudness_gain(entry: Entry, target: float, ceiling: float) -> float:
    """The gain that brings a file to `target` LUFS, limited so that its sample peak stays at or
    below `ceiling`; 1 for a file without a loudness (silent or shorter than one block)."""
    if entry.loudness is None or not entry.peak:
        return 1.0
    return min(10.0 ** ((target - entry.loudness) / 20.0), ceiling / entry.peak)


class FolderDataset(Dataset):
    """Fixed-length segments of cached audio, levelled when they are read: each file by its
    own gain (`gains`, loudness normalisation), else each segment to `peak`, else as it is."""

    def __init__(
        self,
        cache: AudioCache,
        files: Sequence[SourceFile],
        segments: Sequence[tuple[int, int]],
        length: int,
        peak: float | None,
        open_maps: int = OPEN_MAPS,
        gains: Sequence[float] | None = None,
    ):
        self.cache, self.files, self.length, self.peak = cache, list(files), length, peak
        self.open_maps = open_maps
        self.gains = None if gains is None else np.asarray(gains, dtype=np.float32)
        self.segments = np.asarray(segments, dtype=np.int64).reshape(-1, 2)
        self._maps: OrderedDict[int, np.ndarray] = OrderedDict()

    def __getstate__(self) -> dict:  # DataLoader workers reopen the memory maps themselves
        return {**self.__dict__, "_maps": OrderedDict()}

    def __len__(self) -> int:
        return len(self.segments)

    def _audio(self, number: int) -> np.ndarray:
        """The memory map of file `number`; the least recently used are closed past a limit
        (each open map holds a file descriptor)."""
        if number in self._maps:
            self._maps.move_to_end(number)
            return self._maps[number]
        source = self.files[number].path
        try:
            audio = self.cache.audio(source)
        except (OSError, ValueError):  # the cache was cleared under us: prepare it again
            entry = self.cache.prepare(source)
            if entry.error is not None:
                raise LyraError(f"{source}: no longer usable: {entry.error}") from None
            audio = self.cache.audio(source)
        self._maps[number] = audio
        if len(self._maps) > self.open_maps:
            self._maps.popitem(last=False)
        return audio

    def __getitem__(self, index: int) -> torch.Tensor:
        number, start = self.segments[index]
        segment = np.array(self._audio(int(number))[:, start : start + self.length])
        if self.gains is not None:
            segment *= self.gains[number]
        elif self.peak is not None:
            top = float(np.abs(segment).max())
            if top > 0.0:
                segment *= np.float32(self.peak / top)
        return torch.from_numpy(segment)


def _example_folder() -> str:
    """A tiny folder of synthetic WAV files that the contract tests build `audio_folder` from."""
    user = getattr(os, "getuid", lambda: "user")()
    folder = Path(tempfile.gettempdir()) / f"lyra-example-audio-{user}"
    if len(list(folder.glob("*.wav"))) < 3:
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(3):
            audio = render(np.random.default_rng(i), 3 * 22050, 22050, 1, SynthParams())
            with atomic_write(folder / f"example_{i}.wav") as f:
                sf.write(f, audio.T, 22050, format="WAV")
    return str(folder)


@attrs.frozen(kw_only=True)
class AudioFolderSpec:
    """Every audio file under some folders, cached once decoded, cut into fixed-length segments.

    Hidden files and folders (names starting with '.') are ignored.
    """

    paths: tuple[str, ...] = param(
        doc="folders searched recursively (or single files); relative to the working directory"
    )
    extensions: tuple[str, ...] = param(
        AUDIO_EXTENSIONS, doc="file extensions to use (case-insensitive)"
    )
    validation_fraction: float = param(
        0.05,
        doc="share of files in the validation split, chosen by a hash of each file's relative "
        "path (if no file lands there, segments are split by the same hash instead)",
        validator=fraction,
    )
    hop: int | None = param(
        None,
        doc="frames between segment starts (default: segment_length, no overlap)",
        validator=size(MAX_SAMPLES),
    )
    silence_threshold_db: float | None = param(
        -40.0, doc="reject segments whose RMS is below this (dBFS); null keeps every segment"
    )
    normalize: Normalize = param(
        "peak",
        doc="how levels are set when segments are read: 'peak' scales each segment so that its "
        "sample peak is `peak`; 'loudness' scales each whole file (all its segments by one gain) "
        "to `loudness_lufs` of integrated loudness (ITU-R BS.1770-4: K-weighted, 400 ms blocks, "
        "-70 LUFS absolute and -10 LU relative gates; measured once per file at the dataset's "
        "rate and channels, at most 5 channels, and kept in the cache), the gain limited so that "
        "the file's sample peak stays at or below `peak` (such a file ends up quieter than the "
        "target; one already above `peak` is turned down to it), and a file without a loudness "
        "(silent, or shorter than one 400 ms block) left as it is; 'none' leaves levels as they "
        "are",
    )
    peak: float = param(
        0.95,
        doc="with normalize 'peak', each segment's sample peak; with 'loudness', the highest "
        "sample peak a file's gain may reach",
        validator=between(1e-6, 1.0),
    )
    loudness_lufs: float = param(
        -20.0,
        doc="with normalize 'loudness', each file's target integrated loudness (LUFS)",
        validator=between(-70.0, 0.0),
    )
    cache_dir: str | None = param(
        None, doc="where prepared audio is kept (default: $LYRA_CACHE_DIR or ~/.cache/lyra)"
    )
    workers: int | None = param(
        None, doc="threads that prepare files (default: the CPU count)", validator=size(MAX_WORKERS)
    )

    @classmethod
    def example(cls) -> AudioFolderSpec:
        folder = _example_folder()
        return cls(paths=(folder,), cache_dir=str(Path(folder) / ".cache"))

    def cache(self, ctx: BuildContext) -> AudioCache:
        root = Path(self.cache_dir).expanduser() if self.cache_dir else default_cache_root()
        return AudioCache(root, ctx.sample_rate, ctx.channels)

    def find_files(self) -> list[SourceFile]:
        """Audio files under `paths`, sorted, each once."""
        if not self.paths:
            raise LyraError("audio_folder: 'paths' is empty; name at least one folder of audio")
        wanted = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in self.extensions)
        found: dict[Path, SourceFile] = {}
        for raw in self.paths:
            root = Path(raw).expanduser()
            if root.is_file():
                found.setdefault(root.resolve(), SourceFile(root.parent, root))
                continue
            if not root.is_dir():
                raise LyraError(f"audio_folder: no such folder or file: {raw}")
            seen: set[str] = set()  # real folders walked, so a symlink loop ends
            for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
                seen.add(os.path.realpath(dirpath))
                dirnames[:] = sorted(
                    d
                    for d in dirnames
                    if not d.startswith(".")
                    and os.path.realpath(os.path.join(dirpath, d)) not in seen
                )
                for name in sorted(filenames):
                    path = Path(dirpath) / name
                    if path.suffix.lower() in wanted and not name.startswith("."):
                        found.setdefault(path.resolve(), SourceFile(root, path))
        return sorted(found.values(), key=lambda f: (str(f.root), f.relative))

    def index(self, ctx: BuildContext, warn: bool = True) -> FolderIndex:
        """Prepare every file (decoding only what the cache lacks) and cut the segments.

        Skipped files are logged (once per process) unless `warn` is False.
        """
        began = time.perf_counter()
        self._check_loudness(ctx)
        files = self.find_files()
        cache = self.cache(ctx)
        cache.remove_stale_temporaries()
        workers = max(1, min(self.workers or os.cpu_count() or 1, len(files)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            entries = list(pool.map(cache.prepare, (f.path for f in files)))
        length = ctx.segment_length
        hop = self.hop or length
        threshold = None
        if self.silence_threshold_db is not None:
            threshold = 10.0 ** (self.silence_threshold_db / 10.0)
        kept_files: list[SourceFile] = []
        kept: list[Entry] = []
        frames: list[int] = []
        per_file: list[np.ndarray] = []
        skipped: list[Skipped] = []
        for file, entry in zip(files, entries, strict=True):
            reason = entry.error
            starts = np.arange(0, max(0, entry.frames - length + 1), hop, dtype=np.int64)
            if reason is None and starts.size == 0:
                reason = (
                    f"shorter than one segment ({entry.frames / ctx.sample_rate:.3f} s < "
                    f"{length / ctx.sample_rate:.3f} s)"
                )
            if reason is None and threshold is not None:
                energy = cache.energy(file.path)
                starts = starts[segment_mean_square(energy, starts, length) >= threshold]
                if starts.size == 0:
                    reason = f"silent: every segment is below {self.silence_threshold_db} dB RMS"
            if reason is not None:
                skipped.append(Skipped(str(file.path), reason))
                if warn:
                    _warn_once(file.path, reason)
                continue
            kept_files.append(file)
            kept.append(entry)
            frames.append(entry.frames)
            per_file.append(starts)
        if self.normalize == "loudness":  # measured once; later runs read it from the entries
            with ThreadPoolExecutor(max_workers=workers) as pool:
                kept = list(pool.map(cache.measure, (f.path for f in kept_files), kept))
        return FolderIndex(
            files=kept_files,
            frames=frames,
            entries=kept,
            segments=self._split(kept_files, per_file),
            skipped=skipped,
            decoded=sum(e.decoded for e in entries),
            sample_rate=ctx.sample_rate,
            seconds=time.perf_counter() - began,
        )

    def _check_loudness(self, ctx: BuildContext) -> None:
        if self.normalize == "loudness" and ctx.channels > LOUDNESS_CHANNELS:
            raise LyraError(
                f"audio_folder: normalize 'loudness' measures at most {LOUDNESS_CHANNELS} "
                f"channels (ITU-R BS.1770), but the data has {ctx.channels}; use normalize "
                f"'peak' or fewer data.channels"
            )

    def gains(self, index: FolderIndex) -> list[float] | None:
        """Each usable file's gain under loudness normalisation (None for the other modes)."""
        if self.normalize != "loudness":
            return None
        return [loudness_gain(e, self.loudness_lufs, self.peak) for e in index.entries]

    def _split(
        self, files: list[SourceFile], starts: list[np.ndarray]
    ) -> dict[str, list[tuple[int, int]]]:
        fraction = self.validation_fraction
        by_file = [unit_hash(f.relative) < fraction for f in files]
        file_split = any(by_file)
        segments: dict[str, list[tuple[int, int]]] = {"train": [], "validation": []}
        for number, (file, file_starts) in enumerate(zip(files, starts, strict=True)):
            for start in file_starts.tolist():
                if file_split:  # the normal case: whole files go to one split
                    held_out = by_file[number]
                else:  # too few files for a file-level split: hold out segments instead
                    held_out = unit_hash(file.relative, start) < fraction
                segments["validation" if held_out else "train"].append((number, start))
        return segments

    def build(self, ctx: BuildContext, split: Split = "train") -> Dataset:
        _check_split(split)
        index = self.index(ctx)
        if not index.files:
            reasons = "; ".join(f"{s.path}: {s.reason}" for s in index.skipped[:5])
            more = f" (and {len(index.skipped) - 5} more)" if len(index.skipped) > 5 else ""
            raise LyraError(
                f"audio_folder: no usable audio in {', '.join(self.paths)}: "
                f"{len(index.skipped)} file(s) found, all skipped"
                f"{': ' + reasons if reasons else ''}{more}"
            )
        if not index.segments[split]:
            raise LyraError(
                f"audio_folder: the {split} split is empty ({len(index.files)} usable files, "
                f"validation_fraction {self.validation_fraction})"
            )
        return FolderDataset(
            self.cache(ctx),
            index.files,
            index.segments[split],
            ctx.segment_length,
            self.peak if self.normalize == "peak" else None,
            gains=self.gains(index),
        )

    def prepare(self, ctx: BuildContext) -> str:
        index = self.index(ctx, warn=False)
        speed = index.audio_seconds / index.seconds if index.seconds > 0 else math.inf
        return (
            f"prepared {index.found} files into {self.cache(ctx).dir}: {index.decoded} decoded, "
            f"{index.found - index.decoded} from the cache, {len(index.skipped)} skipped; "
            f"{index.audio_seconds:.1f} s of usable audio in {index.seconds:.2f} s "
            f"({speed:.1f}x real time)\n" + _skipped_lines(index.skipped)
        )

    def stats(self, ctx: BuildContext) -> str:
        index = self.index(ctx, warn=False)
        lines = [
            f"files found: {index.found} ({len(index.files)} used, {len(index.skipped)} skipped)",
            f"audio: {index.audio_seconds / 3600:.3f} h at {ctx.sample_rate} Hz, "
            f"{ctx.channels} channel(s)",
            f"segments of {ctx.segment_length} samples kept: "
            f"train {len(index.segments['train'])}, "
            f"validation {len(index.segments['validation'])}",
        ]
        if self.normalize == "loudness":
            lines.append(_loudness_line(index.entries, self.gains(index) or []))
        return "\n".join(lines) + "\n" + _skipped_lines(index.skipped)


_warned: set[tuple[str, str]] = set()


def _warn_once(path: Path, reason: str) -> None:
    """Log a skipped file once per process (train and validation builds share the index)."""
    if (str(path), reason) not in _warned:
        _warned.add((str(path), reason))
        log.warning("skipping %s: %s", path, reason)


def _loudness_line(entries: list[Entry], gains: list[float]) -> str:
    measured = sorted(e.loudness for e in entries if e.loudness is not None)
    if not measured:
        return f"loudness: no file has one (each is silent or under {LOUDNESS_BLOCK} s)"
    db = [
        20.0 * math.log10(g) for e, g in zip(entries, gains, strict=True) if e.loudness is not None
    ]
    return (
        f"loudness: {measured[0]:.1f} to {measured[-1]:.1f} LUFS "
        f"(median {measured[len(measured) // 2]:.1f}) over {len(measured)} of {len(entries)} "
        f"files; gains {min(db):+.1f} to {max(db):+.1f} dB"
    )


def _skipped_lines(skipped: list[Skipped]) -> str:
    return "".join(f"skipped {s.path}: {s.reason}\n" for s in skipped)


# --------------------------------------------------------------------------------------------
# synthetic


class SyntheticDataset(Dataset):
    """Example `i` of a split is rendered from the seed (seed, split, i): the same every time."""

    def __init__(self, params: SynthParams, ctx: BuildContext, split: str, size: int):
        self.params, self.split, self.size = params, split, size
        self.seed, self.sample_rate = ctx.seed, ctx.sample_rate
        self.channels, self.length = ctx.channels, ctx.segment_length

    def __len__(self) -> int:
        return self.size

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, SPLITS.index(self.split), index])

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < self.size:
            raise IndexError(f"example {index} of {self.size}")
        audio = render(self.rng(index), self.length, self.sample_rate, self.channels, self.params)
        return torch.from_numpy(audio)


@attrs.frozen(kw_only=True)
class SyntheticSpec:
    """Instrument-like procedural audio (notes, chords, percussion, panning), rendered per seed."""

    train_examples: int = param(4096, doc="examples in the train split", validator=size(MAX_COUNT))
    validation_examples: int = param(
        64,
        doc="examples in the validation split (drawn from other seeds)",
        validator=size(MAX_COUNT),
    )
    notes_per_second: float = param(
        3.0, doc="mean note/chord onsets per second", validator=between(0.0, 1000.0)
    )
    chord_probability: float = param(0.3, doc="chance that an onset is a chord", validator=fraction)
    lowest_note: float = param(
        36.0, doc="lowest fundamental (MIDI note number)", validator=between(0, 127)
    )
    highest_note: float = param(
        84.0, doc="highest fundamental (MIDI note number)", validator=between(0, 127)
    )
    max_partials: int = param(12, doc="partials per note at most", validator=size(256))
    hits_per_second: float = param(
        2.0, doc="mean percussive noise bursts per second", validator=between(0.0, 1000.0)
    )
    peak: float = param(0.95, doc="peak level of each example", validator=between(1e-6, 1.0))

    def __attrs_post_init__(self) -> None:
        if self.notes_per_second == 0 and self.hits_per_second == 0:
            raise ValueError("notes_per_second and hits_per_second are both 0: nothing to play")
        if self.lowest_note > self.highest_note:
            raise ValueError(
                f"lowest_note ({self.lowest_note}) is above highest_note ({self.highest_note})"
            )

    def params(self) -> SynthParams:
        return SynthParams(
            notes_per_second=self.notes_per_second,
            chord_probability=self.chord_probability,
            pitch_range=(self.lowest_note, self.highest_note),
            max_partials=self.max_partials,
            hits_per_second=self.hits_per_second,
            peak=self.peak,
        )

    def build(self, ctx: BuildContext, split: Split = "train") -> SyntheticDataset:
        _check_split(split)
        size = self.train_examples if split == "train" else self.validation_examples
        return SyntheticDataset(self.params(), ctx, split, size)

    def prepare(self, ctx: BuildContext) -> str:
        return "synthetic data is rendered on the fly; nothing to prepare\n"

    def stats(self, ctx: BuildContext) -> str:
        seconds = ctx.segment_length / ctx.sample_rate
        return "".join(
            f"{split}: {n} examples of {ctx.segment_length} samples "
            f"({n * seconds / 3600:.3f} h at {ctx.sample_rate} Hz, {ctx.channels} channel(s))\n"
            for split, n in (
                ("train", self.train_examples),
                ("validation", self.validation_examples),
            )
        )

    def export(self, ctx: BuildContext, directory: Path, seconds: float) -> list[Path]:
        """Write `seconds` of train examples, in order, as 16-bit WAV files of about 30 s each."""
        dataset = self.build(ctx, "train")
        length, rate = ctx.segment_length, ctx.sample_rate
        per_file = max(1, round(30.0 * rate / length))
        total = math.ceil(seconds * rate / length)
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for number, first in enumerate(range(0, total, per_file)):
            items = [
                render(dataset.rng(i), length, rate, ctx.channels, dataset.params)
                for i in range(first, min(total, first + per_file))
            ]
            path = directory / f"synth_{ctx.seed}_{number:04d}.wav"
            sf.write(path, np.concatenate(items, axis=1).T, ctx.sample_rate, subtype="PCM_16")
            written.append(path)
        return written


@hookimpl
def lyra_register_components(registry) -> None:
    registry.add("dataset", "audio_folder", AudioFolderSpec)
    registry.add("dataset", "synthetic", SyntheticSpec)
    from lyra_plugins.datasets.shards import ShardsSpec  # it imports this module: not at the top

    registry.add("dataset", "shards", ShardsSpec)
