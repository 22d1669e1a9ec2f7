"""The preparation cache: each source file decoded and resampled once, then memory-mapped.

Layout, under `<cache root>/v1/<rate>hz-<channels>ch/`, per source file (key = a hash of its
absolute path):
  `<key>.npy`         float32 [channels, frames] at the target rate (memory-mappable)
  `<key>.energy.npy`  float32 mean square per block of `BLOCK` frames (for silence rejection)
  `<key>.json`        the index entry: source path, size, mtime, frames, or why it was skipped;
                      once measured (for loudness normalisation), the audio's loudness and peak

An entry is valid while the source's size and mtime are unchanged. Every file is written to a
temporary name and renamed into place (atomic on POSIX), the index entry last, so a crash
mid-write leaves no entry that points at partial data, and a reader that has a file open keeps
its old copy when a concurrent writer replaces it. Unreadable sources get an entry too (with the
reason), so they are not decoded again on every run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path

import attrs
import numpy as np
import torch
import torchaudio.functional as AF

from lyra_core.services.atomic import atomic_write, remove_temporaries, write_text, writing
from lyra_plugins.datasets.audio_io import AudioReadError, load

VERSION = 1
BLOCK = 256  # frames per energy block: segment energies are exact to within a block per end
STALE_TEMP_SECONDS = 24 * 3600
LOUDNESS_BLOCK = 0.4  # seconds: BS.1770's gating block, the shortest audio with a loudness
# torchaudio clamps each K-weighting filter's output to ±1. Those filters' impulse responses sum
# to under 3.5 in magnitude at any rate up to 768 kHz, so audio peaking at 0.25 never reaches it.
LOUDNESS_HEADROOM = 0.25


def default_cache_root() -> Path:
    """`$LYRA_CACHE_DIR`, else `$XDG_CACHE_HOME/lyra`, else `~/.cache/lyra`; plus `audio/`."""
    if os.environ.get("LYRA_CACHE_DIR"):
        return Path(os.environ["LYRA_CACHE_DIR"]) / "audio"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lyra" / "audio"


@attrs.frozen
class Entry:
    """One source file's index entry: usable audio (`frames` > 0) or the `error` that stopped it."""

    source: str
    size: int
    mtime_ns: int
    frames: int = 0
    error: str | None = None
    decoded: bool = False  # True when this process decoded it (not from the index)
    peak: float | None = None  # the cached audio's sample peak; None until measured
    loudness: float | None = None  # its integrated loudness (LUFS); None if it has none


def integrated_loudness(audio: np.ndarray, sample_rate: int) -> float | None:
    """ITU-R BS.1770-4 integrated loudness (LUFS) of float [channels, frames] audio, channels
    weighted L, R, C, Ls, Rs (at most 5); None when it is silent or shorter than one block.

    Audio peaking above `LOUDNESS_HEADROOM` is measured turned down to it and the result turned
    back up, which raises the -70 LUFS absolute gate by as much (at most 12 dB for audio within
    full scale). Blocks between the two gates count only if they also pass the relative gate
    (-10 LU), so the result changes only for audio quieter than about -48 LUFS that still peaks
    near full scale.
    """
    peak = float(np.abs(audio).max(initial=0.0))
    if peak == 0.0 or audio.shape[-1] < round(LOUDNESS_BLOCK * sample_rate):
        return None
    scale = min(1.0, LOUDNESS_HEADROOM / peak)
    x = torch.from_numpy(np.asarray(audio, dtype=np.float32) * np.float32(scale))
    value = float(AF.loudness(x, sample_rate)) - 20.0 * math.log10(scale)
    return value if math.isfinite(value) else None  # no block above the gates: NaN


