"""`lyra data corpus DIR`: a real-audio corpus built from Debian's packaged sound sources.

Sources (each one is a *source* for the split; see `SOURCES`):

- music: phrases written here as MIDI (piano, strings, guitar, bass, drums, winds: scales,
  arpeggios, chords, grooves) rendered by `fluidsynth` with FluidR3_GM.sf2 (fluid-soundfont-gm)
  and by `timidity` with freepats, both sets of recorded instrument samples; recorded drum hits
  (hydrogen-data's GMRockKit), instrument samples and loops (lmms-common), game music
  (frozen-bubble-data);
- speech: recorded speech (alsa-utils, sound-theme-freedesktop) and `espeak-ng` speaking
  sentences written here in several languages and voices;
- sfx: recorded sound effects and environment sounds (sound-theme-freedesktop, minetest-data,
  frozen-bubble-data, lmms-common).

Every output is a WAV file in DIR/{train,validation,test}/. The split is by source file: every
source file (or generated phrase or utterance) goes to exactly one split, chosen by a shuffle
seeded with `--seed`. DIR/manifest.json and DIR/manifest.csv list every output file with its
source file, Debian package, package version, licence, domain, duration and split.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import fnmatch
import functools
import json
import math
import random
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from lyra_core.errors import LyraError
from lyra_core.runs.audio import resample

SPLITS = {"train": 0.8, "validation": 0.1, "test": 0.1}
DOMAINS = ("music", "speech", "sfx")
PEAK = 10 ** (-1.0 / 20)  # outputs are peak-normalised to -1 dBFS
SILENCE_DB = -60.0  # leading/trailing audio below this (relative to full scale) is trimmed
MIN_SECONDS = 0.1  # shorter outputs are dropped
FADE_SECONDS = 0.01  # fade applied where a long source is cut to fit the budget
SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
FREEPATS_CFG = "/etc/timidity/freepats.cfg"

Audio = tuple[np.ndarray, int]  # (frames, channels) float32, sample rate


@dataclass(frozen=True)
class Item:
    """One source: a packaged file, or a phrase or utterance generated here."""

    key: str  # unique within its source group; names the output file
    domain: str
    package: str  # the package whose content makes the sound (version, licence)
    source_file: str  # the packaged file the sound comes from
    render: Callable[[Path], Audio]  # (scratch dir) -> audio
    origin: str  # how the audio was made, in words
    tool_package: str | None = None  # the package of the program that rendered it


@dataclass(frozen=True)
class Source:
    """A group of items from some packages; `items(seed, wanted_seconds)` lists candidates."""

    name: str
    packages: tuple[str, ...]
    items: Callable[[int, float], list[Item]]
    description: str
    binaries: tuple[str, ...] = ()
    weight: float = 1.0  # its budget, in units of --minutes-per-source per domain


@dataclass
class Written:
    source: str
    path: Path
    item: Item
    split: str
    seconds: float
    channels: int


@dataclass
class SourceReport:
    source: str
    written: list[Written] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Debian packages: presence, version, licence, files


def _dpkg_query(package: str) -> str | None:
    """The installed version of `package`, or None."""
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${db:Status-Abbrev} ${Version}", package],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError as e:
        raise LyraError("`lyra data corpus` needs Debian's dpkg-query (a Debian system)") from e
    words = out.stdout.split()
    return words[-1] if out.returncode == 0 and len(words) >= 2 and words[0] == "ii" else None


@functools.cache
def package_version(package: str) -> str | None:
    return _dpkg_query(package)


@functools.cache
def package_files(package: str) -> tuple[str, ...]:
    out = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, check=False)
    return tuple(line for line in out.stdout.splitlines() if Path(line).is_file())


def copyright_path(package: str) -> Path:
    return Path("/usr/share/doc") / package / "copyright"


def _dep5_paragraphs(text: str) -> list[tuple[list[str], str]]:
    """(Files patterns, short licence name) of each DEP-5 paragraph that has both."""
    found = []
    for para in re.split(r"\n\s*\n", text):
        files = re.search(r"^Files:(.*(?:\n[ \t].*)*)", para, re.M)
        lic = re.search(r"^License:[ \t]*(\S.*)$", para, re.M)
        if files and lic:
            found.append((files.group(1).split(), lic.group(1).strip()))
    return found


_LICENCE_WORDS = (
    (r"\bMIT license\b", "MIT"),
    (r"General Public License.{0,120}?version 3.{0,60}?later", "GPL-3+"),
    (r"General Public License.{0,120}?version 2.{0,60}?later", "GPL-2+"),
    (r"common-licenses/GPL-3", "GPL-3"),
    (r"common-licenses/GPL-2", "GPL-2"),
)


def _licence_from_prose(text: str) -> str | None:
    for pattern, name in _LICENCE_WORDS:
        if re.search(pattern, text, re.S | re.I):
            return name
    return None


@functools.cache
def _copyright_text(package: str) -> str:
    try:
        return copyright_path(package).read_text(errors="replace")
    except OSError:
        return ""


def licence_of(package: str, path: str | None = None) -> str:
    """The licence of `path` in `package`, from /usr/share/doc/PKG/copyright.

    DEP-5 files: the last paragraph (not debian/*) whose Files pattern matches the end of
    `path` (the installed path, whose tail is the upstream path), else the `Files: *` one.
    Other files: the licence their prose names. "unknown (see FILE)" when neither says.
    """
    text = _copyright_text(package)
    match = None
    for patterns, lic in _dep5_paragraphs(text):
        if any(p.startswith("debian/") for p in patterns):
            continue
        if "*" in patterns and match is None:
            match = lic
        if path and any(p != "*" and fnmatch.fnmatch(path, "*/" + p) for p in patterns):
            match = lic
    return match or _licence_from_prose(text) or f"unknown (see {copyright_path(package)})"


# ---------------------------------------------------------------------------------------------
# Audio


def trim_silence(audio: np.ndarray, rate: int) -> np.ndarray:
    """Drop leading and trailing audio quieter than SILENCE_DB (a 10 ms margin kept)."""
    loud = np.flatnonzero(np.abs(audio).max(axis=1) > 10 ** (SILENCE_DB / 20))
    if loud.size == 0:
        return audio[:0]
    margin = rate // 100
    return audio[max(0, loud[0] - margin) : loud[-1] + margin + 1]


def fit(audio: np.ndarray, rate: int, seconds: float) -> np.ndarray:
    """At most `seconds` of `audio`, faded out where it is cut."""
    frames = int(seconds * rate)
    if len(audio) <= frames:
        return audio
    out = audio[:frames].copy()
    fade = min(frames, int(FADE_SECONDS * rate))
    out[frames - fade :] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)[:, None]
    return out


