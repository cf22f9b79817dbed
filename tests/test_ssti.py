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
