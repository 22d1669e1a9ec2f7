"""`lyra data synth | stats | prepare`: the data section of a spec, reached through the registry.

A dataset component takes part by having methods: `prepare(ctx) -> str` and `stats(ctx) -> str`
(a report to print), and, for `synth`, the `synthetic` dataset's `export(ctx, directory,
seconds) -> list[Path]`. `prepare --shards DIR` hands the spec's dataset to the `shards`
dataset's `write(source, ctx, directory, shard_mb=, examples_per_shard=, about=) -> str`.
Nothing here imports a plugin.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lyra_core.cli import corpus
from lyra_core.cli.common import add_command, add_set, bounded, output_dir, plugins
from lyra_core.context import BuildContext
from lyra_core.errors import LyraError
from lyra_core.experiment import ExperimentSpec
from lyra_core.loader import load_spec, resolved
from lyra_core.registry import Registry
from lyra_core.services.rundir import spec_hash

minutes = bounded(float, 0.0, 1440.0, low_open=True)
megabytes = bounded(float, 0.0, 1e6, low_open=True)
examples = bounded(int, 1, 2**40)


def _dataset_method(spec: ExperimentSpec, registry: Registry, method: str, command: str) -> Any:
    dataset = spec.data.dataset
    fn = getattr(dataset, method, None)
    if not callable(fn):
        name = registry.name_of(dataset)[1]
        raise LyraError(f"dataset '{name}' does not support `lyra data {command}`")
    return fn


def run_dataset_command(
    command: str, path: str, registry: Registry, overrides: Iterable[str] = ()
) -> str:
    """`prepare` or `stats` for the dataset of the spec at `path`: the report to print."""
    spec = load_spec(path, registry, overrides)
    report = _dataset_method(spec, registry, command, command)(spec.context(registry))
    return str(report)


def write_shards(
    path: str,
    directory: str,
    registry: Registry,
    overrides: Iterable[str] = (),
    shard_mb: float | None = None,
    examples_per_shard: int | None = None,
) -> str:
    """`prepare --shards`: prepare the spec's dataset, then write its splits as tar shards and an
    index (with the spec hash of the resolved data section) into `directory`; the report."""
    spec = load_spec(path, registry, overrides)
    ctx = spec.context(registry)
    prepare = getattr(spec.data.dataset, "prepare", None)
    report = str(prepare(ctx)) if callable(prepare) else ""
    data = resolved(spec, registry)["data"]
    about = {"data_spec_hash": spec_hash(data), "dataset": data["dataset"]}
    writer = registry.get("dataset", "shards").spec.write
    sizes = {"shard_mb": shard_mb, "examples_per_shard": examples_per_shard}
    return report + writer(spec.data.dataset, ctx, Path(directory), **sizes, about=about)


def synth(
    directory: str,
    minutes: float,
    registry: Registry,
    spec_path: str | None = None,
    overrides: Iterable[str] = (),
    sample_rate: int = 44100,
    channels: int = 2,
    segment_length: int = 32768,
    seed: int = 0,
) -> list[Path]:
    """Write `minutes` of the `synthetic` dataset's audio as WAV files into `directory`.

    With `spec_path`, the format, seed and (if it is `synthetic`) the dataset's settings come
    from that spec; otherwise from the arguments and the dataset's defaults.
    """
    if minutes <= 0:
        raise LyraError(f"--minutes must be positive, got {minutes}")
    if spec_path is not None:
        spec = load_spec(spec_path, registry, overrides)
        ctx = spec.context(registry)
        dataset = spec.data.dataset
        if registry.name_of(dataset)[1] != "synthetic":
            dataset = registry.get("dataset", "synthetic").spec()
    else:
        for name, value in (("sample-rate", sample_rate), ("channels", channels)):
            if value <= 0:
                raise LyraError(f"--{name} must be positive, got {value}")
        if segment_length <= 0:
            raise LyraError(f"--segment-length must be positive, got {segment_length}")
        ctx = BuildContext(
            registry=registry,
            sample_rate=sample_rate,
            channels=channels,
            segment_length=segment_length,
            seed=seed,
        )
        dataset = registry.get("dataset", "synthetic").spec()
    target = Path(directory)
    if target.exists() and not target.is_dir():
        raise LyraError(f"{target}: exists and is not a directory")
    return dataset.export(ctx, target, minutes * 60.0)


def data_command(args: argparse.Namespace) -> int:
    reg = plugins(args).registry
    if args.data_command == "synth":
        written = synth(
            args.directory,
            args.minutes,
            reg,
            spec_path=args.spec,
            overrides=args.set,
            sample_rate=args.sample_rate,
            channels=args.channels,
            segment_length=args.segment_length,
            seed=args.seed,
        )
        print(f"wrote {len(written)} WAV file(s) to {args.directory}")
        return 0
    if args.data_command == "prepare" and args.shards:
        sizes = (args.shard_size, args.examples_per_shard)
        sys.stdout.write(write_shards(args.spec, args.shards, reg, args.set, *sizes))
        return 0
    if getattr(args, "shard_size", None) or getattr(args, "examples_per_shard", None):
        raise LyraError(
            "lyra data prepare: --shard-size and --examples-per-shard need --shards DIR"
        )
    sys.stdout.write(run_dataset_command(args.data_command, args.spec, reg, args.set))
    return 0


def add_parsers(sub: Any) -> None:
    text = "prepare, inspect or synthesise training audio"
    p = add_command(sub, "data", data_command, help=text)
    actions = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    p = actions.add_parser("synth", help="write synthetic audio (the demo's data) as WAV files")
    p.add_argument("directory", metavar="DIR", type=output_dir)
    p.add_argument(
        "--minutes", type=minutes, default=1.0, help="how much audio, up to a day (default: 1)"
    )
    p.add_argument("--spec", help="take format, seed and synthetic settings from this spec")
    p.add_argument("--sample-rate", type=int, default=44100, help="Hz (default: 44100)")
    p.add_argument("--channels", type=int, default=2, help="default: 2")
    p.add_argument("--segment-length", type=int, default=32768, help="samples per example")
    p.add_argument("--seed", type=int, default=0, help="default: 0")
    add_set(p)
    for action, text in (
        ("stats", "files found, hours, segments kept and every skipped file with its reason"),
        ("prepare", "decode and resample every file into the cache before training"),
    ):
        p = actions.add_parser(action, help=text)
        p.add_argument("spec", metavar="SPEC")
        add_set(p)
        if action == "prepare":
            _add_shard_options(p)
    corpus.add_parser(actions)


def _add_shard_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--shards",
        metavar="DIR",
        type=output_dir,
        help="also write the prepared train and validation examples as tar shards (DIR/"
        "train-000000.tar, ..., DIR/index.json) that the `shards` dataset streams",
    )
    size = p.add_mutually_exclusive_group()
    size.add_argument(
        "--shard-size", metavar="MB", type=megabytes, help="shard size (default: 256 MB)"
    )
    size.add_argument(
        "--examples-per-shard", metavar="N", type=examples, help="examples per shard instead"
    )
