"""Cost of the pass@k sandbox per program: bubblewrap + judge (the default) against the old
in-process subprocess path (now the opt-in unsafe path), then the 500 MBPP reference solutions.

    python bench/sandbox_bench.py [--n 100] [--mbpp]

Each round runs the same trivial program (`def add`, two asserts) once per path, interleaved,
one at a time, so both see the same machine load; the MBPP run uses the task's own metric
(3 s limit, one worker per core).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from evalharness.metrics.sandbox import Limits, isolation, run_program

PROGRAM = "def add(a, b):\n    return a + b\n"
TESTS = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n\ncheck(add)\n"


def per_program(n: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"bwrap": [], "unsafe": []}
    for _ in range(3):  # warm-up: page cache, lru caches
        run_program(PROGRAM, tests=TESTS, isolation="bwrap")
        run_program(PROGRAM, tests=TESTS, isolation="unsafe")
    for _ in range(n):
        for mode in ("bwrap", "unsafe"):
            t = time.perf_counter()
            res = run_program(PROGRAM, Limits(), tests=TESTS, isolation=mode)  # type: ignore[arg-type]
            times[mode].append(time.perf_counter() - t)
            assert res.passed, res
    return times


def wrapper_only(n: int) -> dict[str, list[float]]:
    """The namespaces and mounts alone: `python -I -S -c pass` with and without bwrap around it."""
    import subprocess

    from evalharness.metrics.sandbox.isolation import _bwrap_args, _bwrap_path, _python

    bare = [_python(), "-I", "-S", "-c", "pass"]
    wrapped = [str(_bwrap_path()), *_bwrap_args(Limits()), *bare]
    times: dict[str, list[float]] = {"python -S": [], "bwrap + python -S": []}
    for _ in range(n):
        for name, argv in (("python -S", bare), ("bwrap + python -S", wrapped)):
            t = time.perf_counter()
            subprocess.run(argv, env={}, check=True)
            times[name].append(time.perf_counter() - t)
    return times


def mbpp() -> tuple[int, int, float]:
    from evalharness.data.samples import load_samples
    from evalharness.metrics.base import build_metric, score_all
    from evalharness.spec.task import load_task_file
    from evalharness.types import Output

    task = load_task_file(os.path.join(os.path.dirname(__file__), "..", "tasks", "mbpp.yaml"))
    samples = load_samples(task)
    (spec,) = task.spec.metrics
    metric = build_metric(spec.name, spec.params)
    t = time.perf_counter()
    scores = score_all(metric, samples, [Output(generations=(s.fields["code"],)) for s in samples])
    return sum(sc.value == 1.0 for sc in scores), len(samples), time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--mbpp", action="store_true")
    args = ap.parse_args()
    assert isolation() == "bwrap", "bubblewrap is needed for this bench"
    print(f"load average at start: {os.getloadavg()}")
    times = {**per_program(args.n), **wrapper_only(args.n)}
    for mode, ts in times.items():
        ms = sorted(1000 * x for x in ts)
        print(f"{mode:18s} n={len(ms)} median {statistics.median(ms):.1f} ms  p10 {ms[len(ms) // 10]:.1f}  "
              f"p90 {ms[9 * len(ms) // 10]:.1f}")
    print(f"load average at end: {os.getloadavg()}")
    if args.mbpp:
        ok, n, secs = mbpp()
        print(f"MBPP reference solutions: {ok}/{n} pass in {secs:.1f} s ({os.cpu_count()} workers)")


if __name__ == "__main__":
    main()
