"""The committed schema is the built-ins' schema; every shipped experiment validates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lyra_core.loader import load_spec, read_spec_file
from lyra_core.plugins import load_plugins
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
