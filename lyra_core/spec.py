"""Component spec building blocks: slots (`Ref["kind"]`), documented fields, the cattrs converter.

A component is an attrs class whose fields are its JSON fields. A field typed `Ref["activation"]`
holds any registered activation; it is looked up in the registry when a spec is structured, so a
plugin installed after the component was written is found.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

import attrs
import cattrs
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)

from lyra_core.errors import LyraError, SpecError, article, did_you_mean
from lyra_core.registry import Registry


class Ref:
    """`Ref["kind"]`: the type of a field that holds any registered component of that kind."""

    kind: ClassVar[str] = ""
    _cache: ClassVar[dict[str, type[Ref]]] = {}

    def __class_getitem__(cls, kind: str) -> type[Ref]:
        if kind not in cls._cache:
            cls._cache[kind] = type(f"Ref[{kind!r}]", (Ref,), {"kind": kind})
        return cls._cache[kind]


def is_ref(t: object) -> bool:
    return isinstance(t, type) and issubclass(t, Ref) and t is not Ref


def param(default: Any = attrs.NOTHING, *, doc: str = "", **kwargs: Any) -> Any:
    """An attrs field with a description that the JSON Schema and `lyra components` show."""
    return attrs.field(default=default, metadata={"doc": doc}, **kwargs)


def field_doc(a: attrs.Attribute) -> str:
    return a.metadata.get("doc", "")


def make_converter(registry: Registry) -> cattrs.Converter:
    """A converter that resolves slots through `registry` and forbids unknown keys."""
    conv = cattrs.Converter(
        forbid_extra_keys=True,
        detailed_validation=True,
        unstruct_collection_overrides={Sequence: list, tuple: list},
    )

    def structure_ref_factory(t: type[Ref]) -> Any:
        def structure(value: Any, _: type) -> Any:
            if not isinstance(value, Mapping) or not isinstance(value.get("type"), str):
                raise LyraError(
                    f'expected an object naming {article(t.kind)}, like {{"type": '
                    f'"{(registry.names(t.kind) or ["name"])[0]}"}}'
                )
            spec = registry.get(t.kind, value["type"]).spec
            return conv.structure({k: v for k, v in value.items() if k != "type"}, spec)

        return structure

    def unstructure_ref_factory(_: type[Ref]) -> Any:
        def unstructure(value: Any) -> dict[str, Any]:
            return {"type": registry.name_of(value)[1], **conv.unstructure(value, type(value))}

        return unstructure

    conv.register_structure_hook_factory(is_ref, structure_ref_factory)
    conv.register_unstructure_hook_factory(is_ref, unstructure_ref_factory)
    return conv


def structure(data: Any, cls: type, registry: Registry, source: str | None = None) -> Any:
    """Structure `data` into `cls`; every problem becomes a `SpecError` with its JSON path."""
    try:
        return make_converter(registry).structure(data, cls)
    except Exception as exc:
        raise SpecError(list(_problems(exc, "$")), source) from exc


def _problems(exc: BaseException, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(exc, ClassValidationError | IterableValidationError):
        with_notes, without_notes = exc.group_exceptions()
        for sub, note in with_notes:
            if isinstance(note, AttributeValidationNote):
                yield from _problems(sub, f"{path}.{note.name}")
            elif isinstance(note, IterableValidationNote):
                yield from _problems(sub, f"{path}[{note.index}]")
            else:
                yield from _problems(sub, path)
        for sub in without_notes:
            yield from _problems(sub, path)
    elif isinstance(exc, ForbiddenExtraKeysError):
        known = attrs.fields_dict(exc.cl) if attrs.has(exc.cl) else {}
        for key in sorted(exc.extra_fields):
            yield path, f"unexpected field '{key}'{did_you_mean(key, known)}"
    elif isinstance(exc, KeyError):
        yield path, f"missing required field {exc}"
    elif isinstance(exc, LyraError | ValueError | TypeError):
        field = _validated_field(exc)
        yield (f"{path}.{field}" if field else path), str(exc)
    else:
        yield path, f"{type(exc).__name__}: {exc}"


def _validated_field(exc: BaseException) -> str | None:
    """The field whose attrs validator raised `exc` (validators get the `Attribute`), if any."""
    tb = exc.__traceback__
    while tb is not None:
        for value in tb.tb_frame.f_locals.values():
            if isinstance(value, attrs.Attribute):
                return value.name
        tb = tb.tb_next
    return None
