"""Prompt rendering in a jinja2 sandbox with StrictUndefined.

Data fields reach templates as values only: they are never themselves rendered as templates,
so `{{ ... }}` inside a data row is plain text.

The sandbox refuses attribute walks to Python internals (`__class__`, `__globals__`, ...) and
has no globals but a bounded `range`. Size bombs are bounded where they are cheap to catch:
`*`, `+`, `**` and `%` on big operands, padding widths in `%` / `str.format` / `format`, the
`center`, `indent` and `replace` filters, and the total output. Other slow paths remain
(e.g. repeated `~` concatenation): see SECURITY.md.
"""

from __future__ import annotations

import functools
import hashlib
import re
import string
from collections.abc import Callable, Mapping
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from evalharness.errors import TemplateError

# The most characters (or items) one template operation may build, and a rendered prompt may hold.
MAX_VALUE = 1_000_000
MAX_OUTPUT = 4_000_000
_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


def _size(value: Any) -> int | None:
    return len(value) if isinstance(value, (str, list, tuple)) else None


def _refuse(what: str) -> TemplateError:
    return TemplateError(f"refused by the template sandbox: {what} would exceed {MAX_VALUE:,} characters")


def _check_widths(fmt: str) -> None:
    """Padding widths and precisions in a printf-style or str.format string must stay small."""
    numbers = [n for m in _PRINTF.finditer(fmt) for n in m.groups() if n]
    try:
        specs = [spec for _, _, spec, _ in string.Formatter().parse(fmt) if spec]
    except ValueError:
        specs = []  # not a str.format string; `%` formatting still applies
    if any("{" in spec for spec in specs):
        raise _refuse("a nested format width")
    numbers += [n for spec in specs for n in re.findall(r"\d+", spec)]
    if any(n == "*" or int(n) > MAX_VALUE for n in numbers):
        raise _refuse(f"format width in {fmt[:40]!r}")


class _Sandbox(ImmutableSandboxedEnvironment):
    """The jinja2 sandbox with size checks on the operators that can build huge values."""

    intercepted_binops = frozenset({"*", "+", "**", "%"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if _size(seq) is not None and isinstance(n, int) and _size(seq) * n > MAX_VALUE:  # type: ignore[operator]
                    raise _refuse("repetition")
        elif operator == "+" and _size(left) is not None and _size(right) is not None:
            if _size(left) + _size(right) > MAX_VALUE:  # type: ignore[operator]
                raise _refuse("concatenation")
        elif operator == "**" and isinstance(left, int) and isinstance(right, int) and abs(left) > 1:
            if right * max(1, abs(left).bit_length()) > 64 * MAX_VALUE:
                raise _refuse("power")
        elif operator == "%" and isinstance(left, str):
            _check_widths(left)
        return super().call_binop(context, operator, left, right)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            _check_widths(value.__self__)
        return wrapped


def _guarded(name: str, check: Callable[..., None]) -> Callable[..., Any]:
    """A built-in filter with a size check first (keeping jinja2's context-passing mark)."""
    original = jinja2.filters.FILTERS[name]
    passes = getattr(original, "jinja_pass_arg", None)

    def run(*args: Any, **kwargs: Any) -> Any:
        check(*(args[1:] if passes else args), **kwargs)
        return original(*args, **kwargs)

    if passes is not None:
        run.jinja_pass_arg = passes  # type: ignore[attr-defined]
    return run


def _check_pad(value: Any, width: Any = 80, *args: Any, **kwargs: Any) -> None:
    pad = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    if pad * (1 + str(value).count("\n")) + len(str(value)) > MAX_VALUE:
        raise _refuse("padding")


def _check_replace(value: Any, old: Any = "", new: Any = "", count: Any = None, **kwargs: Any) -> None:
    text, old, new = str(value), str(old), str(new)
    hits = (len(text) + 1) if old == "" else text.count(old)
    if len(text) + hits * max(0, len(new) - len(old)) > MAX_VALUE:
        raise _refuse("replace")


def _check_format(value: Any, *args: Any, **kwargs: Any) -> None:
    _check_widths(str(value))


@functools.lru_cache(maxsize=1)
def environment() -> ImmutableSandboxedEnvironment:
    env = _Sandbox(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )
    # No globals that reach Python objects (lipsum, cycler, joiner, namespace, range).
    env.globals.clear()
    env.globals["range"] = _safe_range
    env.filters["center"] = _guarded("center", _check_pad)
    env.filters["indent"] = _guarded("indent", _check_pad)
    env.filters["replace"] = _guarded("replace", _check_replace)
    env.filters["format"] = _guarded("format", _check_format)
    return env


def _safe_range(*args: int) -> range:
    r = range(*args)
    if len(r) > 10_000:
        raise TemplateError("range() in a template is limited to 10,000 items")
    return r


@functools.lru_cache(maxsize=256)
def _compile(source: str) -> jinja2.Template:
    try:
        return environment().from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error at line {exc.lineno}: {exc.message}") from None


def check_template(source: str, where: str) -> None:
    """Fail early, naming the field, if a template does not compile."""
    try:
        _compile(source)
    except TemplateError as exc:
        raise TemplateError(f"{where}: {exc}") from None


def render(source: str, fields: Mapping[str, Any], where: str = "template") -> str:
    """Render a template against a sample's fields; errors name `where`."""
    try:
        template = _compile(source)
    except TemplateError as exc:
        raise TemplateError(f"{where}: {exc}") from None
    try:
        parts: list[str] = []
        size = 0
        for chunk in template.generate(**fields):  # streamed, so loops that print too much stop early
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise TemplateError(f"refused by the template sandbox: the output would exceed {MAX_OUTPUT:,} characters")
            parts.append(chunk)
        return "".join(parts)
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"{where}: {exc.message} (available fields: {', '.join(sorted(fields))})") from None
    except jinja2.exceptions.SecurityError as exc:
        raise TemplateError(f"{where}: refused by the template sandbox: {exc}") from None
    except TemplateError as exc:
        raise TemplateError(f"{where}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any render failure is the template's fault
        raise TemplateError(f"{where}: render failed: {type(exc).__name__}: {exc}") from None


def template_hash(*sources: str | None) -> str:
    """A stable fingerprint of the templates that shape a prompt."""
    h = hashlib.sha256()
    for s in sources:
        h.update((s or "").encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()[:16]
