"""Lyra's hook specifications: the whole contract between the core and its plugins.

A plugin is a module (or object) listed as an entry point in group `lyra`; it implements any of
these functions, marked with `lyra_core.hookimpl`. Importing a plugin must register nothing: the
plugin manager calls the hooks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from lyra_core.registry import RegistryView

hookspec = pluggy.HookspecMarker("lyra")
hookimpl = pluggy.HookimplMarker("lyra")


@hookspec
def lyra_register_kinds(registry: RegistryView) -> None:
    """Declare new component kinds with `registry.add_kind(name, doc, example)`.

    Called once per registry, for every plugin, before any `lyra_register_components`, so that a
    plugin can add components of a kind another plugin declares.
    """


@hookspec
def lyra_register_components(registry: RegistryView) -> None:
    """Add this plugin's components with `registry.add(kind, name, SpecClass)`.

    Called once per registry. A plugin only adds names: registering a `(kind, name)` that exists
    is an error naming both distributions.
    """


@hookspec
def lyra_on_train_start(run: Any) -> None:
    """Training is about to start (after a resume, `run.step` is the resumed step)."""


@hookspec
def lyra_on_step_end(run: Any, step: int, metrics: dict[str, float]) -> None:
    """A training step finished; `metrics` holds its losses. Add entries to log more."""


@hookspec
def lyra_validation_metrics(run: Any, target: Any, reconstruction: Any) -> dict[str, float] | None:
    """Return extra validation metrics for one validation batch (tensors `[B, C, T]`).

    Values are averaged over the validation set and logged under their names.
    """


@hookspec
def lyra_on_validation_end(run: Any, step: int, metrics: dict[str, float]) -> None:
    """Validation finished at `step` with the averaged `metrics`."""


@hookspec
def lyra_on_checkpoint(run: Any, step: int, path: Any) -> None:
    """A checkpoint was written atomically to `path`."""


@hookspec
def lyra_on_train_end(run: Any, step: int, reason: str) -> None:
    """Training ended at `step`; `reason` is 'completed', 'interrupted' or 'failed'."""
