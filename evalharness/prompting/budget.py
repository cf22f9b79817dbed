"""The budget of one prompt render: limits, the deadline and size accounting, and the checks that
refuse an amplifying operation (`*`, `%`, `format`, padding, `replace`, `join`, `wordwrap`, ...)
before its value is built. The sandboxed environment in render.py calls into these.
"""

from __future__ import annotations

import re
import string
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from evalharness.errors import TemplateError


@dataclass(frozen=True)
class Limits:
    """The budget of one render; `render(..., limits=)` or the module's LIMITS set it."""

    seconds: float = 2.0  # wall clock of one render
    max_value: int = 1_000_000  # characters (or items) one template operation may take or build
    max_output: int = 4_000_000  # characters of one rendered prompt
    max_built: int = 16_000_000  # characters all operations of one render may build together


LIMITS = Limits()
MAX_TEMPLATE = 100_000  # characters of one template's source (the longest built-in one has 1,694)
_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


class _Budget:
    """The running account of one render: its deadline and the characters built so far."""

    __slots__ = ("built", "deadline", "limits")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.deadline = time.monotonic() + limits.seconds
        self.built = 0

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise TemplateError(f"refused by the template sandbox: rendering took longer than the "
                                f"{self.limits.seconds:g} s time budget")

    def spend(self, size: int) -> None:
        self.built += size
        if self.built > self.limits.max_built:
            raise TemplateError(f"refused by the template sandbox: the template built more than "
                                f"{self.limits.max_built:,} characters in all")

    def iterate(self, iterable: Iterable[Any]) -> Iterator[Any]:
        deadline, clock = self.deadline, time.monotonic
        for item in iterable:
            if clock() > deadline:
                self.tick()
            yield item


_ACTIVE: ContextVar[_Budget | None] = ContextVar("evalharness_render_budget", default=None)


def _limits() -> Limits:
    budget = _ACTIVE.get()
    return budget.limits if budget is not None else LIMITS


def _weight(value: Any, cap: int) -> int:
    """About how many characters `str(value)` would take, counting what containers refer to;
    counting stops past `cap`. A list of a thousand references to one big string is heavy."""
    total, stack = 0, [value]
    while stack and total <= cap:
        v = stack.pop()
        if isinstance(v, (str, bytes)):
            total += len(v)
        elif isinstance(v, bool) or v is None:
            total += 5
        elif isinstance(v, int):
            total += v.bit_length() // 3 + 1
        elif isinstance(v, (list, tuple, set, frozenset)):
            total += 2 + len(v)
            stack.extend(v)
        elif isinstance(v, Mapping):
            total += 2 + 2 * len(v)
            stack.extend(v.keys())
            stack.extend(v.values())
        else:  # numbers, ranges, generators, macros: short when printed
            total += 24
    return total


def _refuse(what: str, limit: int | None = None) -> TemplateError:
    limit = _limits().max_value if limit is None else limit
    return TemplateError(f"refused by the template sandbox: {what} would exceed {limit:,} characters")


def _check_weight(what: str, *values: Any) -> None:
    cap = _limits().max_value
    if sum(_weight(v, cap) for v in values) > cap:
        raise _refuse(what)


def _built(what: str, value: Any) -> Any:
    """Account for a value an operation built: refused past max_value, counted toward max_built."""
    budget = _ACTIVE.get()
    cap = (budget.limits if budget is not None else LIMITS).max_value
    size = len(value) if value.__class__ is str else _weight(value, cap)
    if size > cap:
        raise _refuse(what)
    if budget is not None:
        budget.spend(size)
    return value


