from __future__ import annotations

from pathlib import Path

import pytest

from evalharness.errors import SpecError
from evalharness.spec.task import load_task_file, task_from_text

BASE = """
name: t
kind: generate
dataset: {path: qa.jsonl}
prompt: {template: "Q: {{question}}"}
references: answers
metrics: [exact_match]
"""


def test_valid_task_loads(fixtures: Path) -> None:
    task = load_task_file(fixtures / "mc.yaml")
    assert task.spec.kind == "multiple_choice"
    assert task.spec.metrics[0].name == "acc"
    assert len(task.file_hash) == 64


def test_unknown_key_rejected_naming_field() -> None:
    with pytest.raises(SpecError, match=r"f\.yaml: prompt\.tempalte: unknown key"):
        task_from_text(BASE.replace("template:", "tempalte:"), "f.yaml")


def test_missing_field_named() -> None:
    text = "\n".join(line for line in BASE.splitlines() if not line.startswith("kind"))
    with pytest.raises(SpecError, match=r"kind: required field missing"):
        task_from_text(text, "f.yaml")


def test_yaml_syntax_error_names_line() -> None:
    with pytest.raises(SpecError, match=r"^f\.yaml:\d+: invalid YAML"):
        task_from_text("name: [unclosed\nkind: generate\n", "f.yaml")


def test_python_tags_are_not_executed() -> None:
    with pytest.raises(SpecError, match="invalid YAML"):
        task_from_text("name: !!python/object/apply:os.system ['echo hi']\n", "f.yaml")


def test_dataset_needs_exactly_one_source() -> None:
    with pytest.raises(SpecError, match="exactly one of"):
        task_from_text(BASE.replace("dataset: {path: qa.jsonl}", "dataset: {path: a.jsonl, hub: x/y}"), "f.yaml")


def test_bad_regex_rejected() -> None:
    with pytest.raises(SpecError, match=r"extract\.regex"):
        task_from_text(BASE + "extract: {regex: '(unclosed'}\n", "f.yaml")


def test_perplexity_needs_document() -> None:
    text = "name: p\nkind: perplexity\ndataset: {path: d.jsonl}\nmetrics: [word_perplexity]\n"
    with pytest.raises(SpecError, match="document: required"):
        task_from_text(text, "f.yaml")


def test_metric_shorthand_and_params() -> None:
    task = task_from_text(BASE.replace("[exact_match]", "[exact_match, {name: f1, params: {version: '2.0'}}]"), "f")
    assert [m.name for m in task.spec.metrics] == ["exact_match", "f1"]
    assert task.spec.metrics[1].params == {"version": "2.0"}


def test_yaml_alias_bomb_is_refused_before_expansion() -> None:
    levels = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for prev, name in zip("abcdef", "bcdefg", strict=True):
        levels.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    with pytest.raises(SpecError, match="more than 100,000 nodes"):
        task_from_text(BASE + "\n".join(levels) + "\n", "bomb.yaml")
