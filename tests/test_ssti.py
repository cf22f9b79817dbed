"""Server-side template injection: payloads in task templates are refused by the sandbox (a
TemplateError naming the file and field) or render inert; in data fields they are plain text,
never rendered again as templates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evalharness.cli import main
from evalharness.errors import TemplateError
from evalharness.prompting.render import render

MARKER = "/tmp/evalharness-ssti-pwned"
CMD = f"touch {MARKER}"
PAYLOADS = [
    # attribute walks to Python internals
    "{{ ''.__class__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ ''.__class__.__base__.__subclasses__()[137].__init__.__globals__['popen']('" + CMD + "').read() }}",
    "{{ q.__class__.__init__.__globals__ }}",
    "{{ q.__class__.__mro__[-1].__subclasses__() }}",
    "{{ ().__class__.__bases__[0].__subclasses__() }}",
    "{{ [].__class__.__base__.__subclasses__() }}",
    "{{ {}.__class__.__init__.__globals__['__builtins__']['__import__']('os').system('" + CMD + "') }}",
    "{{ q.__getattribute__('__class__') }}",
    "{{ q['__class__'] }}",
    "{{ q.upper.__self__.__class__ }}",
    "{{ q.format.__globals__ }}",
    "{% for c in ''.__class__.__mro__[1].__subclasses__() %}{% if c.__name__ == 'Popen' %}"
    "{{ c('" + CMD + "', shell=True) }}{% endif %}{% endfor %}",
    # jinja2 globals that lead to os (removed from the environment)
    "{{ cycler.__init__.__globals__.os.popen('" + CMD + "').read() }}",
    "{{ joiner.__init__.__globals__.os.popen('" + CMD + "').read() }}",
    "{{ namespace.__init__.__globals__.os.popen('" + CMD + "').read() }}",
    "{{ lipsum.__globals__['os'].popen('" + CMD + "').read() }}",
    "{{ lipsum.__globals__.__builtins__.__import__('subprocess').check_output('" + CMD + "', shell=True) }}",
    "{{ range.__globals__ }}",
    "{{ range.__closure__ }}",
    # the template's own objects, and Flask-style names
    "{{ self._TemplateReference__context }}",
    "{{ self.__init__.__globals__.__builtins__ }}",
    "{{ self._TemplateReference__context.cycler.__init__.__globals__.os }}",
    "{{ config.items() }}",
    "{{ config.__class__.__init__.__globals__['os'].popen('" + CMD + "') }}",
    "{{ request.application.__globals__.__builtins__.__import__('os').popen('" + CMD + "').read() }}",
    "{{ url_for.__globals__.os }}",
    "{{ get_flashed_messages.__globals__ }}",
    # the attr filter and escaped names
    "{{ q|attr('__class__') }}",
    "{{ q|attr('\\x5f\\x5fclass\\x5f\\x5f') }}",
    "{{ (q|attr('__class__')|attr('__mro__'))[1] }}",
    "{{ q|attr(['_','_class_','_']|join) }}",
    "{{ q|attr('__ge' 'tattribute__')('__class__') }}",
    "{{ ()|attr('\\u005f\\u005fclass\\u005f\\u005f') }}",
    # format string tricks
    "{{ '{0.__class__.__mro__}'.format(q) }}",
    "{{ '{0.__class__.__init__.__globals__}'.format(q) }}",
    "{{ '{0.__class__}'.format_map({'0': q}) }}",
    "{{ '%s'|format(q.__class__) }}",
    "{{ '{0:{1}}'.format(q, 10**9) }}",
    # mutation of builtin containers (immutable sandbox)
    "{{ [].append(1) }}",
    "{% set d = {} %}{{ d.update({'a': 1}) }}",
    "{{ [1].pop() }}",
    # loading other templates or files
    "{% include '/etc/passwd' %}",
    "{% import 'os' as os %}{{ os }}",
    "{% extends '/etc/passwd' %}",
    "{% from 'x' import y %}",
    # macros and callers
    "{% macro m() %}{% endmacro %}{{ m.__globals__ }}",
    "{% macro m() %}{% endmacro %}{{ m._func.__globals__ }}",
    # denial of service
    "{{ range(10**9)|list }}",
    "{% for x in range(10**9) %}{% endfor %}",
    "{{ 'a' * 10**10 }}",
    "{{ ('a' * 10**5) * 10**5 }}",
    "{{ [0] * 10**9 }}",
    "{{ 9 ** 10**9 }}",
    "{{ '%999999999d' % 1 }}",
    "{{ '%*d' % (999999999, 1) }}",
    "{{ '{:>999999999}'.format(q) }}",
    "{{ q|center(999999999) }}",
    "{{ q|indent(999999999, true) }}",
    "{{ ('x' * 999999)|replace('x', 'xx') }}",
    "{% for i in range(10000) %}{% for j in range(10000) %}{{ q }}{% endfor %}{% endfor %}",
]
# What leaks look like when a walk succeeds: reprs of Python internals or command output.
LEAKS = ("<class", "<module", "<function", "<built-in", "<bound", "<frame", "<code", "<cell", "root:", "uid=", "environ")


@pytest.mark.parametrize("payload", PAYLOADS)
def test_template_payload_is_refused_or_inert(payload: str) -> None:
    try:
        out = render(payload, {"q": "x"}, "evil.yaml: prompt.template")
    except TemplateError as exc:
        assert str(exc).startswith("evil.yaml: prompt.template: ")
        assert "\n" not in str(exc)
    else:
        assert not any(leak in out for leak in LEAKS), out[:200]
        assert len(out) < 1_000_000
    assert not Path(MARKER).exists()


def test_most_payloads_are_refused_outright() -> None:
    """An inert render is allowed, but the sandbox should refuse nearly every walk."""
    refused = 0
    for payload in PAYLOADS:
        try:
            render(payload, {"q": "x"})
        except TemplateError:
            refused += 1
    assert refused >= len(PAYLOADS) - 3


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payload_in_a_data_field_is_plain_text(payload: str) -> None:
    assert render("Q: {{ q }}\nA:", {"q": payload}) == f"Q: {payload}\nA:"
    assert render("{{ q|upper|lower }}", {"q": payload}) == payload.lower()


def test_payloads_in_data_reach_the_model_verbatim(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """End to end: rows full of payloads run, and each prompt holds its payload as text."""
    with (tmp_path / "rows.jsonl").open("w", encoding="utf-8") as fh:
        for i, p in enumerate(PAYLOADS):
            fh.write(json.dumps({"id": str(i), "question": p, "answers": ["x"], "meta": {"note": p}}) + "\n")
    (tmp_path / "t.yaml").write_text(
        "name: ssti\nkind: generate\ndataset: {path: rows.jsonl, id_field: id}\n"
        "prompt:\n  template: \"Q: {{ question }} ({{ meta.note }})\\nA:\"\n  system: \"{{ question }}\"\n"
        "references: answers\nmetrics: [exact_match]\n", encoding="utf-8")
    out = tmp_path / "out"
    code = main(["run", "--model", "fake", "--tasks", str(tmp_path / "t.yaml"), "--output", str(out), "--no-cache", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    records = [json.loads(line) for line in (out / "samples" / "ssti.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["prompt"] for r in records] == [f"{p}\n\nQ: {p} ({p})\nA:" for p in PAYLOADS]
    assert not Path(MARKER).exists()


@pytest.mark.parametrize("payload", [p for p in PAYLOADS if "10**" not in p and "999" not in p][:12])
def test_payload_in_a_task_file_names_file_and_field(payload: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "rows.jsonl").write_text('{"id": "a", "q": "x", "answers": ["x"]}\n', encoding="utf-8")
    (tmp_path / "evil.yaml").write_text(
        "name: evil\nkind: generate\ndataset: {path: rows.jsonl, id_field: id}\n"
        f"prompt:\n  template: {json.dumps(payload)}\nreferences: answers\nmetrics: [exact_match]\n", encoding="utf-8")
    code = main(["run", "--model", "fake", "--tasks", str(tmp_path / "evil.yaml"), "--output", str(tmp_path / "o"),
                 "--no-cache", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and "evil.yaml: prompt.template: " in err
    assert not Path(MARKER).exists()


# --- resource gadgets: each ends within the time budget, refused with one line naming the limit ---

BIG = "{% set s = q * 999999 %}"
NESTED = "{% for i in range(10000) %}{% for j in range(10000) %}BODY{% endfor %}{% endfor %}"
GADGETS = {
    # loops: nested, over big strings, in blocks that buffer, recursive
    "loops_3_deep": NESTED.replace("BODY", "{% for k in range(10000) %}{% endfor %}"),
    "loops_printing": NESTED.replace("BODY", "{{ q }}"),
    "loop_over_a_big_string": BIG + "{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}",
    "loop_in_set_block": "{% set x %}" + NESTED.replace("BODY", "aaaaaaaaaa") + "{% endset %}{{ x|length }}",
    "loop_in_filter_block": "{% filter upper %}" + NESTED.replace("BODY", "ab") + "{% endfilter %}",
    "loop_in_call_block": "{% macro m() %}{{ caller() }}{% endmacro %}{% call m() %}" + NESTED.replace("BODY", "ab") + "{% endcall %}",
    "loop_summing_ranges": "{% for i in range(10000) %}{{ range(10000)|sum }}{% endfor %}",
    "loop_sorting": "{% for i in range(10000) %}{{ (q * 999999)|list|sort|length }}{% endfor %}",
    "loop_unique": "{% for i in range(10000) %}{{ (q * 99999)|unique|list|length }}{% endfor %}",
    "recursive_for": "{% for x in [1, 2] recursive %}{{ loop([1, 2]) }}{% endfor %}",
    # ~ concatenation
    "concat_doubling_macro": "{% macro d(s, n) %}{{ d(s ~ s, n - 1) if n else s|length }}{% endmacro %}{{ d(q, 40) }}",
    "concat_chain": "{% set a = q * 500000 %}{{ a ~ a ~ a ~ a ~ a ~ a ~ a ~ a }}",
    "concat_in_a_loop": "{% for i in range(10000) %}{% set b = q * 900000 ~ q %}{% endfor %}",
    "concat_a_tuple_of_references": BIG + "{{ (s, s, s, s) ~ q }}",
    # filters that amplify
    "center_huge": "{{ q|center(10**9) }}",
    "center_in_a_loop": "{% for i in range(10000) %}{{ (q|center(999990))|length }}{% endfor %}",
    "indent_many_lines": "{{ ((q ~ '\\n') * 100000)|indent(100) }}",
    "replace_growing": "{{ (q * 999999)|replace(q, q * 4) }}",
    "wordwrap_width_1": "{{ (q * 400000)|wordwrap(1)|length }}",
    "wordwrap_long_wrapstring": "{{ (q * 1000)|wordwrap(1, wrapstring=q * 9999) }}",
    "join_references": BIG + "{{ (s, s, s, s, s, s, s, s)|join }}",
    "join_long_separator": "{{ range(10000)|join(q * 9999) }}",
    "join_mapped_padding": "{{ range(10000)|map('center', 999990)|join|length }}",
    "map_to_a_list": "{{ range(10000)|map('center', 999990)|list|length }}",
    "format_filter": BIG + "{{ '%s%s%s%s'|format(s, s, s, s) }}",
    "format_method": BIG + "{{ '{0}{0}{0}{0}{0}'.format(s) }}",
    "format_width": "{{ '{:>999999999}'.format(q) }}",
    "printf_tuple": BIG + "{{ '%s %s %s' % (s, s, s) }}",
    "batch_fill": "{{ [1]|batch(10**9, 'x')|list }}",
    "slice_count": "{{ [1]|slice(10**9)|list }}",
    "tojson_escapes": "{{ ('\\x00' * 999999)|tojson|length }}",
    # str methods that amplify
    "str_center": "{{ q.center(10**9) }}",
    "str_ljust": "{{ q.ljust(10**9) }}",
    "str_zfill": "{{ q.zfill(10**9) }}",
    "str_expandtabs": "{{ ('\\t' * 1000).expandtabs(10**6) }}",
    "str_replace_empty": BIG + "{{ s.replace('', s) }}",
    "str_join": BIG + "{{ q.join((s, s, s, s, s)) }}",
    "str_translate": BIG + "{{ s.translate({120: s}) }}",
    "dict_fromkeys": BIG + "{{ {}.fromkeys(range(10000), s)|length }}",
    # printing containers of references, slicing in straight-line code
    "print_a_tuple_of_references": BIG + "{{ (s, s, s, s, s, s) }}",
    "slices_in_conditions": BIG + "{% if s[1:] == s[:-1] %}{% endif %}" * 3000,
    # recursion through macros
    "macro_recursion": "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    "macro_fanout": "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}",
    "macro_squaring_ints": "{% macro sq(x, n) %}{{ sq(x * x, n - 1) if n else x }}{% endmacro %}{{ sq(3, 40) }}",
    # big ranges and list multiplication
    "range_huge": "{{ range(10**9)|list }}",
    "list_multiplied": "{{ [0] * 10**9 }}",
    "list_of_references_multiplied": BIG + "{{ [s] * 1000 }}",
    "nested_lists_multiplied": "{{ ([[0] * 1000] * 1000)|length }}",
    "sum_of_lists": "{{ ([[0] * 999] * 999)|sum(start=[])|length }}",
    "power": "{{ 9 ** (10 ** 9) }}",
    # the template itself
    "source_nested_deep": "{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}",
    "source_too_long": "x" * 100_001,
}
LIMIT_WORDS = ("time budget", "would exceed", "built more than", "recursion too deep", "limited to 10,000",
               "lines", "nested too deeply", "characters long")


@pytest.mark.parametrize("name", sorted(GADGETS))
def test_gadget_ends_within_the_budget_naming_task_row_and_limit(name: str) -> None:
    import time
    import tracemalloc

    from evalharness.prompting.budget import Limits

    limits = Limits(seconds=0.5)
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(TemplateError) as info:
            render(GADGETS[name], {"q": "x"}, "evil.yaml: prompt.template: row 7", limits=limits)
        elapsed = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(info.value)
    assert message.startswith("evil.yaml: prompt.template: row 7: ") and "\n" not in message
    assert any(word in message for word in LIMIT_WORDS), message
    assert elapsed < limits.seconds + 1.5, f"{elapsed:.2f} s"  # one bounded operation past the deadline, at most
    assert peak < 200 * 2**20, f"{peak / 2**20:.0f} MB"  # nothing near a gigabyte is ever built


def test_the_limits_are_configurable_and_the_defaults_leave_real_prompts_alone() -> None:
    from evalharness.prompting.budget import LIMITS, Limits

    doc = "word " * 150_000  # a 750,000-character document, printed, filtered and joined
    assert render("{{ doc }}|{{ doc|trim|length }}|{{ (doc ~ '.')[-3:] }}", {"doc": doc}) == f"{doc}|{len(doc) - 1}|d ."
    assert render("{% for c in choices %}{{ loop.index }}. {{ c|upper }}\n{% endfor %}", {"choices": ["a", "b"]}) == "1. A\n2. B\n"
    assert LIMITS.seconds == 2.0 and LIMITS.max_output == 4_000_000
    with pytest.raises(TemplateError, match="the output would exceed 10 characters"):
        render("{{ q * 11 }}", {"q": "x"}, limits=Limits(max_output=10))
    with pytest.raises(TemplateError, match="repetition would exceed 100 characters"):
        render("{{ q * 101 }}", {"q": "x"}, limits=Limits(max_value=100))
    with pytest.raises(TemplateError, match=r"longer than the 0\.1 s time budget"):
        render("{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}", {}, limits=Limits(seconds=0.1))
