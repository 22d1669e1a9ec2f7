"""`build_corpus`: the selected, installed sources written into a directory with a manifest."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lyra_core.corpus import debian
from lyra_core.corpus.manifest import manifest_entry, totals, write_manifest
from lyra_core.corpus.sources import missing_packages, select_sources
from lyra_core.corpus.splits import SPLITS, SourceReport, build_source
from lyra_core.errors import LyraError


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
            f"no corpus source is installed; install them with: {debian.install_command(missing)}"
        )
    if missing:
        skipped = ", ".join(s.name for s in sources if s not in present)
        log(f"skipping {skipped} (not installed): {debian.install_command(missing)}")
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
