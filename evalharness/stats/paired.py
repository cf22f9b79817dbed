"""Paired tests between two runs scored on the same samples: is `current` really worse than `baseline`?

Both tests pair the two runs' per-sample scores by sample id, so the (large) variation between
samples cancels and only the variation of the difference is left. `alternative` follows scipy:
"less" tests H1 `diff < null`, "greater" H1 `diff > null`, "two-sided" H1 `diff != null`,
where `diff = aggregate(current) - aggregate(baseline)`.

- `paired_bootstrap`: resample sample ids with replacement, the same draw for both sides, and
  recompute each side's corpus `aggregate` on the draw (one path for means, corpus BLEU and
  length-weighted perplexity alike). The CI is the percentile interval of the resampled
  differences; the p-value is the share of resamples on the null side of `null` (doubled for
  two-sided), so a one-sided `p < alpha` holds when the (1 - 2 alpha) CI lies wholly on the
  alternative's side of `null` (up to one resample at the edge).
- `mcnemar_exact`: for 0/1 scores, an exact binomial test on the discordant pairs
  (`scipy.stats.binomtest`), which needs no resampling and is exact at small n.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from evalharness.results.schema import CONFIDENCE

Aggregate = Callable[[np.ndarray], float]
Alternative = Literal["two-sided", "less", "greater"]


@dataclass(frozen=True)
class BootstrapDiff:
    """`current - baseline` of a corpus aggregate, with its percentile CI and p-value."""

    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    resamples: int


@dataclass(frozen=True)
class McNemar:
    """Discordant pairs (`lost`: 1 -> 0, `gained`: 0 -> 1) and the exact p-value."""

    lost: int
    gained: int
    p_value: float


def as_rows(stats: np.ndarray) -> np.ndarray:
    """Per-sample statistics as an (n, k) float matrix."""
    arr = np.asarray(stats, dtype=float)
    return arr[:, None] if arr.ndim == 1 else arr


def is_binary(values: np.ndarray, top: float = 1.0) -> bool:
    """True when every value is 0 or `top` (right/wrong scores, where McNemar applies; SQuAD's
    exact match is 0 or 100)."""
    v = np.asarray(values, dtype=float)
    return bool(v.size) and bool(np.all((v == 0.0) | (v == top)))


def paired_bootstrap(
    baseline: np.ndarray,
    current: np.ndarray,
    aggregate: Aggregate,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = CONFIDENCE,
    null: float = 0.0,
    alternative: Alternative = "two-sided",
) -> BootstrapDiff:
    """Paired bootstrap of `aggregate(current) - aggregate(baseline)` over rows matched by index.

    `baseline` and `current` hold the same samples in the same order (n x k sufficient
    statistics each). `null` is the difference tested against (a tolerated drop shifts it).
    `confidence` sets the percentile interval only; the p-value does not depend on it.
    """
    base, cur = as_rows(baseline), as_rows(current)
    if base.shape[0] != cur.shape[0]:
        raise ValueError(f"paired samples differ in number: {base.shape[0]} vs {cur.shape[0]}")
    n = int(base.shape[0])
    diff = aggregate(cur) - aggregate(base) if n else math.nan
    if n < 2 or n_resamples < 1 or not math.isfinite(diff):
        return BootstrapDiff(diff, diff, diff, math.nan, 0)
    idx = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))
    draws = np.array([aggregate(cur[row]) - aggregate(base[row]) for row in idx], dtype=float)
    draws = draws[np.isfinite(draws)]
    if draws.size == 0:
        return BootstrapDiff(diff, math.nan, math.nan, math.nan, n_resamples)
    tail = (1.0 - confidence) / 2.0
    low, high = (float(x) for x in np.quantile(draws, [tail, 1.0 - tail]))
    return BootstrapDiff(float(diff), low, high, bootstrap_p_value(draws, null, alternative), n_resamples)


def bootstrap_p_value(draws: np.ndarray, null: float = 0.0, alternative: Alternative = "two-sided") -> float:
    """p-value of `difference == null` from bootstrap draws of the difference.

    The share of draws on the null side (ties count there, so identical runs, every draw
    exactly `null`, give p = 1), with the +1 correction that keeps it above zero: a finite
    number of resamples cannot prove p = 0. Two-sided: twice the smaller tail.
    """
    d = np.asarray(draws, dtype=float)
    at_or_above = (float(np.sum(d >= null)) + 1.0) / (d.size + 1.0)
    at_or_below = (float(np.sum(d <= null)) + 1.0) / (d.size + 1.0)
    if alternative == "less":
        return at_or_above
    if alternative == "greater":
        return at_or_below
    return min(1.0, 2.0 * min(at_or_above, at_or_below))


def mcnemar_exact(baseline: np.ndarray, current: np.ndarray, alternative: Alternative = "two-sided") -> McNemar:
    """McNemar's exact test on paired 0/1 scores: under no change a discordant pair is equally
    likely to go either way, so `gained ~ Binomial(lost + gained, 1/2)`. "less" tests whether
    `current` has fewer ones than `baseline`."""
    from scipy.stats import binomtest

    base = np.asarray(baseline, dtype=float).ravel()
    cur = np.asarray(current, dtype=float).ravel()
    if base.shape != cur.shape:
        raise ValueError(f"paired samples differ in number: {base.size} vs {cur.size}")
    lost = int(np.sum((base == 1.0) & (cur == 0.0)))
    gained = int(np.sum((base == 0.0) & (cur == 1.0)))
    if lost + gained == 0:
        return McNemar(0, 0, 1.0)
    p = float(binomtest(gained, lost + gained, 0.5, alternative=alternative).pvalue)
    return McNemar(lost, gained, min(1.0, p))


def mean_aggregate(stats: np.ndarray) -> float:
    """The plain mean of the first statistic: the aggregate of every per-sample-mean metric."""
    return float(np.mean(stats[:, 0])) if len(stats) else math.nan
