"""Issue 18 part 5: input never silently becomes something else.

Null or non-string ids, prompts, predictions and references; NaN in a JSONL file; duplicate
task names, YAML keys and --model-args keys; --batch-size 0; a negative --bootstrap: each is one
line naming the file, row, field or flag, exit code 2, no traceback.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest

from evalharness.cli import main

FIXTURES = Path(__file__).parent / "fixtures"


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def _one_line_exit_2(code: int, err: str, expected: str) -> None:
    assert code == 2, err
    assert expected in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ('{"id": null, "prediction": "Paris", "references": ["Paris"]}', "row 1: id: expected a non-empty string or an integer, got null"),
        ('{"id": 1.5, "prediction": "Paris", "references": ["Paris"]}', "row 1: id: expected a non-empty string or an integer, got 1.5"),
        ('{"id": "a", "prediction": null, "references": ["Paris"]}', "row 1: prediction: expected a string or a list of strings, got null"),
        ('{"id": "a", "prediction": NaN, "references": ["nan"]}', "p.jsonl:1: invalid JSON: NaN is not JSON"),
        ('{"id": "a", "prediction": {"text": "Paris"}, "references": ["Paris"]}', "row 1: prediction: expected a string or a list"),
        ('{"id": "a", "prediction": 42, "references": ["42"]}', "row 1: prediction: expected a string or a list of strings, got 42"),
        ('{"id": "a", "prediction": "Paris", "references": [null]}', "row 1: references[0]: expected a string, got null"),
        ('{"id": "a", "prediction": "Paris", "references": null}', "row 1: references: expected a string or a list of strings, got null"),
        ('{"id": "a", "prompt": null, "prediction": "Paris", "references": ["Paris"]}', "row 1: prompt: expected a string, got null"),
    ],
)
def test_score_refuses_null_and_non_string_inputs(tmp_path: Path, row: str, expected: str) -> None:
    preds = tmp_path / "p.jsonl"
    preds.write_text(row + "\n")
    code, _, err = cli("score", "--predictions", str(preds), "--metrics", "exact_match", "--output", str(tmp_path / "o"))
    _one_line_exit_2(code, err, expected)


def test_integer_ids_are_still_accepted(tmp_path: Path) -> None:
    preds = tmp_path / "p.jsonl"
    preds.write_text('{"id": 7, "prediction": "Paris", "references": ["Paris"]}\n')
    assert cli("score", "--predictions", str(preds), "--metrics", "exact_match", "--output", str(tmp_path / "o"))[0] == 0


def _qa_task(folder: Path, rows: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURES / "qa.yaml", folder / "qa.yaml")
    (folder / "qa.jsonl").write_text("".join(r + "\n" for r in rows))
    return folder / "qa.yaml"


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ('{"id": null, "question": "q?", "answers": ["x"]}', "qa.jsonl: row 0: 'id': expected a non-empty string or an integer, got null"),
        ('{"id": "a", "question": null, "answers": ["x"]}', "prompt.template: row a: a printed field is null"),
        ('{"id": "a", "question": "q?", "answers": ["x", null]}', "qa.jsonl: row 0: 'answers'[1]: expected a string, got null"),
        ('{"id": "a", "question": "q?", "answers": null}', "qa.jsonl: row 0: 'answers': expected a string or a list of strings, got null"),
    ],
)
def test_run_refuses_null_ids_questions_and_references(tmp_path: Path, row: str, expected: str) -> None:
    task = _qa_task(tmp_path / "t", [row])
    code, _, err = cli("run", "--tasks", str(task), "--model", "fake", "--no-cache", "--no-progress", "--output", str(tmp_path / "o"))
    _one_line_exit_2(code, err, expected)


def test_two_task_files_with_one_name_are_refused(tmp_path: Path) -> None:
    a = _qa_task(tmp_path / "a", ['{"id": "a", "question": "q?", "answers": ["x"]}'])
    b = _qa_task(tmp_path / "b", ['{"id": "a", "question": "other?", "answers": ["y"]}'])
    code, _, err = cli("run", "--tasks", f"{a},{b}", "--model", "fake", "--no-cache", "--no-progress", "--output", str(tmp_path / "o"))
    _one_line_exit_2(code, err, f"{b}: name: task 'toy_qa' is also defined by {a}")
    # the same file named twice is one task
    assert cli("run", "--tasks", f"{a},{a}", "--model", "fake", "--no-cache", "--no-progress", "--output", str(tmp_path / "o"))[0] == 0


def test_duplicate_yaml_keys_are_refused(tmp_path: Path) -> None:
    task = _qa_task(tmp_path / "t", ['{"id": "a", "question": "q?", "answers": ["x"]}'])
    task.write_text(task.read_text() + "metrics: [f1]\n")  # `metrics` a second time: last-wins would drop exact_match
    code, _, err = cli("run", "--tasks", str(task), "--model", "fake", "--no-cache", "--no-progress", "--output", str(tmp_path / "o"))
    _one_line_exit_2(code, err, "qa.yaml:15: invalid YAML: duplicate key 'metrics'")


def test_yaml_merge_keys_may_still_be_overridden() -> None:
    from evalharness.spec.loader import parse_yaml

    assert parse_yaml("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\n", "t.yaml")["other"] == {"x": 1, "y": 3}


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--model-args", "seed=1,seed=2"], "--model-args: seed is given twice (items 1 and 2)"),
        (["--batch-size", "0"], "--batch-size/--batch_size: expected a whole number >= 1 or auto, got '0'"),
        (["--bootstrap", "-1"], "--bootstrap: expected a number >= 0, got -1"),
    ],
)
def test_bad_flags_are_refused(tmp_path: Path, flags: list[str], expected: str) -> None:
    task = _qa_task(tmp_path / "t", ['{"id": "a", "question": "q?", "answers": ["x"]}'])
    code, _, err = cli("run", "--tasks", str(task), "--model", "fake", "--no-cache", "--no-progress", "--output",
                       str(tmp_path / "o"), *flags)
    _one_line_exit_2(code, err, expected)


def test_a_null_judge_question_is_refused(tmp_path: Path) -> None:
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"id": "a", "question": None, "prediction": "Paris"}) + "\n")
    code, _, err = cli("score", "--predictions", str(preds), "--judge", "mt_bench_single", "--judge-model", "fake",
                       "--no-cache", "--output", str(tmp_path / "o"))
    _one_line_exit_2(code, err, "row 1: question: expected a string, got null")
