"""Crash recovery: SIGKILLed runs resume to the same results (a short version of bench/crash_recovery.py),
torn writes are survived, and two runs sharing one cache directory at once do not corrupt it."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from evalharness.results.store import SampleLog, read_jsonl_tolerant

REPO = Path(__file__).resolve().parent.parent


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("crash_recovery", REPO / "bench" / "crash_recovery.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["crash_recovery"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return _bench()


def test_sigkill_at_random_points_resumes_to_identical_results(bench: ModuleType, tmp_path: Path) -> None:
    trials = bench.campaign(3, seed=7, root=tmp_path, delay=0.03, batch_size=4, max_kills=1, n_gen=12, n_mc=4, verbose=False)
    assert [t.problems for t in trials] == [[], [], []]
    assert sum(t.kills for t in trials) >= 2, "the kills should land while the run is going"
    assert all(t.recomputed <= 4 * t.kills for t in trials)


def test_campaign_detects_a_changed_result(bench: ModuleType, tmp_path: Path) -> None:
    """The checker itself can fail: a resume that disagrees with the baseline is reported."""
    setup = bench.Setup(root=tmp_path, delay=0.0, batch_size=4)
    setup.tasks = bench.make_fixture(tmp_path / "fixture", n_gen=4, n_mc=2)
    expected, *_ = bench.baseline(setup)
    metrics, logs = expected
    logs["crash_gen"][0]["responses"][0]["text"] = "tampered"
    trial = bench.run_trial(setup, 0, [bench.Kill(-1, 0.0)], (metrics, logs))
    assert "per-sample logs differ from the uninterrupted run" in trial.problems


def _run(args: list[str], out: Path, cache: Path, trace: Path, fixtures: Path, delay: float = 0.0) -> list[str]:
    return [sys.executable, "-m", "evalharness", "run", "--model", "fake",
            "--model-args", f"delay={delay},batch_size=2,trace={trace}", "--tasks", f"{fixtures / 'qa.yaml'},{fixtures / 'mc.yaml'}",
            "--output", str(out), "--no-progress", "--bootstrap", "100", *args]


ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def test_torn_last_log_line_is_skipped_and_only_that_sample_recomputed(fixtures: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = subprocess.run(_run(["--no-cache"], out, tmp_path / "c", tmp_path / "t0", fixtures), env=ENV, capture_output=True)
    assert first.returncode == 0, first.stderr
    log = out / "samples" / "toy_qa.jsonl"
    expected = log.read_text(encoding="utf-8")
    lines = expected.splitlines(keepends=True)
    log.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2], encoding="utf-8")  # a crash mid-write
    again = subprocess.run(_run(["--no-cache"], out, tmp_path / "c", tmp_path / "t1", fixtures), env=ENV, capture_output=True)
    assert again.returncode == 0, again.stderr
    assert log.read_text(encoding="utf-8") == expected
    recomputed = (tmp_path / "t1").read_text(encoding="utf-8").splitlines()
    assert len(recomputed) == 1 and json.loads(recomputed[0])["prompt"] == json.loads(lines[-1])["prompt"]


def test_append_after_torn_line_keeps_the_new_record(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b", "fp', encoding="utf-8")
    log = SampleLog(path)
    log.append({"id": "c"})
    log.close()
    assert [r["id"] for r in read_jsonl_tolerant(path)] == ["a", "c"]


def test_results_json_is_never_half_written(fixtures: Path, tmp_path: Path) -> None:
    """A kill while results.json is written leaves the old file or the new one, never a torn one."""
    out = tmp_path / "run"
    cmd = _run(["--cache-dir", str(tmp_path / "c")], out, tmp_path / "c", tmp_path / "t", fixtures)
    assert subprocess.run(cmd, env=ENV, capture_output=True).returncode == 0
    for delay in (0.4, 0.8):  # fully cached reruns: the kill lands around the final writes
        proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        json.loads((out / "results.json").read_text(encoding="utf-8"))
        for p in (out / "samples").glob("*.jsonl"):
            assert read_jsonl_tolerant(p), p


def test_two_runs_sharing_one_cache_at_once(fixtures: Path, tmp_path: Path) -> None:
    cache = tmp_path / "shared-cache"
    solo = tmp_path / "solo"
    assert subprocess.run(_run(["--no-cache"], solo, cache, tmp_path / "t-solo", fixtures), env=ENV, capture_output=True).returncode == 0
    procs = [
        subprocess.Popen(_run(["--cache-dir", str(cache)], tmp_path / f"run{i}", cache, tmp_path / f"t{i}", fixtures, delay=0.1),
                         env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for i in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    want = json.loads((solo / "results.json").read_text())["tasks"]
    for i in range(2):
        got = json.loads((tmp_path / f"run{i}" / "results.json").read_text())["tasks"]
        for name in want:
            assert got[name]["metrics"] == want[name]["metrics"], name
        for log in (solo / "samples").glob("*.jsonl"):
            assert (tmp_path / f"run{i}" / "samples" / log.name).read_text() == log.read_text()
    # Both ran at once (each computed requests the other had not cached yet), and the cache is sound.
    assert all((tmp_path / f"t{i}").exists() for i in range(2))
    conn = sqlite3.connect(cache / "responses.sqlite")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    n_rows = conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    conn.close()
    assert n_rows == len(set((tmp_path / "t-solo").read_text().splitlines()))
    # A third run on the shared cache computes nothing.
    third_cmd = _run(["--cache-dir", str(cache)], tmp_path / "run3", cache, tmp_path / "t3", fixtures)
    third = subprocess.run(third_cmd, env=ENV, capture_output=True)
    assert third.returncode == 0 and not (tmp_path / "t3").exists()
