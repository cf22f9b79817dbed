"""Typed model args: a backend declares its `--model-args` once, as a dataclass of options.

`Options.parse` turns what `--model-args` gives (strings) or a caller passes (values) into the
typed object, by each field's annotation: `int`, `float` and `bool` (the words of `as_bool`) are
coerced, a `Literal` word is kept (matched without case), an optional field reads `None` and the
class's `none_words` as None, and anything else passes as given. A field's `metadata["min"]` is
its least allowed number (the class's `min_int` for an int field without one; None: no least),
and `metadata["error"]` its own text for a value that is not a number. Unknown keys and
missing required ones are a TypeError in Python's own words (what `load_backend` reports as
"bad --model-args"). The error texts are templates on the
class (`{backend}`, `{name}`, `{value!r}`, `{minimum}`), so each backend keeps its wording.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, TypeVar, Union

from evalharness.backends.base import as_bool
from evalharness.errors import BackendError

OptionsT = TypeVar("OptionsT", bound="Options")


def _number(value: Any, kind: type) -> int | float | None:
    """`value` as a finite int (a whole number: 8, "8", 8.0) or float ("0.5", 0.5), else None."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value) if not isinstance(value, int) else value
    except (TypeError, ValueError, OverflowError):
        return None
    if isinstance(number, float) and not math.isfinite(number):
        return None
    if kind is int:
        if isinstance(number, int):
            return number
        if isinstance(value, str) and not value.strip().lstrip("+-").isdigit():
            return None  # "2.7", "1e3": a count is written as a whole number
        return int(number) if number.is_integer() else None
    return float(number)


def at_least(minimum: int, default: Any) -> Any:
    """A field whose number must be >= `minimum`."""
    return dataclasses.field(default=default, metadata={"min": minimum})


@dataclasses.dataclass(frozen=True)
class Options:
    """Base of every backend's options; subclasses are frozen dataclasses with typed fields."""

    none_words: ClassVar[frozenset[str]] = frozenset({""})
    # The least whole number any int field takes, unless its metadata says otherwise.
    min_int: ClassVar[int | None] = None
    int_error: ClassVar[str] = "backend {backend!r}: {name}: expected a whole number, got {value!r}"
    min_error: ClassVar[str] = "backend {backend!r}: {name}: expected a number >= {minimum}, got {value!r}"
    float_error: ClassVar[str] = "backend {backend!r}: {name}: expected a number, got {value!r}"
    bool_error: ClassVar[str] = "backend {backend!r}: {name}: expected a boolean, got {value!r}"

    @classmethod
    def parse(cls: type[OptionsT], args: Mapping[str, Any], *, owner: str, backend: str) -> OptionsT:
        """The typed options from model args; `owner` names the class in argument errors."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key in args:
            if key not in fields:
                raise TypeError(f"{owner}.__init__() got an unexpected keyword argument {key!r}")
        missing = [name for name, f in fields.items() if name not in args
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            raise TypeError(f"{owner}.__init__() missing required argument: {missing[0]!r}")
        hints = typing.get_type_hints(cls)
        values = {name: cls._coerce(name, value, hints[name], fields[name].metadata, backend)
                  for name, value in args.items()}
        return cls(**values)

    @classmethod
    def _coerce(cls, name: str, value: Any, hint: Any, meta: Mapping[str, Any], backend: str) -> Any:
        members = typing.get_args(hint) if typing.get_origin(hint) in (Union, types.UnionType) else (hint,)
        optional = type(None) in members
        words = {str(w).lower(): w for m in members if typing.get_origin(m) is Literal for w in typing.get_args(m)}
        kinds = [m for m in members if m in (int, float, bool, str)]
        if value is None and optional:
            return None
        if isinstance(value, str) and optional and value.strip().lower() in cls.none_words:
            return None
        if isinstance(value, str) and value.strip().lower() in words:
            return words[value.strip().lower()]
        if not kinds or str in kinds:
            return value
        kind = kinds[0]
        minimum = meta["min"] if "min" in meta else cls.min_int if kind is int else None
        fill = {"backend": backend, "name": name, "value": value, "minimum": minimum}
        if kind is bool:
            try:
                return as_bool(value)
            except BackendError:
                raise BackendError(cls.bool_error.format(**fill)) from None
        number = _number(value, kind)
        if number is None:  # not a number, 2.7 for a count, True, inf, nan: never truncated or coerced
            template = meta.get("error") or (cls.int_error if kind is int else cls.float_error)
            raise BackendError(template.format(**fill))
        if minimum is not None and number < minimum:
            raise BackendError(cls.min_error.format(**fill))
        return number
