"""Hypothesis fuzzing of the spec loaders and the prompt renderer: whatever the input, the only
exception that escapes is our own EvalHarnessError (which the CLI turns into one line, exit 2)."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evalharness.errors import EvalHarnessError, SpecError, TemplateError
from evalharness.prompting.render import render
from evalharness.spec.judge import judge_from_text
from evalharness.spec.task import task_from_text

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KEYS = ["name", "kind", "dataset", "path", "hub", "prompt", "template", "metrics", "references", "generate", "fields",
        "multiple_choice", "choices", "answer", "labels", "continuation", "fewshot", "k", "extract", "regex", "limit",
        "stop", "temperature", "mode", "scale", "min", "max", "criteria", "x", "", "__class__"]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True), st.text(max_size=20),
                    st.sampled_from(["generate", "multiple_choice", "perplexity", "acc", "f1", "d.jsonl", "{{ q }}", "(", "single"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=5),
                      max_leaves=25)
YAMLISH = st.lists(st.sampled_from(["name: x", "kind: generate", "dataset:", "  path: d.jsonl", "prompt:", "  template: '{{ q }}'",
                                    "metrics: [f1]", "- a", "  - b", "key: [1, 2", "{", "}", "&a [1]", "*a", "!!python/name:os.system",
                                    "!!binary AAAA", "? complex", ": x", "\t", "---", "...", "%YAML 1.1", "'unterminated", "|", ">-",
                                    "k: !!float nope", "k: !!int 1.5x", "k: !!timestamp 2020-99-99", "k: !!binary '*'", "k: 0x1F",
                                    "k: " + "[" * 50, "k: !!set {a}", "k: !!omap [a]",
                                    "k: !!python/tuple [1]", "k: 1e999", "\x00", "\ufeff", "é: ü"]), max_size=12)


def _load(text: str) -> None:
    for loader in (task_from_text, judge_from_text):
        try:
            loader(text, "fuzz.yaml")
        except SpecError as exc:
            assert str(exc).startswith("fuzz.yaml"), str(exc)
        except EvalHarnessError:
            pass


@FAST
@given(st.text(max_size=300))
def test_spec_loaders_on_random_text(text: str) -> None:
    _load(text)


def test_spec_loaders_on_deep_nesting_and_bad_tags() -> None:
    for text in ["k: " + "[" * 3000, "k: " + "{a: " * 3000, "k: !!float nope", "k: !!timestamp 2020-99-99"]:
        _load(text)


@FAST
@given(YAMLISH)
def test_spec_loaders_on_yamlish_lines(lines: list[str]) -> None:
    _load("\n".join(lines))


@FAST
@given(st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=8))
def test_spec_loaders_on_random_mappings(data: dict[str, Any]) -> None:
    _load(yaml.safe_dump(data, allow_unicode=True))


@FAST
@given(st.fixed_dictionaries({"name": st.sampled_from(["t", "bad name"]), "kind": st.sampled_from(["generate", "multiple_choice", "x"]),
                              "dataset": st.fixed_dictionaries({}, optional={"path": SCALARS, "hub": SCALARS, "limit": SCALARS,
                                                                             "fields": VALUES}),
                              "metrics": VALUES},
                             optional={"prompt": st.fixed_dictionaries({}, optional={"template": SCALARS, "fewshot": VALUES}),
                                       "generate": VALUES, "extract": VALUES, "multiple_choice": VALUES}))
def test_task_loader_on_near_valid_tasks(data: dict[str, Any]) -> None:
    _load(yaml.safe_dump(data, allow_unicode=True))


TEMPLATE_PARTS = st.sampled_from(["{{", "}}", "{%", "%}", "{#", "#}", " q ", " x ", "|upper", "|attr('__class__')", ".__class__",
                                  "[0]", "(", ")", " * ", " + ", " ** ", " % ", "'%s'", "'{0}'.format", " if ", " else ", " for ",
                                  " in ", "range(", "10**9", "endfor", "endif", "set ", " = ", "~", "|join", "|replace('a','bb')",
                                  "|center(", "|format(", "loop", "self", "cycler", "lipsum", "\n", "raw", "endraw", "macro",
                                  "call", "filter", "include", "import", "extends", "block", "'", '"', ",", ":", "-", "9"])
FIELD_VALUES = st.recursive(st.one_of(st.text(max_size=10), st.integers(), st.floats(), st.none(), st.booleans()),
                            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
                            max_leaves=8)


@FAST
@given(st.lists(TEMPLATE_PARTS, max_size=16).map("".join), st.dictionaries(st.sampled_from(["q", "x", "loop"]), FIELD_VALUES))
def test_render_on_random_templates(template: str, fields: dict[str, Any]) -> None:
    try:
        out = render(template, fields, "fuzz.yaml: prompt.template")
    except TemplateError as exc:
        assert str(exc).startswith("fuzz.yaml: prompt.template: ")
    else:
        assert isinstance(out, str)


@FAST
@given(st.text(max_size=200), st.dictionaries(st.text(max_size=5), FIELD_VALUES, max_size=4))
def test_render_on_random_text(template: str, fields: dict[str, Any]) -> None:
    try:
        render(template, fields)
    except TemplateError:
        pass


@FAST
@given(st.text(max_size=200))
def test_data_values_are_never_rendered(value: str) -> None:
    assert render("<{{ q }}>", {"q": value}) == f"<{value}>"
