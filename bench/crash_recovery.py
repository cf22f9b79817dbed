"""Crash recovery under SIGKILL, run on demand: `python bench/crash_recovery.py [--trials 20] [--seed 0]`.

Each trial runs `evalharness run --model fake --model-args delay=...` on two fixture tasks
(generate and multiple choice) in a subprocess, SIGKILLs it at a random moment (1 to
`--max-kills` times, each resume killed again), then resumes with the same command to the
end. It checks that:

- the final metrics in results.json and the per-sample logs equal an uninterrupted run's;
- no finished sample is lost: a sample logged before a kill keeps its record, and none of
  its requests reaches the backend again;
- at most one batch is recomputed per kill: the fake backend appends every request it
  receives to a trace file (one per process), and a request seen by two processes was
  computed twice.

`--no-cache` runs the same trials with the response cache off, so only the per-sample log
carries work across a crash (a sample whose requests span batches then loses its finished
batches); that mode reports its recomputation and does not fail on it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}

GEN_TASK = """name: crash_gen
kind: generate
dataset:
  path: gen.jsonl
  id_field: id
prompt:
  template: "Q: {{ question }}\\nA:"
references: answers
generate:
  max_tokens: 8
metrics: [exact_match, f1]
"""

MC_TASK = """name: crash_mc
kind: multiple_choice
dataset:
  path: mc.jsonl
  id_field: id
prompt:
  template: "Question: {{ question }}\\nAnswer:"
multiple_choice:
  choices: choices
  answer: answer
metrics: [acc, acc_norm]
"""


@dataclass
class Setup:
    """Where one campaign's fixture lives and how the command is shaped."""

    root: Path
    delay: float = 0.05
    batch_size: int = 4
    use_cache: bool = True
    tasks: list[Path] = field(default_factory=list)


@dataclass
class Trial:
    index: int
    kill_times: list[str]
    kills: int = 0  # kills that landed while the run was still going
    logged_before: list[int] = field(default_factory=list)  # samples in the logs at each kill
    recomputed: int = 0
    problems: list[str] = field(default_factory=list)


def make_fixture(root: Path, n_gen: int = 40, n_mc: int = 12) -> list[Path]:
    """Two small tasks whose requests the fake backend answers deterministically."""
    root.mkdir(parents=True, exist_ok=True)
    words = ["alpha", "beta", "gamma", "delta", "42", "7", "Paris", "yes", "no"]
    with (root / "gen.jsonl").open("w", encoding="utf-8") as fh:
        for i in range(n_gen):
            q = " ".join(words[(i * k) % len(words)] for k in range(1, 2 + i % 7))
            fh.write(json.dumps({"id": f"g{i}", "question": f"{i}: {q}?", "answers": [words[i % len(words)]]}) + "\n")
    with (root / "mc.jsonl").open("w", encoding="utf-8") as fh:
        for i in range(n_mc):
            choices = [f"{w} {i}" * (1 + (i + j) % 3) for j, w in enumerate(words[:4])]
            fh.write(json.dumps({"id": f"m{i}", "question": f"item {i}", "choices": choices, "answer": i % 4}) + "\n")
    (root / "gen.yaml").write_text(GEN_TASK, encoding="utf-8")
    (root / "mc.yaml").write_text(MC_TASK, encoding="utf-8")
    return [root / "gen.yaml", root / "mc.yaml"]


def command(setup: Setup, out: Path, cache: Path, trace: Path) -> list[str]:
    args = f"delay={setup.delay},batch_size={setup.batch_size},trace={trace}"
    cmd = [sys.executable, "-m", "evalharness", "run", "--model", "fake", "--model-args", args,
           "--tasks", ",".join(str(t) for t in setup.tasks), "--output", str(out), "--no-progress", "--bootstrap", "200"]
    return [*cmd, "--no-cache"] if not setup.use_cache else [*cmd, "--cache-dir", str(cache)]


