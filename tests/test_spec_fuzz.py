"""Mutated and extreme specs never produce anything but a Lyra error, through validate and summary.

`summarize_spec` builds the model on the meta device, so a size the schema lets through but no
machine could hold shows up here as a crash, a hang or a memory error instead of a LyraError.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lyra_core.cli.summary import summarize_spec
from lyra_core.discovery import load_plugins
from lyra_core.errors import LyraError
from lyra_core.loader import MAX_DEPTH, read_spec_file, validate_data
from lyra_core.schema import experiment_schema

ROOT = Path(__file__).resolve().parents[1]
SPEC_FILES = sorted((ROOT / "experiments").rglob("*.json"))
SPECS = [read_spec_file(p) for p in SPEC_FILES]
REGISTRY = load_plugins(builtins_only=True).registry
SCHEMA = experiment_schema(REGISTRY)

# Sizes no spec means: each must be refused by the schema or a field validator.
EXTREMES: list[Any] = [2**40, 2**63, 1e30, -1e30, [7] * 1000]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.sampled_from([0, 1, 2, 3, -1, 2**31, 2**40, 2**63])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
names = st.sampled_from(["type", "snake", "pqmf", "channels", "", "weight", "adam", "x" * 40])


SUMMARISED: set[str] = set()  # what the summary depends on, for specs already summarised


def check(spec: dict[str, Any]) -> None:
    """Validate `spec` and summarise it: success or a LyraError with a message, nothing else."""
    try:
        structured = validate_data(spec, REGISTRY, schema=SCHEMA)
        data = structured.data
        key = repr((structured.model, data.sample_rate, data.channels, data.segment_length))
        if key not in SUMMARISED:  # a change outside the model and audio format: same summary
            summarize_spec(structured, REGISTRY)
            SUMMARISED.add(key)
    except LyraError as exc:
        assert str(exc).strip()


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            found += paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found += paths(v, (*prefix, i))
    return found


def replaced(spec: dict[str, Any], path: tuple, value: Any) -> dict[str, Any]:
    spec = copy.deepcopy(spec)
    parent = spec
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return spec


def numeric_paths(spec: dict[str, Any]) -> list[tuple]:
    """Paths of every number and every list of numbers in `spec`."""

    def leaf(node: Any) -> bool:
        number = isinstance(node, int | float) and not isinstance(node, bool)
        return number or (isinstance(node, list) and bool(node) and all(map(leaf, node)))

    out = []
    for path in paths(spec)[1:]:
        node = spec
        for key in path:
            node = node[key]
        if leaf(node):
            out.append(path)
    return out


def nested(depth: int) -> Any:
    node: Any = 1
    for i in range(depth):
        node = [node] if i % 2 else {"a": node}
    return node


EXTREME_CASES = [
    pytest.param(i, path, value, id=f"{SPEC_FILES[i].stem}:{'.'.join(map(str, path))}={k}")
    for i, spec in enumerate(SPECS)
    for path in numeric_paths(spec)
    for k, value in enumerate(EXTREMES)
]


def test_extreme_cases_cover_every_number_of_every_shipped_spec():
    assert len(EXTREME_CASES) > 2000


@pytest.mark.parametrize(("index", "path", "value"), EXTREME_CASES)
def test_extreme_sizes_give_only_lyra_errors(index, path, value):
    check(replaced(SPECS[index], path, value))


@pytest.mark.parametrize("index", range(len(SPECS)), ids=[p.stem for p in SPEC_FILES])
def test_deep_nesting_is_refused_naming_the_limit(index):
    for path in paths(SPECS[index])[1:4]:
        with pytest.raises(LyraError, match=f"at most {MAX_DEPTH} levels"):
            validate_data(replaced(SPECS[index], path, nested(5000)), REGISTRY, schema=SCHEMA)


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 900, 5000, 100_000])
def test_deeply_nested_spec_files_are_refused_naming_the_limit(tmp_path, depth):
    path = tmp_path / "deep.json"
    path.write_text(
        json.dumps({"name": "x", "data": nested(depth)})
        if depth < 900
        else '{"data": ' + "[" * depth + "]" * depth + "}"
    )
    with pytest.raises(LyraError, match=f"at most {MAX_DEPTH} levels"):
        read_spec_file(path)


def test_the_shipped_specs_nest_well_within_the_limit():
    assert max(len(p) for spec in SPECS for p in paths(spec)) < MAX_DEPTH // 4


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
    check(spec)
