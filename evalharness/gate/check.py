"""Baseline comparison -> verdict: is the current run worse than the baseline beyond noise?

`run_gate` reads two run directories (results.json + samples/<task>.jsonl), refuses to compare
runs that did not evaluate the same thing (task file, prompt template, few-shot count, chat
template, sample set, per-sample prompts and answers), then checks every shared metric against
its rule (gate_config.Rule): an absolute bound on the current value, and a maximum drop that
counts only when a one-sided paired test (evalharness.stats.paired) finds it significant at `alpha`
after a multiplicity correction over all the gate's tested checks (Holm by default, so an
unchanged model fails the whole gate at most `alpha` of the time however many metrics it checks).
What makes two runs comparable is checked in comparable.py; rendering (console, Markdown, JUnit)
lives in render.py; the command in cli/gate.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, get_args

import numpy as np

from evalharness.errors import DataError, EvalHarnessError, UsageError
from evalharness.gate.comparable import check_config_names, examples, fingerprint_problems, sample_problems
from evalharness.results.rundir import RunDir
from evalharness.spec.gate import Correction, GateConfig, Rule
from evalharness.stats.paired import Alternative, as_rows, is_binary, mcnemar_exact, mean_aggregate, paired_bootstrap


@dataclass(frozen=True)
class Check:
    """One task/metric comparison: values on the paired samples, the difference and the verdict."""

    task: str
    metric: str
    higher_is_better: bool
    n: int
    baseline: float
    current: float
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    test: str  # "mcnemar" | "bootstrap" | "threshold"
    rule: Rule
    failures: tuple[str, ...]
    p_adjusted: float = math.nan  # p_value after the gate's multiplicity correction (what decides)
    bound_failures: tuple[str, ...] = ()  # min_value / max_value failures (no test involved)

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def worse_by(self) -> float:
        """How much worse the current value is, in the metric's units (negative: better)."""
        return -self.diff if self.higher_is_better else self.diff


@dataclass
class GateReport:
    """Everything the renderers show; `exit_code` is 0 on pass and 1 on any failed check."""

    current: Path
    baseline: Path
    alpha: float
    use_stats: bool
    correction: Correction = "holm"
    checks: list[Check] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)  # tolerated by --allow-mismatch
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1


def run_gate(
    current: Path,
    baseline: Path,
    config: GateConfig | None = None,
    alpha: float | None = None,
    use_stats: bool = True,
    allow_mismatch: bool = False,
    correction: Correction | None = None,
) -> GateReport:
    """Compare `current` with `baseline`; raises DataError when they are not comparable."""
    cfg = config or GateConfig()
    alpha = cfg.alpha if alpha is None else alpha
    correction = cfg.correction if correction is None else correction
    if not 0.0 < alpha < 0.5:
        raise UsageError(f"--alpha: expected a number between 0 and 0.5, got {alpha}")
    if correction not in get_args(Correction):
        raise UsageError(f"--correction: expected one of {', '.join(get_args(Correction))}, got {correction!r}")
    cur, base = RunDir.open(current, "current run"), RunDir.open(baseline, "baseline")
    report = GateReport(current, baseline, alpha, use_stats, correction)
    problems: list[str] = []
    shared = [t for t in base.tasks if t in cur.tasks]
    problems += [f"{t}: in the baseline but not in the current run" for t in base.tasks if t not in cur.tasks]
    report.notes += [f"{t}: only in the current run; not checked" for t in cur.tasks if t not in base.tasks]
    check_config_names(cfg, base, cur, shared)
    paired: dict[str, tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]] = {}
    for task in shared:
        problems += fingerprint_problems(task, base.tasks[task], cur.tasks[task], report.notes)
        b_recs, c_recs = base.records(task), cur.records(task)
        problems += sample_problems(task, b_recs, c_recs)
        paired[task] = (b_recs, c_recs)
    if problems and not allow_mismatch:
        listing = "\n  ".join(problems)
        raise DataError(
            f"{current} and {baseline} are not comparable:\n  {listing}\n"
            "(pass --allow-mismatch to compare the shared samples anyway)"
        )
    report.mismatches = problems
    for task in shared:
        b_recs, c_recs = paired[task]
        params = (base.results.get("config") or {}).get("metric_params") or {}  # recorded by `evalharness score`
        report.checks += _task_checks(task, base.tasks[task], cur.tasks[task], b_recs, c_recs, params, cfg, alpha, use_stats, report.notes)
    if not report.checks:
        raise DataError(f"{current} and {baseline}: no shared metric to compare")
    report.checks = apply_correction(report.checks, alpha, correction)
    m = sum(math.isfinite(c.p_value) for c in report.checks)
    if correction != "none" and any(c.test == "bootstrap" for c in report.checks) and m / (cfg.resamples + 1) >= alpha:
        # a bootstrap p-value is at least 1 / (resamples + 1); corrected over m checks it may never get below alpha
        report.notes.append(f"{cfg.resamples} resamples cannot give a bootstrap p-value below alpha={alpha:g} after "
                            f"the {correction} correction over {m} checks: raise `resamples` in the gate config")
    return report