def block_energy(audio: np.ndarray) -> np.ndarray:
    """Mean square over channels of each block of `BLOCK` frames (the last one zero-padded)."""
    channels, frames = audio.shape
    blocks = -(-frames // BLOCK)
    energy = np.zeros(blocks, dtype=np.float64)
    full = frames // BLOCK
    squares = np.einsum("ct,ct->t", audio, audio, dtype=np.float64) / channels
    energy[:full] = squares[: full * BLOCK].reshape(full, BLOCK).sum(axis=1) / BLOCK
    if full < blocks:
        energy[full] = squares[full * BLOCK :].sum() / BLOCK
    return energy.astype(np.float32)


def segment_mean_square(energy: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """Mean square of segments [s, s + length) from block energies (linear within a block).

    The estimate lies between the true energies of the segment shrunk and grown to whole blocks.
    """
    energy = energy.astype(np.float64)
    cum = np.concatenate([[0.0], np.cumsum(energy * BLOCK)])

    def upto(t: np.ndarray) -> np.ndarray:
        block, rem = np.divmod(t, BLOCK)
        inside = np.where(block < energy.size, energy[np.minimum(block, energy.size - 1)], 0.0)
        return cum[np.minimum(block, energy.size)] + rem * inside

    return (upto(starts + length) - upto(starts)) / length


class AudioCache:
    """Decoded, resampled audio for one (sample rate, channels) format."""

    def __init__(self, root: Path, sample_rate: int, channels: int):
        self.sample_rate, self.channels = sample_rate, channels
        self.dir = Path(root) / f"v{VERSION}" / f"{sample_rate}hz-{channels}ch"

    def _paths(self, source: Path) -> tuple[Path, Path, Path]:
        key = hashlib.sha1(str(source.resolve()).encode()).hexdigest()[:24]
        return (
            self.dir / f"{key}.npy",
            self.dir / f"{key}.energy.npy",
            self.dir / f"{key}.json",
        )

    def lookup(self, source: Path) -> Entry | None:
        """The valid index entry for `source`, or None if it must be (re)prepared."""
        st = source.stat()
        audio_path, energy_path, meta_path = self._paths(source)
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            entry = Entry(**meta)
        except (OSError, ValueError, TypeError):
            return None
        if (entry.size, entry.mtime_ns) != (st.st_size, st.st_mtime_ns):
            return None
        if entry.error is None:
            try:  # the data files must exist and match the entry (a crash or a manual delete)
                shape = np.load(audio_path, mmap_mode="r").shape
                blocks = np.load(energy_path, mmap_mode="r").shape
            except (OSError, ValueError):
                return None
            if shape != (self.channels, entry.frames) or blocks != (-(-entry.frames // BLOCK),):
                return None
        return entry

    def prepare(self, source: Path) -> Entry:
        """The entry for `source`, decoding and writing it first when the index has none."""
        try:
            entry = self.lookup(source)
            st = source.stat()
        except OSError as exc:  # vanished or unreadable since the folder was listed
            return Entry(str(source), -1, -1, error=f"cannot read: {exc.strerror or exc}")
        if entry is not None:
            return entry
        try:
            audio = load(source, self.sample_rate, self.channels)
            entry = Entry(str(source), st.st_size, st.st_mtime_ns, audio.shape[1], decoded=True)
        except AudioReadError as exc:
            entry = Entry(str(source), st.st_size, st.st_mtime_ns, error=str(exc), decoded=True)
            audio = None
        except OSError as exc:
            entry = Entry(str(source), st.st_size, st.st_mtime_ns, error=f"cannot read: {exc}")
            return entry  # maybe passing (permissions, a network drive): not recorded
        audio_path, energy_path, _ = self._paths(source)
        with self._writing():
            self.dir.mkdir(parents=True, exist_ok=True)
            if audio is not None:
                with atomic_write(audio_path) as f:
                    np.save(f, audio)
                with atomic_write(energy_path) as f:
                    np.save(f, block_energy(audio))
        self._write_entry(source, entry)
        return entry

    def measure(self, source: Path, entry: Entry) -> Entry:
        """`entry` with the cached audio's peak and loudness, measured once and then kept in the
        index entry (a re-prepared file gets a fresh entry, so it is measured again)."""
        if entry.error is not None or entry.peak is not None:
            return entry
        audio = self.audio(source)
        peak = float(np.abs(audio).max(initial=0.0))
        measured = attrs.evolve(
            entry, peak=peak, loudness=integrated_loudness(audio, self.sample_rate)
        )
        self._write_entry(source, measured)
        return measured

    def _write_entry(self, source: Path, entry: Entry) -> None:
        meta = attrs.asdict(entry, filter=lambda a, _: a.name != "decoded")
        with self._writing():
            write_text(self._paths(source)[2], json.dumps(meta))

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        instead = "choose another place with the dataset's cache_dir or $LYRA_CACHE_DIR"
        with writing(self.dir, "the audio cache", instead):
            yield

    def audio(self, source: Path) -> np.ndarray:
        """The cached audio of `source`, memory-mapped read-only: float32 [channels, frames]."""
        return np.load(self._paths(source)[0], mmap_mode="r")

    def energy(self, source: Path) -> np.ndarray:
        return np.load(self._paths(source)[1])

    def remove_stale_temporaries(self) -> None:
        """Delete temporaries a crashed writer left behind (older than a day: not in use)."""
        remove_temporaries(self.dir, older_than=STALE_TEMP_SECONDS)
