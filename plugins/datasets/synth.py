"""Procedural, instrument-like audio: harmonic notes and chords, percussive bursts, panning.

Everything is drawn from a `numpy.random.Generator`, so one seed gives one piece of audio. A note
is a sum of partials k·f0·√(1 + B·k²) (B: inharmonicity) with amplitudes k^-tilt, an ADSR
envelope, vibrato, and upper partials that fade faster than the fundamental (brightness decay).
"""

from __future__ import annotations

import math

import attrs
import numpy as np

# Chord shapes in semitones above the root: major, minor, sus4, power, major 7, minor 7.
CHORDS: tuple[tuple[int, ...], ...] = (
    (0, 4, 7),
    (0, 3, 7),
    (0, 5, 7),
    (0, 7, 12),
    (0, 4, 7, 11),
    (0, 3, 7, 10),
)


@attrs.frozen(kw_only=True)
class SynthParams:
    """The knobs of the generator (the `synthetic` dataset exposes them as spec fields)."""

    notes_per_second: float = 3.0
    chord_probability: float = 0.3
    pitch_range: tuple[float, float] = (36.0, 84.0)  # MIDI notes
    max_partials: int = 12
    hits_per_second: float = 2.0
    peak: float = 0.95


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def pan_gains(position: float, channels: int) -> np.ndarray:
    """Constant-power gains placing a source at `position` in [0, 1] across `channels` outputs."""
    if channels == 1:
        return np.ones(1, dtype=np.float32)
    where = position * (channels - 1)
    left = min(int(where), channels - 2)
    frac = where - left
    gains = np.zeros(channels, dtype=np.float32)
    gains[left] = math.cos(frac * math.pi / 2)
    gains[left + 1] = math.sin(frac * math.pi / 2)
    return gains


def adsr(t: np.ndarray, gate: float, a: float, d: float, s: float, r: float) -> np.ndarray:
    """Attack/decay/sustain/release envelope at times `t` (s) for a note held `gate` seconds."""
    held = np.where(t < a, t / a, np.maximum(s, 1.0 - (1.0 - s) * (t - a) / d))
    level_at_release = float(gate / a if gate < a else max(s, 1.0 - (1.0 - s) * (gate - a) / d))
    released = level_at_release * np.maximum(0.0, 1.0 - (t - gate) / r)
    return np.where(t < gate, held, released).clip(0.0, 1.0)