def adjusted_p_values(p: np.ndarray, method: Correction) -> np.ndarray:
    """Family-wise adjusted p-values along the last axis (vectorised over leading axes).

    holm: step-down, p_(i) * (m - i + 1) made monotone (Holm 1979); controls the family-wise
    error at alpha under any dependence, and never rejects less than bonferroni: p * m.
    """
    p = np.asarray(p, dtype=float)
    m = p.shape[-1]
    if method == "none" or m <= 1:
        return p.copy()
    if method == "bonferroni":
        bonferroni: np.ndarray = np.minimum(1.0, p * m)
        return bonferroni
    order = np.argsort(p, axis=-1)
    ranked = np.take_along_axis(p, order, axis=-1) * (m - np.arange(m))
    stepped = np.minimum(1.0, np.maximum.accumulate(ranked, axis=-1))
    out = np.empty_like(p)
    np.put_along_axis(out, order, stepped, axis=-1)
    return out


def apply_correction(checks: list[Check], alpha: float, method: Correction) -> list[Check]:
    """The checks with `p_adjusted` over the family of tested checks (finite p) and each drop's
    verdict decided on it."""
    tested = [i for i, c in enumerate(checks) if math.isfinite(c.p_value)]
    adjusted = adjusted_p_values(np.array([checks[i].p_value for i in tested]), method)
    out = list(checks)
    for i, q in zip(tested, adjusted.tolist(), strict=True):
        c = checks[i]
        out[i] = replace(c, p_adjusted=q, failures=c.bound_failures + _drop_failure(c.worse_by, c.rule, c.p_value, q, alpha, True))
    return out


def _drop_failure(worse_by: float, rule: Rule, p: float, p_adj: float, alpha: float, use_stats: bool) -> tuple[str, ...]:
    if not worse_by > rule.max_drop or (use_stats and not p_adj < alpha):
        return ()
    allowed = f" (allowed {rule.max_drop:g})" if rule.max_drop else ""
    if not use_stats:
        return (f"drop of {worse_by:.4g}{allowed}",)
    adj = f", adjusted p={p_adj:.3g}" if p_adj != p else ""
    return (f"drop of {worse_by:.4g}{allowed} is significant (p={p:.3g}{adj} < {alpha:g})",)


def _number(value: Any) -> float:
    """A results.json number; null (strict JSON for an undefined value) reads as NaN."""
    return math.nan if value is None else float(value)


def _is_judge(entry: dict[str, Any]) -> bool:
    """A judge metric (its results.json entry carries the judge block): compared on its per-sample
    verdict values, not on the (value, parsed) statistics, so unparseable samples drop out of both sides."""
    return isinstance(entry.get("judge"), dict)


def _rows(rec: dict[str, Any], metric: str, judge: bool) -> list[float]:
    stats = None if judge else (rec.get("score_stats") or {}).get(metric)
    return [float(x) for x in stats] if stats else [float(rec["scores"][metric])]


def _matrix(task: str, metric: str, side: str, recs: list[dict[str, Any]], judge: bool = False) -> np.ndarray:
    """Per-sample statistics (n x k) of one side, as the metric's `aggregate` consumes them."""
    rows = [_rows(r, metric, judge) for r in recs]
    if len({len(r) for r in rows}) > 1:
        raise DataError(f"{task}.{metric}: the {side}'s per-sample statistics have differing lengths")
    return as_rows(np.array(rows, dtype=float))


def _scored(recs: dict[str, dict[str, Any]], metric: str) -> set[str]:
    """Samples with a value for the metric (null: failed, or an unparseable verdict)."""
    return {i for i, r in recs.items() if isinstance((r.get("scores") or {}).get(metric), (int, float))}


def _unparseable(recs: dict[str, dict[str, Any]], metric: str) -> set[str]:
    return {i for i, r in recs.items() if ((r.get("score_details") or {}).get(metric) or {}).get("status") == "unparseable"}


