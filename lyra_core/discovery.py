"""Plugin discovery: one path for built-ins and third parties alike (entry-point group `lyra`).

`load_registry()` imports every plugin listed in the group (skipping those named in
`LYRA_DISABLE_PLUGINS=a,b`), registers them with a pluggy `PluginManager("lyra")`, calls
`lyra_register_kinds` then `lyra_register_components` on each, and returns a `Registry`.
A plugin that fails to import or to register is recorded as a `PluginLoadError`, not swallowed:
`lyra plugins` lists it, and a spec that needs one of its names fails with a message naming it.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points

import attrs
import pluggy

from lyra_core import hookspecs
from lyra_core.errors import LyraError, PluginLoadError
from lyra_core.kinds import CORE_KINDS
from lyra_core.registry import Origin, Registry

GROUP = "lyra"
DISTRIBUTION = "lyra-audio"
DISABLE_ENV = "LYRA_DISABLE_PLUGINS"


@attrs.frozen
class PluginInfo:
    name: str
    origin: Origin
    entry_point: str
    status: str  # "loaded", "disabled" or "failed"
    error: PluginLoadError | None = None


@attrs.define
class Plugins:
    """The plugin manager and what it loaded; `registry` holds the components."""

    manager: pluggy.PluginManager
    registry: Registry
    infos: list[PluginInfo]

    @property
    def hook(self) -> pluggy.HookRelay:
        return self.manager.hook

    @property
    def failures(self) -> list[PluginLoadError]:
        return [i.error for i in self.infos if i.error is not None]

    def versions(self) -> dict[str, str]:
        """`{plugin: "distribution version"}` of the loaded plugins, for run records."""
        return {
            i.name: f"{i.origin.distribution} {i.origin.version}".strip()
            for i in self.infos
            if i.status == "loaded"
        }


def disabled_from_env() -> set[str]:
    return {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}


def _origin(ep: EntryPoint) -> Origin:
    dist = ep.dist
    return Origin(ep.name, dist.name if dist else "unknown", dist.version if dist else "")


Loaded = list[tuple[str, object, Origin]]  # (plugin name, module or object, where it came from)


def load_plugins(
    disabled: Iterable[str] | None = None,
    extra: Iterable[tuple[str, object]] = (),
    entry_point_group: str | None = GROUP,
    builtins_only: bool = False,
) -> Plugins:
    """Discover, import and register every plugin; never raises for a broken plugin.

    `extra` adds `(name, module_or_object)` plugins that are not installed (used by tests of the
    plugin mechanism); `entry_point_group=None` skips discovery; `builtins_only` loads only the
    plugins of Lyra's own distribution.
    """
    blocked = disabled_from_env() if disabled is None else set(disabled)
    manager = pluggy.PluginManager(GROUP)
    manager.add_hookspecs(hookspecs)
    loaded, infos = _import_entry_points(manager, entry_point_group, blocked, builtins_only)
    _add_extra(extra, loaded, infos)
    _register_with(manager, loaded)
    registry = Registry()
    for kind in CORE_KINDS:
        registry.add_kind(kind)
    infos = _call_registration_hooks(manager, registry, loaded, infos)
    registry.unavailable_plugins = [
        f"{i.name} ({i.status})" for i in infos if i.status in ("disabled", "failed")
    ]
    return Plugins(manager, registry, infos)


def _entry_points(group: str | None) -> list[EntryPoint]:
    return sorted(entry_points(group=group), key=lambda e: e.name) if group else []


def _import_entry_points(
    manager: pluggy.PluginManager, group: str | None, blocked: set[str], builtins_only: bool
) -> tuple[Loaded, list[PluginInfo]]:
    """Import each entry point's module, except blocked ones; failures are recorded, not raised."""
    loaded: Loaded = []
    infos: list[PluginInfo] = []
    for ep in _entry_points(group):
        origin = _origin(ep)
        if ep.name in blocked or (builtins_only and origin.distribution != DISTRIBUTION):
            manager.set_blocked(ep.name)
            infos.append(PluginInfo(ep.name, origin, ep.value, "disabled"))
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken plugin is reported, never fatal to the others
            err = PluginLoadError(ep.name, _where(ep, origin), exc)
            infos.append(PluginInfo(ep.name, origin, ep.value, "failed", err))
            continue
        loaded.append((ep.name, plugin, origin))
        infos.append(PluginInfo(ep.name, origin, ep.value, "loaded"))
    return loaded, infos


def _where(ep: EntryPoint, origin: Origin) -> str:
    return f"{origin.distribution} {origin.version} (entry point {GROUP}: {ep.name} = {ep.value})"


def _add_extra(
    extra: Iterable[tuple[str, object]], loaded: Loaded, infos: list[PluginInfo]
) -> None:
    """Plugins given directly (by module name or object), not installed: tests of the mechanism."""
    for name, plugin in extra:
        obj = importlib.import_module(plugin) if isinstance(plugin, str) else plugin
        origin = Origin(name, "unregistered", "")
        loaded.append((name, obj, origin))
        infos.append(PluginInfo(name, origin, getattr(obj, "__name__", repr(obj)), "loaded"))


def _register_with(manager: pluggy.PluginManager, loaded: Loaded) -> None:
    for name, plugin, _ in loaded:
        try:
            manager.register(plugin, name=name)
        except ValueError as exc:
            raise LyraError(f"plugin '{name}' is registered twice: {exc}") from exc


def _call_registration_hooks(
    manager: pluggy.PluginManager, registry: Registry, loaded: Loaded, infos: list[PluginInfo]
) -> list[PluginInfo]:
    """Kinds first, then components, each plugin through a view that records its origin.

    A plugin whose hook raises is marked failed and unregistered; a LyraError (a duplicate name,
    a broken contract) stops everything, by design. Returns the updated infos.
    """
    origins = {name: origin for name, _, origin in loaded}
    for hook in ("lyra_register_kinds", "lyra_register_components"):
        for impl in reversed(getattr(manager.hook, hook).get_hookimpls()):
            view = registry.view(origins[impl.plugin_name])
            try:
                impl.function(registry=view)
            except LyraError:
                raise
            except Exception as exc:
                where = f"{view.origin.distribution} {view.origin.version} ({hook})"
                infos = _mark_failed(infos, PluginLoadError(impl.plugin_name, where, exc))
                manager.unregister(name=impl.plugin_name)
    return infos


def _mark_failed(infos: list[PluginInfo], err: PluginLoadError) -> list[PluginInfo]:
    return [
        attrs.evolve(i, status="failed", error=err) if i.name == err.plugin else i for i in infos
    ]