def finish(audio: np.ndarray, rate: int, target: int, mono: bool) -> np.ndarray:
    """Float32 at `target` Hz, downmixed if `mono`, trimmed, peak-normalised (empty if silent)."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[:, None]
    if mono and audio.shape[1] > 1:
        audio = audio.mean(axis=1, keepdims=True)
    audio = trim_silence(np.ascontiguousarray(resample(audio.T, rate, target).T), target)
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    return audio * (PEAK / peak) if peak > 0 else audio


def read_file(path: str) -> Audio:
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    return audio, rate


def run_tool(cmd: Sequence[str], what: str) -> None:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"{what}: {cmd[0]} exited {proc.returncode}: {tail[0]}")


# ---------------------------------------------------------------------------------------------
# MIDI written here: a tiny standard MIDI file writer and phrase generators


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


def _fluidsynth_cmd(mid: Path, wav: Path, rate: int) -> list[str]:
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


def _timidity_cmd(mid: Path, wav: Path, rate: int) -> list[str]:
    return ["timidity", "-c", FREEPATS_CFG, "-Ow", "-s", str(rate), "-o", str(wav), str(mid)]


# ---------------------------------------------------------------------------------------------
# Speech from espeak-ng: sentences written here

SENTENCES = {
    "en": (
        "The quick brown fox jumps over the lazy dog.",
        "Please call Stella and ask her to bring these things with her from the store.",
        "A rainbow is a division of white light into many beautiful colours.",
        "The birch canoe slid on the smooth planks.",
        "Glue the sheet to the dark blue background.",
        "It is easy to tell the depth of a well.",
        "These days a chicken leg is a rare dish.",
        "Rice is often served in round bowls.",
        "The juice of lemons makes fine punch.",
        "Four hours of steady work faced us.",
        "We talked about the weather, the trains, and the price of bread.",
        "Seven silver spoons were found beneath the old wooden floor.",
        "How far is it from here to the nearest station?",
        "Turn left at the second light, then keep going until you see the river.",
    ),
    "de": (
        "Der Zug nach Hamburg fährt heute eine halbe Stunde später ab.",
        "Am Wochenende wandern wir durch den Wald bis zum See.",
        "Könnten Sie mir bitte sagen, wie spät es ist?",
        "Die Katze schläft auf dem warmen Fensterbrett in der Sonne.",
    ),
    "fr": (
        "Le petit déjeuner est servi de sept heures à dix heures.",
        "Nous avons traversé la ville à pied sous une pluie fine.",
        "Pourriez-vous parler un peu plus lentement, s'il vous plaît?",
        "Les enfants jouent dans le jardin derrière la maison.",
    ),
    "es": (
        "Mañana por la mañana iremos al mercado a comprar fruta.",
        "El tren de las ocho llega siempre con un poco de retraso.",
        "¿Sabes dónde está la biblioteca de la universidad?",
        "Las montañas se ven muy claras después de la lluvia.",
    ),
    "it": (
        "Il treno per Roma parte dal binario numero tre.",
        "Questa sera ceniamo tutti insieme in piazza.",
        "Scusi, sa dirmi dove si trova la stazione?",
    ),
    "nl": (
        "De fiets staat achter het huis naast de schuur.",
        "Morgen gaan we met de boot naar het eiland.",
    ),
}
VOICES = {
    "en": ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029"),
    "de": ("de",),
    "fr": ("fr",),
    "es": ("es",),
    "it": ("it",),
    "nl": ("nl",),
}
VARIANTS = ("", "+f2", "+f3", "+f4", "+m2", "+m3", "+m7", "+klatt", "+Alicia", "+Andy", "+Steph")


def espeak_data_dir() -> str:
    for path in package_files("espeak-ng-data"):
        head, sep, _ = path.partition("/espeak-ng-data/")
        if sep:
            return head + "/espeak-ng-data"
    return "espeak-ng-data"


def espeak_items(seed: int, wanted: float) -> list[Item]:
    """Every (voice, variant, sentence): an utterance with its own speed and pitch."""
    out, data = [], espeak_data_dir()
    for lang, sentences in SENTENCES.items():
        for voice in VOICES[lang]:
            for variant in VARIANTS:
                for i, text in enumerate(sentences):
                    key = f"{voice}{variant.replace('+', '-')}-{lang}{i:02d}".lower()
                    rng = random.Random(f"{seed}:espeak:{key}")
                    speed, pitch = rng.randint(135, 185), rng.randint(30, 70)
                    v = f"{voice}{variant}"
                    out.append(
                        Item(
                            key=key,
                            domain="speech",
                            package="espeak-ng-data",
                            source_file=f"{data} (voice {v})",
                            render=functools.partial(_speak, v, speed, pitch, text, key),
                            origin=f'espeak-ng voice {v}, {speed} wpm, pitch {pitch}: "{text}"',
                            tool_package="espeak-ng",
                        )
                    )
    return out


def _speak(voice: str, speed: int, pitch: int, text: str, key: str, scratch: Path) -> Audio:
    wav = scratch / f"{key}.wav"
    cmd = ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(wav), text]
    run_tool(cmd, f"speaking {key}")
    return read_file(str(wav))


# ---------------------------------------------------------------------------------------------
# Recorded files shipped by packages


def file_items(
    package: str, pattern: str, domain_of: Callable[[str], str | None]
) -> Callable[[int, float], list[Item]]:
    """The package's files matching `pattern` (a regex on the path); `domain_of` None skips one."""

    def items(seed: int, wanted: float) -> list[Item]:
        out = []
        for path in package_files(package):
            domain = domain_of(path) if re.search(pattern, path) else None
            if domain is None:
                continue
            stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(path).stem).strip("_").lower()
            folder = Path(path).parent.name.lower()
            out.append(
                Item(
                    key=f"{folder}-{stem}",
                    domain=domain,
                    package=package,
                    source_file=path,
                    render=functools.partial(_read_item, path),
                    origin="recorded file shipped by the package, decoded",
                )
            )
        return out

    return items


