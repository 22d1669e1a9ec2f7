"""`lyra report`: a static listening page of a run's `.lyra` files beside the originals and Opus."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lyra_core.cli.common import (
    add_bitstream_options,
    add_command,
    add_run_options,
    bitstream_codec,
    loaded_model,
    output_dir,
)
from lyra_core.cli.evaluate import audio_paths


def report_command(args: argparse.Namespace) -> int:
    from lyra_core.inference.report import rd_plot, write_page
    from lyra_core.services.atomic import size_text
    from lyra_core.services.metrics import visqol_available

    paths = audio_paths(args.paths)
    with_visqol = not args.no_visqol and visqol_available()
    loaded = loaded_model(args)
    rd = rd_plot(loaded.run_dir, Path(args.rd) if args.rd else None)
    codec = bitstream_codec(args, loaded)
    page = write_page(
        codec, paths, Path(args.output), args.step, args.kbps, with_visqol=with_visqol, rd=rd
    )
    print(f"wrote {page.index}: {len(paths)} file(s) to listen to, {size_text(page.size)} in all")
    if not with_visqol and not args.no_visqol:
        print("visqol: not installed (pip install -e '.[eval]' adds it)")
    return 0


def add_parsers(sub: Any) -> None:
    text = "a static listening page: each file, the run's .lyra round trip and Opus at its rate"
    about = (
        f"{text}, each as an audio player with its spectrogram and metrics, and the run's "
        "rate–distortion plot where one exists. DIR/index.html opens in a browser as it is."
    )
    # conflict_handler: --bitstream, which add_bitstream_options adds, is always on here
    p = add_command(
        sub, "report", report_command, help=text, description=about, conflict_handler="resolve"
    )
    add_run_options(p, audio_out=False)
    p.add_argument("paths", nargs="+", metavar="FILE", help="audio files or folders of them")
    p.add_argument(
        "-o", "--output", required=True, metavar="DIR", type=output_dir, help="the page's folder"
    )
    add_bitstream_options(p)
    p.add_argument("--bitstream", action="store_true", default=True, help=argparse.SUPPRESS)
    p.add_argument(
        "--rd",
        metavar="DIR",
        help="where `lyra evaluate --rd DIR` wrote rd.png (default: RUN/rd, if it holds one)",
    )
    p.add_argument("--no-visqol", action="store_true", help="skip ViSQOL (about 1 s per second)")
