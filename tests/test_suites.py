"""Suite files: every model on every task, one run dir per model, a shared cache, one leaderboard."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from evalharness.cli import main
from evalharness.errors import SpecError
from evalharness.execution.suite import suite_tasks
from evalharness.spec.suite import load_suite_file

REPO = Path(__file__).resolve().parent.parent

SUITE = """name: toy
models:
  - {name: fake one, backend: fake}
  - {name: fake two, backend: fake, args: {seed: 5, prefer: blue}}
  - {name: fake one again, backend: fake}
tasks:
  - mc.yaml
  - {task: qa.yaml, limit: 3}
seed: 1
bootstrap: 200
"""


@pytest.fixture
def suite(tmp_path: Path, fixtures: Path) -> Path:
    for name in ("mc.yaml", "mc.jsonl", "qa.yaml", "qa.jsonl"):
        shutil.copy(fixtures / name, tmp_path / name)
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE)
    return path


def test_suite_runs_every_model_on_every_task_and_writes_the_report(suite: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = main(["run", "--suite", str(suite), "--output", str(out), "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["fake-one", "fake-one-again", "fake-two", "report.html"]
    results = {d: json.loads((out / d / "results.json").read_text()) for d in ("fake-one", "fake-two", "fake-one-again")}
    for res in results.values():
        assert set(res["tasks"]) == {"toy_mc", "toy_qa"}
        assert res["tasks"]["toy_qa"]["n_samples"] == 3 and res["tasks"]["toy_mc"]["n_samples"] == 4
        assert res["config"]["seed"] == 1 and res["config"]["bootstrap_resamples"] == 200
    assert results["fake-two"]["model"]["name"] == "fake two" and results["fake-two"]["model"]["args"]["prefer"] == "blue"
    # the same model under another display name: every request comes from the shared cache
    again = results["fake-one-again"]["tasks"]
    assert all(t["usage"]["cache_hits"] == t["usage"]["requests"] > 0 for t in again.values())
    html = (out / "report.html").read_text()
    for name in ("fake one", "fake two", "fake one again", "toy_mc", "toy_qa"):
        assert name in html
    board = html[html.index('id="board"'):html.index("</table>", html.index('id="board"'))]
    assert len(re.findall(r'class="left model"', board)) == 3
    assert f"report: {out / 'report.html'}" in capsys.readouterr().out


def test_cli_limit_caps_every_task(suite: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["run", "--suite", str(suite), "--output", str(out), "--no-cache", "--no-progress", "--limit", "2"]) == 0
    res = json.loads((out / "fake-two" / "results.json").read_text())
    assert [t["n_samples"] for t in res["tasks"].values()] == [2, 2]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: s\nmodels: []\ntasks: [arc_easy]\n", "models: List should have at least 1 item"),
        ("name: s\nmodels: [{name: a}]\ntasks: [arc_easy]\nlimits: 3\n", "limits: unknown key (did you mean 'limit'?)"),
        ("name: s\nmodels: [{name: a}, {name: a}]\ntasks: [arc_easy]\n", "a listed twice"),
        ("name: s\nmodels: [{name: a, backend: fake, args: {x: [1]}}]\ntasks: [arc_easy]\n", "models.0.args.x"),
        ("name: s\nmodels: [{name: a}]\ntasks: [{task: arc_easy, limit: -1}]\n", "tasks.0.limit"),
    ],
)
def test_bad_suite_files_name_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as exc:
        load_suite_file(path)
    assert str(path) in str(exc.value) and message in str(exc.value)


def test_suite_refuses_conflicting_flags_and_unknown_backends(suite: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--suite", str(suite), "--tasks", "arc_easy"]) == 2
    assert "--tasks cannot be combined with a suite" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: s\nmodels: [{name: a, backend: nope}]\ntasks: [mc.yaml]\n")
    assert main(["run", "--suite", str(bad), "--output", str(tmp_path / "o")]) == 2
    assert "nope" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing ran


def test_demo_suite_matches_the_documented_demo() -> None:
    demo = load_suite_file(REPO / "suites" / "demo.yaml")
    assert len(demo.spec.models) >= 2 and {m.backend for m in demo.spec.models} == {"smollm2"}
    tasks, groups, limits = suite_tasks(demo)
    assert limits == {"arc_easy": 100, "squad": 24, "piqa": 100, "lambada_ppl": 40}
    assert [t.spec.name for t in tasks] == ["arc_easy", "squad", "piqa", "lambada_ppl"] and groups == []
    makefile = (REPO / "Makefile").read_text()
    assert "run --suite suites/demo.yaml --output $(DEMO_OUT)" in makefile
    readme = (REPO / "README.md").read_text()
    assert "100 ARC-Easy questions, 24 SQuAD questions, 100 PIQA questions and 40 LAMBADA passages" in readme


def test_a_built_in_suite_is_found_by_name_from_any_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from evalharness.assets import builtin_dir
    from evalharness.spec.suite import find_suite

    monkeypatch.chdir(tmp_path)  # no suites/ folder here
    demo = builtin_dir("suites") / "demo.yaml"
    assert find_suite("demo").path == demo.resolve() == find_suite("suites/demo.yaml").path
    assert main(["run", "--suite", "nosuch"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --suite nosuch: no such file, and no built-in suite of that name (built-in: demo)"
    assert main(["run", "--suite", "mine.yaml"]) == 2 and "mine.yaml: file not found" in capsys.readouterr().err
