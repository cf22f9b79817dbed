"""Perplexity family, as lm-evaluation-harness 0.4.x defines it for loglikelihood_rolling.

lm_eval/api/metrics.py aggregates (loglikelihood, count) pairs over the corpus:
`weighted_perplexity = exp(-sum(ll) / sum(count))` and
`bits_per_byte = -sum(ll) / sum(count) / ln 2`. Counts come from the task
(lm_eval/api/task.py): words = `len(re.split(r"\\s+", doc))`, bytes = UTF-8 length.
`token_perplexity` uses the backend's token count instead.

Stats per sample are `(ll, count)` so corpus values (and bootstrap resamples) weight
documents by length; the per-sample value is the document's own figure. Lower is better.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import numpy as np

from evalharness.errors import DataError
from evalharness.metrics.base import Metric, MetricKind, TaskKind
from evalharness.types import Output, Sample, Score

_WHITESPACE = re.compile(r"\s+")


def count_words(doc: str) -> int:
    """Words as lm-eval counts them (a leading/trailing space adds an empty 'word')."""
    return len(_WHITESPACE.split(doc))


def count_bytes(doc: str) -> int:
    """UTF-8 bytes of the document."""
    return len(doc.encode("utf-8"))


def _exp_neg(mean_ll: float) -> float:
    try:
        return math.exp(-mean_ll)
    except OverflowError:
        return math.inf


def _bits(mean_ll: float) -> float:
    return -mean_ll / math.log(2)


class _Perplexity(Metric):
    higher_is_better = False
    kind: MetricKind = "corpus"
    kinds: frozenset[TaskKind] = frozenset({"perplexity"})

    def __init__(
        self, name: str, unit: str, transform: Callable[[float], float]
    ) -> None:
        self.name = name
        self.unit = unit  # "words" | "bytes" | "tokens"
        self._transform = transform

    def _count(self, sample: Sample, output: Output) -> int:
        if self.unit == "tokens":
            return output.n_tokens
        if sample.document is None:
            raise DataError(f"metric {self.name!r}: sample {sample.id!r} has no document")
        return count_words(sample.document) if self.unit == "words" else count_bytes(sample.document)

    def _from_sums(self, ll: float, count: float) -> float:
        if count <= 0:
            return math.nan
        return self._transform(ll / count)

    def score(self, sample: Sample, output: Output) -> Score:
        if not output.logprobs:
            raise DataError(f"metric {self.name!r}: sample {sample.id!r} has no loglikelihood")
        ll = float(output.logprobs[0])
        count = self._count(sample, output)
        return Score(self._from_sums(ll, count), stats=(ll, float(count)))

    def aggregate(self, stats: np.ndarray) -> float:
        if len(stats) == 0:
            return math.nan
        sums = np.sum(stats, axis=0)
        return self._from_sums(float(sums[0]), float(sums[1]))


def word_perplexity() -> _Perplexity:
    """exp(-sum ll / sum words)."""
    return _Perplexity("word_perplexity", "words", _exp_neg)


def byte_perplexity() -> _Perplexity:
    """exp(-sum ll / sum bytes)."""
    return _Perplexity("byte_perplexity", "bytes", _exp_neg)


def bits_per_byte() -> _Perplexity:
    """-sum ll / sum bytes / ln 2."""
    return _Perplexity("bits_per_byte", "bytes", _bits)


def token_perplexity() -> _Perplexity:
    """exp(-sum ll / sum tokens), tokens as counted by the backend."""
    return _Perplexity("token_perplexity", "tokens", _exp_neg)