def trace_key(line: str) -> str:
    """The cache key of a traced request (the trace holds its cache payload)."""
    from evalharness.backends.fake import FakeBackend
    from evalharness.execution.cache import request_key
    from evalharness.types import GenParams, Message, Request

    p = json.loads(line)
    gen = p.get("gen")
    if gen is not None:
        gen = GenParams(**{**gen, "stop": tuple(gen["stop"])})
    messages = tuple(Message(r, c) for r, c in p["messages"]) if "messages" in p else None
    req = Request(kind=p["kind"], prompt=p.get("prompt"), messages=messages, continuation=p.get("continuation", ""),
                  gen=gen, repeat=p.get("repeat", 0))
    return request_key(FakeBackend().identity(), req)


def read_lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [ln for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]


def outcome(out: Path) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """What must not depend on crashes: metrics per task, and every per-sample record."""
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    keep = ("metrics", "n_samples", "n_failed", "fingerprint")
    metrics = {name: {k: t[k] for k in keep} for name, t in results["tasks"].items()}
    logs = {p.stem: [json.loads(ln) for ln in read_lines(p)] for p in sorted((out / "samples").glob("*.jsonl"))}
    return metrics, logs


def logged_records(out: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """Records a killed run left in its per-sample logs (torn lines skipped), by (task, id)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for p in sorted((out / "samples").glob("*.jsonl")) if (out / "samples").exists() else []:
        for ln in read_lines(p):
            try:
                rec = json.loads(ln)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and "error" not in rec:
                found[(p.stem, str(rec["id"]))] = rec
    return found


def baseline(setup: Setup) -> tuple[Any, float, float, int]:
    """An uninterrupted run: its outcome, start-up and wall time, and number of requests computed."""
    d = setup.root / "baseline"
    start = time.perf_counter()
    proc = subprocess.Popen(command(setup, d / "out", d / "cache", d / "trace"), env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    first = None
    while proc.poll() is None:  # start-up ends when the backend sees its first request
        if first is None and (d / "trace").exists():
            first = time.perf_counter() - start
        time.sleep(0.01)
    wall = time.perf_counter() - start
    err = proc.stderr.read() if proc.stderr is not None else ""
    if proc.returncode != 0:
        raise SystemExit(f"uninterrupted run failed ({proc.returncode}):\n{err}")
    return outcome(d / "out"), first or 0.0, wall, len(read_lines(d / "trace"))


@dataclass(frozen=True)
class Kill:
    """When to kill: after the backend has received `after` requests in this trial (all runs
    together), plus `extra` seconds; or, with `after` < 0, `extra` seconds after start."""

    after: int
    extra: float

    def __str__(self) -> str:
        return f"{self.extra:.2f}s" if self.after < 0 else f"{self.after}+{self.extra:.2f}s"


def _kill_when_due(proc: subprocess.Popen[bytes], kill: Kill, traces: list[Path]) -> bool:
    """SIGKILL the run at the planned point; False if it finished first."""
    start = time.perf_counter()
    while kill.after >= 0 and proc.poll() is None and sum(len(read_lines(t)) for t in traces) < kill.after:
        time.sleep(0.01)
    due = (time.perf_counter() if kill.after >= 0 else start) + kill.extra
    while proc.poll() is None and time.perf_counter() < due:
        time.sleep(0.002)
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


def run_trial(setup: Setup, index: int, kills: list[Kill], expected: Any) -> Trial:
    trial = Trial(index=index, kill_times=[str(k) for k in kills])
    d = setup.root / f"trial{index:02d}"
    out, cache = d / "out", d / "cache"
    traces: list[Path] = []
    before: dict[tuple[str, str], dict[str, Any]] = {}
    seen_at_kill: list[set[str]] = []  # cache keys of the samples logged at each kill
    for kill in kills:
        trace = d / f"trace{len(traces)}"
        traces.append(trace)
        proc = subprocess.Popen(command(setup, out, cache, trace), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        trial.kills += _kill_when_due(proc, kill, traces)
        proc.wait()
        before.update(logged_records(out))
        trial.logged_before.append(len(before))
        seen_at_kill.append({k for rec in before.values() for k in rec.get("keys", [])})
    trace = d / f"trace{len(traces)}"
    traces.append(trace)
    proc_done = subprocess.run(command(setup, out, cache, trace), env=ENV, capture_output=True, text=True)
    if proc_done.returncode != 0:
        trial.problems.append(f"resume exited {proc_done.returncode}: {proc_done.stderr.strip()[-300:]}")
        return trial
    metrics, logs = outcome(out)
    if metrics != expected[0]:
        trial.problems.append("results.json metrics differ from the uninterrupted run")
    if logs != expected[1]:
        trial.problems.append("per-sample logs differ from the uninterrupted run")
    final = {(task, str(r["id"])): r for task, recs in logs.items() for r in recs}
    for key, rec in before.items():  # the final record adds scores; what the model said must not change
        if {k: v for k, v in final.get(key, {}).items() if k in rec} != rec:
            trial.problems.append(f"sample {key} logged before a kill changed or vanished")
    received = [Counter(read_lines(t)) for t in traces]
    total = sum(received, Counter())
    trial.recomputed = sum(total.values()) - len(total)
    for j, keys in enumerate(seen_at_kill):  # a logged sample's requests never reach the backend again
        later = {trace_key(line) for c in received[j + 1 :] for line in c}
        if keys & later:
            trial.problems.append(f"{len(keys & later)} request(s) of samples logged before kill {j + 1} were recomputed")
    bound = trial.kills * setup.batch_size
    if setup.use_cache and trial.recomputed > bound:
        trial.problems.append(f"{trial.recomputed} requests recomputed; at most {bound} (one batch per kill) allowed")
    return trial


def campaign(trials: int, seed: int, root: Path, delay: float = 0.05, batch_size: int = 4, use_cache: bool = True,
             max_kills: int = 3, n_gen: int = 40, n_mc: int = 12, verbose: bool = True) -> list[Trial]:
    """Run the trials; returns them with their problems (empty when all held)."""
    setup = Setup(root=root, delay=delay, batch_size=batch_size, use_cache=use_cache)
    setup.tasks = make_fixture(root / "fixture", n_gen=n_gen, n_mc=n_mc)
    expected, startup, wall, n_requests = baseline(setup)
    if verbose:
        print(f"uninterrupted: {wall:.2f} s ({startup:.2f} s start-up), {n_requests} requests, batch size {batch_size}, "
              f"delay {delay} s/batch, cache {'on' if use_cache else 'off'}")
    rng = random.Random(seed)
    results = []
    for i in range(trials):
        # Mostly while requests are computed (mid-batch or between batches), some during start-up.
        points = sorted(rng.randrange(n_requests) for _ in range(rng.randint(1, max_kills)))
        kills = [Kill(-1, rng.uniform(0.1, startup)) if rng.random() < 0.15 else Kill(p, rng.uniform(0, 1.5 * delay))
                 for p in points]
        t = run_trial(setup, i, kills, expected)
        results.append(t)
        if verbose:
            status = "ok" if not t.problems else "FAIL: " + "; ".join(t.problems)
            print(f"trial {i:2d}: kill after {', '.join(t.kill_times)} ({t.kills} landed), samples logged at kills {t.logged_before}, "
                  f"recomputed {t.recomputed} request(s): {status}")
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--delay", type=float, default=0.05, help="seconds the fake backend sleeps per batch")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--max-kills", type=int, default=3, help="kills per trial, drawn from 1..N")
    ap.add_argument("--no-cache", action="store_true", help="resume from the per-sample log alone")
    ap.add_argument("--keep", type=Path, default=None, help="keep the trial folders here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="crash-") as tmp:
        root = args.keep or Path(tmp)
        trials = campaign(args.trials, args.seed, root, args.delay, args.batch_size, not args.no_cache, args.max_kills)
    failed = [t for t in trials if t.problems]
    kills = sum(t.kills for t in trials)
    recomputed = [t.recomputed for t in trials]
    print(f"\n{len(trials)} trials, {kills} kills landed, recomputed requests per trial: {recomputed} "
          f"(max {max(recomputed)}, bound {args.batch_size} per kill); {len(failed)} failed")
    return 1 if failed and not args.no_cache else 0


if __name__ == "__main__":
    sys.exit(main())
