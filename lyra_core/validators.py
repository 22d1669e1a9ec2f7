"""attrs validators for component fields, with messages the spec loader reports at the field.

    steps: int = param(100, doc="...", validator=positive)
    strides: tuple[int, ...] = param((2, 4), doc="...", validator=positive_ints(MAX_FACTOR))

Each validator also states its bound as JSON Schema (`.schema`), which the schema generator adds
to the field, so an editor and `lyra validate` refuse the same values the attrs class refuses.
Every size has an upper bound: a spec that asks for 2^40 channels is a mistake, not a model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs

MAX_CHANNELS = 65_536  # widths: channels, latent and hidden dimensions
MAX_FACTOR = 1024  # strides, dilations, width multipliers, periods, pooling scales
MAX_KERNEL = 4095  # conv kernel sizes
MAX_SAMPLES = 2**24  # lengths in samples or frames: segments, windows, FFT sizes, hops
MAX_ITEMS = 64  # list fields: dilations, strides, resolutions, layers
MAX_COUNT = 2**40  # counts of steps and examples
MAX_CODEBOOKS = 256  # quantizer levels
MAX_CODEBOOK_SIZE = 2**20  # entries per codebook
MAX_SAMPLE_RATE = 768_000  # Hz
MAX_WORKERS = 256  # data-loading processes or threads


@attrs.frozen
class Check:
    """A validator of one value: `test(value)` must hold (None passes: optional fields)."""

    test: Callable[[Any], bool]
    message: Callable[[Any], str]  # what a failing value must be, e.g. "must be positive"
    schema: dict[str, Any]  # the same rule as JSON Schema keywords

    def __call__(self, _: object, a: attrs.Attribute, value: Any) -> None:
        if value is not None and not self.test(value):
            raise ValueError(f"{a.name} {self.message(value)}, got {value!r}")


@attrs.frozen
class EachCheck:
    """A validator of a sequence: its length in [min_items, max_items], each item `item`."""

    item: Check | None
    min_items: int = 1
    max_items: int = MAX_ITEMS
    what: str = ""  # the items, e.g. "positive integers up to 1024" (default: the item's rule)

    @property
    def schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"maxItems": self.max_items}
        if self.min_items:
            schema["minItems"] = self.min_items
        if self.item is not None:
            schema["items"] = self.item.schema
        return schema

    def __call__(self, _: object, a: attrs.Attribute, values: Sequence[Any] | None) -> None:
        if values is None:
            return
        if len(values) < self.min_items:
            raise ValueError(
                f"{a.name} must not be empty"
                if self.min_items == 1
                else f"{a.name} needs at least {self.min_items} items, got {len(values)}"
            )
        if len(values) > self.max_items:
            raise ValueError(f"{a.name} may hold at most {self.max_items} items, got {len(values)}")
        bad = [v for v in values if self.item is not None and not self.item.test(v)]
        if bad and self.item is not None:
            rule = f"must hold {self.what}" if self.what else f": each {self.item.message(bad[0])}"
            raise ValueError(f"{a.name} {rule}, got {list(values)}".replace(" :", ":"))


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    left = "-inf" if low is None else f"{low:g}"
    right = "inf" if high is None else f"{high:g}"
    opening = "(" if low_open or low is None else "["
    closing = ")" if high_open or high is None else "]"
    return f"{opening}{left}, {right}{closing}"


def between(
    low: float | None,
    high: float | None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
    odd: bool = False,
) -> Check:
    """A number from `low` to `high` (either end open or absent); `integer`: sizes and counts."""

    def too_low(v: Any) -> bool:
        return low is not None and (v <= low if low_open else v < low)

    def too_high(v: Any) -> bool:
        return high is not None and (v >= high if high_open else v > high)

    def message(v: Any) -> str:
        if odd:
            return f"must be a positive odd number up to {high:g} ('same' padding)"
        if not integer and low is not None and high is not None:
            return f"must be in {_interval(low, high, low_open, high_open)}"
        if too_low(v):
            if low == 0 or (integer and low == 1):
                return "must be positive" if low_open or low == 1 else "must be >= 0"
            return f"must be {'above' if low_open else 'at least'} {low:g}"
        return f"must be {'below' if high_open else 'at most'} {high:g}"

    schema: dict[str, Any] = {}
    if low is not None:
        schema["exclusiveMinimum" if low_open else "minimum"] = low
    if high is not None:
        schema["exclusiveMaximum" if high_open else "maximum"] = high
    if odd:
        schema["not"] = {"multipleOf": 2}
    return Check(lambda v: not (too_low(v) or too_high(v) or (odd and v % 2 != 1)), message, schema)


positive = between(0, None, low_open=True)  # > 0
non_negative = between(0, None)  # >= 0
fraction = between(0, 1)  # in [0, 1]: probabilities, fractions of a whole
open_fraction = between(0, 1, high_open=True)  # in [0, 1): Adam's betas


def size(maximum: int, minimum: int = 1) -> Check:
    """An integer size or count in [minimum, maximum]."""
    return between(minimum, maximum, integer=True)


def odd(maximum: int = MAX_KERNEL) -> Check:
    """A positive odd integer up to `maximum` (kernel sizes with 'same' padding)."""
    return between(1, maximum, integer=True, odd=True)


def positive_ints(
    maximum: int, *, max_items: int = MAX_ITEMS, min_items: int = 1, odd: bool = False
) -> EachCheck:
    """A sequence of `min_items`..`max_items` positive integers, each at most `maximum`."""
    what = f"positive {'odd ' if odd else ''}integers up to {maximum}"
    return EachCheck(between(1, maximum, odd=odd, integer=True), min_items, max_items, what)


def each(item: Check, *, max_items: int = MAX_ITEMS, min_items: int = 1) -> EachCheck:
    """A sequence of `min_items`..`max_items` values, each passing `item`."""
    return EachCheck(item, min_items, max_items)


def schema_of(validator: Any) -> list[dict[str, Any]]:
    """The JSON Schema fragments that `validator` (a Check, an `and_`, an `optional`) states."""
    if validator is None:
        return []
    if isinstance(validator, Check | EachCheck):
        return [validator.schema]
    inner = getattr(validator, "_validators", None)  # attrs.validators.and_
    if inner is not None:
        return [frag for v in inner for frag in schema_of(v)]
    return schema_of(getattr(validator, "validator", None))  # attrs.validators.optional
