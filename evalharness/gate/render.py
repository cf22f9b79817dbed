"""The gate's report as a console table, a Markdown summary (PR comments) and JUnit XML (CI test views)."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

from evalharness.gate.check import Check, GateReport
from evalharness.results.store import md_text

HEADERS = ("task", "metric", "n", "baseline", "current", "diff", "CI", "p", "p adj", "test", "rule", "verdict")


def _num(x: float, signed: bool = False) -> str:
    if math.isnan(x):
        return "-"
    return f"{x:+.4g}" if signed else f"{x:.4g}"


def _p(p: float) -> str:
    if math.isnan(p):
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _rule(c: Check) -> str:
    parts = [f"drop<={c.rule.max_drop:g}"]
    if c.rule.min_value is not None:
        parts.append(f">={c.rule.min_value:g}")
    if c.rule.max_value is not None:
        parts.append(f"<={c.rule.max_value:g}")
    if c.rule.max_unparseable_rate is not None:
        parts.append(f"unparseable<={c.rule.max_unparseable_rate:g}")
    return " ".join(parts)


def verdict(c: Check) -> str:
    """FAIL, `ok (noise)` for a drop past the allowance that is not significant, else ok."""
    if not c.passed:
        return "FAIL"
    return "ok (noise)" if c.worse_by > c.rule.max_drop else "ok"


def _row(c: Check) -> tuple[str, ...]:
    arrow = "↑" if c.higher_is_better else "↓"
    # a zero-width interval (every resampled difference equal) is no interval: shown as n/a, never [x, x]
    undefined = math.isnan(c.ci_low) or math.isnan(c.ci_high) or c.ci_low == c.ci_high
    ci = "n/a" if undefined else f"[{_num(c.ci_low, True)}, {_num(c.ci_high, True)}]"
    return (c.task, f"{c.metric} {arrow}", str(c.n), _num(c.baseline), _num(c.current), _num(c.diff, True), ci, _p(c.p_value),
            _p(c.p_adjusted), c.test, _rule(c), verdict(c))


def _ci_label(report: GateReport) -> str:
    return f"{round(100 * (1 - 2 * report.alpha), 1):g}% CI"


def _summary(report: GateReport) -> str:
    failed = sum(not c.passed for c in report.checks)
    head = "PASS" if report.passed else f"FAIL: {failed} of {len(report.checks)} check(s) failed"
    m = sum(not math.isnan(c.p_value) for c in report.checks)
    corrected = f", {report.correction}-adjusted over {m} checks" if report.correction != "none" and m > 1 else ""
    how = f"paired tests at alpha={report.alpha:g}{corrected}" if report.use_stats else "plain threshold check (--no-stats)"
    return f"{head} ({how})"


def console(report: GateReport) -> str:
    """A plain-text table, then failures, tolerated mismatches and notes."""
    headers = tuple(_ci_label(report) if h == "CI" else h for h in HEADERS)
    rows = [headers, *(_row(c) for c in report.checks)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for c in report.checks:
        lines += [f"FAIL {c.task}.{c.metric}: {why}" for why in c.failures]
    lines += [f"warning: {m}" for m in report.mismatches]
    lines += [f"note: {n}" for n in report.notes]
    lines.append(_summary(report))
    return "\n".join(lines)


def markdown(report: GateReport) -> str:
    """A Markdown summary for a pull-request comment or a CI job summary."""
    icon = "✅" if report.passed else "❌"
    out = [
        f"### {icon} evalharness gate: {_summary(report)}",
        "",
        f"Current `{report.current}` against baseline `{report.baseline}`. Differences are current - baseline; "
        "a drop fails only when it exceeds the rule's allowance and a one-sided paired test finds it significant "
        "(paired bootstrap over sample ids, McNemar's exact test for 0/1 metrics) after the multiplicity correction: "
        "`p` is each test's own p-value, `p adj` the one that decides (family-wise error at alpha over all checks); "
        "the CI's worse end is the one-sided bound of the check on its own.",
        "",
    ]
    headers = tuple(_ci_label(report) if h == "CI" else h for h in HEADERS)
    out.append("| " + " | ".join(headers) + " |")
    out.append("|" + "|".join("---" for _ in headers) + "|")
    for c in report.checks:
        cells = [md_text(cell) for cell in _row(c)]
        cells[-1] = f"**{cells[-1]}**" if not c.passed else cells[-1]
        out.append("| " + " | ".join(cells) + " |")
    sections = (
        ("Failures", [md_text(f"{c.task}.{c.metric}: {why}") for c in report.checks for why in c.failures]),
        ("Mismatches tolerated by --allow-mismatch", [md_text(m) for m in report.mismatches]),
        ("Notes", [md_text(n) for n in report.notes]),
    )
    for title, items in sections:
        if items:
            out += ["", f"**{title}**", "", *(f"- {item}" for item in items)]
    return "\n".join(out) + "\n"


def junit(report: GateReport) -> str:
    """JUnit XML: one testcase per task/metric, with a <failure> on each failed check."""
    failures = sum(not c.passed for c in report.checks)
    counts = {"tests": str(len(report.checks)), "failures": str(failures), "errors": "0", "skipped": "0"}
    root = ET.Element("testsuites", {"name": "evalharness gate", **counts})
    suite = ET.SubElement(root, "testsuite", {"name": "evalharness.gate", **counts, "time": "0"})
    props = ET.SubElement(suite, "properties")
    for name, value in (("current", str(report.current)), ("baseline", str(report.baseline)), ("alpha", f"{report.alpha:g}"),
                        ("correction", report.correction)):
        ET.SubElement(props, "property", {"name": name, "value": value})
    for c in report.checks:
        case = ET.SubElement(suite, "testcase", {"classname": f"gate.{c.task}", "name": c.metric, "time": "0"})
        detail = "  ".join(f"{h}={v}" for h, v in zip(HEADERS, _row(c), strict=True))
        if c.failures:
            failure = ET.SubElement(case, "failure", {"message": "; ".join(c.failures), "type": "regression"})
            failure.text = detail
        ET.SubElement(case, "system-out").text = detail
    extra = [f"warning: {m}" for m in report.mismatches] + [f"note: {n}" for n in report.notes]
    if extra:
        ET.SubElement(suite, "system-out").text = "\n".join(extra)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