def _read_item(path: str, scratch: Path) -> Audio:
    return read_file(path)


def _alsa_domain(path: str) -> str:
    return "sfx" if Path(path).stem == "Noise" else "speech"


def _freedesktop_domain(path: str) -> str | None:
    stem = Path(path).stem
    if stem == "audio-test-signal":
        return None  # a test signal, not a recording
    return "speech" if stem.startswith("audio-channel-") else "sfx"


def _frozen_bubble_domain(path: str) -> str:
    return "music" if "zik" in Path(path).stem else "sfx"


def _lmms_domain(path: str) -> str | None:
    folder = Path(path).parent.name
    if folder in {"drums", "instruments", "basses", "stringsnpads", "latin", "beats", "bassloops"}:
        return "music"
    return "sfx" if folder in {"effects", "misc"} else None  # shapes, waveforms: synthetic


AUDIO_EXT = r"\.(wav|ogg|oga|flac)$"

SOURCES = (
    Source(
        "fluidsynth",
        ("fluidsynth", "fluid-soundfont-gm"),
        midi_items("fluidsynth", "fluid-soundfont-gm", "fluidsynth", _fluidsynth_cmd),
        "MIDI phrases rendered with the FluidR3_GM SoundFont",
        binaries=("fluidsynth",),
    ),
    Source(
        "freepats",
        ("timidity", "freepats"),
        midi_items("freepats", "freepats", "timidity", _timidity_cmd),
        "MIDI phrases rendered by TiMidity++ with the freepats patches",
        binaries=("timidity",),
    ),
    Source(
        "espeak",
        ("espeak-ng", "espeak-ng-data"),
        espeak_items,
        "sentences in six languages spoken by espeak-ng voices",
        binaries=("espeak-ng",),
        weight=2.0,
    ),
    Source(
        "alsa",
        ("alsa-utils",),
        file_items("alsa-utils", r"^/usr/share/sounds/alsa/.*\.wav$", _alsa_domain),
        "recorded speech (channel names) and noise",
    ),
    Source(
        "freedesktop",
        ("sound-theme-freedesktop",),
        file_items("sound-theme-freedesktop", r"\.oga$", _freedesktop_domain),
        "recorded desktop sounds and spoken channel names",
    ),
    Source(
        "frozen-bubble",
        ("frozen-bubble-data",),
        file_items("frozen-bubble-data", r"/snd/.*\.ogg$", _frozen_bubble_domain),
        "game music and sound effects",
    ),
    Source(
        "lmms",
        ("lmms-common",),
        file_items("lmms-common", r"/samples/.*" + AUDIO_EXT, _lmms_domain),
        "recorded drum, instrument and effect samples",
    ),
    Source(
        "hydrogen",
        ("hydrogen-data",),
        file_items("hydrogen-data", r"/GMRockKit/.*" + AUDIO_EXT, lambda p: "music"),
        "recorded drum hits of the GMRockKit",
    ),
    Source(
        "minetest",
        ("minetest-data",),
        file_items("minetest-data", r"/sounds/.*" + AUDIO_EXT, lambda p: "sfx"),
        "recorded game and environment sounds",
    ),
)
ALL_PACKAGES = tuple(dict.fromkeys(p for s in SOURCES for p in s.packages))


