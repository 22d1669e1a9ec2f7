"""`lyra data corpus DIR`: a real-audio corpus built from Debian's packaged sound sources.

The command line of `lyra_core.corpus` (its sources, split and manifest are described there).
"""

from __future__ import annotations

import argparse
from typing import Any

from lyra_core.cli.common import output_dir
from lyra_core.corpus.build import build_corpus
from lyra_core.corpus.sources import SOURCES


def corpus_command(args: argparse.Namespace) -> int:
    manifest = build_corpus(
        args.directory,
        packages=args.packages,
        minutes_per_source=args.minutes_per_source,
        sample_rate=args.sample_rate,
        seed=args.seed,
        mono=not args.keep_channels,
    )
    n, minutes = len(manifest["files"]), sum(f["duration_s"] for f in manifest["files"]) / 60
    by_split = ", ".join(f"{s} {sum(d.values()):.1f}" for s, d in manifest["minutes"].items())
    print(
        f"wrote {n} WAV files, {minutes:.1f} min ({by_split}) and manifest.json to {args.directory}"
    )
    return 0


def add_parser(actions: Any) -> argparse.ArgumentParser:
    """Add `corpus` to the `lyra data` subparsers."""
    p = actions.add_parser(
        "corpus",
        help="build a real-audio corpus (music, speech, sfx) from Debian's packaged sound sources",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("directory", metavar="DIR", type=output_dir)
    p.add_argument(
        "--packages",
        nargs="+",
        metavar="NAME",
        help="only these sources or Debian packages "
        f"(sources: {', '.join(s.name for s in SOURCES)})",
    )
    p.add_argument(
        "--minutes-per-source",
        type=float,
        default=3.0,
        metavar="M",
        help="at most M minutes from each source and domain (espeak: 2M), "
        "80/10/10 over train/validation/test (default 3)",
    )
    p.add_argument("--sample-rate", type=int, default=44100, help="Hz (default: 44100)")
    p.add_argument(
        "--seed", type=int, default=0, help="the split and the generated phrases (default: 0)"
    )
    p.add_argument(
        "--keep-channels", action="store_true", help="keep stereo sources stereo (default: mono)"
    )
    p.set_defaults(handler=corpus_command)
    return p
