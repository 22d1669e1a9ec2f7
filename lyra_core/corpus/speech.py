"""Speech made here: sentences in six languages spoken by espeak-ng voices."""

from __future__ import annotations

import functools
import random
from pathlib import Path

from lyra_core.corpus import debian
from lyra_core.corpus.items import Audio, Item, read_file, run_tool

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
    for path in debian.package_files("espeak-ng-data"):
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
