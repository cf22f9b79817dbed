"""The bad-input corpus (tests/bad_inputs/cases.yaml): every malformed task, judge, data file and
command line ends with exit code 2 and one line on stderr naming the file (and line or field)
and what was expected, with no traceback."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from evalharness.cli import main
from evalharness.data import samples as data
from evalharness.spec import loader as specs

HERE = Path(__file__).parent / "bad_inputs"
REPO = Path(__file__).resolve().parent.parent
CASES: list[dict[str, Any]] = yaml.safe_load((HERE / "cases.yaml").read_text(encoding="utf-8"))
TASK = """name: x
kind: generate
dataset:
  path: {path}
  id_field: id
prompt:
  template: "{template}"
references: answers
metrics: [exact_match]
"""


def _task(tmp: Path, name: str, path: str, template: str = "Q: {{{{ question }}}}") -> Path:
    task = tmp / name
    task.write_text(TASK.format(path=path, template=template), encoding="utf-8")
    return task


def _huge_jsonl_row(tmp: Path) -> Path:
    with (tmp / "huge.jsonl").open("w", encoding="utf-8") as fh:
        fh.write(json.dumps({"id": "a", "question": "q", "answers": ["x"]}) + "\n")
        fh.write('{"id": "b", "question": "' + "x" * (data.MAX_ROW_BYTES + 16) + '", "answers": ["x"]}\n')
    return _task(tmp, "huge.yaml", "huge.jsonl")


def _deeply_nested_row(tmp: Path) -> Path:
    (tmp / "nested.jsonl").write_text('{"id": "a", "question": ' + "[" * 200_000 + "]" * 200_000 + "}\n", encoding="utf-8")
    return _task(tmp, "nested.yaml", "nested.jsonl")


def _huge_csv_field(tmp: Path) -> Path:
    (tmp / "huge.csv").write_text("id,question,answers\na," + "x" * 200_000 + ",y\n", encoding="utf-8")
    return _task(tmp, "huge.yaml", "huge.csv")


def _huge_template_output(tmp: Path) -> Path:
    (tmp / "ok.jsonl").write_text((HERE / "data" / "ok.jsonl").read_text(encoding="utf-8"), encoding="utf-8")
    loop = "{% for i in range(10000) %}{% for j in range(10000) %}{{ question }}{% endfor %}{% endfor %}"
    return _task(tmp, "loop.yaml", "ok.jsonl", loop)


def _symlink_out_of_roots(tmp: Path) -> Path:
    (tmp / "data.jsonl").symlink_to("/etc/passwd")
    return _task(tmp, "link.yaml", "data.jsonl")


def _replace_bomb(tmp: Path) -> Path:
    (tmp / "ok.jsonl").write_text((HERE / "data" / "ok.jsonl").read_text(encoding="utf-8"), encoding="utf-8")
    return _task(tmp, "bomb.yaml", "ok.jsonl", "{{ ('ab' * 400000)|replace('a', 'aaaa') }}")


def _huge_yaml(tmp: Path) -> Path:
    task = _task(tmp, "huge.yaml", "ok.jsonl")
    with task.open("a", encoding="utf-8") as fh:
        fh.write("# padding\n" * (specs.MAX_YAML_BYTES // 10))
    return task


def _many_nodes_yaml(tmp: Path) -> Path:
    """About 600 KB of YAML: under the size limit, over the node limit (refused while parsing)."""
    task = _task(tmp, "many.yaml", "ok.jsonl")
    with task.open("a", encoding="utf-8") as fh:
        fh.write("tags: [" + ", ".join(["t"] * 200_000) + "]\n")
    return task


def _nested_loops(tmp: Path) -> Path:
    (tmp / "ok.jsonl").write_text((HERE / "data" / "ok.jsonl").read_text(encoding="utf-8"), encoding="utf-8")
    loops = "{% for i in range(10000) %}{% for j in range(10000) %}{% for k in range(10000) %}{% endfor %}{% endfor %}{% endfor %}"
    return _task(tmp, "loops.yaml", "ok.jsonl", loops)


def _concat_bomb(tmp: Path) -> Path:
    (tmp / "ok.jsonl").write_text((HERE / "data" / "ok.jsonl").read_text(encoding="utf-8"), encoding="utf-8")
    doubling = "{% macro d(s, n) %}{{ d(s ~ s, n - 1) if n else s|length }}{% endmacro %}{{ d(question, 40) }}"
    return _task(tmp, "concat.yaml", "ok.jsonl", doubling)


MAKERS: dict[str, Callable[[Path], Path]] = {
    "huge_jsonl_row": _huge_jsonl_row,
    "deeply_nested_row": _deeply_nested_row,
    "huge_csv_field": _huge_csv_field,
    "huge_template_output": _huge_template_output,
    "symlink_out_of_roots": _symlink_out_of_roots,
    "replace_bomb": _replace_bomb,
    "huge_yaml": _huge_yaml,
    "many_nodes_yaml": _many_nodes_yaml,
    "nested_loops": _nested_loops,
    "concat_bomb": _concat_bomb,
}


def _argv(case: dict[str, Any], tmp: Path) -> list[str]:
    if "argv" in case:
        return [a.format(dir=HERE, tmp=tmp) for a in case["argv"]]
    task = MAKERS[case["make"]](tmp) if "make" in case else HERE / case["task"]
    # The corpus's tasks read ../data/: a folder the user names, as nothing beside the task file is.
    roots = ["--data-root", str(HERE / "data")] if "task" in case and case.get("data_root", True) else []
    return ["run", "--model", "fake", "--tasks", str(task), "--output", str(tmp / "out"), "--no-cache", "--no-progress", *roots]


def test_corpus_is_big_enough() -> None:
    assert len(CASES) >= 50
    assert len({c["id"] for c in CASES}) == len(CASES), "case ids must be unique"
    listed = {c["task"] for c in CASES if "task" in c}
    on_disk = {f"tasks/{p.name}" for p in (HERE / "tasks").glob("*.yaml")}
    assert listed == on_disk, "every task file in bad_inputs/tasks is listed once in cases.yaml"


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(case: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(REPO)  # judge paths in the corpus are relative to the repository
    monkeypatch.delenv("EVALHARNESS_DATA_ROOTS", raising=False)
    monkeypatch.delenv("EVALHARNESS_DEBUG", raising=False)
    code = main(_argv(case, tmp_path))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert len(lines[0]) < 4000, "an error line must stay readable (no runaway message)"
    for needle in case["expect"]:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="invalid YAML"):
        main(["--debug", "run", "--model", "fake", "--tasks", str(HERE / "tasks" / "yaml_syntax.yaml"), "--output", str(tmp_path)])
