"""The corpus's sources (`SOURCES`): recorded files shipped by packages, and the music and
speech made here; which are selected and which are installed."""

from __future__ import annotations

import functools
import re
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from lyra_core.corpus import debian
from lyra_core.corpus.items import Audio, Item, Source, read_file
from lyra_core.corpus.midi import fluidsynth_cmd, midi_items, timidity_cmd
from lyra_core.corpus.speech import espeak_items
from lyra_core.errors import LyraError


def file_items(
    package: str, pattern: str, domain_of: Callable[[str], str | None]
) -> Callable[[int, float], list[Item]]:
    """The package's files matching `pattern` (a regex on the path); `domain_of` None skips one."""

    def items(seed: int, wanted: float) -> list[Item]:
        out = []
        for path in debian.package_files(package):
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
        midi_items("fluidsynth", "fluid-soundfont-gm", "fluidsynth", fluidsynth_cmd),
        "MIDI phrases rendered with the FluidR3_GM SoundFont",
        binaries=("fluidsynth",),
    ),
    Source(
        "freepats",
        ("timidity", "freepats"),
        midi_items("freepats", "freepats", "timidity", timidity_cmd),
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
    missing = [p for p in source.packages if debian.package_version(p) is None]
    return missing + [b for b in source.binaries if shutil.which(b) is None and b not in missing]
