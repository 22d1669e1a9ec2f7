"""Split and budget: each source's items go to train, validation or test by a seeded shuffle
(a source file in one split only), and are written until each split's share of the budget."""

from __future__ import annotations

import dataclasses
import random
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf

from lyra_core.corpus.items import DOMAINS, Item, Source
from lyra_core.corpus.trimming import finish, fit

SPLITS = {"train": 0.8, "validation": 0.1, "test": 0.1}
MIN_SECONDS = 0.1  # shorter outputs are dropped


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
