"""The `lyra` command line (also `python -m lyra_core`).

A user's mistake (a `LyraError`) is printed as its message and exits 2; `--traceback` shows the
traceback too. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
import typing
from collections.abc import Callable, Sequence
from pathlib import Path

import attrs

from lyra_core import __version__
from lyra_core.errors import LyraError
from lyra_core.loader import load_spec, resolved
from lyra_core.perf import tune_allocator
from lyra_core.plugins import Plugins, load_plugins
from lyra_core.schema import experiment_schema
from lyra_core.spec import field_doc, make_converter

EXIT_USER_ERROR = 2
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str) -> Callable[[Callable[[argparse.Namespace], int]], Callable[..., int]]:
    def register(fn: Callable[[argparse.Namespace], int]) -> Callable[..., int]:
        COMMANDS[name] = fn
        return fn

    return register


def _plugins(args: argparse.Namespace) -> Plugins:
    return load_plugins(builtins_only=getattr(args, "builtins_only", False))


@command("components")
def _components(args: argparse.Namespace) -> int:
    plugins = _plugins(args)
    reg = plugins.registry
    conv = make_converter(reg)
    kinds = [reg.kind(args.kind).name] if args.kind else list(reg.kinds)
    for kind in kinds:
        print(f"{kind}: {reg.kind(kind).doc}")
        comps = list(reg.components(kind))
        if not comps:
            print("  (none registered)")
        for comp in comps:
            dist = f"{comp.origin.distribution} {comp.origin.version}".strip()
            print(f"  {comp.name:<22} {comp.summary}  [{comp.origin.plugin}, {dist}]")
            if args.kind:
                hints = typing.get_type_hints(comp.spec)
                for a in attrs.fields(comp.spec):
                    if a.default is attrs.NOTHING:
                        default = "(required)"
                    else:
                        value = (
                            a.default.factory()
                            if isinstance(a.default, attrs.Factory)
                            else a.default
                        )
                        default = "= " + json.dumps(conv.unstructure(value, hints[a.name]))
                    doc = f"  # {field_doc(a)}" if field_doc(a) else ""
                    print(f"      {a.name} {default}{doc}")
    for err in plugins.failures:
        print(f"warning: {err}", file=sys.stderr)
    return 0


@command("plugins")
def _plugins_cmd(args: argparse.Namespace) -> int:
    plugins = _plugins(args)
    for info in plugins.infos:
        dist = f"{info.origin.distribution} {info.origin.version}".strip()
        print(f"{info.name:<16} {info.status:<9} {dist:<24} {info.entry_point}")
        if info.error is not None:
            print(f"  {info.error}")
    return 0


@command("validate")
def _validate(args: argparse.Namespace) -> int:
    reg = _plugins(args).registry
    failed = 0
    for path in args.specs:
        try:
            spec = load_spec(path, reg, args.set)
        except LyraError as exc:
            print(exc, file=sys.stderr)
            failed += 1
            continue
        if args.print_resolved:
            print(json.dumps(resolved(spec, reg), indent=2))
        else:
            print(f"{path}: ok")
    return EXIT_USER_ERROR if failed else 0


@command("schema")
def _schema(args: argparse.Namespace) -> int:
    schema = experiment_schema(_plugins(args).registry)
    text = json.dumps(schema, indent=2) + "\n"
    if args.output is None:
        sys.stdout.write(text)
        return 0
    out = Path(args.output)
    target = out / "experiment.schema.json" if out.suffix != ".json" else out
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target}")
    return 0


@command("summary")
def _summary(args: argparse.Namespace) -> int:
    from lyra_core.summary import summarize_spec

    reg = _plugins(args).registry
    spec = load_spec(args.spec, reg, args.set)
    print(summarize_spec(spec, reg, args.seconds, args.depth, title=args.spec).format())
    return 0


@command("run")
def _run(args: argparse.Namespace) -> int:
    from lyra_core.training import train

    reason = train(
        _plugins(args), args.spec, args.set, args.resume, args.device, args.run_dir, args.init
    )
    return 0 if reason == "completed" else 1


@command("data")
def _data(args: argparse.Namespace) -> int:
    from lyra_core import data_commands

    reg = _plugins(args).registry
    if args.data_command == "synth":
        written = data_commands.synth(
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
    sys.stdout.write(data_commands.run_dataset_command(args.data_command, args.spec, reg, args.set))
    return 0


def _loaded_model(args: argparse.Namespace):  # -> lyra_core.inference.LoadedModel
    from lyra_core.inference import load_model

    return load_model(args.run, _plugins(args), args.device, args.tracking_uri)


def _chunking(args: argparse.Namespace):  # -> lyra_core.inference.Chunking
    from lyra_core.inference import Chunking

    return Chunking(args.chunk_seconds, args.context_seconds)


def _audio_output(args: argparse.Namespace):  # -> lyra_core.inference.AudioOutput
    from lyra_core.inference import AudioOutput

    return AudioOutput(f".{args.format}", args.bits, not args.no_dither, args.rate)


@command("encode")
def _encode(args: argparse.Namespace) -> int:
    from lyra_core.inference import encode_files

    written = encode_files(_loaded_model(args), args.inputs, Path(args.output), _chunking(args))
    print(f"wrote {len(written)} latent file(s) (.npy + .json) to {args.output}")
    return 0


@command("decode")
def _decode(args: argparse.Namespace) -> int:
    from lyra_core.inference import decode_files

    loaded = _loaded_model(args)
    out = Path(args.output)
    written = decode_files(loaded, args.latents, out, _chunking(args), _audio_output(args))
    print(f"wrote {len(written)} audio file(s) to {args.output}")
    return 0


@command("reconstruct")
def _reconstruct(args: argparse.Namespace) -> int:
    from lyra_core.inference import format_metrics, reconstruct_files

    loaded = _loaded_model(args)
    out = Path(args.output)
    rows = reconstruct_files(loaded, args.inputs, out, _chunking(args), _audio_output(args))
    print(format_metrics(rows))
    print(f"wrote {len(rows)} reconstruction(s) to {args.output}")
    return 0


@command("sample")
def _sample(args: argparse.Namespace) -> int:
    from lyra_core.inference import sample_files

    loaded, out = _loaded_model(args), Path(args.output)
    written = sample_files(
        loaded,
        args.n,
        args.seconds,
        out,
        _chunking(args),
        _audio_output(args),
        args.seed,
        args.temperature,
    )
    print(f"wrote {len(written)} sample(s) to {args.output}")
    return 0


@command("interpolate")
def _interpolate(args: argparse.Namespace) -> int:
    from lyra_core.inference import interpolate_files

    loaded, out = _loaded_model(args), Path(args.output)
    written = interpolate_files(
        loaded,
        args.first,
        args.second,
        args.steps,
        out,
        _chunking(args),
        _audio_output(args),
        args.mode,
    )
    print(f"wrote {len(written)} file(s) to {args.output}")
    return 0


@command("export")
def _export(args: argparse.Namespace) -> int:
    from lyra_core import export

    loaded = _loaded_model(args)
    if args.format == "onnx":
        written = export.export_onnx(loaded, args.output)
    else:
        written = [export.export_torchscript(loaded, args.output)]
    print("wrote " + ", ".join(map(str, written)))
    return 0


@command("import")
def _import(args: argparse.Namespace) -> int:
    from lyra_core.importing import import_checkpoint

    config = None
    if args.config:
        text = Path(args.config).read_text() if Path(args.config).is_file() else args.config
        try:
            config = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LyraError(f"--config: not a JSON object or JSON file ({exc})") from exc
        if not isinstance(config, dict):
            raise LyraError("--config: give a JSON object of the reference's arguments")
    run = import_checkpoint(_plugins(args), args.reference, args.source, Path(args.output), config)
    print(f"wrote {run.path}: spec.json and {run.last}")
    print(f"use it: lyra reconstruct --run {run.path} FILE")
    print(f"fine-tune it: lyra run {run.spec_file} --init {run.path}")
    return 0


@command("explore")
def _explore(args: argparse.Namespace) -> int:
    try:
        from lyra_core import explore_ui
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != "gradio":
            raise
        raise LyraError(
            "lyra explore needs Gradio: install with pip install -e '.[explore]'"
        ) from None
    from lyra_core.explore import Explorer

    explorer = Explorer.open(
        _loaded_model(args),
        args.components,
        args.pca_examples,
        _chunking(args),
        args.max_seconds,
        Path(args.examples) if args.examples else None,
        args.refit,
        lambda line: print(line, flush=True),
    )
    print(explorer.describe())
    try:
        explore_ui.serve(explorer, args.host, args.port)
    finally:
        explorer.close()
    return 0


@command("bench")
def _bench(args: argparse.Namespace) -> int:
    from lyra_core import bench

    return bench.run(args)


def _inference_parser(sub, name: str, text: str, audio_out: bool = True) -> argparse.ArgumentParser:
    """A subcommand that loads a trained model (--run), with the options they all share."""
    p = sub.add_parser(name, help=text)
    p.add_argument("--run", required=True, help="run directory, checkpoint file or MLflow run id")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda")
    p.add_argument(
        "--tracking-uri", help="MLflow store for a run id (default: $MLFLOW_TRACKING_URI)"
    )
    p.add_argument("--chunk-seconds", type=float, default=10.0, help="audio per chunk (default 10)")
    p.add_argument(
        "--context-seconds",
        type=float,
        default=0.5,
        help="audio each chunk sees on both sides, crossfaded at seams (default 0.5)",
    )
    if audio_out:
        p.add_argument("--format", choices=("wav", "flac"), default="wav", help="default: wav")
        p.add_argument("--bits", choices=("16", "24", "float"), default="16", help="default: 16")
        p.add_argument("--no-dither", action="store_true", help="no TPDF dither when quantising")
        p.add_argument("--rate", type=int, help="resample the output to this rate (Hz)")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lyra", description="Train and use neural audio codecs.")
    parser.add_argument("--version", action="version", version=f"lyra {__version__}")
    parser.add_argument("--traceback", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("components", help="list registered components by kind")
    p.add_argument("kind", nargs="?", help="one kind, with each component's fields and defaults")

    sub.add_parser("plugins", help="loaded plugins, their distributions, and any that failed")

    p = sub.add_parser("validate", help="check spec files")
    p.add_argument("specs", nargs="+", metavar="SPEC")
    p.add_argument("--print-resolved", action="store_true", help="print the fully defaulted spec")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec value, e.g. training.steps=10",
    )

    p = sub.add_parser("run", help="train a spec (or resume a run) with MLflow tracking")
    p.add_argument("spec", nargs="?", metavar="SPEC", help="experiment spec (JSON)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec value, e.g. training.steps=10",
    )
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    p.add_argument(
        "--init",
        metavar="RUN",
        help="start from the model weights of a run directory or checkpoint (fine-tuning, e.g. "
        "the output of `lyra import`)",
    )
    p.add_argument(
        "--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, mps"
    )
    p.add_argument("--run-dir", help="where the run writes (default: runs/NAME-TIMESTAMP)")

    p = sub.add_parser("schema", help="write the JSON Schema generated from the live registry")
    p.add_argument("-o", "--output", help="directory or .json file (default: stdout)")
    p.add_argument(
        "--builtins-only",
        action="store_true",
        help="only Lyra's own components (what schemas/ in the repository holds)",
    )

    p = sub.add_parser("summary", help="each model stage's output shape and parameter count")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--seconds", type=float, help="input length (default: the segment length)")
    p.add_argument("--depth", type=int, default=2, help="stage nesting to show (default: 2)")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a spec value"
    )

    p = sub.add_parser("data", help="prepare, inspect or synthesise training audio")
    data = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    p = data.add_parser("synth", help="write synthetic audio (the demo's data) as WAV files")
    p.add_argument("directory", metavar="DIR")
    p.add_argument("--minutes", type=float, default=1.0, help="how much audio (default: 1)")
    p.add_argument("--spec", help="take format, seed and synthetic settings from this spec")
    p.add_argument("--sample-rate", type=int, default=44100, help="Hz (default: 44100)")
    p.add_argument("--channels", type=int, default=2, help="default: 2")
    p.add_argument("--segment-length", type=int, default=32768, help="samples per example")
    p.add_argument("--seed", type=int, default=0, help="default: 0")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a spec value"
    )
    for action, text in (
        ("stats", "files found, hours, segments kept and every skipped file with its reason"),
        ("prepare", "decode and resample every file into the cache before training"),
    ):
        p = data.add_parser(action, help=text)
        p.add_argument("spec", metavar="SPEC")
        p.add_argument(
            "--set", action="append", default=[], metavar="KEY=VALUE", help="override a spec value"
        )

    text = "audio files -> latents (.npy + .json sidecar; .codes.npz too for a quantizer)"
    p = _inference_parser(sub, "encode", text, False)
    p.add_argument("inputs", nargs="+", metavar="IN", help="audio files (any soundfile format)")
    p.add_argument("-o", "--output", required=True, metavar="DIR")
    p = _inference_parser(sub, "decode", "latents (.npy) or codes (.codes.npz) -> audio files")
    p.add_argument(
        "latents", nargs="+", metavar="LATENTS", help=".npy or .codes.npz files (lyra encode)"
    )
    p.add_argument("-o", "--output", required=True, metavar="DIR")
    p = _inference_parser(sub, "reconstruct", "encode + decode audio files, print distances")
    p.add_argument("inputs", nargs="+", metavar="IN")
    p.add_argument("-o", "--output", required=True, metavar="DIR")
    p = _inference_parser(sub, "sample", "decode draws from the bottleneck's prior")
    p.add_argument("-n", type=int, default=1, help="how many samples (default: 1)")
    p.add_argument("--seconds", type=float, default=2.0, help="length of each (default: 2)")
    p.add_argument("--seed", type=int, default=0, help="default: 0")
    p.add_argument("--temperature", type=float, default=1.0, help="prior scale (default: 1)")
    p.add_argument("-o", "--output", required=True, metavar="DIR")
    p = _inference_parser(sub, "interpolate", "a path between two files' latents")
    p.add_argument("first", metavar="A")
    p.add_argument("second", metavar="B")
    p.add_argument("--steps", type=int, default=5, help="points on the path, ends included")
    p.add_argument(
        "--mode",
        choices=("auto", "linear", "slerp"),
        default="auto",
        help="auto: slerp for variational (Gaussian) latents, else linear",
    )
    p.add_argument("-o", "--output", required=True, metavar="DIR")
    p = _inference_parser(sub, "export", "a self-contained TorchScript (or ONNX) model", False)
    p.add_argument("--format", choices=("torchscript", "onnx"), default="torchscript")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="e.g. model.ts")
    p = sub.add_parser("import", help="a reference codec's checkpoint as a Lyra run directory")
    p.add_argument(
        "--from", dest="reference", required=True, help="importer name (lyra components importer)"
    )
    p.add_argument(
        "source",
        help="the reference's checkpoint (file or directory), or 'default' for the installed "
        "package's model with random weights (snac: also '24khz', '32khz')",
    )
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="run directory to write")
    p.add_argument("--config", help="JSON object (or file) of the reference's constructor args")
    p = _inference_parser(sub, "explore", "a local page to listen to and steer a model", False)
    p.add_argument("--port", type=int, default=7860, help="default: 7860")
    p.add_argument("--host", default="127.0.0.1", help="interface to serve on (default: local)")
    p.add_argument("--examples", metavar="DIR", help="a folder of audio files to pick from")
    p.add_argument("--components", type=int, default=8, help="PCA sliders (default: 8)")
    p.add_argument(
        "--pca-examples", type=int, default=64, help="validation examples to fit the PCA on"
    )
    p.add_argument("--refit", action="store_true", help="refit the PCA even if it is cached")
    p.add_argument(
        "--max-seconds", type=float, default=60.0, help="longest upload accepted (default: 60)"
    )
    from lyra_core.bench import add_parser as add_bench_parser

    add_bench_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    tune_allocator()
    try:
        return COMMANDS[args.command](args)
    except LyraError as exc:
        if args.traceback:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