def _check_widths(fmt: str, args: Any = ()) -> None:
    """Padding widths in a printf-style or str.format string stay small, and so does the result
    (every field may print all of the arguments)."""
    numbers = [n for m in _PRINTF.finditer(fmt) for n in m.groups() if n]
    fields = fmt.count("%")
    try:
        parsed = list(string.Formatter().parse(fmt))
        specs = [spec for _, _, spec, _ in parsed if spec]
        fields += sum(name is not None for _, name, _, _ in parsed)
    except ValueError:
        specs = []  # not a str.format string; `%` formatting still applies
    if any("{" in spec for spec in specs):
        raise _refuse("a nested format width")
    numbers += [n for spec in specs for n in re.findall(r"\d+", spec)]
    cap = _limits().max_value
    if any(n == "*" or int(n) > cap for n in numbers):
        raise _refuse(f"format width in {fmt[:40]!r}")
    if fields and len(fmt) + fields * _weight(args, cap) > cap:
        raise _refuse(f"formatting {fmt[:40]!r}")


def _check_pad(value: Any, width: Any = 80, *args: Any, **kwargs: Any) -> None:
    pad = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    text = str(value)
    if pad * (1 + text.count("\n")) + len(text) > _limits().max_value:
        raise _refuse("padding")


def _check_replace(value: Any, old: Any = "", new: Any = "", count: Any = None, **kwargs: Any) -> None:
    text, old, new = (value, old, new) if isinstance(value, bytes) else (str(value), str(old), str(new))
    hits = (len(text) + 1) if len(old) == 0 else text.count(old)
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    if len(text) + hits * max(0, len(new) - len(old)) > _limits().max_value:
        raise _refuse("replace")


def _check_join(items: Any, sep: Any = "", *args: Any, **kwargs: Any) -> None:
    if isinstance(items, (str, list, tuple, set, frozenset, Mapping, range)):
        if _weight(items, _limits().max_value) + len(items) * _weight(sep, _limits().max_value) > _limits().max_value:
            raise _refuse("join")


def _check_wordwrap(value: Any, width: Any = 79, break_long_words: Any = True, wrapstring: Any = None,
                    *args: Any, **kwargs: Any) -> None:
    cap = _limits().max_value
    lines = len(str(value)) // max(1, width if isinstance(width, int) else 1) + 1
    if lines > cap // 50:  # textwrap spends about 10 us a line
        raise TemplateError(f"refused by the template sandbox: wordwrap would make more than {cap // 50:,} lines")
    if len(str(value)) + lines * _weight(wrapstring if wrapstring is not None else "\n", cap) > cap:
        raise _refuse("wordwrap")


def _check_count(value: Any, count: Any = 0, *args: Any, **kwargs: Any) -> None:
    if isinstance(count, int) and count > _limits().max_value:
        raise _refuse("batch/slice count")


def _check_format(value: Any, *args: Any, **kwargs: Any) -> None:
    _check_widths(str(value), (args, kwargs))


def _check_width_arg(value: Any, width: Any = 0, *args: Any, **kwargs: Any) -> None:
    if isinstance(width, int) and width > _limits().max_value:
        raise _refuse("padding")


def _check_expandtabs(value: Any, tabsize: Any = 8, **kwargs: Any) -> None:
    tab = "\t" if isinstance(value, str) else b"\t"
    if isinstance(tabsize, int) and len(value) + value.count(tab) * tabsize > _limits().max_value:
        raise _refuse("expandtabs")


def _check_translate(value: Any, table: Any = None, *args: Any) -> None:
    if isinstance(table, Mapping) and table:
        longest = max(_weight(v, _limits().max_value) for v in table.values())
        if len(value) * longest > _limits().max_value:
            raise _refuse("translate")


# Filters whose output can be much bigger than their input get a check of their arguments first.
_FILTER_CHECKS: dict[str, Callable[..., None]] = {
    "center": _check_pad, "indent": _check_pad, "replace": _check_replace, "format": _check_format,
    "join": _check_join, "wordwrap": _check_wordwrap, "batch": _check_count, "slice": _check_count,
}
# The same for methods of str (and bytes) values.
_METHOD_CHECKS: dict[str, Callable[..., None]] = {
    "center": _check_width_arg, "ljust": _check_width_arg, "rjust": _check_width_arg, "zfill": _check_width_arg,
    "expandtabs": _check_expandtabs, "replace": _check_replace, "join": lambda s, items=(), *a: _check_join(items, s),
    "translate": _check_translate,
}
