"""`lyra validate` and `lyra schema`: checking specs, and the JSON Schema that checks them."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from lyra_core.cli.common import (
    EXIT_USER_ERROR,
    add_command,
    add_set,
    output_dir,
    output_file,
    plugins,
)
from lyra_core.errors import LyraError
from lyra_core.loader import load_spec, resolved
from lyra_core.schema import experiment_schema


def validate(args: argparse.Namespace) -> int:
    reg = plugins(args).registry
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


def schema(args: argparse.Namespace) -> int:
    schema = experiment_schema(plugins(args).registry)
    text = json.dumps(schema, indent=2) + "\n"
    if args.output is None:
        sys.stdout.write(text)
        return 0
    out = Path(args.output)
    target = out / "experiment.schema.json" if out.suffix != ".json" else out
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise LyraError(f"{target}: cannot write the schema ({exc.strerror})") from None
    print(f"wrote {target}")
    return 0


def schema_output(value: str) -> str:
    """An argparse type: a `.json` file to write, or a folder to write it into."""
    return output_file(value) if value.endswith(".json") else output_dir(value)


def add_parsers(sub: Any) -> None:
    p = add_command(sub, "validate", validate, help="check spec files")
    p.add_argument("specs", nargs="+", metavar="SPEC")
    p.add_argument("--print-resolved", action="store_true", help="print the fully defaulted spec")
    add_set(p)
    p = add_command(
        sub, "schema", schema, help="write the JSON Schema generated from the live registry"
    )
    p.add_argument(
        "-o", "--output", type=schema_output, help="directory or .json file (default: stdout)"
    )
    p.add_argument(
        "--builtins-only",
        action="store_true",
        help="only Lyra's own components (what schemas/ in the repository holds)",
    )
