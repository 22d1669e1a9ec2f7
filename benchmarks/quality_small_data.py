"""Quality on little real audio: held-out mel distance after fixed CPU-minute budgets, at the
bitrate the model's `.lyra` files really take.

`make bench-quality` (not part of `make test`) builds the real-audio corpus (`lyra data corpus`),
takes its music (about 11 minutes to train on, 22 held-out files), and trains each recipe for
`--budgets` CPU-minutes (the process's CPU time, all threads, `training.budget_clock: cpu`), each
budget continuing the run of the one before, once per seed (`--seeds`, the spec's seed + 0, 1,
...; `--jobs` runs seeds side by side). After each budget it codes the held-out files as `.lyra`
files at the recipe's operating point (`lyra encode --bitstream`'s default: the factorized
entropy model, grid step 0.2 for a continuous latent) and scores the decoded audio with `lyra
evaluate`'s code, beside μ-law PCM, resampling and Opus/Vorbis at each file's measured bitrate;
the recipe's untrained model is scored too (0 CPU-minutes), the floor any training must beat.
Run it on an idle machine with OMP_WAIT_POLICY=PASSIVE (as `make bench-quality` does), so that
waiting OpenMP threads do not spin and count as CPU time.

Writes RESULTS/results.json, RESULTS/results.md (the table docs/benchmarks.md includes: the
mean over seeds and their spread) and RESULTS/mel_distance.png (held-out mel distance against
CPU-minutes). `--recipes` reruns some recipes and keeps the others' saved results; each recipe
and seed trains in WORK/runs/NAME/seed-N (remove it to rerun).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lyra_core.corpus.build import build_corpus
from lyra_core.discovery import load_plugins
from lyra_core.inference.evaluate import MODEL, Coding, Report, evaluate_files
from lyra_core.loader import load_spec
from lyra_core.services.chunking import Chunking
from lyra_core.services.compress import open_codec
from lyra_core.services.model import LoadedModel, load_model, save_model
from lyra_core.training import train

ROOT = Path(__file__).resolve().parents[1]
DOMAIN = "music"
THREADS = 2
BASELINES = ("mu_law", "resample", "opus", "vorbis")

# Each shipped recipe, at widths that train on a 2-core CPU; the data section is the benchmark's.
RECIPES: dict[str, tuple[str, list[str]]] = {
    "small_data": ("experiments/small_data.json", []),
    "small_data_rd": ("experiments/small_data_rd.json", []),
    "rave_v2": (
        "experiments/reference/rave_v2.json",
        [
            "model.encoder.base_channels=16",
            "model.decoder.base_channels=16",
            "data.segment_length=32768",
            "data.batch_size=4",
        ],
    ),
    "dac": (
        "experiments/reference/dac_44khz.json",
        [
            "model.encoder.base_channels=16",
            "model.decoder.base_channels=24",
            "model.bottleneck.dim=256",
            "data.batch_size=8",
            "training.adversarial.discriminator.members="
            '[{"type": "mpd", "pad": "whole_period", "channels": [8, 32, 128, 256, 256]},'
            ' {"type": "mrsd", "framing": "match_stride", "channels": 8}]',
        ],
    ),
}


def domain_folders(corpus: Path, work: Path) -> dict[str, Path]:
    """Links to the corpus's files of one domain, one folder per split."""
    manifest = json.loads((corpus / "manifest.json").read_text())
    folders = {}
    for split in ("train", "test"):
        folder = work / DOMAIN / split
        folder.mkdir(parents=True, exist_ok=True)
        for entry in manifest["files"]:
            link = folder / Path(entry["path"]).name
            if entry["split"] == split and entry["domain"] == DOMAIN and not link.exists():
                link.symlink_to((corpus / entry["path"]).resolve())
        folders[split] = folder
    return folders


def data_overrides(train_folder: Path) -> list[str]:
    return [
        f'data.dataset={{"type": "audio_folder", "paths": ["{train_folder}"], "hop": 8192}}',
        "data.num_workers=0",  # data preparation counts against the process's CPU budget
        "data.sample_rate=44100",
        'tracking={"type": "none"}',
        "training.steps=100000000",
        "training.budget_clock=cpu",
        "training.validate_every=250",
        "training.checkpoint_every=250",
    ]


