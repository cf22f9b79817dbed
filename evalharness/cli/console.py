"""Plain-text output of the commands: the per-task metric table."""

from __future__ import annotations

from typing import Any


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def _ci(m: dict[str, Any]) -> str:
    """`[low, high]`, or `- (why)` where no interval is defined."""
    if m.get("ci_low") is None or m.get("ci_high") is None:
        return f"- ({m['ci_reason']})" if m.get("ci_reason") else "-"
    return f"[{m['ci_low']:.4f}, {m['ci_high']:.4f}]"


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

    notes = [sample_note(name, t.get("data") or {}, t.get("source")) for name, t in results["tasks"].items()]
    return "\n".join(lines + [f"note: {n}" for n in notes if n])
