"""Quality on little real audio: held-out mel distance after fixed CPU-minute budgets.

`make bench-quality` (not part of `make test`) builds the real-audio corpus (`lyra data corpus`),
takes its music (about 11 minutes to train on, 22 held-out files), and trains each recipe for
`--budgets` CPU-minutes (the process's CPU time, all threads, `training.budget_clock: cpu`), each
budget continuing the run of the one before. After each budget it scores the held-out files with
`lyra evaluate`'s code, beside μ-law PCM, resampling and Opus/Vorbis at the recipe's bitrate;
the recipe's untrained model is scored too (0 CPU-minutes), the floor any training must beat.
Continuous latents are sent at 8 bits per value (uniform), codes exactly. Run it on an idle
machine with OMP_WAIT_POLICY=PASSIVE (as `make bench-quality` does), so that waiting OpenMP
threads do not spin and count as CPU time.

Writes RESULTS/results.json, RESULTS/results.md (the table docs/benchmarks.md includes) and
RESULTS/mel_distance.png (held-out mel distance against CPU-minutes). `--recipes` reruns some
recipes and keeps the others' saved results; each recipe trains in WORK/runs/NAME (remove it
to rerun that recipe).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from lyra_core.corpus.build import build_corpus
from lyra_core.inference.evaluate import MODEL, Report, evaluate_files
from lyra_core.loader import load_spec
from lyra_core.plugins import Plugins, load_plugins
from lyra_core.runs.chunking import Chunking
from lyra_core.runs.model import LoadedModel, build_trained, load_model
from lyra_core.training import train

ROOT = Path(__file__).resolve().parents[1]
DOMAIN = "music"
LATENT_BITS = 8
THREADS = 2

# Each shipped recipe, at widths that train on a 2-core CPU; the data section is the benchmark's.
RECIPES: dict[str, tuple[str, list[str]]] = {
    "small_data": ("experiments/small_data.json", []),
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


def untrained(path: Path, overrides: list[str], plugins: Plugins) -> LoadedModel:
    """The recipe's model as training starts it (seeded from the spec), before any step."""
    spec = load_spec(path, plugins.registry, overrides)
    torch.manual_seed(spec.seed)
    fresh = spec.model.build(spec.context(plugins.registry)).state_dict()
    where = Path(f"{path} (untrained)")
    model = build_trained(where, spec, fresh, plugins.registry, torch.device("cpu"))
    return LoadedModel(model, spec, "untrained", where, 0, torch.device("cpu"), plugins.registry)


def run_recipe(name: str, folders: dict[str, Path], work: Path, budgets: list[float]) -> list:
    spec, overrides = RECIPES[name]
    run, plugins = work / "runs" / name, load_plugins()
    tests = sorted(folders["test"].glob("*.wav"))
    settings = overrides + data_overrides(folders["train"])
    start = untrained(ROOT / spec, settings, plugins)
    report = evaluate_files(start, tests, Chunking(), LATENT_BITS, with_baselines=True)
    points = [{"cpu_minutes": 0.0, "step": 0, "systems": summary(report)}]
    for i, minutes in enumerate(budgets):
        budget = [f"training.max_minutes={minutes}"]
        if i == 0:
            train(plugins, str(ROOT / spec), settings + budget, device="cpu", run_dir=str(run))
        else:
            train(plugins, resume=str(run), overrides=budget, device="cpu")
        loaded = load_model(run / "checkpoints" / "last.pt", plugins, "cpu")  # after the budget
        report = evaluate_files(loaded, tests, Chunking(), LATENT_BITS, with_baselines=True)
        step = loaded.step
        points.append({"cpu_minutes": minutes, "step": step, "systems": summary(report)})
        print(f"{name} after {minutes} CPU-minutes (step {step}): {points[-1]['systems'][MODEL]}")
    return points


def _cell(baseline: dict | None) -> str:
    if baseline is None:
        return "n/a"
    return f"{baseline['mel_distance']:.3f} ({baseline['kbps']:.1f} kbps)"


def markdown(results: dict[str, list]) -> str:
    lines = [
        "| recipe | CPU-min | steps | kbps | mel distance | STFT distance | SI-SDR (dB) |"
        " μ-law | resample | Opus | Vorbis |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, points in results.items():
        for p in points:
            s = p["systems"]
            m = s[MODEL]
            base = [_cell(s.get(b)) for b in ("mu_law", "resample", "opus", "vorbis")]
            lines.append(
                f"| {name} | {p['cpu_minutes']:g} | {p['step']} | {m['kbps']:.1f} "
                f"| {m['mel_distance']:.3f} | {m['stft_distance']:.3f} | {m['si_sdr']:.2f} | "
                + " | ".join(base)
                + " |"
            )
    lines.append(
        "\nBaseline columns: held-out mel distance of each simple codec at (or, where it cannot "
        "go that low, nearest) the recipe's bitrate, with the bitrate it really spent; resample: "
        "as many samples per second as the model sends values; n/a: below 1 kHz. Lower is better."
    )
    return "\n".join(lines) + "\n"


def plot(results: dict[str, list], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, points in results.items():
        x = [p["cpu_minutes"] for p in points]
        ax.plot(x, [p["systems"][MODEL]["mel_distance"] for p in points], "o-", label=name)
    first = results.get("small_data") or next(iter(results.values()))
    for baseline, style in (("mu_law", ":"), ("resample", "--"), ("opus", "-.")):
        if baseline in first[-1]["systems"]:
            value = first[-1]["systems"][baseline]["mel_distance"]
            kbps = first[-1]["systems"][baseline]["kbps"]
            ax.axhline(value, linestyle=style, color="grey", label=f"{baseline} {kbps:.1f} kbps")
    ax.set_xlabel("CPU-minutes of training")
    ax.set_ylabel("held-out mel distance (DAC's definition, lower is better)")
    ax.set_title(f"Training on {DOMAIN} from the real-audio corpus")
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
    args = parser.parse_args(argv)
    torch.set_num_threads(THREADS)
    work, out = Path(args.work).resolve(), Path(args.results)
    corpus = work / "corpus"
    if not (corpus / "manifest.json").is_file():
        build_corpus(corpus)
    folders = domain_folders(corpus, work)
    saved = out / "results.json"
    results = json.loads(saved.read_text()) if saved.is_file() else {}  # other recipes stay
    for name in args.recipes:
        results[name] = run_recipe(name, folders, work, args.budgets)
    results = {name: results[name] for name in RECIPES if name in results}
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(markdown(results))
    plot(results, out / "mel_distance.png")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
