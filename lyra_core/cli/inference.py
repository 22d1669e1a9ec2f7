"""The commands that use a trained model: encode, decode, reconstruct, sample, interpolate,
export; and `lyra import`, which turns a reference codec's checkpoint into a run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from lyra_core.cli.common import (
    MAX_COUNT,
    add_bitstream_options,
    add_command,
    add_run_options,
    audio_output,
    bitstream_codec,
    bounded,
    chunking,
    count,
    loaded_model,
    output_dir,
    output_file,
    plugins,
    seconds,
    seed,
)
from lyra_core.errors import LyraError

steps = bounded(int, 2, MAX_COUNT)
temperature = bounded(float, 0.0, 100.0)


def encode_command(args: argparse.Namespace) -> int:
    from lyra_core.inference.files import encode_files

    if args.bitstream:
        return bitstream_command(args)
    if args.step is not None or args.kbps is not None or args.entropy_model is not None:
        raise LyraError("--step, --kbps and --entropy-model choose how --bitstream codes: add it")
    written = encode_files(loaded_model(args), args.inputs, Path(args.output), chunking(args))
    print(f"wrote {len(written)} latent file(s) (.npy + .json) to {args.output}")
    return 0


def bitstream_command(args: argparse.Namespace) -> int:
    from lyra_core.inference.files import encode_bitstreams

    codec = bitstream_codec(args, loaded_model(args))
    written = encode_bitstreams(codec, args.inputs, Path(args.output), args.step, args.kbps)
    for c in written:
        print(
            f"{c.path}: {c.size:,} bytes, {c.seconds:.2f} s, {c.kbps:.2f} kbps (step {c.step:.4g})"
        )
    total = sum(c.size for c in written) * 8 / max(sum(c.seconds for c in written), 1e-9)
    print(f"wrote {len(written)} .lyra file(s) to {args.output}: {total / 1000:.2f} kbps overall")
    return 0


def decode_command(args: argparse.Namespace) -> int:
    from lyra_core.inference.files import decode_files

    loaded = loaded_model(args)
    out = Path(args.output)
    written = decode_files(loaded, args.latents, out, chunking(args), audio_output(args))
    print(f"wrote {len(written)} audio file(s) to {args.output}")
    return 0


def reconstruct_command(args: argparse.Namespace) -> int:
    from lyra_core.inference.files import reconstruct_files
    from lyra_core.services.metrics import format_metrics

    loaded = loaded_model(args)
    out = Path(args.output)
    rows = reconstruct_files(loaded, args.inputs, out, chunking(args), audio_output(args))
    print(format_metrics(rows))
    print(f"wrote {len(rows)} reconstruction(s) to {args.output}")
    return 0


def sample_command(args: argparse.Namespace) -> int:
    from lyra_core.inference.files import sample_files

    loaded, out = loaded_model(args), Path(args.output)
    written = sample_files(
        loaded,
        args.n,
        args.seconds,
        out,
        chunking(args),
        audio_output(args),
        args.seed,
        args.temperature,
        args.prompt,
    )
    print(f"wrote {len(written)} sample(s) to {args.output}")
    return 0


def interpolate_command(args: argparse.Namespace) -> int:
    from lyra_core.inference.files import interpolate_files

    loaded, out = loaded_model(args), Path(args.output)
    written = interpolate_files(
        loaded,
        args.first,
        args.second,
        args.steps,
        out,
        chunking(args),
        audio_output(args),
        args.mode,
    )
    print(f"wrote {len(written)} file(s) to {args.output}")
    return 0


def export_command(args: argparse.Namespace) -> int:
    from lyra_core.inference import export

    if args.chunk_samples is not None and not (args.streaming and args.format == "onnx"):
        raise LyraError(
            "--chunk-samples: only for --streaming --format onnx (an ONNX step has a fixed "
            "length; the streaming TorchScript takes any multiple of the hop)"
        )
    loaded = loaded_model(args)
    if args.streaming:
        from lyra_core.inference import stream_export

        if args.format == "onnx":
            written = stream_export.export_streaming_onnx(loaded, args.output, args.chunk_samples)
        else:
            written = [stream_export.export_streaming_torchscript(loaded, args.output)]
    elif args.format == "onnx":
        written = export.export_onnx(loaded, args.output)
    else:
        written = [export.export_torchscript(loaded, args.output)]
    print("wrote " + ", ".join(map(str, written)))
    return 0


def import_command(args: argparse.Namespace) -> int:
    from lyra_core.inference.importing import import_checkpoint

    config = None
    if args.config:
        text = Path(args.config).read_text() if Path(args.config).is_file() else args.config
        try:
            config = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LyraError(f"--config: not a JSON object or JSON file ({exc})") from exc
        if not isinstance(config, dict):
            raise LyraError("--config: give a JSON object of the reference's arguments")
    run = import_checkpoint(plugins(args), args.reference, args.source, Path(args.output), config)
    print(f"wrote {run.path}: spec.json and {run.last}")
    print(f"use it: lyra reconstruct --run {run.path} FILE")
    print(f"fine-tune it: lyra run {run.spec_file} --init {run.path}")
    return 0


def _output_dir(p: argparse.ArgumentParser, text: str = "folder to write into") -> None:
    p.add_argument("-o", "--output", required=True, metavar="DIR", type=output_dir, help=text)


def _add_file_commands(sub: Any) -> None:
    """encode, decode, reconstruct: files in, files out."""
    text = "audio files -> latents (.npy + .json sidecar; .codes.npz too for a quantizer)"
    p = add_command(sub, "encode", encode_command, help=text)
    add_run_options(p, audio_out=False)
    p.add_argument("inputs", nargs="+", metavar="IN", help="audio files (any soundfile format)")
    _output_dir(p)
    add_bitstream_options(p)
    text = "latents (.npy), codes (.codes.npz) or .lyra files -> audio files"
    p = add_command(sub, "decode", decode_command, help=text)
    add_run_options(p)
    p.add_argument(
        "latents",
        nargs="+",
        metavar="FILES",
        help=".lyra, .npy or .codes.npz files (lyra encode)",
    )
    _output_dir(p)
    text = "encode + decode audio files, print distances"
    p = add_command(sub, "reconstruct", reconstruct_command, help=text)
    add_run_options(p)
    p.add_argument("inputs", nargs="+", metavar="IN")
    _output_dir(p)


def _add_latent_commands(sub: Any) -> None:
    """sample, interpolate: sounds made in the latent space."""
    text = "decode draws from the run's latent prior (else the bottleneck's frame-wise prior)"
    p = add_command(sub, "sample", sample_command, help=text)
    add_run_options(p)
    p.add_argument(
        "-n", type=count, default=1, help=f"how many samples, 1 to {MAX_COUNT:,} (default: 1)"
    )
    p.add_argument("--seconds", type=seconds, default=2.0, help="length of each (default: 2)")
    p.add_argument("--seed", type=seed, default=0, help="default: 0")
    p.add_argument(
        "--temperature", type=temperature, default=1.0, help="prior scale, 0 to 100 (default: 1)"
    )
    text = "an audio file the latent prior continues: each sample is it, then --seconds more"
    p.add_argument("--prompt", metavar="FILE", help=text)
    _output_dir(p)
    text = "a path between two files' latents"
    p = add_command(sub, "interpolate", interpolate_command, help=text)
    add_run_options(p)
    p.add_argument("first", metavar="A")
    p.add_argument("second", metavar="B")
    text = f"points on the path, ends included (2 to {MAX_COUNT:,})"
    p.add_argument("--steps", type=steps, default=5, help=text)
    text = "auto: slerp for variational (Gaussian) latents, else linear"
    p.add_argument("--mode", choices=("auto", "linear", "slerp"), default="auto", help=text)
    _output_dir(p)


def _add_model_commands(sub: Any) -> None:
    """export, import: a model out of Lyra, a reference codec into it."""
    text = "a self-contained TorchScript (or ONNX) model"
    p = add_command(sub, "export", export_command, help=text)
    add_run_options(p, audio_out=False)
    p.add_argument("--format", choices=("torchscript", "onnx"), default="torchscript")
    p.add_argument(
        "--streaming",
        action="store_true",
        help="a causal model's streaming form: TorchScript with encode/decode/forward/reset for "
        "nn~-style hosts, or (--format onnx) one step with its state as inputs and outputs",
    )
    p.add_argument(
        "--chunk-samples",
        type=bounded(int, 1, 2**24),
        help="samples per ONNX streaming step, a multiple of hop × frame multiple "
        "(default: 2048 rounded up to one)",
    )
    p.add_argument(
        "-o", "--output", required=True, metavar="FILE", type=output_file, help="e.g. model.ts"
    )
    text = "a reference codec's checkpoint as a Lyra run directory"
    p = add_command(sub, "import", import_command, help=text)
    p.add_argument(
        "--from", dest="reference", required=True, help="importer name (lyra components importer)"
    )
    p.add_argument(
        "source",
        help="the reference's checkpoint (file or directory), or 'default' for the installed "
        "package's model with random weights (snac: also '24khz', '32khz')",
    )
    _output_dir(p, "run directory to write")
    p.add_argument("--config", help="JSON object (or file) of the reference's constructor args")


def add_parsers(sub: Any) -> None:
    _add_file_commands(sub)
    _add_latent_commands(sub)
    _add_model_commands(sub)
