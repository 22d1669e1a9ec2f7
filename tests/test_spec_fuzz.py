"""Random mutations of the shipped specs never produce anything but a Lyra error."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lyra_core.errors import LyraError
from lyra_core.loader import read_spec_file, validate_data
from lyra_core.plugins import load_plugins
from lyra_core.schema import experiment_schema

ROOT = Path(__file__).resolve().parents[1]
SPECS = [read_spec_file(p) for p in sorted((ROOT / "experiments").rglob("*.json"))]
REGISTRY = load_plugins(builtins_only=True).registry
SCHEMA = experiment_schema(REGISTRY)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
names = st.sampled_from(["type", "snake", "pqmf", "channels", "", "weight", "adam", "x" * 40])


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            found += paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found += paths(v, (*prefix, i))
    return found


@st.composite
def mutated_specs(draw) -> dict:
    spec = copy.deepcopy(draw(st.sampled_from(SPECS)))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths(spec)[1:]))
        parent = spec
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        action = draw(st.sampled_from(["replace", "delete", "add", "retype"]))
        if action == "replace":
            parent[key] = draw(json_values)
        elif action == "delete":
            del parent[key]
        elif action == "add" and isinstance(parent[key], dict):
            parent[key][draw(names)] = draw(json_values)
        elif action == "retype" and isinstance(parent[key], dict):
            parent[key]["type"] = draw(names | json_values)
    return spec


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_specs())
def test_mutations_give_only_lyra_errors(spec):
    try:
        validate_data(spec, REGISTRY, schema=SCHEMA)
    except LyraError as exc:
        assert str(exc).strip()
