"""attrs validators for component fields, with messages the spec loader reports at the field.

steps: int = param(100, doc="...", validator=positive)
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs


def positive(_: object, a: attrs.Attribute, value: float | None) -> None:
    """> 0 (None passes: optional fields)."""
    if value is not None and not value > 0:
        raise ValueError(f"{a.name} must be positive, got {value}")


def non_negative(_: object, a: attrs.Attribute, value: float | None) -> None:
    """>= 0 (None passes)."""
    if value is not None and not value >= 0:
        raise ValueError(f"{a.name} must be >= 0, got {value}")


def positive_ints(_: object, a: attrs.Attribute, values: Sequence[int]) -> None:
    """A non-empty sequence of positive integers."""
    if not values:
        raise ValueError(f"{a.name} must not be empty")
    if any(v <= 0 for v in values):
        raise ValueError(f"{a.name} must hold positive integers, got {list(values)}")
