"""A pytest plugin for plugin authors (entry point `pytest11: lyra`).

With Lyra installed, any test suite gets the fixtures `lyra_registry` and `lyra_context`, and can
run each of its components through the contract check:

    from lyra_core.testing import check_component

    def test_my_activation(lyra_registry, lyra_context):
        check_component(lyra_registry, "activation", "soft_clip", lyra_context)

The check builds the component from its defaults (or from `Spec.example()` where a component has
required fields), round-trips it through cattrs, validates it against the generated schema, then
runs the built module on its kind's example input and checks the kind's contract
(`lyra_core.contracts`: output shape and dtype, finite values, gradients where it is trainable).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import jsonschema
import pytest

from lyra_core.context import BuildContext
from lyra_core.contracts import CONTRACTS, ContractError
from lyra_core.discovery import load_plugins
from lyra_core.registry import Registry
from lyra_core.schema import experiment_schema
from lyra_core.spec import make_converter


def example_spec(spec_cls: type) -> Any:
    """The instance a contract check uses: `Spec.example()` if defined, else `Spec()`."""
    maker = getattr(spec_cls, "example", None)
    return maker() if callable(maker) else spec_cls()


def check_component(
    registry: Registry, kind: str, name: str, ctx: BuildContext | None = None
) -> Any:
    """Run one component through the contract; returns what its `build` made."""
    comp = registry.get(kind, name)
    spec = example_spec(comp.spec)
    assert comp.spec.__doc__ and comp.spec.__doc__.strip(), f"{kind} '{name}' has no docstring"

    converter = make_converter(registry)
    data = converter.unstructure(spec, comp.spec)
    assert converter.structure(data, comp.spec) == spec, f"{kind} '{name}' does not round-trip"

    schema = experiment_schema(registry)
    tagged = {"type": name, **data}
    validator = jsonschema.Draft202012Validator(
        {"$ref": f"#/$defs/{kind}", "$defs": schema["$defs"]}
    )
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(tagged)]
    assert not errors, f"{kind} '{name}' defaults fail its schema: {errors}"

    ctx = ctx or BuildContext(registry=registry)
    kwargs = registry.kind(kind).example()
    built = spec.build(ctx, **kwargs)
    assert built is not None, f"{kind} '{name}'.build() returned None"
    run_contract(kind, name, built, kwargs, ctx)
    return built


def run_contract(
    kind: str, name: str, built: Any, kwargs: dict[str, Any], ctx: BuildContext
) -> None:
    """Run `built` on its kind's example input and check what the kind promises (if known)."""
    contract = CONTRACTS.get(kind)
    if contract is None:  # a plugin's own kind, or one without a run contract
        return
    try:
        contract(built, kwargs, ctx)
    except ContractError as exc:
        raise ContractError(f"{kind} '{name}' breaks the {kind} contract: {exc}") from None


def peak_allocated_bytes(fn: Callable[[], object]) -> int:
    """Peak of live CPU tensor bytes allocated while `fn` runs (tensors alive before: not counted).

    tracemalloc cannot see torch's allocator and RSS never goes down within a process, so this
    replays the allocation and free events the torch profiler records (profile_memory=True) in
    time order.
    """
    import torch  # here, so that loading this pytest plugin does not import torch

    activities = [torch.profiler.ProfilerActivity.CPU]
    with torch.profiler.profile(activities=activities, profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    live = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        live += event.nbytes()
        peak = max(peak, live)
    return peak


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block on `n` intra-op threads (tiny models run fastest on one: more threads spin
    waiting for each other on a busy CPU), then restore the count."""
    import torch  # here: loading this pytest plugin does not import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def lyra_registry() -> Registry:
    """The registry of every installed (and not disabled) plugin."""
    return load_plugins().registry


@pytest.fixture
def lyra_context(lyra_registry: Registry) -> BuildContext:
    """A small build context: mono, 22,050 Hz, 8,192-sample segments."""
    return BuildContext(registry=lyra_registry, sample_rate=22050, channels=1, segment_length=8192)
