"""Confidence intervals by one path for every metric: a seeded bootstrap over samples.

Each resample draws n rows (samples) with replacement from the stacked sufficient
statistics and recomputes the metric's own `aggregate`, so a corpus metric (BLEU, chrF,
perplexity weighted by length) gets a CI exactly as a mean does. The interval is the
percentile interval of the resampled values; `stderr` is their standard deviation.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np

from evalharness.results.schema import CONFIDENCE
from evalharness.types import MetricResult


class Aggregating(Protocol):
    name: str
    higher_is_better: bool
    additive: bool

    def aggregate(self, stats: np.ndarray) -> float: ...


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


def bootstrap(
    metric: Aggregating,
    stats: np.ndarray,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> MetricResult:
    """The metric's corpus value over `stats` (n x k) with a percentile bootstrap CI."""
    return bootstrap_many([metric], [stats], n_resamples, seed, confidence)[0]


def bootstrap_many(
    metrics: Sequence[Aggregating],
    stats: Sequence[np.ndarray],
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> list[MetricResult]:
    """`bootstrap` of each metric over its own stats, drawing the resamples once for all metrics
    with the same n (the draws depend only on n, resamples and seed: each result equals its own
    `bootstrap` call, at a fraction of the random-number cost)."""
    mats = [np.asarray(s, dtype=float) for s in stats]
    mats = [s[:, None] if s.ndim == 1 else s for s in mats]
    values = [m.aggregate(s) if len(s) else math.nan for m, s in zip(metrics, mats, strict=True)]
    groups: dict[int, list[int]] = {}
    for i, (s, v) in enumerate(zip(mats, values, strict=True)):
        if len(s) >= 2 and n_resamples >= 1 and math.isfinite(v):
            groups.setdefault(len(s), []).append(i)
    resampled: dict[int, list[float]] = {i: [] for group in groups.values() for i in group}
    for n, group in groups.items():
        summable = {i: _summable(metrics[i], mats[i]) for i in group}
        for chunk in resample_indices(n, n_resamples, seed):
            for i in group:
                resampled[i] += _resampled(metrics[i], mats[i], chunk, summable[i])
    return [
        _result(m, len(s), v, resampled.get(i), n_resamples, confidence)
        for i, (m, s, v) in enumerate(zip(metrics, mats, values, strict=True))
    ]


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


def _result(
    metric: Aggregating, n: int, value: float, resampled: list[float] | None, n_resamples: int, confidence: float
) -> MetricResult:
    if resampled is None:
        return MetricResult(
            name=metric.name, value=value, ci_low=value, ci_high=value, stderr=0.0 if n == 1 else math.nan,
            n=n, higher_is_better=metric.higher_is_better, resamples=0,
        )
    values = np.array(resampled, dtype=float)
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        low = high = err = math.nan
    else:
        alpha = (1.0 - confidence) / 2.0
        low, high = (float(x) for x in np.quantile(finite, [alpha, 1.0 - alpha]))
        err = float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0
    return MetricResult(
        name=metric.name, value=float(value), ci_low=low, ci_high=high, stderr=err, n=n,
        higher_is_better=metric.higher_is_better, resamples=n_resamples,
    )