def summary(report: Report) -> dict[str, Any]:
    return {
        system: {"kbps": report.bitrate(system) / 1000, **report.means(system)}
        for system in report.systems()
    }


def scored(loaded: LoadedModel, tests: list[Path]) -> dict[str, Any]:
    """The held-out files as `.lyra` round trips at the run's operating point, and baselines."""
    codec = open_codec(loaded, log=lambda _: None)
    report = evaluate_files(loaded, tests, Chunking(), with_baselines=True, coding=Coding(codec))
    return summary(report)


def untrained(path: Path, overrides: list[str], run: Path) -> LoadedModel:
    """The recipe's model as training starts it (seeded from the spec), before any step, saved
    as a run of its own (its entropy model is fitted like a trained run's)."""
    plugins = load_plugins()
    spec = load_spec(path, plugins.registry, overrides)
    torch.manual_seed(spec.seed)
    model = spec.model.build(spec.context(plugins.registry))
    save_model(model, spec, plugins.registry, run, plugins.versions())
    return load_model(run, plugins, "cpu")


def run_seed(name: str, seed: int, folders: dict[str, Path], work: Path, budgets: list[float]):
    """One recipe and seed: its points after 0 (untrained) and each budget of CPU-minutes."""
    torch.set_num_threads(THREADS)
    spec, overrides = RECIPES[name]
    run, plugins = work / "runs" / name / f"seed-{seed}", load_plugins()
    tests = sorted(folders["test"].glob("*.wav"))
    base = load_spec(ROOT / spec, plugins.registry).seed
    settings = [*overrides, *data_overrides(folders["train"]), f"seed={base + seed}"]
    start = untrained(ROOT / spec, settings, work / "untrained" / name / f"seed-{seed}")
    points = [{"cpu_minutes": 0.0, "step": 0, "systems": scored(start, tests)}]
    for i, minutes in enumerate(budgets):
        budget = [f"training.max_minutes={minutes}"]
        if i == 0:
            train(plugins, str(ROOT / spec), settings + budget, device="cpu", run_dir=str(run))
        else:
            train(plugins, resume=str(run), overrides=budget, device="cpu")
        loaded = load_model(run / "checkpoints" / "last.pt", plugins, "cpu")  # after the budget
        systems = scored(loaded, tests)
        points.append({"cpu_minutes": minutes, "step": loaded.step, "systems": systems})
        print(f"{name} seed {seed} after {minutes} CPU-minutes: {systems[MODEL]}", flush=True)
    return points


def combined(seeds: list[list[dict]]) -> list[dict]:
    """Per budget: each seed's model figures and their mean, spread (std) and range."""
    points = []
    for per_seed in zip(*seeds, strict=True):
        model = [p["systems"][MODEL] for p in per_seed]
        point = {"cpu_minutes": per_seed[0]["cpu_minutes"], "seeds": len(per_seed)}
        point["step"] = float(np.mean([p["step"] for p in per_seed]))
        for key in model[0]:
            values = [m[key] for m in model]
            point[key] = {"mean": float(np.mean(values)), "std": float(np.std(values)),
                          "min": float(np.min(values)), "max": float(np.max(values))}  # fmt: skip
        for b in BASELINES:
            found = [p["systems"][b] for p in per_seed if b in p["systems"]]
            if found:
                point[b] = {
                    k: float(np.mean([f[k] for f in found])) for k in ("kbps", "mel_distance")
                }
        point["per_seed"] = [p["systems"] for p in per_seed]
        points.append(point)
    return points


def upgraded(points: list[dict]) -> list[dict]:
    """Saved points of one seed at a counted rate (before `.lyra` files) in today's layout."""
    if not points or "seeds" in points[0]:
        return points
    return [p | {"counted": True} for p in combined([points])]


def run_recipe(name: str, folders: dict[str, Path], work: Path, budgets: list[float],
               seeds: int, jobs: int) -> list[dict]:  # fmt: skip
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = [pool.submit(run_seed, name, s, folders, work, budgets) for s in range(seeds)]
        return combined([f.result() for f in futures])


