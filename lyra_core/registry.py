"""The registry: `(kind, name) -> component spec class`, with who added it.

A registry is an object made by the plugin manager (`lyra_core.discovery.load_registry`), never a
module global: two registries (say, with and without a plugin) can live side by side in one process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import attrs

from lyra_core.errors import (
    DuplicateComponentError,
    LyraError,
    UnknownComponentError,
    UnknownKindError,
)


@attrs.frozen
class Origin:
    """Where a registration came from: the plugin's name and its distribution."""

    plugin: str
    distribution: str = "unknown"
    version: str = ""

    def __str__(self) -> str:
        dist = f"{self.distribution} {self.version}".strip()
        return f"plugin '{self.plugin}' ({dist})"


@attrs.frozen
class Kind:
    """A family of components sharing one `build(ctx, **example())` contract."""

    name: str
    doc: str
    # Keyword arguments that build a default instance of any component of this kind; the contract
    # tests (lyra_core.testing) call `spec.build(ctx, **example())`.
    example: Callable[[], dict[str, Any]] = dict
    origin: Origin = Origin("lyra_core", "lyra-audio")


@attrs.frozen
class Component:
    kind: str
    name: str
    spec: type
    origin: Origin

    @property
    def summary(self) -> str:
        """First line of the spec class's docstring."""
        return (self.spec.__doc__ or "").strip().splitlines()[0] if self.spec.__doc__ else ""


class Registry:
    """Components by kind and name. Plugins add; nothing replaces or removes."""

    def __init__(self) -> None:
        self._kinds: dict[str, Kind] = {}
        self._components: dict[str, dict[str, Component]] = {}
        self._names: dict[type, tuple[str, str]] = {}
        # Names that plugins which failed to load or were disabled might have provided.
        self.unavailable_plugins: list[str] = []

    # -- writing (plugins use `RegistryView.add` / `add_kind`) --------------------------------

    def add_kind(self, kind: Kind) -> None:
        if kind.name in self._kinds:
            raise LyraError(
                f"duplicate component kind '{kind.name}': from {self._kinds[kind.name].origin} "
                f"and {kind.origin}"
            )
        self._kinds[kind.name] = kind
        self._components[kind.name] = {}

    def add(self, kind: str, name: str, spec: type, origin: Origin) -> None:
        if kind not in self._kinds:
            raise UnknownKindError(kind, self._kinds)
        if not attrs.has(spec):
            raise LyraError(f"{origin}: {kind} '{name}' must be an attrs class, got {spec!r}")
        if "type" in attrs.fields_dict(spec):
            raise LyraError(f"{origin}: {kind} '{name}' declares the reserved field 'type'")
        existing = self._components[kind].get(name)
        if existing is not None:
            raise DuplicateComponentError(kind, name, str(existing.origin), str(origin))
        self._components[kind][name] = Component(kind, name, spec, origin)
        self._names.setdefault(spec, (kind, name))

    def view(self, origin: Origin) -> RegistryView:
        return RegistryView(self, origin)

    # -- reading -------------------------------------------------------------------------------

    @property
    def kinds(self) -> dict[str, Kind]:
        return dict(self._kinds)

    def kind(self, name: str) -> Kind:
        if name not in self._kinds:
            raise UnknownKindError(name, self._kinds)
        return self._kinds[name]

    def names(self, kind: str) -> list[str]:
        self.kind(kind)
        return sorted(self._components[kind])

    def components(self, kind: str | None = None) -> Iterator[Component]:
        for k in [kind] if kind else sorted(self._kinds):
            self.kind(k)
            yield from (self._components[k][n] for n in sorted(self._components[k]))

    def get(self, kind: str, name: str) -> Component:
        self.kind(kind)
        try:
            return self._components[kind][name]
        except KeyError:
            hint = f"\n  ({self._not_loaded()})" if self.unavailable_plugins else ""
            raise UnknownComponentError(kind, name, self._components[kind], hint) from None

    def name_of(self, spec: object) -> tuple[str, str]:
        """`(kind, name)` of a spec instance or class."""
        cls = spec if isinstance(spec, type) else type(spec)
        try:
            return self._names[cls]
        except KeyError:
            where = f"{cls.__qualname__} (from {cls.__module__})"
            if self.unavailable_plugins:
                raise LyraError(f"{where} is not registered: {self._not_loaded()}") from None
            raise LyraError(f"{where} is not a registered component") from None

    def _not_loaded(self) -> str:
        return (
            f"is the plugin installed and enabled? not loaded: "
            f"{', '.join(self.unavailable_plugins)}; see `lyra plugins`"
        )


@attrs.frozen
class RegistryView:
    """What a plugin's `lyra_register_*` hook receives: a registry that tags additions with it."""

    registry: Registry
    origin: Origin

    def add(self, kind: str, name: str, spec: type) -> None:
        """Register the attrs spec class `spec` as component `name` of `kind`."""
        self.registry.add(kind, name, spec, self.origin)

    def add_kind(self, name: str, doc: str, example: Callable[[], dict[str, Any]] = dict) -> None:
        """Declare a new component kind; `example()` gives build kwargs for the contract tests."""
        self.registry.add_kind(Kind(name, doc, example, self.origin))
