"""Group scores (results.json `groups.<name>`) from the members' results and per-sample logs only.

Two aggregates per group metric, both with a 95% percentile-bootstrap CI:
    micro  every sample counts once: the mean of the members' pooled per-sample scores
           (MMLU's size-weighted average, lm-eval's `mmlu` group score)
    macro  every member counts once: the mean of the members' own means
The bootstrap is stratified: each resample draws every member's samples with replacement
*within that member* (stats.resample_indices, seeded per member), then recomputes both
aggregates. The member sizes stay fixed, as they are fixed by design (a group is its members),
so the interval reflects sampling of questions, not of subjects. Percentile interval, and the
bootstrap values' standard deviation as stderr. Where every resample is equal (every pooled
sample scored the same) or there are no resamples, the CI is null with a `ci_reason`, never
zero-width.

Only metrics whose corpus value is the mean of per-sample scores (acc, acc_norm, exact_match,
f1, pass@k, ...) can be pooled; a member whose log carries sufficient statistics for the metric
(corpus BLEU, perplexity, judges) leaves that metric out of the group with a note.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evalharness.data.full import group_data
from evalharness.results.schema import CONFIDENCE
from evalharness.results.store import read_jsonl_tolerant, task_samples_log
from evalharness.spec.group import ResolvedGroup
from evalharness.stats.bootstrap import resample_indices
from evalharness.types import MetricResult


def member_scores(run_dir: Path, task: str, task_result: dict[str, Any], metric: str) -> np.ndarray | None:
    """A member's finite per-sample scores of `metric`; None when they are not a plain mean."""
    path = task_samples_log(run_dir, task, task_result)
    values = []
    for rec in read_jsonl_tolerant(path):
        if metric in (rec.get("score_stats") or {}):
            return None
        v = (rec.get("scores") or {}).get(metric)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            values.append(float(v))
    return np.array(values, dtype=float)


def stratified_resamples(strata: Sequence[np.ndarray], n_resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Micro and macro values of `n_resamples` stratified bootstrap resamples."""
    sizes = np.array([len(x) for x in strata], dtype=float)
    sums = np.zeros((len(strata), n_resamples))
    for i, x in enumerate(strata):
        # one seeded stream per member (numpy's SeedSequence makes seed+i streams independent)
        sums[i] = np.concatenate([x[chunk].sum(axis=1) for chunk in resample_indices(len(x), n_resamples, seed + i)])
    return sums.sum(axis=0) / sizes.sum(), (sums / sizes[:, None]).mean(axis=0)


def _result(name: str, value: float, resampled: np.ndarray | None, n: int, higher: bool, n_resamples: int) -> MetricResult:
    if resampled is None or resampled.min() == resampled.max():
        # never a zero-width interval: a group whose every sample scored the same has no spread to resample
        reason = ("n = 1: one sample gives no interval" if n < 2 else "no resamples (--bootstrap 0)" if resampled is None
                  else "every resample gave the same value (no spread to measure)")
        return MetricResult(name=name, value=value, ci_low=None, ci_high=None, stderr=None, n=n, higher_is_better=higher,
                            ci_method="none", resamples=0 if resampled is None else n_resamples, ci_reason=reason)
    alpha = (1.0 - CONFIDENCE) / 2.0
    low, high = (float(x) for x in np.quantile(resampled, [alpha, 1.0 - alpha]))
    err = float(np.std(resampled, ddof=1))
    return MetricResult(name=name, value=value, ci_low=low, ci_high=high, stderr=err, n=n, higher_is_better=higher,
                        ci_method="bootstrap-percentile-stratified", resamples=n_resamples)


def group_entry(group: ResolvedGroup, results: dict[str, Any], run_dir: Path, seed: int, n_resamples: int) -> dict[str, Any]:
    """One `groups.<name>` entry: members, per-metric micro/macro aggregates with CIs, notes."""
    tasks = results.get("tasks", {})
    present = [m for m in group.member_names if m in tasks]
    entry: dict[str, Any] = {"members": present, "metrics": {}, "group_file_hash": group.file_hash}
    missing = [m for m in group.member_names if m not in tasks]
    notes: list[str] = [f"members not in this run: {', '.join(missing)}"] if missing else []
    for metric in group.metrics:
        strata: list[np.ndarray] = []
        used: list[str] = []
        for m in present:
            scores = member_scores(run_dir, m, tasks[m], metric)
            if scores is None:
                notes.append(f"{metric}: {m} reports it as a corpus statistic, not a mean; left out of the group")
                strata = []
                break
            if len(scores):
                strata.append(scores)
                used.append(m)
        if not strata:
            continue
        n = int(sum(len(x) for x in strata))
        micro = float(np.concatenate(strata).mean())
        macro = float(np.mean([x.mean() for x in strata]))
        boot = stratified_resamples(strata, n_resamples, seed) if n >= 2 and n_resamples >= 1 else None
        higher = bool(tasks[used[0]]["metrics"].get(metric, {}).get("higher_is_better", True))
        values = {"micro": (micro, boot[0] if boot else None), "macro": (macro, boot[1] if boot else None)}
        for agg in group.aggregates:
            value, resampled = values[agg]
            res = _result(f"{metric}_{agg}", value, resampled, n, higher, n_resamples).to_json()
            res.update({"metric": metric, "aggregate": agg, "n_tasks": len(used)})
            entry["metrics"][f"{metric}_{agg}"] = res
        entry["n_samples"] = n
    data = group_data([tasks[m].get("data") or {} for m in present])
    if data is not None:  # a group of samples is marked as one, like its members
        entry["data"] = data
    if group.subgroups:
        entry["subgroups"] = [s.name for s in group.subgroups]
    if notes:
        entry["notes"] = notes
    return entry


def compute_groups(groups: Sequence[ResolvedGroup], results: dict[str, Any], run_dir: Path, seed: int = 0,
                   n_resamples: int = 1000) -> dict[str, Any]:
    """results.json `groups`: every group and subgroup, each once, subgroups before their parent."""
    out: dict[str, Any] = {}
    for g in groups:
        for sub in g.all_groups():
            if sub.name not in out:
                out[sub.name] = group_entry(sub, results, run_dir, seed, n_resamples)
    return out
