"""One error hierarchy: every message says where, what, and what to do.

The CLI prints `str(error)` and exits 2 without a traceback; anything that is not a `LyraError`
is a bug in Lyra or in a plugin and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from pathlib import Path


class LyraError(Exception):
    """Base of every error Lyra reports to a user."""


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """`"; did you mean 'x'?"` for the closest candidate, or `""`."""
    close = difflib.get_close_matches(word, sorted(candidates), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def article(noun: str) -> str:
    return f"{'an' if noun[:1] in 'aeiou' else 'a'} {noun}"


class SpecError(LyraError):
    """A spec that is not valid: one or more `(json_path, message)` problems, sorted by path."""

    def __init__(self, problems: Sequence[tuple[str, str]], source: str | None = None):
        self.problems = sorted(set(problems))
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__("\n".join(f"{prefix}{path}: {msg}" for path, msg in self.problems))


class UnknownComponentError(LyraError):
    """A `(kind, name)` that no loaded plugin registered."""

    def __init__(self, kind: str, name: str, known: Iterable[str], hint: str = ""):
        self.kind, self.name, self.known = kind, name, sorted(known)
        listing = ", ".join(self.known) or "none"
        super().__init__(
            f"unknown {kind} '{name}'{did_you_mean(name, self.known)}\n"
            f"  known {kind}s: {listing} (see `lyra components {kind}`){hint}"
        )


class UnknownKindError(LyraError):
    def __init__(self, kind: str, known: Iterable[str]):
        self.kind = kind
        super().__init__(
            f"unknown component kind '{kind}'{did_you_mean(kind, known)}; "
            f"known kinds: {', '.join(sorted(known))}"
        )


class DuplicateComponentError(LyraError):
    """Two plugins registered the same `(kind, name)`: installing a package may only add names."""

    def __init__(self, kind: str, name: str, first: str, second: str):
        super().__init__(
            f"duplicate {kind} '{name}': from {first} and {second}; "
            f"uninstall or disable one of them (LYRA_DISABLE_PLUGINS=name)"
        )


class PluginLoadError(LyraError):
    """A plugin whose module failed to import or whose registration hook raised."""

    def __init__(self, plugin: str, origin: str, cause: BaseException):
        self.plugin, self.origin, self.cause = plugin, origin, cause
        super().__init__(
            f"failed to load plugin '{plugin}' from {origin}: {type(cause).__name__}: {cause}"
        )


class BuildError(LyraError):
    """A valid spec whose component could not be built (bad combination of values, shapes...)."""

    def __init__(self, path: str, message: str):
        self.path = path
        super().__init__(f"{path}: {message}")


class WriteError(LyraError):
    """A file that could not be written: its disk is full, or its folder is read-only or gone.

    `reason` says why (and how much space is free), `remedy` what to do about it, `then` what to
    do after (e.g. the command that resumes a run); lyra_core.services.atomic raises it.
    """

    def __init__(self, path: Path, reason: str, remedy: str, what: str = "", then: str = ""):
        self.path, self.reason, self.remedy, self.what, self.then = path, reason, remedy, what, then
        subject = f"{what} {path}" if what else str(path)
        super().__init__(
            f"could not write {subject}: {reason}; {remedy}" + (f", then {then}" if then else "")
        )

    def about(self, what: str = "", instead: str = "", then: str = "") -> WriteError:
        """This failure, naming what was written (unless it is named), another way out
        (`instead`) and what to do once it is fixed (`then`, unless it is said)."""
        remedy = f"{self.remedy}, or {instead}" if instead else self.remedy
        return WriteError(self.path, self.reason, remedy, self.what or what, self.then or then)
