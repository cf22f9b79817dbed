"""A run directory keeps to itself: `score` writes only inside its --output and never over another
run's results, and readers (report, gate, Results.load) read a task's log only from inside the run
directory, whatever a forged results.json names."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from evalharness.cli import main
from evalharness.results.frame import Results

ROWS = [{"id": "a", "prediction": "Paris", "references": ["Paris"]},
        {"id": "b", "prediction": "x", "references": ["y"]}]


def _preds(tmp: Path, name: str = "ok") -> Path:
    path = tmp / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    return path


def _one_line_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str], *needles: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert all(n in err for n in needles), err


@pytest.mark.parametrize("name", ["/tmp/abs", "../../escaped", "sub/dir", "bad name/x", "", "a\\b"])
def test_score_task_name_cannot_name_a_file_outside_the_run(tmp_path: Path, name: str,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    victim = tmp_path / "precious.jsonl"
    victim.write_text("precious\n", encoding="utf-8")
    argv = ["score", "--predictions", str(_preds(tmp_path)), "--metrics", "exact_match",
            "--task-name", str(tmp_path / "precious") if name == "/tmp/abs" else name, "--output", str(tmp_path / "out")]
    _one_line_exit_2(capsys, argv, "--task-name")
    assert victim.read_text(encoding="utf-8") == "precious\n" and not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.jsonl", "precious.jsonl"]


def test_a_predictions_file_name_with_odd_characters_gets_a_safe_task_name(tmp_path: Path) -> None:
    preds = tmp_path / "my preds (v2).jsonl"
    shutil.copy(_preds(tmp_path), preds)
    assert main(["score", "--predictions", str(preds), "--metrics", "exact_match", "--output", str(tmp_path / "o")]) == 0
    assert list(json.loads((tmp_path / "o" / "results.json").read_text())["tasks"]) == ["my_preds__v2_"]


def test_score_refuses_an_output_that_holds_another_runs_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "base"
    assert main(["run", "--model", "fake", "--tasks", "arc_easy", "--limit", "4", "--no-progress",
                 "--cache-dir", str(tmp_path / "c"), "--output", str(run)]) == 0
    before = (run / "results.json").read_bytes()
    capsys.readouterr()
    _one_line_exit_2(capsys, ["score", "--predictions", str(_preds(tmp_path)), "--metrics", "exact_match", "--output", str(run)],
                     "holds a fake run of arc_easy")
    assert (run / "results.json").read_bytes() == before
    # scores of one predictions file: the same file may be scored again (other metrics), another may not
    out = tmp_path / "scored"
    assert main(["score", "--predictions", str(_preds(tmp_path)), "--metrics", "exact_match", "--output", str(out)]) == 0
    assert main(["score", "--predictions", str(_preds(tmp_path)), "--metrics", "exact_match,f1", "--output", str(out)]) == 0
    capsys.readouterr()
    _one_line_exit_2(capsys, ["score", "--predictions", str(_preds(tmp_path, "other")), "--metrics", "exact_match",
                              "--output", str(out)], "holds scores of ok")


def _forged(tmp_path: Path, samples_file: str) -> tuple[Path, Path]:
    """A scored run whose results.json names `samples_file` for its log; the secret it points at."""
    secret = tmp_path / "secret.jsonl"
    secret.write_text(json.dumps({"id": "a", "prompt": "SECRET-TOKEN-12345", "generations": ["x"], "scores": {}}) + "\n")
    run = tmp_path / "run"
    assert main(["score", "--predictions", str(_preds(tmp_path)), "--metrics", "exact_match", "--output", str(run)]) == 0
    if samples_file == "symlink":
        (run / "samples" / "link.jsonl").symlink_to(secret)
        samples_file = "samples/link.jsonl"
    results = json.loads((run / "results.json").read_text())
    results["tasks"]["ok"]["samples_file"] = samples_file.replace("SECRET", str(secret))
    (run / "results.json").write_text(json.dumps(results))
    return run, secret


@pytest.mark.parametrize("samples_file", ["SECRET", "../secret.jsonl", "samples/../../secret.jsonl", "symlink"])
def test_a_forged_samples_file_outside_the_run_is_refused_by_every_reader(
        tmp_path: Path, samples_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    run, _ = _forged(tmp_path, samples_file)
    capsys.readouterr()
    _one_line_exit_2(capsys, ["report", str(run), "--output", str(tmp_path / "r.html")], "samples_file", "outside the run")
    assert not (tmp_path / "r.html").exists()
    _one_line_exit_2(capsys, ["gate", str(run), "--baseline", str(run)], "samples_file", "outside the run")
    with pytest.raises(Exception, match="outside the run directory"):
        Results.load(run)


def _run(tmp: Path, out: Path, tasks: str, limit: int, *extra: str) -> dict[str, Any]:
    assert main(["run", "--model", "fake", "--tasks", tasks, "--limit", str(limit), "--no-progress",
                 "--cache-dir", str(tmp / "cache"), "--output", str(out), *extra]) == 0
    results: dict[str, Any] = json.loads((out / "results.json").read_text())
    return results


def test_adding_a_task_to_a_folder_keeps_the_tasks_already_there(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    first = _run(tmp_path, out, "squad", 6)
    second = _run(tmp_path, out, "arc_easy", 4)
    assert sorted(second["tasks"]) == ["arc_easy", "squad"]
    kept = second["tasks"]["squad"]
    assert kept["earlier_run"] == first["created"] and kept["metrics"] == first["tasks"]["squad"]["metrics"]
    assert "earlier_run" not in second["tasks"]["arc_easy"]
    assert second["usage"]["model"]["requests"] == second["tasks"]["arc_easy"]["usage"]["requests"]  # this run's own
    assert "squad: kept from an earlier run into this folder" in capsys.readouterr().out
    # the folder reads as one run: report, gate and Results.load see both tasks
    assert sorted(Results.load(out).tasks) == ["arc_easy", "squad"]
    assert main(["gate", str(out), "--baseline", str(out)]) == 0
    # rerunning the kept task makes it this run's again
    third = _run(tmp_path, out, "squad", 6)
    assert "earlier_run" not in third["tasks"]["squad"] and third["tasks"]["arc_easy"]["earlier_run"] == second["created"]


def test_a_smaller_limit_into_the_same_folder_says_what_it_replaced_and_counts_only_its_own(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    big = _run(tmp_path, out, "squad", 20)["tasks"]["squad"]["usage"]
    capsys.readouterr()
    small = _run(tmp_path, out, "squad", 5)["tasks"]["squad"]
    assert small["replaced_samples"] == 15 and small["usage"]["requests"] == 5
    assert small["usage"]["prompt_tokens"] < big["prompt_tokens"] / 2  # was the 20 samples' tokens for 5 requests
    lines = capsys.readouterr().err
    assert "squad: this run's 5 samples replace 15 more an earlier run logged in this folder" in lines
    again = _run(tmp_path, out, "squad", 5)["tasks"]["squad"]
    assert "replaced_samples" not in again  # nothing more was dropped


def test_readers_refuse_a_duplicate_key_in_results_and_a_bad_line_inside_a_log(tmp_path: Path,
                                                                               capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["score", "--predictions", str(_preds(tmp_path)), "--metrics", "exact_match", "--output", str(run)]) == 0
    text = (run / "results.json").read_text()
    (run / "results.json").write_text(text.replace('"schema_version": 1,', '"schema_version": 1, "schema_version": 1,', 1))
    capsys.readouterr()
    _one_line_exit_2(capsys, ["report", str(run), "--output", str(tmp_path / "r.html")], "duplicate key 'schema_version'")
    (run / "results.json").write_text(text)
    log = run / "samples" / "ok.jsonl"
    good = log.read_text().splitlines()
    log.write_text(good[0] + "\n" + good[1][:20] + "\n")  # a torn last line: skipped (a crash mid-write)
    assert len(Results.load(run).records["ok"]) == 1
    log.write_text(good[0][:20] + "\n" + good[1] + "\n")  # torn in the middle: a finished log never is
    _one_line_exit_2(capsys, ["gate", str(run), "--baseline", str(run)], "ok.jsonl:1: not JSON", "only a log's last line")


def test_a_second_run_into_a_folder_being_written_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two runs into one --output at once both passed the folder checks (neither had written
    results.json yet) and left one's results beside the other's samples; the writer now holds the
    folder, and a second run (another configuration or the same) is one line, exit 2."""
    import os
    import subprocess
    import sys
    import time

    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(repo), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    out = tmp_path / "shared"
    slow = subprocess.Popen([sys.executable, "-m", "evalharness", "run", "--model", "fake", "--model-args",
                             "output=AAA,delay=0.2,batch_size=1", "--tasks", "squad", "--limit", "12", "--no-progress",
                             "--cache-dir", str(tmp_path / "c1"), "--output", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (out / "samples" / "squad.jsonl").exists() and time.monotonic() < deadline:
            time.sleep(0.05)  # the first run holds the folder and has started writing
        for args in ("output=BBB", "output=AAA,delay=0.2,batch_size=1"):
            _one_line_exit_2(capsys, ["run", "--model", "fake", "--model-args", args, "--tasks", "squad", "--limit", "12",
                                      "--no-progress", "--cache-dir", str(tmp_path / "c2"), "--output", str(out)],
                             "another evalharness run is writing there now")
        _one_line_exit_2(capsys, ["score", "--predictions", str(_preds(tmp_path)), "--metrics", "exact_match",
                                  "--output", str(out)], "another evalharness run is writing there now")
    finally:
        _, err = slow.communicate(timeout=120)
    assert slow.returncode == 0, err
    results = json.loads((out / "results.json").read_text())
    assert "AAA" in json.dumps(results["model"]) and "BBB" not in json.dumps(results)
    records = [json.loads(line) for line in (out / "samples" / "squad.jsonl").read_text().splitlines()]
    assert len(records) == 12 and all(r["generations"] == ["AAA"] for r in records)
    # and once it is done, the folder is free again (the lock dies with its holder)
    assert main(["run", "--model", "fake", "--model-args", "output=AAA,delay=0.2,batch_size=1", "--tasks", "squad",
                 "--limit", "12", "--no-progress", "--cache-dir", str(tmp_path / "c1"), "--output", str(out)]) == 0


def test_console_output_never_carries_terminal_control_sequences(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An id (or a model name, a server's reply) with ESC sequences that set the terminal title or
    clear the screen is printed escaped, in errors as in tables and notes."""
    from evalharness.errors import printable

    assert printable("a\x1b]0;PWNED\x07\x1b[2Jb\r\u202eZ\n\tok") == "a\\x1b]0;PWNED\\x07\\x1b[2Jb\\x0d\\u202eZ\n\tok"
    evil = "id\x1b]0;PWNED\x07\x1b[2J"
    preds = tmp_path / "dup.jsonl"
    preds.write_text("".join(json.dumps({"id": evil, "prediction": "x", "references": ["y"]}) + "\n" for _ in range(2)))
    assert main(["score", "--predictions", str(preds), "--metrics", "exact_match", "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err and "id\\x1b]0;PWNED\\x07\\x1b[2J" in err, err
