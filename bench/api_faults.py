"""API runs that finish, measured on demand: `python bench/api_faults.py [--trials 3] [--out FILE]`.

Against the fixture OpenAI-compatible server (tests/openai_fixture_server.py, loopback), through
the real CLI, each scenario `--trials` times:

- faults: 2,000 generate requests at a 30% fault rate (every retryable kind: 429, 500, 503,
  garbage, a missing field, dropped connections, timeouts; three requests fail 8 times in a row),
  against the same task on a clean server: exit code, failed samples, whether the per-sample
  logs and metrics equal the clean run's, calls made, and the wall time of each run;
- refused: nothing listening at base_url: seconds from start to the one-line error, less the same
  command's start-up on a missing task file (both subprocesses, so Python's start-up cancels);
- sigkill: 1,500 requests at 40 ms over 4 slots, SIGKILL once 370 are answered, rerun: how many
  answers the rerun paid for twice, and how old the oldest of them was at the kill;
- down: a server that answers 60 requests and then fails every one with HTTP 500 (400 requests,
  `retry_budget=R`): seconds until the run stops, and answers kept in the cache; once, with
  `--without-stop`, the same with the failing-server stop switched off (as before it existed:
  every request retried for its own budget, then the final sweep).

Results go to stdout as JSON (and to --out); BENCHMARKS.md records a run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evalharness.backends.openai import common  # noqa: E402
from evalharness.cli import main  # noqa: E402
from tests.openai_fixture_server import RETRYABLE_FAULTS, FakeOpenAIServer  # noqa: E402
from tests.test_api_finish import (  # noqa: E402
    ENV,
    _answered_then_asked_again,
    _cached_rows,
    _cli,
    _DownAfter,
    _free_port,
    _kill_mid_run,
    _samples,
    _task,
)


def _timed(argv: list[str]) -> tuple[int, float]:
    """The CLI in this process (its console table to /dev/null: stdout is this bench's JSON)."""
    started = time.perf_counter()
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        rc = main(argv)
    return rc, time.perf_counter() - started


def faults(tmp: Path) -> dict[str, Any]:
    task = _task(tmp / "task", 2000)
    with FakeOpenAIServer() as clean:
        rc_clean, t_clean = _timed(_cli(clean, task, tmp / "clean", "max_concurrency=32,transport=httpcore"))
    with FakeOpenAIServer(fault_rate=0.3, seed=int(time.time()), stall=0.3, retry_after="0.01") as faulty:
        faulty.script.extend(RETRYABLE_FAULTS)
        faulty.streaks = {"question number 7?": 8, "question number 700?": 8, "question number 1999?": 8}
        rc, t = _timed(_cli(faulty, task, tmp / "faulty", "max_concurrency=32,backoff_base=0.01,timeout=0.2"))
        calls, served = faulty.calls, dict(faulty.faults_served)
    a = json.loads((tmp / "clean" / "results.json").read_text(encoding="utf-8"))["tasks"]["big"]
    b = json.loads((tmp / "faulty" / "results.json").read_text(encoding="utf-8"))["tasks"]["big"]
    return {"exit": rc, "clean_exit": rc_clean, "n_failed": b["n_failed"], "calls": calls, "faults": served,
            "identical": a["metrics"] == b["metrics"] and _samples(tmp / "faulty") == _samples(tmp / "clean"),
            "seconds": round(t, 2), "clean_seconds": round(t_clean, 2)}


def refused(tmp: Path) -> dict[str, Any]:
    fixtures = ROOT / "tests" / "fixtures"
    url = f"http://127.0.0.1:{_free_port()}/v1"
    cmd = [sys.executable, "-m", "evalharness", "run", "--model", "openai-chat", "--model-args", f"model=toy,base_url={url}",
           "--tasks", str(fixtures / "qa.yaml"), "--output", str(tmp / "run"), "--no-cache", "--no-progress"]
    started = time.perf_counter()
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - started
    missing = [*cmd[:cmd.index("--tasks") + 1], str(tmp / "missing.yaml"), *cmd[cmd.index("--tasks") + 2:]]
    started = time.perf_counter()
    subprocess.run(missing, env=ENV, capture_output=True, text=True, timeout=120)
    startup = time.perf_counter() - started
    return {"exit": done.returncode, "seconds_to_error": round(elapsed - startup, 2), "whole_command": round(elapsed, 2),
            "error_lines": len([x for x in done.stderr.splitlines() if x.strip()])}


def sigkill(tmp: Path) -> dict[str, Any]:
    k = _kill_mid_run(tmp, signal.SIGKILL)
    lost = _answered_then_asked_again(k)
    return {"rerun_exit": k.rerun.returncode, "answers_paid_twice": len(lost),
            "oldest_paid_twice_s": round(max(lost), 3) if lost else 0.0, "asked_again": len(k.asked_again)}


def down(tmp: Path, budget: float) -> dict[str, Any]:
    task = _task(tmp / "task", 400)
    common.MIN_FAILING_TO_STOP = 3
    with _DownAfter(good=60) as srv:
        rc, t = _timed(_cli(srv, task, tmp / "run", f"retry_budget={budget:g},backoff_base=0.05,max_concurrency=8"))
        calls = srv.calls
    return {"exit": rc, "seconds": round(t, 2), "calls": calls,
            "answers_kept": _cached_rows(tmp / "run-cache" / "responses.sqlite")}


def down_unstopped(tmp: Path, budget: float) -> dict[str, Any]:
    task = _task(tmp / "task", 400)
    with _DownAfter(good=60) as srv:
        rc, t = _timed(_cli(srv, task, tmp / "run", f"retry_budget={budget:g},backoff_base=0.05,max_concurrency=8"))
        calls = srv.calls
    return {"exit": rc, "seconds": round(t, 2), "calls": calls}


def main_bench() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--budget", type=float, default=5.0, help="retry_budget of the down-server scenario (seconds)")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--without-stop", action="store_true", help="also time the down server with the stop switched off")
    args = ap.parse_args()
    runs: dict[str, list[dict[str, Any]]] = {"faults": [], "refused": [], "sigkill": [], "down": []}
    for trial in range(args.trials):
        for name in runs:
            with tempfile.TemporaryDirectory() as d:
                tmp = Path(d)
                result = down(tmp, args.budget) if name == "down" else globals()[name](tmp)
            runs[name].append(result)
            print(f"trial {trial + 1} {name}: {json.dumps(result)}", file=sys.stderr)
    if args.without_stop:
        with tempfile.TemporaryDirectory() as d:
            common.MIN_FAILING_TO_STOP = 10**9
            result = down_unstopped(Path(d), args.budget)
        runs["down_without_stop"] = [result]
        print(f"down without the stop: {json.dumps(result)}", file=sys.stderr)
    summary = {
        "faults_seconds_ratio_to_clean": [round(r["seconds"] / r["clean_seconds"], 2) for r in runs["faults"]],
        "refused_median_s": statistics.median(r["seconds_to_error"] for r in runs["refused"]),
        "sigkill_max_paid_twice": max(r["answers_paid_twice"] for r in runs["sigkill"]),
        "down_median_s": statistics.median(r["seconds"] for r in runs["down"]),
    }
    out = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.node()} {platform.machine()}",
           "cpus": __import__("os").cpu_count(), "budget": args.budget, "runs": runs, "summary": summary}
    text = json.dumps(out, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main_bench()
