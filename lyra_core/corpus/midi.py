"""Music written here: a tiny standard MIDI file writer, phrase composers, and the items that
render the phrases with fluidsynth (FluidR3_GM) or timidity (freepats)."""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from lyra_core.corpus.items import Audio, Item, read_file, run_tool

SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
FREEPATS_CFG = "/etc/timidity/freepats.cfg"


@dataclass(frozen=True)
class Note:
    start: float  # beats
    length: float  # beats
    pitch: int
    velocity: int
    channel: int


def _vlq(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def midi_file(notes: Iterable[Note], programs: dict[int, int], bpm: float, tpq: int = 480) -> bytes:
    """A format-0 standard MIDI file: tempo, one program per channel, the notes."""
    tempo = int(60_000_000 / bpm).to_bytes(3, "big")
    events: list[tuple[int, int, bytes]] = [(0, 0, b"\xff\x51\x03" + tempo)]
    events += [(0, 1, bytes([0xC0 | ch, prog])) for ch, prog in sorted(programs.items())]
    for n in notes:
        on = round(n.start * tpq)
        off = max(on + 1, round((n.start + n.length) * tpq))
        events.append((on, 3, bytes([0x90 | n.channel, n.pitch, n.velocity])))
        events.append((off, 2, bytes([0x80 | n.channel, n.pitch, 0])))
    events.sort(key=lambda e: (e[0], e[1]))
    track, now = bytearray(), 0
    for tick, _, data in events:
        track += _vlq(tick - now) + data
        now = tick
    track += _vlq(tpq) + b"\xff\x2f\x00"  # a beat of release before the end
    header = b"MThd" + (6).to_bytes(4, "big") + (0).to_bytes(2, "big") + (1).to_bytes(2, "big")
    return header + tpq.to_bytes(2, "big") + b"MTrk" + len(track).to_bytes(4, "big") + track


SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
PROGRESSIONS = {
    "major": ((0, 4, 5, 3), (0, 5, 3, 4), (1, 4, 0, 0), (0, 3, 4, 3), (0, 3, 0, 4)),
    "minor": ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 4), (0, 3, 6, 2)),
}
# General MIDI programs that both FluidR3_GM and freepats have
KEYS_PROGRAMS = {"grand piano": 0, "electric piano": 4, "organ": 16, "church organ": 19}
GUITARS = {"nylon guitar": 24, "steel guitar": 25, "clean electric guitar": 27}
BASSES = {"acoustic bass": 32, "finger bass": 33, "pick bass": 34}
STRINGS = {"string ensemble": 48, "tremolo strings": 44}
SOLOISTS = {
    "violin": 40,
    "cello": 42,
    "harp": 46,
    "trumpet": 56,
    "french horn": 60,
    "alto sax": 65,
    "oboe": 68,
    "clarinet": 71,
    "flute": 73,
    "xylophone": 13,
    "glockenspiel": 9,
    "grand piano": 0,
}
KICK, SNARE, HAT, OPEN_HAT, CRASH, RIDE, TOMS = 36, 38, 42, 46, 49, 51, (50, 47, 45, 41)