def _judge_notes(task: str, metric: str, b_recs: dict[str, dict[str, Any]], c_recs: dict[str, dict[str, Any]],
                 rule: Rule, notes: list[str]) -> tuple[str, ...]:
    """Notes on the unparseable verdicts left out; the failure when the current run's rate exceeds the rule's."""
    b_unp, c_unp = _unparseable(b_recs, metric), _unparseable(c_recs, metric)
    if b_unp or c_unp:
        notes.append(f"{task}.{metric}: unparseable verdicts excluded: {len(b_unp)} of {len(b_recs)} in the baseline, "
                     f"{len(c_unp)} of {len(c_recs)} in the current run")
    rate = len(c_unp) / len(c_recs) if c_recs else 0.0
    if rule.max_unparseable_rate is not None and rate > rule.max_unparseable_rate:
        return (f"{len(c_unp)} of {len(c_recs)} verdicts unparseable ({rate:.1%}), above max_unparseable_rate "
                f"{rule.max_unparseable_rate:g}",)
    return ()


def _task_checks(
    task: str, base: dict[str, Any], cur: dict[str, Any], b_recs: dict[str, dict[str, Any]], c_recs: dict[str, dict[str, Any]],
    params: dict[str, Any], cfg: GateConfig, alpha: float, use_stats: bool, notes: list[str],
) -> list[Check]:
    b_metrics, c_metrics = base.get("metrics", {}), cur.get("metrics", {})
    for m in sorted(set(b_metrics) ^ set(c_metrics)):
        side = "baseline" if m in b_metrics else "current run"
        notes.append(f"{task}.{m}: only in the {side}; not checked")
    checks = []
    for metric in [m for m in b_metrics if m in c_metrics]:
        rule = cfg.rule(task, metric)
        if rule is None:
            continue
        judge = _is_judge(b_metrics[metric]) or _is_judge(c_metrics[metric])
        b_ok, c_ok = _scored(b_recs, metric), _scored(c_recs, metric)
        both = [i for i in b_recs if i in c_recs]
        unparseable = (_unparseable(b_recs, metric) | _unparseable(c_recs, metric)) if judge else set()
        for side, ok in (("baseline", b_ok), ("current run", c_ok)):
            unscored = [i for i in both if i not in ok and i not in unparseable]
            if unscored:
                notes.append(f"{task}.{metric}: {len(unscored)} sample(s) unscored (failed) in the {side} ({examples(unscored)})")
        judge_failures = _judge_notes(task, metric, b_recs, c_recs, rule, notes) if judge else ()
        ids = [i for i in b_recs if i in b_ok and i in c_ok]
        if not ids and judge:  # a judge that never parsed on one side: a failed check, not an unreadable run
            hib = bool(b_metrics[metric].get("higher_is_better", True))
            why = judge_failures or ("no verdict parsed in both runs: nothing to compare",)
            checks.append(Check(task, metric, hib, 0, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan,
                                "threshold", rule, why, bound_failures=why))
            continue
        if not ids:
            raise DataError(f"{task}.{metric}: no sample scored in both runs")
        b_rows = _matrix(task, metric, "baseline", [b_recs[i] for i in ids], judge)
        c_rows = _matrix(task, metric, "current run", [c_recs[i] for i in ids], judge)
        if b_rows.shape[1] != c_rows.shape[1]:
            raise DataError(f"{task}.{metric}: statistics per sample: baseline {b_rows.shape[1]}, current {c_rows.shape[1]}")
        aggregate: Callable[[np.ndarray], float] = mean_aggregate
        known = True
        if not judge:  # a judge's aggregate is the mean over parsed verdicts: here, the plain mean of the values
            aggregate, known = _aggregator(task, metric, params.get(metric), base.get("fingerprint", {}).get("task_file_hash"),
                                           b_rows.shape[1])
        for side, recs, ok, entry in (("baseline", b_recs, b_ok, b_metrics[metric]), ("current run", c_recs, c_ok, c_metrics[metric])):
            _check_recomputed(task, metric, side, aggregate, [recs[i] for i in recs if i in ok], entry, known, judge, notes)
        hib = bool(b_metrics[metric].get("higher_is_better", True))
        reported = _number(c_metrics[metric].get("value"))
        tops = _binary_tops(b_metrics[metric], c_metrics[metric])
        check = compare(task, metric, hib, b_rows, c_rows, aggregate, rule, cfg, alpha, use_stats, reported, tops)
        if judge_failures:
            check = replace(check, failures=judge_failures + check.failures, bound_failures=judge_failures + check.bound_failures)
        checks.append(check)
    return checks


