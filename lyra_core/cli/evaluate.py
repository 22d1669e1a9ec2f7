"""`lyra evaluate`: score a model's reconstructions of real audio, beside simple codecs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lyra_core.cli.common import (
    add_bitstream_options,
    add_command,
    add_run_options,
    bitstream_codec,
    chunking,
    loaded_model,
    output_dir,
    output_file,
)
from lyra_core.errors import LyraError
from lyra_core.services.audio import AUDIO_EXTENSIONS


def audio_paths(paths: list[str]) -> list[Path]:
    """The audio files named, and those under the folders named (sorted), checked to exist."""
    found: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
            if not inside:
                raise LyraError(
                    f"{path}: no audio files in this folder ({', '.join(AUDIO_EXTENSIONS)})"
                )
            found += inside
        elif path.is_file():
            found.append(path)
        else:
            raise LyraError(f"{path}: no such file or folder")
    return found


def evaluate(args: argparse.Namespace) -> int:
    from lyra_core.inference.evaluate import Coding, evaluate_files, format_report, write_json
    from lyra_core.services.metrics import speech_available, visqol_available

    paths = audio_paths(args.paths)
    with_visqol = not args.no_visqol and visqol_available()
    if args.speech and not speech_available():
        raise LyraError("--speech: STOI and PESQ need the eval extra: pip install -e '.[eval]'")
    if (args.step is not None or args.kbps is not None) and not args.bitstream:
        raise LyraError("--step and --kbps choose how --bitstream codes: add it")
    loaded = loaded_model(args)
    codec = bitstream_codec(args, loaded) if args.bitstream or args.rd else None
    if args.rd:
        return rate_distortion(codec, paths, args, with_visqol)
    report = evaluate_files(
        loaded,
        paths,
        chunking(args),
        latent_bits=args.latent_bits,
        with_baselines=args.baselines,
        with_visqol=with_visqol,
        with_speech=args.speech,
        out_dir=Path(args.output) if args.output else None,
        coding=Coding(codec, args.step, args.kbps) if codec is not None else None,
    )
    print(format_report(report))
    if not with_visqol and not args.no_visqol:
        print("visqol: not installed (pip install -e '.[eval]' adds it)")
    if args.json:
        write_json(report, Path(args.json))
        print(f"wrote {args.json}")
    return 0


def rate_distortion(codec: Any, paths: list[Path], args: argparse.Namespace, visqol: bool) -> int:
    from lyra_core.inference import rate_distortion

    points = rate_distortion.sweep(codec, paths, chunking(args), visqol)
    print(rate_distortion.table(points))
    title = f"{codec.loaded.name}: rate–distortion on {len(paths)} file(s)"
    written = rate_distortion.write(points, Path(args.rd), title)
    print("wrote " + ", ".join(map(str, written)))
    return 0


def add_parsers(sub: Any) -> None:
    text = "score reconstructions of audio files (mel, STFT, SI-SDR, ViSQOL) beside baselines"
    about = (
        f"{text}. Files that cannot be read are named and skipped; files at another sample "
        "rate or channel count than the model's are converted as for training and listed."
    )
    p = add_command(sub, "evaluate", evaluate, help=text, description=about)
    add_run_options(p, audio_out=False)
    p.add_argument("paths", nargs="+", metavar="PATH", help="audio files or folders of them")
    text = "write each system's decoded audio here"
    p.add_argument("-o", "--output", metavar="DIR", type=output_dir, help=text)
    p.add_argument("--json", metavar="FILE", type=output_file, help="write the report as JSON")
    p.add_argument(
        "--baselines",
        action="store_true",
        help="also μ-law PCM, resampling, Opus and Vorbis at the model's data rate",
    )
    p.add_argument(
        "--latent-bits",
        type=int,
        metavar="B",
        help="a continuous latent is sent at B bits per value (uniform, per dimension and file)",
    )
    add_bitstream_options(p)
    p.add_argument(
        "--rd",
        metavar="DIR",
        type=output_dir,
        help="sweep the .lyra operating point (3 to 24 kbps) beside Opus (6 to 24 kbps): "
        "DIR/rd.md, rd.json, rd.png",
    )
    p.add_argument("--no-visqol", action="store_true", help="skip ViSQOL (about 1 s per second)")
    p.add_argument(
        "--speech", action="store_true", help="also STOI and wideband PESQ (for speech recordings)"
    )