def install_command(packages: Iterable[str]) -> str:
    return "apt-get install -y " + " ".join(dict.fromkeys(packages))


def select_sources(names: Sequence[str] | None) -> list[Source]:
    """The sources named (by source name or by one of their packages); all by default."""
    if not names:
        return list(SOURCES)
    known = {s.name for s in SOURCES} | set(ALL_PACKAGES)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise LyraError(
            f"--packages: unknown source or package {', '.join(map(repr, unknown))}; "
            f"known sources: {', '.join(s.name for s in SOURCES)}; "
            f"packages: {', '.join(ALL_PACKAGES)}"
        )
    return [s for s in SOURCES if s.name in names or set(s.packages) & set(names)]


def missing_packages(source: Source) -> list[str]:
    missing = [p for p in source.packages if package_version(p) is None]
    return missing + [b for b in source.binaries if shutil.which(b) is None and b not in missing]


# ---------------------------------------------------------------------------------------------
# Split and budget


def assign_splits(items: Sequence[Item], seed: int, source: str) -> dict[str, list[Item]]:
    """A seeded shuffle, then 10 % validation and 10 % test (at least one each from 3 items)."""
    order = sorted(items, key=lambda it: it.key)
    random.Random(f"{seed}:split:{source}").shuffle(order)
    held = max(1, round(0.1 * len(order))) if len(order) >= 3 else 0
    return {
        "validation": order[:held],
        "test": order[held : 2 * held],
        "train": order[2 * held :],
    }


