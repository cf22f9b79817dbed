"""The Metric protocol: a per-sample `score` and a corpus-level `aggregate`.

`aggregate` consumes the stacked sufficient statistics of the scores (shape n x k) so the
same function serves the point estimate and every bootstrap resample: one path to a CI
for every metric, corpus BLEU included.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from evalharness.registry import Registry
from evalharness.types import Output, Sample, Score

TaskKind = str  # "generate" | "multiple_choice" | "perplexity"
# What a metric's per-sample scores are, which picks its confidence interval (evalharness.stats):
# binary (each score is scale[0] or scale[1]), bounded (inside scale), unbounded (a mean with no
# bounds), corpus (the aggregate is not a plain mean: BLEU, perplexity; the default when undeclared).
MetricKind = Literal["binary", "bounded", "unbounded", "corpus"]


@runtime_checkable
class Metric(Protocol):
    name: str
    higher_is_better: bool
    kinds: frozenset[TaskKind]

    def score(self, sample: Sample, output: Output) -> Score: ...

    def aggregate(self, stats: np.ndarray) -> float: ...


class BatchMetric(Protocol):
    """A metric that scores many samples at once (e.g. a neural encoder)."""

    def score_batch(self, samples: Sequence[Sample], outputs: Sequence[Output]) -> list[Score]: ...


class MeanMetric:
    """Base for metrics whose corpus value is the mean of per-sample values.

    Subclasses with bounded scores declare `kind` ("binary" or "bounded") and `scale`, so their
    CI is a score interval that stays inside the scale; the default claims no bounds.
    """

    name = "mean"
    higher_is_better = True
    kind: MetricKind = "unbounded"
    scale: tuple[float, float] | None = None
    kinds: frozenset[TaskKind] = frozenset({"generate", "multiple_choice", "perplexity"})

    def score(self, sample: Sample, output: Output) -> Score:
        raise NotImplementedError

    def aggregate(self, stats: np.ndarray) -> float:
        return float(np.mean(stats[:, 0])) if len(stats) else float("nan")


# name -> factory(**params) -> Metric
METRICS: Registry[Any] = Registry("metric", entry_point_group="evalharness.metrics")


def score_all(metric: Metric, samples: Sequence[Sample], outputs: Sequence[Output]) -> list[Score]:
    """Score samples with a metric, batched where the metric supports it."""
    batch = getattr(metric, "score_batch", None)
    if callable(batch):
        scores: list[Score] = batch(samples, outputs)
        return scores
    return [metric.score(s, o) for s, o in zip(samples, outputs, strict=True)]


def build_metric(name: str, params: dict[str, Any] | None = None) -> Metric:
    """Instantiate a registered metric with its task-file parameters."""
    from evalharness.errors import SpecError

    factory = METRICS.get(name)
    try:
        metric: Metric = factory(**(params or {}))
    except TypeError as exc:
        keys = ", ".join(sorted(map(str, params or {}))) or "none"
        raise SpecError(f"metric {name!r}: bad parameters (given: {keys}): {exc}") from exc
    return metric
