"""The Metric protocol: a per-sample `score` and a corpus-level `aggregate`.

`aggregate` consumes the stacked sufficient statistics of the scores (shape n x k) so the
same function serves the point estimate and every bootstrap resample: one path to a CI
for every metric, corpus BLEU included.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from evalharness.registry import Registry
from evalharness.types import Output, RunStats, Sample, Score

TaskKind = str  # "generate" | "multiple_choice" | "perplexity"
# What a metric's per-sample scores are, which picks its confidence interval (evalharness.stats.bootstrap):
# binary (each score is scale[0] or scale[1]), bounded (inside scale), unbounded (a mean with no
# bounds), corpus (the aggregate is not a plain mean: BLEU, perplexity; the default when undeclared).
MetricKind = Literal["binary", "bounded", "unbounded", "corpus"]


class Metric:
    """A metric: a per-sample `score` and a corpus `aggregate` over the stacked statistics.

    Subclass it (built-ins and plugins alike); the optional members have defaults, so callers
    never probe for them.
    """

    name: str = "metric"
    higher_is_better: bool = True
    kinds: frozenset[TaskKind] = frozenset({"generate", "multiple_choice", "perplexity"})
    # The aggregate reads only the column sums of the stats (lets the bootstrap sum by matrix product).
    additive: bool = False
    # How its CI is computed (stats/bootstrap.py): binary and bounded means get score intervals inside
    # `scale`, unbounded means a t interval, corpus metrics (the default) the bootstrap.
    kind: MetricKind = "corpus"
    scale: tuple[float, float] | None = None
    # A judge's own request and token counts (None for metrics that call no model).
    judge_stats: RunStats | None = None

    def score(self, sample: Sample, output: Output) -> Score:
        raise NotImplementedError(f"metric {self.name!r} does not define score()")

    def score_batch(self, samples: Sequence[Sample], outputs: Sequence[Output]) -> list[Score]:
        """Score many samples at once; override where batching pays (neural encoders, judges, sandboxes)."""
        return [self.score(s, o) for s, o in zip(samples, outputs, strict=True)]

    def aggregate(self, stats: np.ndarray) -> float:
        raise NotImplementedError(f"metric {self.name!r} does not define aggregate()")

    def summary(self, scores: Sequence[Score]) -> dict[str, Any]:
        """Extra fields for the metric's results.json entry (judges: parse rates, consistency, agreement)."""
        return {}

    @property
    def judge_backend(self) -> Any:
        """The backend a judge metric calls (for its usage block's cost); None otherwise."""
        return None


class MeanMetric(Metric):
    """Base for metrics whose corpus value is the mean of per-sample values.

    Subclasses with bounded scores declare `kind` ("binary" or "bounded") and `scale`, so their
    CI is a score interval that stays inside the scale; the default claims no bounds.
    """

    name = "mean"
    kind: MetricKind = "unbounded"

    def aggregate(self, stats: np.ndarray) -> float:
        return float(np.mean(stats[:, 0])) if len(stats) else float("nan")


# name -> factory(**params) -> Metric
METRICS: Registry[Any] = Registry("metric", entry_point_group="evalharness.metrics")


def score_all(metric: Metric, samples: Sequence[Sample], outputs: Sequence[Output]) -> list[Score]:
    """Score samples with a metric, batched where the metric supports it."""
    return metric.score_batch(samples, outputs)


def build_metric(name: str, params: dict[str, Any] | None = None) -> Metric:
    """Instantiate a registered metric with its task-file parameters."""
    from evalharness.errors import SpecError

    factory = METRICS.get(name)
    try:
        metric = factory(**(params or {}))
    except TypeError as exc:
        keys = ", ".join(sorted(map(str, params or {}))) or "none"
        raise SpecError(f"metric {name!r}: bad parameters (given: {keys}): {exc}") from exc
    if not isinstance(metric, Metric):
        raise SpecError(f"metric {name!r} ({type(metric).__module__}.{type(metric).__name__}) does not subclass "
                        "evalharness.metrics.base.Metric; plugin metrics must")
    return metric
