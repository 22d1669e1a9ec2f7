"""`lyra components` and `lyra plugins`: what the loaded plugins provide."""

from __future__ import annotations

import argparse
import json
import sys
import typing
from typing import Any

import attrs

from lyra_core.cli.common import add_command, plugins
from lyra_core.spec import field_doc, make_converter


def components(args: argparse.Namespace) -> int:
    loaded = plugins(args)
    reg = loaded.registry
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
    for err in loaded.failures:
        print(f"warning: {err}", file=sys.stderr)
    return 0


def list_plugins(args: argparse.Namespace) -> int:
    for info in plugins(args).infos:
        dist = f"{info.origin.distribution} {info.origin.version}".strip()
        print(f"{info.name:<16} {info.status:<9} {dist:<24} {info.entry_point}")
        if info.error is not None:
            print(f"  {info.error}")
    return 0


def add_parsers(sub: Any) -> None:
    p = add_command(sub, "components", components, help="list registered components by kind")
    p.add_argument("kind", nargs="?", help="one kind, with each component's fields and defaults")
    add_command(
        sub,
        "plugins",
        list_plugins,
        help="loaded plugins, their distributions, and any that failed",
    )