def _cell(baseline: dict | None) -> str:
    if baseline is None:
        return "n/a"
    return f"{baseline['mel_distance']:.3f} ({baseline['kbps']:.1f} kbps)"


def _spread(value: dict) -> str:
    if value["min"] == value["max"]:
        return f"{value['mean']:.3f}"
    return f"{value['mean']:.3f} ± {value['std']:.3f} ({value['min']:.3f}–{value['max']:.3f})"


def markdown(results: dict[str, list]) -> str:
    lines = [
        "| recipe | CPU-min | seeds | steps | kbps (.lyra) | mel distance | STFT distance |"
        " SI-SDR (dB) | μ-law | resample | Opus | Vorbis |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, points in results.items():
        for p in points:
            base = [_cell(p.get(b)) for b in BASELINES]
            lines.append(
                f"| {name} | {p['cpu_minutes']:g} | {p['seeds']} | {p['step']:.0f} "
                f"| {p['kbps']['mean']:.2f}{' (counted)' if p.get('counted') else ''} "
                f"| {_spread(p['mel_distance'])} "
                f"| {p['stft_distance']['mean']:.3f} | {p['si_sdr']['mean']:.2f} | "
                + " | ".join(base)
                + " |"
            )
    lines.append(
        "\nkbps: the model's `.lyra` files, measured (bytes × 8 / seconds, headers included), at "
        "the recipe's operating point ((counted): an earlier run's count of 8-bit values, not "
        "files). mel distance: mean ± standard deviation over seeds (range). "
        "Baseline columns: held-out mel distance of each simple codec at (or, where it cannot go "
        "that low, nearest) each file's measured bitrate, with the bitrate it really spent; "
        "resample: as many samples per second as the model sends values; n/a: below 1 kHz. Lower "
        "is better."
    )
    return "\n".join(lines) + "\n"


def plot(results: dict[str, list], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, points in results.items():
        x = [p["cpu_minutes"] for p in points]
        mel = [p["mel_distance"] for p in points]
        counted = " counted" if points[-1].get("counted") else ""
        kbps = f"{points[-1]['kbps']['mean']:.1f} kbps{counted}"
        ax.errorbar(x, [m["mean"] for m in mel], yerr=[m["std"] for m in mel], fmt="o-",
                    capsize=3, label=f"{name} ({kbps})")  # fmt: skip
    first = results.get("small_data") or next(iter(results.values()))
    for baseline, style in (("mu_law", ":"), ("resample", "--"), ("opus", "-.")):
        if baseline in first[-1]:
            value, kbps = first[-1][baseline]["mel_distance"], first[-1][baseline]["kbps"]
            ax.axhline(value, linestyle=style, color="grey", label=f"{baseline} {kbps:.1f} kbps")
    ax.set_xlabel("CPU-minutes of training")
    ax.set_ylabel("held-out mel distance (DAC's definition, lower is better)")
    ax.set_title(f"Training on {DOMAIN} from the real-audio corpus (mean ± std over seeds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default=".bench-quality", help="corpus, runs (default: here)")
    parser.add_argument("--results", default="benchmarks/results/small_data")
    parser.add_argument("--budgets", type=float, nargs="+", default=[3.0, 10.0])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--seeds", type=int, default=3, help="runs per recipe (default: 3)")
    parser.add_argument("--jobs", type=int, default=1, help="seeds trained side by side")
    args = parser.parse_args(argv)
    work, out = Path(args.work).resolve(), Path(args.results)
    corpus = work / "corpus"
    if not (corpus / "manifest.json").is_file():
        build_corpus(corpus)
    folders = domain_folders(corpus, work)
    saved = out / "results.json"
    results = json.loads(saved.read_text()) if saved.is_file() else {}  # other recipes stay
    results = {name: upgraded(points) for name, points in results.items()}
    for name in args.recipes:
        results[name] = run_recipe(name, folders, work, args.budgets, args.seeds, args.jobs)
    results = {name: results[name] for name in RECIPES if name in results}
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(markdown(results))
    plot(results, out / "mel_distance.png")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
