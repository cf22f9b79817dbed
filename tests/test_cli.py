"""The CLI: exit codes and one-line errors users can act on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from evalharness.cli import main


def test_run_on_fake_writes_results_and_table(fixtures: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code = main(["run", "--model", "fake", "--tasks", str(fixtures / "mc.yaml"), "--output", str(out),
                 "--cache-dir", str(tmp_path / "c"), "--no-progress"])
    assert code == 0
    text = capsys.readouterr().out
    assert "toy_mc" in text and "acc" in text and "95% CI" in text
    assert json.loads((out / "results.json").read_text())["tasks"]["toy_mc"]["n_samples"] == 4


@pytest.mark.parametrize(
    ("argv", "pattern"),
    [
        (["run", "--model", "fak", "--tasks", "toy"], "did you mean 'fake'"),
        (["run", "--tasks", "arc_esy"], "unknown task 'arc_esy'"),
        (["run", "--model", "fake", "--tasks", "x.yaml"], "x.yaml: file not found"),
        (["run", "--model", "fake", "--model-args", "novalue", "--tasks", "t.yaml"], "key=value"),
        (["run", "--tasks", "a", "--limit", "-3"], "expected a number >= 0"),
        (["run"], "the following arguments are required: --tasks"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_one_line_exit_2(argv: list[str], pattern: str, capsys: pytest.CaptureFixture[str], fixtures: Path) -> None:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert pattern in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_unknown_metric_in_task(tmp_path: Path, fixtures: Path, capsys: pytest.CaptureFixture[str]) -> None:
    task = tmp_path / "t.yaml"
    task.write_text((fixtures / "mc.yaml").read_text().replace("[acc, acc_norm]", "[acc, accuracy_norm]")
                    .replace("path: mc.jsonl", f"path: {fixtures / 'mc.jsonl'}"))
    code = main(["run", "--model", "fake", "--tasks", str(task), "--output", str(tmp_path / "o"), "--no-cache"])
    err = capsys.readouterr().err
    assert code == 2 and "unknown metric 'accuracy_norm'" in err and "did you mean" in err


def test_help_does_not_import_torch() -> None:
    code = "import sys, evalharness.cli.app as c; c.build_parser(); assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