def partial_phases(
    ratios: np.ndarray, cycles: np.ndarray, offsets: np.ndarray, block: int = 2048
) -> np.ndarray:
    """2π·(ratio·cycles + offset) mod 2π for each partial: float32 [partials, len], accurately.

    The phase at the start of each block of `block` samples is reduced in float64; within a
    block the float32 increment stays below a thousand cycles (error under 1e-3 rad), which is
    far cheaper than reducing every sample in float64.
    """
    n = cycles.size
    blocks = -(-n // block)
    padded = np.empty(blocks * block)
    padded[:n] = cycles
    padded[n:] = cycles[-1]
    grid = padded.reshape(blocks, block)
    start = np.multiply.outer(ratios, grid[:, 0]) + offsets[:, None]
    start -= np.floor(start)
    inside = (grid - grid[:, :1]).astype(np.float32)
    phase = ((2.0 * math.pi) * ratios).astype(np.float32)[:, None, None] * inside[None]
    phase += ((2.0 * math.pi) * start).astype(np.float32)[:, :, None]
    return phase.reshape(ratios.size, blocks * block)[:, :n]


class _Canvas:
    """The output buffer [channels, n] and the helpers that draw events into it."""

    def __init__(self, rng: np.random.Generator, n: int, sample_rate: int, channels: int):
        self.rng, self.n, self.sr, self.channels = rng, n, sample_rate, channels
        self.out = np.zeros((channels, n), dtype=np.float32)

    def span(self, start: float, length: float) -> tuple[int, int]:
        """Samples [i0, i1) of an event at `start` s lasting `length` s, clipped to the canvas."""
        i0 = max(0, math.ceil(start * self.sr))
        i1 = min(self.n, math.ceil((start + length) * self.sr))
        return i0, i1

    def note(self, start: float, midi: float, voice: dict[str, float], params: SynthParams) -> None:
        rng, sr = self.rng, self.sr
        gate = voice["gate"]
        i0, i1 = self.span(start, gate + voice["release"])
        if i1 <= i0:
            return
        f0 = 440.0 * 2.0 ** ((midi - 69.0) / 12.0)
        depth, rate = voice["vibrato_depth"], voice["vibrato_rate"]
        k = np.arange(1, params.max_partials + 1, dtype=np.float64)
        ratios = k * np.sqrt(1.0 + voice["inharmonicity"] * k * k)
        ratios = ratios[ratios * f0 * (1.0 + depth) < 0.45 * sr]
        if ratios.size == 0:
            return
        t = np.arange(i0, i1, dtype=np.float64) / sr - start
        t32 = t.astype(np.float32)  # float32 wherever the precision allows: it is much faster
        # Cycles of the fundamental: the integral of f0·(1 + depth·sin(2π·rate·t + φ)).
        phi = rng.uniform(0.0, 2.0 * math.pi)
        swing = depth / (2.0 * math.pi * rate)
        wobble = math.cos(phi) - np.cos(np.float32(2.0 * math.pi * rate) * t32 + np.float32(phi))
        cycles = f0 * (t + swing * wobble)
        offsets = rng.uniform(0.0, 1.0, size=ratios.size)
        waves = partial_phases(ratios, cycles, offsets)
        np.sin(waves, out=waves)
        amps = np.arange(1, ratios.size + 1, dtype=np.float32) ** np.float32(-voice["tilt"])
        bright = amps * np.linspace(0.0, 1.0, ratios.size, dtype=np.float32)
        # The partials' sum, split into a steady part and a bright part that fades.
        steady, fading = np.stack([amps - bright, bright]) @ waves
        tone = steady + np.exp(t32 / np.float32(-voice["brightness_decay"])) * fading
        env = adsr(t32, gate, voice["attack"], voice["decay"], voice["sustain"], voice["release"])
        tone *= np.float32(voice["velocity"]) * env
        self.out[:, i0:i1] += pan_gains(voice["pan"], self.channels)[:, None] * tone

    def hit(self, start: float) -> None:
        """A percussive burst: filtered noise with an exponential decay."""
        rng = self.rng
        tau = _log_uniform(rng, 0.004, 0.08)
        i0, i1 = self.span(start, 6.0 * tau)
        if i1 <= i0:
            return
        t = np.arange(i0, i1, dtype=np.float64) / self.sr - start
        n = i1 - i0
        # White noise coloured by a one-pole filter (applied to its spectrum): mostly low-passed
        # (dull to bright), sometimes high-passed.
        pole = rng.uniform(0.0, 0.95) * (1.0 if rng.random() < 0.7 else -1.0)
        response = (1.0 - abs(pole)) / (
            1.0 - pole * np.exp(-1j * np.pi * np.linspace(0, 1, n // 2 + 1))
        )
        noise = np.fft.irfft(np.fft.rfft(rng.standard_normal(n)) * response, n)
        burst = noise * np.exp(-t / tau)
        level = rng.uniform(0.1, 0.6) / (np.abs(burst).max() + 1e-9)
        gains = pan_gains(rng.uniform(0.2, 0.8), self.channels)[:, None]
        self.out[:, i0:i1] += gains * (level * burst).astype(np.float32)


def _voice(rng: np.random.Generator) -> dict[str, float]:
    """One instrument: timbre, envelope and vibrato, shared by the notes of a chord."""
    return {
        "tilt": rng.uniform(0.6, 2.2),
        "inharmonicity": _log_uniform(rng, 1e-6, 2e-3),
        "brightness_decay": _log_uniform(rng, 0.05, 2.0),
        "attack": _log_uniform(rng, 0.002, 0.08),
        "decay": _log_uniform(rng, 0.05, 0.5),
        "sustain": rng.uniform(0.2, 0.9),
        "release": _log_uniform(rng, 0.03, 0.6),
        "gate": _log_uniform(rng, 0.08, 1.5),
        "vibrato_depth": rng.uniform(0.0, 0.008),
        "vibrato_rate": rng.uniform(4.0, 7.0),
        "velocity": rng.uniform(0.3, 1.0),
        "pan": rng.uniform(0.0, 1.0),
    }


def render(
    rng: np.random.Generator, n: int, sample_rate: int, channels: int, params: SynthParams
) -> np.ndarray:
    """`n` samples of `channels`-channel audio, float32 [channels, n], peak-normalised."""
    canvas = _Canvas(rng, n, sample_rate, channels)
    seconds = n / sample_rate
    low, high = params.pitch_range
    # The first onset is at or before the start, so no example opens with a long silence.
    onsets = [rng.uniform(-0.3, 0.0)] if params.notes_per_second > 0 else []
    onsets += sorted(rng.uniform(0.0, seconds, size=rng.poisson(params.notes_per_second * seconds)))
    for start in onsets:
        voice = _voice(rng)
        root = rng.uniform(low, high)
        if rng.random() < params.chord_probability:
            shape = CHORDS[rng.integers(len(CHORDS))]
            spread = rng.uniform(0.1, 0.4)
            for i, interval in enumerate(shape):
                pan = float(
                    np.clip(voice["pan"] + spread * (i / max(1, len(shape) - 1) - 0.5), 0, 1)
                )
                canvas.note(start, root + interval, {**voice, "pan": pan}, params)
        else:
            canvas.note(start, root, voice, params)
    for start in rng.uniform(0.0, seconds, size=rng.poisson(params.hits_per_second * seconds)):
        canvas.hit(float(start))
    peak = float(np.abs(canvas.out).max())
    if peak > 0.0:
        canvas.out *= np.float32(params.peak / peak)
    return canvas.out
