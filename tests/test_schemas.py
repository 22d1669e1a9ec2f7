"""The committed schema is the built-ins' schema; every shipped experiment validates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lyra_core.discovery import load_plugins
from lyra_core.loader import load_spec, read_spec_file
from lyra_core.schema import experiment_schema

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "experiments").rglob("*.json"))


def test_committed_schema_is_current():
    committed = ROOT / "schemas" / "experiment.schema.json"
    current = experiment_schema(load_plugins(builtins_only=True).registry)
    assert committed.exists(), "run `make schema`"
    assert json.loads(committed.read_text()) == current, "schemas/ is stale: run `make schema`"


def test_experiments_ship():
    names = {p.name for p in SPECS}
    assert {"snake_pqmf.json", "lyracodec_vae.json"} <= names


@pytest.mark.parametrize("path", SPECS, ids=[p.name for p in SPECS])
def test_shipped_experiment_validates(path):
    data = read_spec_file(path)
    schema_ref = (path.parent / data["$schema"]).resolve()
    assert schema_ref == (ROOT / "schemas" / "experiment.schema.json").resolve()
    load_spec(path, load_plugins(builtins_only=True).registry)


def _integer_fields(schema: dict, where: str = "$"):
    """(path, schema) of every integer-valued property, list of integers and integer item."""
    if not isinstance(schema, dict):
        return
    if schema.get("type") == "integer":
        yield where, schema
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        if schema["items"].get("type") == "integer":
            yield where + "[]", schema
        yield from _integer_fields(schema["items"], where + "[]")
    for branch in schema.get("anyOf", []):
        yield from _integer_fields(branch, where)
    for name, prop in schema.get("properties", {}).items():
        yield from _integer_fields(prop, f"{where}.{name}")


def test_every_size_in_the_schema_has_an_upper_bound():
    """Sizes, counts and lists of them state their bounds, so 2^40 channels never validate."""
    schema = experiment_schema(load_plugins(builtins_only=True).registry)
    roots = {"$": schema, **{f"$defs.{k}": v for k, v in schema["$defs"].items()}}
    unbounded = [
        path
        for root, node in roots.items()
        for path, field in _integer_fields(node, root)
        if ("maxItems" if field.get("type") == "array" else "maximum") not in field
    ]
    unbounded = [p for p in unbounded if not p.startswith("$defs.tracker.")]  # not sizes
    assert not unbounded


def test_validator_bounds_are_stated_in_the_schema():
    schema = experiment_schema(load_plugins(builtins_only=True).registry)
    conv = schema["$defs"]["encoder.conv_encoder"]["properties"]
    assert conv["strides"]["maxItems"] == 32
    assert conv["strides"]["items"] == {"type": "integer", "minimum": 1, "maximum": 1024}
    assert conv["input_kernel"]["not"] == {"multipleOf": 2}
    adam = schema["$defs"]["optimizer.adam"]["properties"]["betas"]
    assert [b["exclusiveMaximum"] for b in adam["prefixItems"]] == [1, 1]
    workers = schema["properties"]["data"]["properties"]["num_workers"]
    assert workers["minimum"] == 0


def test_user_facing_text_names_models_not_seed_numbers(capsys):
    """Descriptions say what a thing is ("the LyraCodec VAE"), not an internal "seed 001"."""
    import re

    from lyra_core.cli import main

    text = json.dumps(experiment_schema(load_plugins(builtins_only=True).registry))
    for kind in ("", "encoder", "decoder", "block", "bottleneck", "activation", "prior"):
        assert main(["components", kind] if kind else ["components"]) == 0
    out = capsys.readouterr().out
    assert "LyraCodec" in text and "wavenet" in out
    assert not re.search(r"seed 0\d\d|\(seed\)|the seed\b", text + out, re.I)


def test_the_coders_activation_field_says_it_is_only_the_last_one():
    defs = experiment_schema(load_plugins(builtins_only=True).registry)["$defs"]
    for name in ("encoder.conv_encoder", "decoder.conv_decoder"):
        doc = defs[name]["properties"]["activation"]["description"]
        assert "before the output conv, and only that one" in doc
        assert "`block`" in doc
