"""MkDocs hooks: the benchmarks' plots in benchmarks/results/ are served as results/..., so a
page shows them where the benchmark writes them, without a copy in docs/."""

from __future__ import annotations

from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def on_files(files: Files, config: MkDocsConfig) -> Files:
    for image in sorted(RESULTS.rglob("*.png")):
        name = f"results/{image.relative_to(RESULTS).as_posix()}"
        files.append(File.generated(config, name, abs_src_path=str(image)))
    return files