def build_split(
    items: Sequence[Item],
    split: str,
    budget: float,
    out: Path,
    scratch: Path,
    rate: int,
    mono: bool,
    report: SourceReport,
) -> None:
    """Write items in order until `budget` seconds are written (the last one cut to fit)."""
    left = budget
    for item in items:
        if left <= 0:
            return
        try:
            audio, sr = item.render(scratch)
        except (RuntimeError, OSError, sf.LibsndfileError) as e:
            report.skipped.append(f"{item.source_file}: {e}")
            continue
        audio = fit(finish(audio, sr, rate, mono), rate, max(left, 1.0))
        if len(audio) < MIN_SECONDS * rate:
            report.skipped.append(f"{item.key}: silent or too short")
            continue
        path = out / split / f"{report.source}-{item.key}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, audio, rate, subtype="PCM_16")
        seconds = len(audio) / rate
        report.written.append(Written(report.source, path, item, split, seconds, audio.shape[1]))
        left -= seconds


def build_source(
    source: Source, out: Path, minutes: float, rate: int, seed: int, mono: bool
) -> SourceReport:
    """Each domain of the source gets its own budget and its own split of source files."""
    report = SourceReport(source.name)
    wanted = minutes * 60.0 * source.weight
    items = unique_keys(source.items(seed, wanted))
    with tempfile.TemporaryDirectory(prefix=f"lyra-corpus-{source.name}-") as tmp:
        for domain in DOMAINS:
            group = [it for it in items if it.domain == domain]
            splits = assign_splits(group, seed, f"{source.name}:{domain}")
            for split, share in SPLITS.items():
                build_split(
                    splits[split], split, wanted * share, out, Path(tmp), rate, mono, report
                )
    return report


def unique_keys(items: Sequence[Item]) -> list[Item]:
    """The items, a key that is taken already given a numbered suffix."""
    seen: set[str] = set()
    out = []
    for it in items:
        key, n = it.key, 1
        while key in seen:
            n += 1
            key = f"{it.key}-{n}"
        seen.add(key)
        out.append(it if key == it.key else dataclasses.replace(it, key=key))
    return out


# ---------------------------------------------------------------------------------------------
# Manifest


MANIFEST_FIELDS = (
    "path",
    "split",
    "domain",
    "source",
    "source_file",
    "package",
    "version",
    "licence",
    "copyright",
    "duration_s",
    "sample_rate",
    "channels",
    "origin",
    "tool_package",
    "tool_version",
)


def manifest_entry(w: Written, root: Path, rate: int) -> dict[str, Any]:
    it = w.item
    return {
        "path": w.path.relative_to(root).as_posix(),
        "split": w.split,
        "domain": it.domain,
        "source": f"{w.source}:{it.key}",
        "source_file": it.source_file,
        "package": it.package,
        "version": package_version(it.package) or "unknown",
        "licence": licence_of(it.package, it.source_file),
        "copyright": str(copyright_path(it.package)),
        "duration_s": round(w.seconds, 3),
        "sample_rate": rate,
        "channels": w.channels,
        "origin": it.origin,
        "tool_package": it.tool_package or "",
        "tool_version": (package_version(it.tool_package) or "") if it.tool_package else "",
    }


