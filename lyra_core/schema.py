"""JSON Schema generated from the live registry.

Each kind is a `$defs` entry: an `enum` of names on `type`, and one `if/then` branch per name whose
`then` is that component's schema with `additionalProperties: false`. Unlike a `oneOf`, this gives
exact messages at exact paths (see ARCHITECTURE.md). No library turns attrs classes into JSON
Schema, so this walks `attrs.fields` and the resolved type hints itself.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal

import attrs

from lyra_core.experiment import ExperimentSpec
from lyra_core.registry import Registry
from lyra_core.spec import field_doc, is_ref, make_converter
from lyra_core.validators import schema_of

DRAFT = "https://json-schema.org/draft/2020-12/schema"
KIND_KEY = "x-lyra-kind"


def _doc(cls: type) -> str:
    return " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())


def _constrain(prop: dict[str, Any], fragment: dict[str, Any]) -> dict[str, Any]:
    """`prop` with a validator's bounds added (into the non-null branch of an optional field)."""
    if "anyOf" in prop:
        branches = [
            b if b.get("type") == "null" else _constrain(b, fragment) for b in prop["anyOf"]
        ]
        return {**prop, "anyOf": branches}
    out = dict(prop)
    for key, value in fragment.items():
        if key == "items" and "prefixItems" in out:
            out["prefixItems"] = [_constrain(p, value) for p in out["prefixItems"]]
        elif key == "items" and isinstance(out.get("items"), dict):
            out["items"] = _constrain(out["items"], value)
        elif key == "maxItems" and "maxItems" in out:
            out["maxItems"] = min(out["maxItems"], value)
        elif key == "minItems" and "minItems" in out:
            out["minItems"] = max(out["minItems"], value)
        else:
            out[key] = value
    return out


class _Generator:
    def __init__(self, registry: Registry):
        self.registry = registry
        self.converter = make_converter(registry)
        self.defs: dict[str, Any] = {}
        self.kinds_used: set[str] = set()  # kinds that slots refer to

    def type_schema(self, t: Any) -> dict[str, Any]:
        origin, args = typing.get_origin(t), typing.get_args(t)
        if t is Any:
            return {}
        if is_ref(t):
            self.kinds_used.add(t.kind)
            return {"$ref": f"#/$defs/{t.kind}"}
        if t is bool:
            return {"type": "boolean"}
        if t is int:
            return {"type": "integer"}
        if t is float:
            return {"type": "number"}
        if t is str:
            return {"type": "string"}
        if t is type(None):
            return {"type": "null"}
        if origin is Literal:
            return {"enum": list(args)}
        if origin in (typing.Union, types.UnionType):
            return {"anyOf": [self.type_schema(a) for a in args]}
        if origin in (list, tuple) or (origin and origin.__name__ == "Sequence"):
            if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
                items = [self.type_schema(a) for a in args]
                return {
                    "type": "array",
                    "prefixItems": items,
                    "minItems": len(items),
                    "maxItems": len(items),
                }
            return {"type": "array", "items": self.type_schema(args[0]) if args else {}}
        if origin is dict:
            return {"type": "object", "additionalProperties": self.type_schema(args[1])}
        if attrs.has(t):
            return self.class_schema(t)
        raise TypeError(f"no JSON Schema for type {t!r}")

    def class_schema(self, cls: type, tag: str | None = None) -> dict[str, Any]:
        hints = typing.get_type_hints(cls)
        props: dict[str, Any] = {}
        required: list[str] = []
        if tag is not None:
            props["type"] = {"const": tag}
            required.append("type")
        for a in attrs.fields(cls):
            prop = self.type_schema(hints[a.name])
            for fragment in schema_of(a.validator):
                prop = _constrain(prop, fragment)
            if field_doc(a):
                prop = {"description": field_doc(a), **prop}
            if a.default is attrs.NOTHING:
                required.append(a.name)
            else:
                default = a.default.factory() if isinstance(a.default, attrs.Factory) else a.default
                prop["default"] = self.converter.unstructure(default, hints[a.name])
            props[a.name] = prop
        schema: dict[str, Any] = {
            "type": "object",
            "properties": props,
            "additionalProperties": False,
        }
        if _doc(cls):
            schema = {"description": _doc(cls), **schema}
        if required:
            schema["required"] = required
        return schema

    def kind_schema(self, kind: str) -> dict[str, Any]:
        names = self.registry.names(kind)
        branches = []
        for comp in self.registry.components(kind):
            key = f"{kind}.{comp.name}"
            self.defs[key] = self.class_schema(comp.spec, tag=comp.name)
            branches.append(
                {
                    "if": {
                        "type": "object",
                        "properties": {"type": {"const": comp.name}},
                        "required": ["type"],
                    },
                    "then": {"$ref": f"#/$defs/{key}"},
                }
            )
        return {
            KIND_KEY: kind,
            "description": self.registry.kind(kind).doc,
            "type": "object",
            "required": ["type"],
            "properties": {
                "type": {"enum": names, KIND_KEY: kind, "description": f"a registered {kind}"}
            },
            "allOf": branches,
        }


def experiment_schema(registry: Registry) -> dict[str, Any]:
    """The JSON Schema of an experiment spec, with every kind the registry knows."""
    gen = _Generator(registry)
    root = gen.class_schema(ExperimentSpec)
    root["properties"] = {
        "$schema": {"type": "string", "description": "this schema's path"},
        **root["properties"],
    }
    for kind in registry.kinds:  # every kind, so plugin authors can reference any of them
        gen.defs[kind] = gen.kind_schema(kind)
    for kind in gen.kinds_used - set(registry.kinds):
        registry.kind(kind)  # a slot of a kind nobody declared: raises UnknownKindError
    return {
        "$schema": DRAFT,
        "$id": "https://lyra.invalid/schemas/experiment.schema.json",
        "title": "Lyra experiment",
        **root,
        "$defs": dict(sorted(gen.defs.items())),
    }
