"""Confidence intervals chosen by what a metric is (its `kind`), each never zero-width by accident.

A metric declares `kind` (metrics.base.MetricKind) and, for bounded kinds, `scale = (low, high)`:

    binary     each sample scores `low` or `high` and the corpus value is their mean (acc,
               exact match): the Wilson score interval, rescaled to the metric's scale
    bounded    each sample scores in [low, high], the corpus value is their mean (token F1,
               ROUGE, pass@k, MC2): a quasi-binomial Wilson interval (below)
    unbounded  the corpus value is a mean of unbounded scores: the Student t interval
    corpus     anything else (corpus BLEU, chrF, TER, perplexity, judges): the bootstrap of the
               metric's own `aggregate` over resampled samples (seeded), as an expanded
               percentile interval (`expanded_tail`; plain percentile covered 0.89 at n = 20)

Quasi-binomial Wilson, for a mean of values x_i in [0, 1] (rescaled from the metric's scale):
the Wilson interval of the mean with the effective sample size n / phi, where phi is the
variance relative to a 0/1 variable of the same mean, s^2 / (m (1 - m)), shrunk towards 1 by
half a pseudo-sample (phi = (n phi_hat + 0.5) / (n + 0.5), so it is never 0), with the critical
value of Student's t on n - 1 degrees of freedom. Values that all sit at the bounds get plain
Wilson (phi = 1, normal critical value), so a 0/1 metric gets the same interval either way.
Wilson's asymmetry keeps the interval inside the scale and away from zero width at 0 of n
(0 right of 20: [0, 0.161]); coverage was measured (tests/test_coverage.py, docs/statistics.md).

`stderr` is lm-eval's: the sample standard deviation over sqrt(n) for means, the standard
deviation of the bootstrap values for corpus metrics. Where no interval is defined (fewer than
two samples, no resamples, every resample equal, an unbounded mean with no spread) the CI is
None with a `ci_reason`: a zero-width interval would claim a certainty sampling cannot give.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np

from evalharness.errors import UsageError
from evalharness.results.schema import CONFIDENCE
from evalharness.types import MetricResult

MIN_RESAMPLES = 100  # fewer gives percentile intervals that are mostly noise (0 means "no bootstrap")
MEAN_KINDS = frozenset({"binary", "bounded", "unbounded"})
CORPUS_METHOD = "bootstrap-percentile-expanded"
PSEUDO_SAMPLE = 0.5  # weight of the 0/1 variance that phi is shrunk towards (chosen by the coverage simulation)


class Aggregating(Protocol):
    """What the CI code reads of a metric (metrics.base.Metric has all of it, with defaults)."""

    name: str
    higher_is_better: bool

    @property
    def additive(self) -> bool: ...

    @property
    def kind(self) -> str: ...

    @property
    def scale(self) -> tuple[float, float] | None: ...

    def aggregate(self, stats: np.ndarray) -> float: ...


def check_resamples(n_resamples: int, what: str = "bootstrap resamples") -> int:
    """`n_resamples` if it is 0 (no bootstrap) or at least MIN_RESAMPLES, else a UsageError."""
    if n_resamples != 0 and n_resamples < MIN_RESAMPLES:
        raise UsageError(f"{what}: expected 0 (no bootstrap CI) or at least {MIN_RESAMPLES}, got {n_resamples}")
    return n_resamples


def resample_indices(n: int, n_resamples: int, seed: int, chunk_cells: int = 4_000_000) -> Iterator[np.ndarray]:
    """Row indices drawn with replacement, in chunks of resamples (bounded memory at any n).

    The draws depend only on (n, n_resamples, seed): the same seed gives the same resamples.
    """
    rng = np.random.default_rng(seed)
    per_chunk = max(1, chunk_cells // max(n, 1))
    done = 0
    while done < n_resamples:
        size = min(per_chunk, n_resamples - done)
        yield rng.integers(0, n, size=(size, n))
        done += size


def _critical(confidence: float, df: np.ndarray | float | None = None) -> np.ndarray:
    from scipy.stats import norm, t

    q = 0.5 + confidence / 2.0
    return np.asarray(norm.ppf(q) if df is None else t.ppf(q, df), dtype=float)


def wilson(mean: np.ndarray, n_eff: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The Wilson score interval of a proportion `mean` from `n_eff` trials (vectorised)."""
    z2 = z * z
    denom = 1.0 + z2 / n_eff
    centre = (mean + z2 / (2.0 * n_eff)) / denom
    half = z * np.sqrt(np.maximum(mean * (1.0 - mean), 0.0) / n_eff + z2 / (4.0 * n_eff * n_eff)) / denom
    # the interval holds its estimate: at 0 of n, float rounding left the low end at 5.55e-17
    return np.minimum(np.clip(centre - half, 0.0, 1.0), mean), np.maximum(np.clip(centre + half, 0.0, 1.0), mean)


