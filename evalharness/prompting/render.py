"""Prompt rendering in a jinja2 sandbox with StrictUndefined, on a time and size budget.

Data fields reach templates as values only: they are never themselves rendered as templates,
so `{{ ... }}` inside a data row is plain text.

The sandbox refuses attribute walks to Python internals (`__class__`, `__globals__`, ...) and
has no globals but a bounded `range`. Each render also runs on a budget (`Limits`): a deadline
checked on every loop iteration, call, filter, `~`, operator and output; no operation may take
or build a value past `max_value` characters, checked before the value is built where an
operation can amplify its input (`*`, `~`, `%`, `format`, padding, `replace`, `join`,
`wordwrap`, ...); everything the operations build in one render counts against `max_built`,
so a loop cannot keep many big values alive; and the prompt is cut at `max_output`.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.sandbox import ImmutableSandboxedEnvironment

from evalharness.errors import TemplateError
from evalharness.prompting.budget import (
    _ACTIVE,
    _FILTER_CHECKS,
    _METHOD_CHECKS,
    LIMITS,
    MAX_TEMPLATE,
    Limits,
    _Budget,
    _built,
    _check_weight,
    _check_widths,
    _limits,
    _refuse,
    _weight,
)


def _guarded_filter(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    """A built-in filter on the budget (keeping jinja2's context-passing mark)."""
    passes = getattr(original, "jinja_pass_arg", None)
    check = _FILTER_CHECKS.get(name)

    def run(*args: Any, **kwargs: Any) -> Any:
        budget = _ACTIVE.get()
        if budget is not None:
            budget.tick()
        values = args[1:] if passes else args
        _check_weight(f"the {name} filter's input", *values, *kwargs.values())
        if check is not None:
            check(*values, **kwargs)
        return _built(f"the {name} filter's output", original(*args, **kwargs))

    if passes is not None:
        run.jinja_pass_arg = passes  # type: ignore[attr-defined]
    return run


class _Compiler(CodeGenerator):
    """jinja2's compiler with budget hooks where it emits plain Python: loops tick per item,
    slices and `~` go through the environment, and macro / block / `set` buffers count what is
    written into them."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        it = node.iter
        if not (isinstance(it, nodes.Call) and isinstance(it.node, nodes.EnvironmentAttribute)
                and it.node.name == "guard_iter"):
            node.iter = nodes.Call(nodes.EnvironmentAttribute("guard_iter"), [it], [], None, None, lineno=it.lineno)
        super().visit_For(node, frame)

    def visit_Getitem(self, node: nodes.Getitem, frame: Frame) -> None:
        if not isinstance(node.arg, nodes.Slice):  # jinja2 compiles slices to plain Python, unchecked
            super().visit_Getitem(node, frame)
            return
        self.write("environment.getslice(")
        self.visit(node.node, frame)
        for part in (node.arg.start, node.arg.stop, node.arg.step):
            self.write(", ")
            if part is None:
                self.write("None")
            else:
                self.visit(part, frame)
        self.write(")")

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.guard_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    def buffer(self, frame: Frame) -> None:
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = environment.guard_buffer()")


class _Buffer(list[str]):
    """Where a macro, call block, filter block or `{% set %}` block writes its output."""

    __slots__ = ()

    def append(self, text: str) -> None:
        budget = _ACTIVE.get()
        if budget is not None:
            budget.tick()
            budget.spend(len(text))
        super().append(text)

    def extend(self, texts: Iterable[str]) -> None:
        for text in texts:
            self.append(text)


class _Sandbox(ImmutableSandboxedEnvironment):
    """The jinja2 sandbox on a budget: see the module docstring."""

    code_generator_class = _Compiler
    intercepted_binops = frozenset({"*", "+", "**", "%"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        budget = _ACTIVE.get()
        if budget is not None:
            budget.tick()
        cap = _limits().max_value
        if operator == "*":
            if isinstance(left, int) and isinstance(right, int):
                if left.bit_length() + right.bit_length() > cap:  # bits; printing stops at 4,300 digits anyway
                    raise _refuse("multiplication")
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, bytes, list, tuple)) and isinstance(n, int) and n > 0:
                    if _weight(seq, cap) * n > cap:
                        raise _refuse("repetition")
        elif operator == "+" and isinstance(left, (str, bytes, list, tuple)):
            _check_weight("concatenation", left, right)
        elif operator == "**" and isinstance(left, int) and isinstance(right, int) and abs(left) > 1:
            if right * max(1, abs(left).bit_length()) > cap:
                raise _refuse("power")
        elif operator == "%" and isinstance(left, str):
            _check_widths(left, right)
        result = super().call_binop(context, operator, left, right)
        return _built(operator, result) if isinstance(result, (str, bytes, list, tuple)) else result

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        budget = _ACTIVE.get()
        if budget is not None:
            budget.tick()
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, (str, bytes)):
            check = _METHOD_CHECKS.get(getattr(__obj, "__name__", ""))
            if check is not None:
                check(owner, *args, **kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        return _built("a call's result", result)

    def getslice(self, obj: Any, start: Any, stop: Any, step: Any) -> Any:
        budget = _ACTIVE.get()
        if budget is not None:
            budget.tick()
        return _built("a slice", obj[start:stop:step])

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt = value.__self__
        _check_widths(fmt)

        def checked(*args: Any, **kwargs: Any) -> str:
            _check_widths(fmt, (args, kwargs))
            return wrapped(*args, **kwargs)

        return functools.update_wrapper(checked, wrapped)

    def guard_iter(self, iterable: Any) -> Any:
        budget = _ACTIVE.get()
        return iterable if budget is None else budget.iterate(iterable)

    def guard_concat(self, parts: tuple[Any, ...]) -> str:
        _check_weight("concatenation (~)", *parts)
        text = "".join(map(str, parts))
        _built("concatenation (~)", text)
        return text

    def guard_buffer(self) -> _Buffer:
        return _Buffer()

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        if len(source) > MAX_TEMPLATE:
            raise TemplateError(f"the template is {len(source):,} characters long, over the limit of {MAX_TEMPLATE:,}")
        return super()._parse(source, name, filename)


def _finalize(value: Any) -> Any:
    """Every `{{ ... }}` passes here before it is printed: a container that refers to big values
    many times must not be turned into one huge string."""
    if value.__class__ is str:  # already built (and counted) or data: printing it copies nothing
        return value
    if value is None:  # a null data field would print as the word 'None' and be scored
        raise TemplateError("a printed field is null (it would render as the text 'None'); fix the data or use "
                            "{{ field or '' }}")
    if isinstance(value, Mapping):  # would print as Python's repr ({'a': 1}), which no prompt means
        raise TemplateError(f"a printed value is a mapping ({_short(value)}), which would render as Python's repr; "
                            "print one of its fields ({{ x.key }}) or format it with a filter (tojson)")
    cap = _limits().max_output
    if _weight(value, cap) > cap:
        raise _refuse("printing a value", cap)
    return value


def _short(value: Any) -> str:
    keys = list(value)[:3]
    return "keys " + ", ".join(repr(k) for k in keys) + (", ..." if len(value) > 3 else "")


@functools.lru_cache(maxsize=1)
def environment() -> ImmutableSandboxedEnvironment:
    env = _Sandbox(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        finalize=_finalize,
    )
    # No globals that reach Python objects (lipsum, cycler, joiner, namespace, range).
    env.globals.clear()
    env.globals["range"] = _safe_range
    for name, original in list(env.filters.items()):
        env.filters[name] = _guarded_filter(name, original)
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
    except RecursionError:
        raise TemplateError("the template is nested too deeply to compile") from None


def check_template(source: str, where: str) -> None:
    """Fail early, naming the field, if a template does not compile."""
    try:
        _compile(source)
    except TemplateError as exc:
        raise TemplateError(f"{where}: {exc}") from None


def render(source: str, fields: Mapping[str, Any], where: str = "template", limits: Limits | None = None) -> str:
    """Render a template against a sample's fields within `limits` (default LIMITS); errors are
    one line that starts with `where` (the task file, field and row) and names the limit hit."""
    try:
        template = _compile(source)
    except TemplateError as exc:
        raise TemplateError(f"{where}: {exc}") from None
    budget = _Budget(limits or LIMITS)
    token = _ACTIVE.set(budget)
    try:
        parts: list[str] = []
        size = 0
        for chunk in template.generate(**fields):  # streamed, so loops that print too much stop early
            size += len(chunk)
            if size > budget.limits.max_output:
                raise _refuse("the output", budget.limits.max_output)
            parts.append(chunk)
        return "".join(parts)
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"{where}: {exc.message} (available fields: {', '.join(sorted(fields))})") from None
    except jinja2.exceptions.SecurityError as exc:
        raise TemplateError(f"{where}: refused by the template sandbox: {exc}") from None
    except TemplateError as exc:
        raise TemplateError(f"{where}: {exc}") from None
    except RecursionError:
        raise TemplateError(f"{where}: refused by the template sandbox: recursion too deep") from None
    except Exception as exc:  # noqa: BLE001 - any render failure is the template's fault
        raise TemplateError(f"{where}: render failed: {type(exc).__name__}: {str(exc)[:200]}") from None
    finally:
        _ACTIVE.reset(token)


def template_hash(*sources: str | None) -> str:
    """A stable fingerprint of the templates that shape a prompt."""
    h = hashlib.sha256()
    for s in sources:
        h.update((s or "").encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()[:16]
