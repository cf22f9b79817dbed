"""Plain-text output of the commands: the per-task metric table."""

from __future__ import annotations

import math
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from evalharness.errors import printable
from evalharness.results.store import read_jsonl_tolerant, task_samples_log


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.4f}"


def _ci(m: dict[str, Any]) -> str:
    """`[low, high]`, or `n/a (why)` where no interval is defined or it has zero width."""
    low, high = m.get("ci_low"), m.get("ci_high")
    if low is None or high is None or low == high:
        reason = m.get("ci_reason") or ("zero-width interval" if low is not None and low == high else None)
        return f"n/a ({reason})" if reason else "n/a"
    return f"[{low:.4f}, {high:.4f}]"


def warnings(results: dict[str, Any], run_dir: Path | None = None) -> list[str]:
    """Lines the user must see after a run: each judge with unparseable verdicts, and failed
    samples with the count per cause and its first message (from the run's sample logs)."""
    lines = []
    for name, task in results.get("tasks", {}).items():
        for metric, m in task.get("metrics", {}).items():
            lines += _judge_warnings(name, metric, m)
        if task.get("replaced_samples"):
            lines.append(f"note: {name}: this run's {task.get('n_samples', 0) + task.get('n_failed', 0):,} samples replace "
                         f"{task['replaced_samples']:,} more an earlier run logged in this folder (their answers stay in the "
                         "response cache; rerun with the earlier --limit to restore them)")
        failed = task.get("n_failed") or 0
        if not failed:
            continue
        total = (task.get("n_samples") or 0) + failed  # n_samples counts the scored ones only
        lines.append(f"warning: {failed} of {total} sample(s) failed in task {name}")
        if run_dir is not None:
            causes = Counter(_cause(str(r["error"])) for r in
                             read_jsonl_tolerant(task_samples_log(run_dir, name, task)) if r.get("error"))
            lines += [f"  {n} x {cause}" for cause, n in causes.most_common()]
    return lines


def _judge_warnings(task: str, metric: str, m: dict[str, Any]) -> list[str]:
    """Unparseable verdicts of one judge metric; a per-claim / per-context judge also counts the
    unit verdicts that did not parse (a sample is unparseable only when none of its units parsed)."""
    lines = []
    unp = m.get("n_unparseable") or 0
    unit_key = next((k for k in ("claims", "contexts") if isinstance(m.get(k), dict)), None)
    if unit_key is not None:
        units = m[unit_key]
        if units.get("n_unparseable"):
            lines.append(f"warning: {units['n_unparseable']} of {units.get('n', '?')} verdicts per {unit_key[:-1]} "
                         f"unparseable ({metric}, task {task}); left out of their samples' means")
    if unp:
        total = (m.get("n") or 0) + unp + (m.get("n_errors") or 0)
        what = "samples without a parsed verdict" if unit_key else "verdicts unparseable"
        lines.append(f"warning: {unp} of {total} {what} ({metric}, task {task})")
    return lines


def print_warnings(results: dict[str, Any], run_dir: Path | None = None) -> None:
    """`warnings` on stderr, after the metric table."""
    for line in warnings(results, run_dir):
        print(printable(line), file=sys.stderr)


def _cause(error: str) -> str:
    """An error's first line, clipped: the key failures are grouped by."""
    first = error.strip().splitlines()[0] if error.strip() else "unknown error"
    return first if len(first) <= 160 else first[:157] + "..."


def summary_table(results: dict[str, Any]) -> str:
    """A plain-text table of every task's metrics with CIs."""
    rows = [("task", "metric", "value", "95% CI", "n")]
    for name, task in results["tasks"].items():
        for metric, m in task["metrics"].items():
            arrow = "↑" if m.get("higher_is_better", True) else "↓"
            rows.append((name, f"{metric} {arrow}", _fmt(m["value"]), _ci(m), str(m["n"])))
    for name, group in (results.get("groups") or {}).items():
        for metric, m in group["metrics"].items():
            rows.append((f"{name} (group)", metric, _fmt(m["value"]), _ci(m), str(m["n"])))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    from evalharness.data.full import sample_note

    groups = results.get("groups") or {}
    group_notes = {name: sample_note(f"{name} (group)", g.get("data") or {}) for name, g in groups.items()}
    members = {name: set(g.get("members") or []) for name, g in groups.items()}
    grouped = {m for name in groups if group_notes[name] for m in members[name]}
    # a group's note stands for its members (MMLU: one line, not 57), and for its subgroups
    # (mmlu_stem, ...: their members are among the larger noted group's)
    covered = {name for name in groups for big in groups
               if big != name and group_notes[big] and members[name] < members[big]}
    notes = [sample_note(name, t.get("data") or {}, t.get("source")) for name, t in results["tasks"].items() if name not in grouped]
    notes += [note for name, note in group_notes.items() if name not in covered]
    kept = [name for name, t in results["tasks"].items() if t.get("earlier_run")]
    if kept:
        notes.append(f"{', '.join(kept)}: kept from an earlier run into this folder (not rerun now; "
                     f"results.json marks {'it' if len(kept) == 1 else 'them'} earlier_run)")
    return "\n".join(lines + [f"note: {n}" for n in notes if n])