def totals(files: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Minutes by split and domain."""
    out: dict[str, dict[str, float]] = {s: dict.fromkeys(DOMAINS, 0.0) for s in SPLITS}
    for f in files:
        out[f["split"]][f["domain"]] += f["duration_s"] / 60
    return {s: {d: round(m, 2) for d, m in doms.items()} for s, doms in out.items()}


def write_manifest(root: Path, files: list[dict[str, Any]], settings: dict[str, Any]) -> Path:
    manifest = {
        "description": "real-audio corpus from Debian packages, built by `lyra data corpus`",
        "settings": settings,
        "minutes": totals(files),
        "files": files,
    }
    path = root / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    with open(root / "manifest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_FIELDS)
        writer.writeheader()
        writer.writerows(files)
    return path


def prepare_directory(root: Path) -> None:
    """An empty directory, or a previous corpus (its splits and manifest are replaced)."""
    if root.exists() and not root.is_dir():
        raise LyraError(f"{root}: exists and is not a directory")
    if root.is_dir() and any(root.iterdir()) and not (root / "manifest.json").exists():
        raise LyraError(
            f"{root}: not empty and not a corpus (no manifest.json); choose another DIR"
        )
    for name in (*SPLITS, "manifest.json", "manifest.csv"):
        target = root / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    root.mkdir(parents=True, exist_ok=True)


# ---------------------------------------------------------------------------------------------
# Entry point


def build_corpus(
    directory: str | Path,
    packages: Sequence[str] | None = None,
    minutes_per_source: float = 3.0,
    sample_rate: int = 44100,
    seed: int = 0,
    mono: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Build the corpus into `directory` from the selected sources that are installed.

    Returns the manifest. Sources whose packages are missing are skipped with one line naming
    the apt-get command; an error when none is installed.
    """
    if minutes_per_source <= 0:
        raise LyraError(f"--minutes-per-source must be positive, got {minutes_per_source}")
    if sample_rate < 8000:
        raise LyraError(f"--sample-rate must be at least 8000, got {sample_rate}")
    sources = select_sources(packages)
    present = [s for s in sources if not missing_packages(s)]
    missing = list(dict.fromkeys(p for s in sources for p in missing_packages(s)))
    if not present:
        raise LyraError(
            f"no corpus source is installed; install them with: {install_command(missing)}"
        )
    if missing:
        skipped = ", ".join(s.name for s in sources if s not in present)
        log(f"skipping {skipped} (not installed): {install_command(missing)}")
    root = Path(directory)
    prepare_directory(root)
    files: list[dict[str, Any]] = []
    for source in present:
        report = build_source(source, root, minutes_per_source, sample_rate, seed, mono)
        files += [manifest_entry(w, root, sample_rate) for w in report.written]
        log(_source_line(report))
    settings = {
        "sources": [s.name for s in present],
        "skipped_sources": [s.name for s in sources if s not in present],
        "minutes_per_source": minutes_per_source,
        "sample_rate": sample_rate,
        "seed": seed,
        "mono": mono,
        "splits": SPLITS,
    }
    write_manifest(root, files, settings)
    return {"settings": settings, "minutes": totals(files), "files": files}


def _source_line(report: SourceReport) -> str:
    minutes = {s: sum(w.seconds for w in report.written if w.split == s) / 60 for s in SPLITS}
    parts = ", ".join(f"{s} {m:.2f}" for s, m in minutes.items())
    line = (
        f"{report.source}: {len(report.written)} files, {sum(minutes.values()):.2f} min ({parts})"
    )
    if report.skipped:
        line += f"; skipped {len(report.skipped)}: {report.skipped[0]}" + (
            " ..." if len(report.skipped) > 1 else ""
        )
    return line


def corpus_command(args: argparse.Namespace) -> int:
    manifest = build_corpus(
        args.directory,
        packages=args.packages,
        minutes_per_source=args.minutes_per_source,
        sample_rate=args.sample_rate,
        seed=args.seed,
        mono=not args.keep_channels,
    )
    n, minutes = len(manifest["files"]), sum(f["duration_s"] for f in manifest["files"]) / 60
    by_split = ", ".join(f"{s} {sum(d.values()):.1f}" for s, d in manifest["minutes"].items())
    print(
        f"wrote {n} WAV files, {minutes:.1f} min ({by_split}) and manifest.json to {args.directory}"
    )
    return 0


def add_parser(actions: Any) -> argparse.ArgumentParser:
    """Add `corpus` to the `lyra data` subparsers."""
    p = actions.add_parser(
        "corpus",
        help="build a real-audio corpus (music, speech, sfx) from Debian's packaged sound sources",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("directory", metavar="DIR")
    p.add_argument(
        "--packages",
        nargs="+",
        metavar="NAME",
        help="only these sources or Debian packages "
        f"(sources: {', '.join(s.name for s in SOURCES)})",
    )
    p.add_argument(
        "--minutes-per-source",
        type=float,
        default=3.0,
        metavar="M",
        help="at most M minutes from each source and domain (espeak: 2M), "
        "80/10/10 over train/validation/test (default 3)",
    )
    p.add_argument("--sample-rate", type=int, default=44100, help="Hz (default: 44100)")
    p.add_argument(
        "--seed", type=int, default=0, help="the split and the generated phrases (default: 0)"
    )
    p.add_argument(
        "--keep-channels", action="store_true", help="keep stereo sources stereo (default: mono)"
    )
    p.set_defaults(handler=corpus_command)
    return p