def _aggregator(
    task: str, metric: str, params: dict[str, Any] | None, task_file_hash: str | None, width: int,
) -> tuple[Callable[[np.ndarray], float], bool]:
    """The metric's own corpus aggregate, built with the params it was run with where those are
    known: recorded by `evalharness score`, or in the task file when it is found unchanged; and
    whether it is the metric's own (False: a per-sample mean standing in for an uninstalled plugin)."""
    from evalharness.metrics.base import build_metric

    if params is None:
        try:
            from evalharness.spec.library import find_task

            loaded = find_task(task)
            if loaded.file_hash == task_file_hash:
                params = next((m.params for m in loaded.spec.metrics if m.name == metric), None)
        except EvalHarnessError:
            pass
    try:
        return build_metric(metric, params).aggregate, True
    except EvalHarnessError:
        if width == 1:
            return mean_aggregate, False  # a metric from an uninstalled plugin: per-sample means still pair
        raise DataError(f"{task}.{metric}: unknown metric with corpus statistics; install the plugin that defines it") from None


def _check_recomputed(
    task: str, metric: str, side: str, aggregate: Callable[[np.ndarray], float], recs: list[dict[str, Any]],
    entry: dict[str, Any], known: bool, judge: bool, notes: list[str],
) -> None:
    """The log must reproduce results.json: a log that disagrees (edited, truncated, from another
    run) is refused; where the aggregate is a stand-in (uninstalled plugin) it is only noted."""
    if not recs:
        return
    value = aggregate(_matrix(task, metric, side, recs, judge))
    recorded = _number(entry.get("value"))
    if not (math.isclose(value, recorded, rel_tol=1e-6, abs_tol=1e-9) or (math.isnan(value) and math.isnan(recorded))):
        line = f"{task}.{metric}: the {side}'s sample log gives {value:.6g} but its results.json says {recorded:.6g}"
        if known:
            raise DataError(f"{line}; the log and results.json disagree (edited or from another run)")
        notes.append(line)


def _binary_tops(base: dict[str, Any], cur: dict[str, Any]) -> tuple[float, ...]:
    """The right-answer values McNemar may test with: the top of a metric declared binary
    (results.json `kind`/`scale`), none for any other declared kind, and 1 or 100 (whichever
    the values show) only for files written before metrics declared their kind."""
    kinds = {e.get("kind") for e in (base, cur)}
    if kinds == {None}:
        return (1.0, 100.0)
    if kinds != {"binary"}:
        return ()
    scale = base.get("scale") or cur.get("scale") or [0.0, 1.0]
    return (float(scale[1]),) if float(scale[0]) == 0.0 else ()


def compare(
    task: str, metric: str, hib: bool, b_rows: np.ndarray, c_rows: np.ndarray, aggregate: Callable[[np.ndarray], float],
    rule: Rule, cfg: GateConfig, alpha: float, use_stats: bool, current_reported: float, tops: tuple[float, ...] = (1.0, 100.0),
) -> Check:
    """Apply one rule to paired rows. A drop counts when it exceeds `max_drop` and, with stats, a
    one-sided paired test rejects "no worse than the allowance" at `alpha` (this check alone:
    `apply_correction` re-decides it within the gate's family of checks). The CI is two-sided at
    1 - 2 alpha, so its bad-side end is the one-sided bound: with the bootstrap test, the drop is
    significant when the whole interval lies past the allowance (up to one resample)."""
    sign = 1.0 if hib else -1.0
    null = -sign * rule.max_drop  # the difference at the edge of what is tolerated
    failures: list[str] = []
    if rule.min_value is not None and not current_reported >= rule.min_value:
        failures.append(f"value {current_reported:.4g} is below the minimum {rule.min_value:g}")
    if rule.max_value is not None and not current_reported <= rule.max_value:
        failures.append(f"value {current_reported:.4g} is above the maximum {rule.max_value:g}")
    if use_stats:
        worse: Alternative = "less" if hib else "greater"
        boot = paired_bootstrap(b_rows, c_rows, aggregate, cfg.resamples, cfg.seed, 1.0 - 2.0 * alpha, null, worse)
        diff, low, high, p, test = boot.diff, boot.ci_low, boot.ci_high, boot.p_value, "bootstrap"
        top = next((t for t in tops if is_binary(b_rows, t) and is_binary(c_rows, t)), None)
        if rule.max_drop == 0.0 and b_rows.shape[1] == 1 and top is not None:
            p, test = mcnemar_exact(b_rows[:, 0] / top, c_rows[:, 0] / top, worse).p_value, "mcnemar"
    else:
        diff = aggregate(c_rows) - aggregate(b_rows)
        low = high = p = math.nan
        test = "threshold"
    worse_by = -sign * diff
    return Check(
        task=task, metric=metric, higher_is_better=hib, n=int(b_rows.shape[0]), baseline=aggregate(b_rows),
        current=aggregate(c_rows), diff=diff, ci_low=low, ci_high=high, p_value=p, test=test, rule=rule,
        failures=tuple(failures) + _drop_failure(worse_by, rule, p, p, alpha, use_stats), p_adjusted=p,
        bound_failures=tuple(failures),
    )