@dataclass(frozen=True)
class Harmony:
    root: int  # MIDI pitch of the tonic, around C3-B3
    mode: str
    progression: tuple[int, ...]  # scale degree of each bar's chord

    def pitch(self, degree: int, octave: int = 0) -> int:
        scale = SCALES[self.mode]
        return self.root + 12 * (octave + degree // 7) + scale[degree % 7]

    def chord(self, bar: int, octave: int = 0) -> list[int]:
        d = self.progression[bar % len(self.progression)]
        return [self.pitch(d + k, octave) for k in (0, 2, 4)]


def _vel(rng: random.Random, base: int) -> int:
    return max(30, min(127, base + rng.randint(-12, 12)))


def _chords(
    h: Harmony, bars: int, ch: int, rng: random.Random, octave: int, hits: int
) -> list[Note]:
    step = 4 / hits
    return [
        Note(b * 4 + k * step, step * 0.95, p, _vel(rng, 70), ch)
        for b in range(bars)
        for k in range(hits)
        for p in h.chord(b, octave)
    ]


def _arpeggio(h: Harmony, bars: int, ch: int, rng: random.Random, octave: int) -> list[Note]:
    shape = rng.choice(((0, 1, 2, 1), (0, 1, 2, 3), (0, 2, 1, 2), (2, 1, 0, 1)))
    notes = []
    for b in range(bars):
        tones = [*h.chord(b, octave), h.chord(b, octave + 1)[0]]
        for k in range(8):
            pitch = tones[shape[k % 4]]
            notes.append(Note(b * 4 + k * 0.5, 0.9, pitch, _vel(rng, 75 if k % 2 else 88), ch))
    return notes


def _bass(h: Harmony, bars: int, ch: int, rng: random.Random, busy: bool) -> list[Note]:
    notes = []
    for b in range(bars):
        root, fifth = h.chord(b, -2)[0], h.chord(b, -2)[2]
        beats = [(0, root), (1, root), (2, fifth), (3, root)] if busy else [(0, root), (2, fifth)]
        notes += [Note(b * 4 + t, 0.9 if busy else 1.9, p, _vel(rng, 90), ch) for t, p in beats]
    return notes


def _melody(h: Harmony, bars: int, ch: int, rng: random.Random, octave: int) -> list[Note]:
    """A random walk on the scale, one to four notes a beat, resting on chord tones."""
    notes, degree = [], rng.randint(0, 6)
    for b in range(bars):
        t = 0.0
        while t < 4:
            length = rng.choice((0.5, 0.5, 1.0, 1.0, 2.0)) if t < 3 else 4 - t
            degree = max(-3, min(10, degree + rng.choice((-2, -1, -1, 1, 1, 2, 0))))
            notes.append(Note(b * 4 + t, length * 0.95, h.pitch(degree, octave), _vel(rng, 85), ch))
            t += length
    return notes


def _scale_runs(h: Harmony, bars: int, ch: int, rng: random.Random, octave: int) -> list[Note]:
    """Scales up and down in eighths or sixteenths, and broken chords."""
    step = rng.choice((0.5, 0.25))
    per_bar = int(4 / step)
    notes, degree, direction = [], 0, 1
    for i in range(bars * per_bar):
        if rng.random() < 0.15:
            direction = -direction
        degree += direction
        if not -4 <= degree <= 11:
            direction, degree = -direction, degree - 2 * direction
        notes.append(Note(i * step, step * 0.9, h.pitch(degree, octave), _vel(rng, 80), ch))
    return notes


def _drums(bars: int, rng: random.Random, style: str) -> list[Note]:
    notes = []
    hat = RIDE if style == "ride" else HAT
    for b in range(bars):
        fill = b == bars - 1 or (b % 4 == 3 and rng.random() < 0.5)
        for k in range(8):
            t = b * 4 + k * 0.5
            if fill and k >= 4:
                notes.append(Note(t, 0.4, TOMS[k - 4], _vel(rng, 95), 9))
                continue
            notes.append(
                Note(t, 0.4, OPEN_HAT if k == 7 and rng.random() < 0.3 else hat, _vel(rng, 65), 9)
            )
            if k in (0, 4) or (k == 5 and rng.random() < 0.4):
                notes.append(Note(t, 0.4, KICK, _vel(rng, 100), 9))
            if k in (2, 6):
                notes.append(Note(t, 0.4, SNARE, _vel(rng, 95), 9))
        if b % 4 == 0:
            notes.append(Note(b * 4, 1.0, CRASH, _vel(rng, 90), 9))
    return notes


def _pick(rng: random.Random, table: dict[str, int]) -> tuple[str, int]:
    name = rng.choice(sorted(table))
    return name, table[name]


def _compose(
    style: str, h: Harmony, bars: int, rng: random.Random
) -> tuple[list[Note], dict[int, int], str]:
    """Notes, programs by channel, and the instruments in words, for one style of phrase."""
    if style == "piano":
        name, prog = _pick(rng, KEYS_PROGRAMS)
        notes = _chords(h, bars, 0, rng, -1, rng.choice((1, 2))) + _arpeggio(h, bars, 0, rng, 1)
        return notes, {0: prog}, f"{name}: chords and arpeggios"
    if style == "strings":
        (sn, sp), (mn, mp) = (
            _pick(rng, STRINGS),
            _pick(rng, {"violin": 40, "cello": 42, "flute": 73}),
        )
        notes = _chords(h, bars, 0, rng, 0, 1) + _melody(h, bars, 1, rng, 1 if mp != 42 else -1)
        return notes, {0: sp, 1: mp}, f"{sn} chords, {mn} melody"
    if style == "guitar":
        (gn, gp), (bn, bp) = _pick(rng, GUITARS), _pick(rng, BASSES)
        notes = _arpeggio(h, bars, 0, rng, 0) + _bass(h, bars, 1, rng, busy=False)
        return notes, {0: gp, 1: bp}, f"{gn} arpeggios, {bn}"
    if style == "band":
        (kn, kp), (gn, gp), (bn, bp) = (_pick(rng, t) for t in (KEYS_PROGRAMS, GUITARS, BASSES))
        notes = _chords(h, bars, 0, rng, 0, 4) + _melody(h, bars, 1, rng, 1)
        notes += _bass(h, bars, 2, rng, busy=True) + _drums(bars, rng, rng.choice(("hat", "ride")))
        return notes, {0: kp, 1: gp, 2: bp}, f"{kn} chords, {gn} melody, {bn}, drums"
    if style == "scales":
        name, prog = _pick(rng, SOLOISTS)
        octave = -1 if prog in (42, 60) else (1 if prog in (9, 13) else 0)
        return _scale_runs(h, bars, 0, rng, octave), {0: prog}, f"{name}: scale runs"
    notes = _drums(bars, rng, rng.choice(("hat", "ride"))) + _bass(h, bars, 0, rng, busy=True)
    name, prog = _pick(rng, BASSES)
    return notes, {0: prog}, f"drum kit and {name} groove"


STYLES = ("piano", "strings", "guitar", "band", "scales", "drums")


@dataclass(frozen=True)
class Phrase:
    midi: bytes
    description: str
    seconds: float


def phrase(rng: random.Random, style: str) -> Phrase:
    mode = rng.choice(sorted(SCALES))
    h = Harmony(rng.randint(48, 59), mode, rng.choice(PROGRESSIONS[mode]))
    bars, bpm = rng.choice((4, 6, 8)), rng.randint(72, 140)
    notes, programs, words = _compose(style, h, bars, rng)
    names = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
    text = f"{words}; {names[h.root % 12]} {mode}, {bpm} bpm, {bars} bars"
    return Phrase(midi_file(notes, programs, bpm), text, (bars * 4 + 1) * 60 / bpm)


def midi_items(
    source: str, package: str, renderer: str, render_cmd: Callable[[Path, Path, int], list[str]]
) -> Callable[[int, float], list[Item]]:
    """Phrases written here, rendered by `renderer`: enough candidates for the wanted seconds."""

    def items(seed: int, wanted: float) -> list[Item]:
        count = max(24, math.ceil(wanted / 6.0))
        out = []
        for i in range(count):
            rng = random.Random(f"{seed}:{source}:{i}")
            p = phrase(rng, STYLES[i % len(STYLES)])
            key = f"{STYLES[i % len(STYLES)]}-{i:04d}"
            out.append(
                Item(
                    key=key,
                    domain="music",
                    package=package,
                    source_file=SOUNDFONT if package == "fluid-soundfont-gm" else FREEPATS_CFG,
                    render=functools.partial(_render_midi, p, key, render_cmd),
                    origin=f"MIDI phrase written by Lyra ({p.description}), rendered by {renderer}",
                    tool_package=renderer,
                )
            )
        return out

    return items


def _render_midi(
    p: Phrase, key: str, cmd: Callable[[Path, Path, int], list[str]], scratch: Path
) -> Audio:
    mid, wav = scratch / f"{key}.mid", scratch / f"{key}.wav"
    mid.write_bytes(p.midi)
    run_tool(cmd(mid, wav, 44100), f"rendering {key}")
    return read_file(str(wav))


def fluidsynth_cmd(mid: Path, wav: Path, rate: int) -> list[str]:
    return [
        "fluidsynth",
        "-ni",
        "-q",
        "-g",
        "0.5",
        "-r",
        str(rate),
        "-T",
        "wav",
        "-F",
        str(wav),
        SOUNDFONT,
        str(mid),
    ]


def timidity_cmd(mid: Path, wav: Path, rate: int) -> list[str]:
    return ["timidity", "-c", FREEPATS_CFG, "-Ow", "-s", str(rate), "-o", str(wav), str(mid)]
