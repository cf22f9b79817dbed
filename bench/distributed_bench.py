"""Data parallel on one machine: one process vs torchrun ranks vs Ray workers (issue 11).

    .venv/bin/python bench/distributed_bench.py [--tasks arc_easy] [--limit 570] [--procs 2]

Each side runs the same `evalharness run` with --no-cache (everything computed) on the
embedded model, in turn, and the script checks that the metrics and per-sample logs are equal.
Writes bench/results/distributed.md. On a CPU machine the ranks share the cores: the figure
says what sharding costs or gains here, not what N GPUs give.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{done.stderr[-2000:]}")
    return time.perf_counter() - t0


def comparable(run: Path) -> dict[str, Any]:
    res = json.loads((run / "results.json").read_text())
    return {name: (t["metrics"], (run / t["samples_file"]).read_text()) for name, t in res["tasks"].items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", default="arc_easy")
    ap.add_argument("--limit", type=int, default=570)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "distributed.md")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dist-bench-"))
    base = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    run = [str(BIN / "evalharness"), "run", "--tasks", args.tasks, "--limit", str(args.limit), "--no-cache", "--no-progress"]
    n = args.procs
    sides = [
        (f"one process, {os.cpu_count()} torch threads", base, [*run, "--output", str(tmp / "one")], tmp / "one"),
        ("one process, 1 torch thread", {**base, "OMP_NUM_THREADS": "1"}, [*run, "--output", str(tmp / "one1")], tmp / "one1"),
        (f"torchrun, {n} ranks x 1 thread", {**base, "OMP_NUM_THREADS": "1"},
         [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", str(n), *run, "--output", str(tmp / "tr")], tmp / "tr"),
        (f"--executor ray, {n} workers x 1 CPU (local cluster started by the run)", base,
         [*run, "--executor", "ray", "--ray-workers", str(n), "--output", str(tmp / "ray")], tmp / "ray"),
    ]
    rows = []
    for label, env, cmd, out in sides:
        load = os.getloadavg()[0]
        wall = timed(cmd, env)
        rows.append((label, wall, load, out))
        print(f"{label}: {wall:.1f} s (load {load:.1f})", flush=True)
    ref1 = comparable(tmp / "one1")
    same = {label: comparable(out) == ref1 for label, _, _, out in rows}
    first = rows[0][1]
    lines = [
        "# Data parallel on one CPU machine (bench/distributed_bench.py)", "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} cores (AMD EPYC); tasks `{args.tasks}`, "
        f"limit {args.limit}, `--no-cache`, embedded SmolLM2-135M float32; sides run one after another.", "",
        "| side | wall (s) | vs one process | load at start | results equal to 1-thread run |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for label, wall, load, _ in rows:
        lines.append(f"| {label} | {wall:.1f} | {wall / first:.2f} | {load:.1f} | {'yes' if same[label] else 'no (float32 last bits)'} |")
    lines += ["", f"Command: `.venv/bin/python bench/distributed_bench.py --tasks {args.tasks} --limit {args.limit} --procs {n}`"]
    args.out.write_text("\n".join(lines) + "\n")
    print(args.out.read_text())


if __name__ == "__main__":
    main()
