"""Spec files in, validated `ExperimentSpec` out: JSON parse -> overrides -> JSON Schema -> cattrs.

Loading a spec runs no code of its choosing: it is parsed as data, checked against a schema made
from the registry, and structured into the registered attrs classes it names.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jsonschema

from lyra_core.errors import LyraError, SpecError, article, did_you_mean
from lyra_core.experiment import ExperimentSpec
from lyra_core.registry import Registry
from lyra_core.schema import KIND_KEY, experiment_schema
from lyra_core.spec import make_converter, structure

MAX_DEPTH = 64  # objects and lists inside each other; the shipped specs nest about 8 deep


def check_depth(data: Any, source: str | None = None) -> None:
    """Refuse data nested more than `MAX_DEPTH` levels deep (no recursion: any depth is safe)."""
    stack: list[tuple[Any, str, int]] = [(data, "$", 1)]
    while stack:
        node, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            message = (
                f"nested too deeply: a spec may nest at most {MAX_DEPTH} levels (objects and "
                "lists inside each other)"
            )
            raise SpecError([(path, message)], source)
        if isinstance(node, dict):
            stack.extend((v, _child(path, f".{k}", depth), depth + 1) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, _child(path, f"[{i}]", depth), depth + 1) for i, v in enumerate(node))


def _child(path: str, step: str, depth: int) -> str:
    """The JSON path of a child, shortened past a few levels (where a too-deep value starts)."""
    if depth < 6:
        return path + step
    return path if path.endswith("...") else path + "..."


def _too_deep(where: str) -> LyraError:
    return LyraError(
        f"{where}: nested too deeply to parse; a spec may nest at most {MAX_DEPTH} levels "
        "(objects and lists inside each other)"
    )


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise ValueError(f"duplicate key(s) {', '.join(map(repr, dupes))} in one object")
    return dict(pairs)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (use a number or null)")


def read_spec_file(path: str | Path) -> dict[str, Any]:
    """Parse a spec file into a dict, with one clear message for each way it can be wrong."""
    path = Path(path)
    if not path.exists():
        raise LyraError(f"{path}: no such spec file")
    if path.is_dir():
        raise LyraError(f"{path}: is a directory; give a JSON spec file (e.g. {path}/*.json)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LyraError(f"{path}: cannot read the spec: {exc}") from exc
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise LyraError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from exc
    except ValueError as exc:
        raise LyraError(f"{path}: not valid JSON: {exc}") from exc
    except RecursionError:
        raise _too_deep(str(path)) from None
    if not isinstance(data, dict):
        raise SpecError(
            [("$", f"a spec must be a JSON object, not {type(data).__name__}")], str(path)
        )
    check_depth(data, str(path))
    return data


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply `a.b.0.c=value` overrides (value parsed as JSON, else taken as a string)."""
    check_depth(data)
    data = json.loads(json.dumps(data))
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise LyraError(f"--set {item!r}: expected KEY=VALUE, e.g. training.steps=10")
        try:
            value = json.loads(raw, parse_constant=_no_constants)
        except ValueError:
            value = raw
        except RecursionError:
            raise _too_deep(f"--set {key}") from None
        node: Any = data
        parts = key.split(".")
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            where = ".".join(parts[: i + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise LyraError(
                        f"--set {key}: '{where}' is not an index of a list of {len(node)}"
                    )
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, {})
            else:
                raise LyraError(f"--set {key}: '{'.'.join(parts[:i])}' is not an object or list")
    return data


def _message(err: jsonschema.ValidationError, registry: Registry) -> tuple[str, str]:
    """One `(json_path, message)` for a schema error, reworded where JSON Schema is vague."""
    path, schema, inst = err.json_path, err.schema, err.instance
    if err.validator == "enum" and isinstance(schema, dict) and KIND_KEY in schema:
        kind = schema[KIND_KEY]
        try:
            registry.get(kind, str(inst))
        except LyraError as exc:
            return path, str(exc)
    if err.validator == "additionalProperties" and isinstance(inst, dict):
        known = schema.get("properties", {})
        extra = sorted(k for k in inst if k not in known)
        return path, "; ".join(f"unexpected field '{k}'{did_you_mean(k, known)}" for k in extra)
    if err.validator == "required":
        missing = err.message.split("'")[1] if "'" in err.message else err.message
        if missing == "type" and KIND_KEY in schema:
            kind = schema[KIND_KEY]
            return path, (
                f"missing 'type': name {article(kind)} (known: {', '.join(registry.names(kind))})"
            )
        return path, f"missing required field '{missing}'"
    if err.validator == "type" and isinstance(schema, dict) and KIND_KEY in schema:
        kind = schema[KIND_KEY]
        return (
            path,
            f'expected an object naming {article(kind)}, like {{"type": "..."}}, got {inst!r}',
        )
    return path, err.message


def _leaf_errors(err: jsonschema.ValidationError) -> Iterable[jsonschema.ValidationError]:
    """Descend into `anyOf` (optional fields) so a typo inside `X | None` is reported exactly."""
    if err.validator == "anyOf" and err.instance is not None and err.context:
        non_null = [
            e
            for e in err.context
            if e.schema != {"type": "null"}
            and not (e.validator == "type" and e.validator_value == "null")
        ]
        for sub in non_null:
            yield from _leaf_errors(sub)
    else:
        yield err


def _without_bounds_of_wrong_types(
    errors: list[jsonschema.ValidationError],
) -> list[jsonschema.ValidationError]:
    """Where a value has the wrong type, say only that (not also that it is out of bounds)."""
    wrong_type = {e.json_path for e in errors if e.validator == "type"}
    return [e for e in errors if e.validator == "type" or e.json_path not in wrong_type]


def validate_data(
    data: dict[str, Any],
    registry: Registry,
    source: str | None = None,
    schema: dict[str, Any] | None = None,
) -> ExperimentSpec:
    """Validate a parsed spec (all schema errors at once), then structure it."""
    check_depth(data, source)
    schema = schema or experiment_schema(registry)
    validator = jsonschema.Draft202012Validator(schema)
    leaves = [leaf for err in validator.iter_errors(data) for leaf in _leaf_errors(err)]
    problems = [_message(leaf, registry) for leaf in _without_bounds_of_wrong_types(leaves)]
    if problems:
        raise SpecError(problems, source)
    body = {k: v for k, v in data.items() if k != "$schema"}
    return structure(body, ExperimentSpec, registry, source)


def load_spec(
    path: str | Path, registry: Registry, overrides: Iterable[str] = ()
) -> ExperimentSpec:
    """Read, override, validate and structure the spec file at `path`."""
    data = apply_overrides(read_spec_file(path), overrides)
    return validate_data(data, registry, str(path))


def resolved(spec: ExperimentSpec, registry: Registry) -> dict[str, Any]:
    """The fully defaulted spec as JSON data (what `--print-resolved` shows and runs store)."""
    return make_converter(registry).unstructure(spec, ExperimentSpec)
