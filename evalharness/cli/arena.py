"""`evalharness arena RUN_DIR RUN_DIR ... --judge NAME --judge-model ...`: pairwise judging of runs
on the same task, Bradley-Terry ratings with bootstrap CIs (logic in judging/arena.py)."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from evalharness.cli.args import Command, resample_count
from evalharness.errors import UsageError, printable


def _add_arena(p: argparse.ArgumentParser) -> None:
    from evalharness.cli.judge_args import add_judge_args

    p.add_argument("runs", nargs="+", type=Path, help="run directories (from `run` or `score`), one per model")
    add_judge_args(p)
    p.add_argument("--task", default=None, help="the task to compare when the runs hold several")
    p.add_argument("--output", type=Path, default=Path("runs/arena"), help="run directory to write (default: runs/arena)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    p.add_argument("--bootstrap", type=resample_count, default=1000,
                   help="bootstrap resamples for CIs: 0 (none, CI null) or >= 100 (default 1000)")


def arena_table(results: dict[str, Any]) -> str:
    a = results["arena"]
    rows = [("model", "rating", "95% CI", "n")]
    for m in a["models"]:
        r = a["ratings"][m]
        rows.append((m, f"{r['rating']:.1f}", f"[{r['ci_low']:.1f}, {r['ci_high']:.1f}]", str(r["n"])))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    pc = a["position_consistency"]
    lines.append(f"\n{a['n_comparisons']} comparisons, {a['n_unparseable']} unparseable, position consistency "
                 + ("n/a" if pc is None or (isinstance(pc, float) and math.isnan(pc)) else f"{pc:.3f}"))
    h = a.get("handling") or {}
    if h:
        lines.append("CIs: bootstrap over " + str(h.get("resampled", "comparisons")) + "; ties: " + str(h.get("ties"))
                     + (f"; position-inconsistent pairs: {h['position_inconsistent']}" if "position_inconsistent" in h else ""))
    if a.get("verdict_method") == "likelihood":
        lines.append("verdicts: argmax of the judge's log-likelihoods over the allowed verdicts "
                     "(parse rate 1 by construction)")
    return "\n".join(lines)


def cmd_arena(args: argparse.Namespace) -> int:
    from evalharness.cli.judge_args import judge_options
    from evalharness.judging.arena import arena, swap_warning
    from evalharness.judging.metric import JudgeSession
    from evalharness.spec.judge import find_judge

    opts = judge_options(args)
    if len(opts["judges"]) != 1:
        raise UsageError("--judge: give exactly one judge for an arena")
    loaded = find_judge(opts["judges"][0])
    spec = loaded.spec
    warning = swap_warning(spec)
    if warning:
        print(printable(f"warning: {warning}"), file=sys.stderr)
    session = JudgeSession(opts["judges"], opts["judge_model"], opts["judge_model_args"], opts["cache_dir"], opts["use_cache"])
    try:
        assert session.backend is not None
        results = arena(spec, args.runs, session.backend, session.cache, args.output, task=args.task, seed=args.seed,
                        resamples=args.bootstrap, judge_info=session.describe(),
                        source=str(loaded.path) if loaded.path else opts["judges"][0])
    finally:
        session.close()
    print(printable(arena_table(results)))
    print(f"\nresults: {args.output / 'results.json'}")
    return 0


COMMAND = Command("arena", "judge runs against each other; Bradley-Terry ratings with CIs", _add_arena, cmd_arena)
