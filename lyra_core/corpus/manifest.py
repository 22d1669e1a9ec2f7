"""The manifest: every output file with its source, package, version, licence and split, as
DIR/manifest.json and DIR/manifest.csv."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lyra_core.corpus import debian
from lyra_core.corpus.items import DOMAINS
from lyra_core.corpus.splits import SPLITS, Written

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
        "version": debian.package_version(it.package) or "unknown",
        "licence": debian.licence_of(it.package, it.source_file),
        "copyright": str(debian.copyright_path(it.package)),
        "duration_s": round(w.seconds, 3),
        "sample_rate": rate,
        "channels": w.channels,
        "origin": it.origin,
        "tool_package": it.tool_package or "",
        "tool_version": (debian.package_version(it.tool_package) or "") if it.tool_package else "",
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