def unit_mean_interval(x: np.ndarray, confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(low, high, at_bounds) for the mean of each row of `x` (values in [0, 1], n >= 2 per row):
    Wilson where every value of the row is 0 or 1, else quasi-binomial Wilson (module docstring)."""
    x = np.atleast_2d(np.asarray(x, dtype=float))
    n = x.shape[-1]
    mean = x.mean(axis=-1)
    at_bounds = np.all((x == 0.0) | (x == 1.0), axis=-1)
    pq = mean * (1.0 - mean)
    var = x.var(axis=-1, ddof=1)
    phi_hat = np.divide(var, pq, out=np.ones_like(mean), where=pq > 0)
    phi = np.where(at_bounds | (pq <= 0), 1.0, (n * phi_hat + PSEUDO_SAMPLE) / (n + PSEUDO_SAMPLE))
    z = np.where(at_bounds, _critical(confidence), _critical(confidence, n - 1))
    low, high = wilson(mean, n / phi, z)
    return low, high, at_bounds


def t_interval(x: np.ndarray, confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """Student's t interval of each row's mean (zero width where a row has no spread)."""
    x = np.atleast_2d(np.asarray(x, dtype=float))
    n = x.shape[-1]
    mean, se = x.mean(axis=-1), x.std(axis=-1, ddof=1) / math.sqrt(n)
    half = _critical(confidence, n - 1) * se
    return mean - half, mean + half


def expanded_tail(n: int, confidence: float = CONFIDENCE) -> float:
    """The tail share of Hesterberg's expanded percentile interval for n samples: the percentile
    interval is too narrow at small n (it has the spread of a plug-in, not of a t statistic), so
    the quantiles are taken at Phi(-sqrt(n / (n - 1)) * t_{n-1}) instead of (1 - confidence) / 2
    (n = 20: 1.6% and 98.4%; the same as plain percentile as n grows)."""
    from scipy.stats import norm

    return float(norm.cdf(-math.sqrt(n / (n - 1)) * _critical(confidence, n - 1)))


def percentile_interval(resampled: np.ndarray, n: int, confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """The expanded percentile interval (`expanded_tail`) of bootstrap values along the last axis,
    for resamples of n samples."""
    tail = expanded_tail(n, confidence)
    low, high = np.quantile(resampled, [tail, 1.0 - tail], axis=-1)
    return low, high


def bootstrap(
    metric: Aggregating,
    stats: np.ndarray,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> MetricResult:
    """The metric's corpus value over `stats` (n x k) with the CI its kind calls for."""
    return bootstrap_many([metric], [stats], n_resamples, seed, confidence)[0]


def bootstrap_many(
    metrics: Sequence[Aggregating],
    stats: Sequence[np.ndarray],
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> list[MetricResult]:
    """Each metric's value and CI over its own stats. Corpus metrics are bootstrapped with the
    resamples drawn once for all metrics with the same n (the draws depend only on n, resamples
    and seed: each result equals its own `bootstrap` call, at a fraction of the random-number
    cost); means get their closed-form interval."""
    check_resamples(n_resamples)
    mats = [np.asarray(s, dtype=float) for s in stats]
    mats = [s[:, None] if s.ndim == 1 else s for s in mats]
    values = [m.aggregate(s) if len(s) else math.nan for m, s in zip(metrics, mats, strict=True)]
    results: dict[int, MetricResult] = {}
    groups: dict[int, list[int]] = {}
    for i, (m, s, v) in enumerate(zip(metrics, mats, values, strict=True)):
        reason = _undefined(len(s), v)
        if reason is None and _kind(m, s) != "corpus":
            results[i] = _mean_result(m, s, v, confidence)
        elif reason is None and n_resamples == 0:
            results[i] = _null(m, len(s), v, "no resamples (--bootstrap 0)", 0, None)
        elif reason is None:
            groups.setdefault(len(s), []).append(i)
        else:
            results[i] = _null(m, len(s), v, reason, 0, None)
    resampled: dict[int, list[float]] = {i: [] for group in groups.values() for i in group}
    for n, group in groups.items():
        summable = {i: _summable(metrics[i], mats[i]) for i in group}
        for chunk in resample_indices(n, n_resamples, seed):
            for i in group:
                resampled[i] += _resampled(metrics[i], mats[i], chunk, summable[i])
    for i, draws in resampled.items():
        results[i] = _corpus_result(metrics[i], len(mats[i]), values[i], np.array(draws, dtype=float), n_resamples, confidence)
    return [results[i] for i in range(len(metrics))]


def metric_scale(metric: Aggregating) -> tuple[float, float] | None:
    scale = metric.scale
    return (float(scale[0]), float(scale[1])) if scale is not None else None


def _kind(metric: Aggregating, stats: np.ndarray) -> str:
    """The metric's declared kind, demoted where the data contradict it: a mean kind needs one
    statistic per sample, and a bounded kind values inside its scale."""
    kind = str(metric.kind)
    if kind not in MEAN_KINDS or stats.shape[1] != 1:
        return "corpus"
    scale = metric_scale(metric)
    if kind in ("binary", "bounded"):
        if scale is None or not (scale[0] < scale[1]) or not np.all((stats >= scale[0]) & (stats <= scale[1])):
            return "unbounded"
    return kind


def _undefined(n: int, value: float) -> str | None:
    if n == 0:
        return "no samples"
    if n == 1:
        return "n = 1: one sample gives no interval"
    if not math.isfinite(value):
        return "the value is not finite"
    return None


def _stderr(x: np.ndarray) -> float:
    """lm-eval's stderr of a mean: sample standard deviation / sqrt(n)."""
    return float(np.std(x, ddof=1) / math.sqrt(len(x)))


def _null(metric: Aggregating, n: int, value: float, reason: str, resamples: int, stderr: float | None) -> MetricResult:
    return MetricResult(name=metric.name, value=float(value), ci_low=None, ci_high=None, stderr=stderr, n=n,
                        higher_is_better=metric.higher_is_better, ci_method="none", resamples=resamples, ci_reason=reason)


def _mean_result(metric: Aggregating, stats: np.ndarray, value: float, confidence: float) -> MetricResult:
    x = stats[:, 0]
    kind, err = _kind(metric, stats), _stderr(x)
    if kind == "unbounded":
        if err == 0.0:
            return _null(metric, len(x), value, "every sample has the same value and the metric declares no bounds", 0, err)
        lo, hi = t_interval(x[None, :], confidence)
        method = "t"
    else:
        a, b = metric_scale(metric) or (0.0, 1.0)
        lo, hi, at_bounds = unit_mean_interval((x[None, :] - a) / (b - a), confidence)
        lo, hi = a + (b - a) * lo, a + (b - a) * hi
        method = "wilson" if bool(at_bounds[0]) else "wilson-quasibinomial"
    return MetricResult(name=metric.name, value=float(value), ci_low=float(lo[0]), ci_high=float(hi[0]), stderr=err,
                        n=len(x), higher_is_better=metric.higher_is_better, ci_method=method)


def _summable(metric: Aggregating, stats: np.ndarray) -> bool:
    """Whether resamples may be aggregated from their column sums (a matrix product): the metric
    says its aggregate depends on those sums alone (`additive`, e.g. corpus BLEU) and the stats
    are integers small enough for every sum to be exact in float64, so values are unchanged."""
    if not metric.additive:
        return False
    return bool(stats.size and np.array_equal(stats, np.round(stats)) and np.abs(stats).max() * len(stats) < 2.0**53)


def _resampled(metric: Aggregating, stats: np.ndarray, chunk: np.ndarray, summable: bool) -> list[float]:
    if not summable:
        return [metric.aggregate(stats[row]) for row in chunk]
    counts = np.empty(chunk.shape)  # how often each sample is drawn, per resample
    for j, row in enumerate(chunk):
        counts[j] = np.bincount(row, minlength=len(stats))
    return [metric.aggregate(sums[None, :]) for sums in counts @ stats]


def _corpus_result(
    metric: Aggregating, n: int, value: float, draws: np.ndarray, n_resamples: int, confidence: float
) -> MetricResult:
    finite = draws[np.isfinite(draws)]
    if len(finite) < 2:
        return _null(metric, n, value, "no resample gave a finite value", n_resamples, None)
    err = float(np.std(finite, ddof=1))
    if finite.min() == finite.max():
        return _null(metric, n, value, "every resample gave the same value (no spread to measure)", n_resamples, err)
    low, high = percentile_interval(finite, n, confidence)
    return MetricResult(name=metric.name, value=float(value), ci_low=float(low), ci_high=float(high), stderr=err, n=n,
                        higher_is_better=metric.higher_is_better, ci_method=CORPUS_METHOD, resamples=n_resamples)
