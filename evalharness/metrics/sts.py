"""Semantic textual similarity: rank (Spearman) and linear (Pearson) correlation of the model's
similarity of each pair with the pair's gold score, as MTEB's STS tasks report them (cosine).

Each sample carries `similarity` (the model's cosine of the pair, execution/sts.py) and
`gold_score`; the per-sample value is the similarity, the sufficient statistics are both numbers,
and the corpus value is `scipy.stats.spearmanr` (or `pearsonr`) over all pairs, so the CI comes
from the bootstrap like every corpus metric's. Undefined (NaN) with fewer than two pairs or when
either column is constant.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from evalharness.errors import DataError
from evalharness.metrics.base import Metric, TaskKind
from evalharness.types import Output, Sample, Score

SIMILARITY = "similarity"
GOLD = "gold_score"


def _number(sample: Sample, field: str) -> float:
    value: Any = sample.fields.get(field)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DataError(f"sample {sample.id!r}: {field} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise DataError(f"sample {sample.id!r}: {field} must be a finite number, got {value!r}")
    return number


class _Correlation(Metric):
    kinds: frozenset[TaskKind] = frozenset({"sts"})
    kind = "corpus"

    def score(self, sample: Sample, output: Output) -> Score:
        sim, gold = _number(sample, SIMILARITY), _number(sample, GOLD)
        return Score(value=sim, stats=(sim, gold))

    def aggregate(self, stats: np.ndarray) -> float:
        if len(stats) < 2 or np.ptp(stats[:, 0]) == 0 or np.ptp(stats[:, 1]) == 0:
            return math.nan
        return self._correlate(stats[:, 0], stats[:, 1])

    def _correlate(self, x: np.ndarray, y: np.ndarray) -> float:
        raise NotImplementedError


class Spearman(_Correlation):
    """Spearman's rank correlation of cosine similarity with the gold scores (ties get mean ranks)."""

    name = "spearman"

    def _correlate(self, x: np.ndarray, y: np.ndarray) -> float:
        from scipy.stats import spearmanr

        return float(spearmanr(x, y).statistic)


class Pearson(_Correlation):
    """Pearson's correlation of cosine similarity with the gold scores."""

    name = "pearson"

    def _correlate(self, x: np.ndarray, y: np.ndarray) -> float:
        from scipy.stats import pearsonr

        return float(pearsonr(x, y).statistic)


def spearman() -> Metric:
    return Spearman()


def pearson() -> Metric:
    return Pearson()
