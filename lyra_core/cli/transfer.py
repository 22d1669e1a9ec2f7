"""`lyra transfer`: re-synthesise audio files through a conditioned model with another timbre."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lyra_core.cli.common import (
    add_command,
    add_run_options,
    audio_output,
    bounded,
    chunking,
    loaded_model,
    output_dir,
)

semitones = bounded(float, -48.0, 48.0)
decibels = bounded(float, -120.0, 120.0)


def transfer_command(args: argparse.Namespace) -> int:
    from lyra_core.inference.transfer import transfer_files

    done = transfer_files(
        loaded_model(args),
        args.inputs,
        Path(args.output),
        chunking(args),
        audio_output(args),
        args.pitch_shift,
        args.loudness_offset,
        args.timbre,
    )
    for reason in done.skipped.values():
        print(f"skipped {reason}", file=sys.stderr)
    print(f"wrote {len(done.written)} file(s) to {args.output}")
    return 0


def add_parsers(sub: Any) -> None:
    text = "timbre transfer: re-synthesise audio files through a conditioned model (ddsp)"
    about = (
        f"{text}. Each file's f0 and loudness come from the file; the timbre is the mean z of "
        "the run's validation examples, or of --timbre FILE. Files that cannot be read are "
        "named and skipped."
    )
    p = add_command(sub, "transfer", transfer_command, help=text, description=about)
    add_run_options(p)
    p.add_argument("inputs", nargs="+", metavar="IN", help="audio files (any soundfile format)")
    p.add_argument(
        "-o", "--output", required=True, metavar="DIR", type=output_dir, help="folder to write into"
    )
    p.add_argument(
        "--pitch-shift",
        type=semitones,
        default=0.0,
        metavar="SEMITONES",
        help="multiply f0 by 2^(SEMITONES/12), -48 to 48 (default: 0)",
    )
    p.add_argument(
        "--loudness-offset",
        type=decibels,
        default=0.0,
        metavar="DB",
        help="add DB to the loudness, -120 to 120 (default: 0)",
    )
    p.add_argument(
        "--timbre",
        metavar="FILE",
        help="take the timbre from this audio file's mean z (default: the run's validation "
        "examples' mean z)",
    )
