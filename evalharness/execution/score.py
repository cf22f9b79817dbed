"""The scoring step, shared by `run` and `score`: outputs -> per-sample scores -> corpus values with CIs.

Every metric scores the samples (batched where it batches), the scores go into the samples'
log records, and one bootstrap draws each resample's rows once for all metrics (the same CIs
as one call per metric).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from evalharness.metrics.base import Metric, score_all
from evalharness.stats.bootstrap import bootstrap_many
from evalharness.types import Output, Sample


def declaration(metric: Metric) -> dict[str, Any]:
    """What the metric is, as results.json records it for the report, the gate and the console
    (read, never guessed from the values): `kind` and, for bounded kinds, `scale` [low, high]."""
    out: dict[str, Any] = {"kind": metric.kind}
    if metric.scale is not None:
        out["scale"] = [float(metric.scale[0]), float(metric.scale[1])]
    return out


def score_outputs(metrics: Sequence[Metric], samples: Sequence[Sample], outputs: Sequence[Output],
                  records: Sequence[dict[str, Any]], *, seed: int, resamples: int) -> dict[str, Any]:
    """Each metric's results.json entry; each record gains `scores` (and `score_stats`, `score_details`)."""
    all_scores, all_rows = [], []
    for metric in metrics:
        scores = score_all(metric, samples, outputs) if samples else []
        for rec, sc in zip(records, scores, strict=True):
            rec.setdefault("scores", {})[metric.name] = sc.value
            if sc.stats:  # corpus metrics: the sufficient statistics the aggregate sums
                rec.setdefault("score_stats", {})[metric.name] = list(sc.stats)
            if sc.extra:
                rec.setdefault("score_details", {})[metric.name] = sc.extra
        all_scores.append(scores)
        all_rows.append(np.array([sc.agg_stats() for sc in scores], dtype=float) if scores else np.zeros((0, 1)))
    results = bootstrap_many(metrics, all_rows, n_resamples=resamples, seed=seed)
    entries: dict[str, Any] = {}
    for metric, scores, result in zip(metrics, all_scores, results, strict=True):
        entries[metric.name] = {**result.to_json(), **declaration(metric), **metric.summary(scores)}  # judges: parse rates
    return entries
