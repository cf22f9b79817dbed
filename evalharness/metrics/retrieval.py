"""Retrieval metrics on a ranked list of ids against relevant ids, defined as trec_eval defines them.

Each sample carries `retrieved_ids` (the ranked list, best first) and `relevant_ids` (a list of
ids, each grade 1, or an object id -> grade; grade <= 0 is judged not relevant). Names:

    recall@k     relevant ids in the top k / all relevant ids               (trec_eval recall_k)
    precision@k  relevant ids in the top k / k (k, even when fewer came back) (trec_eval P_k)
    hit_rate@k   1 if any relevant id is in the top k, else 0               (trec_eval success_k)
    mrr@k        1 / rank of the first relevant id in the top k, else 0     (recip_rank on the top k)
    ndcg@k       DCG of the top k / DCG of the ideal ranking, linear gain = grade,
                 discount 1/log2(rank + 1), ideal over all judged grades    (trec_eval ndcg_cut_k)
    map          mean over relevant ids of precision at each one's rank; a relevant id never
                 retrieved adds 0                                           (trec_eval map)

k is any positive integer. Order and ties: the list order is the ranking. An id that appears
again later in the list is ignored (it was already counted where it first came). A row may also
carry `retrieved_scores` (one number per retrieved id); then the list is ranked as trec_eval ranks
a run: by score descending, ties broken by id descending (string order), so the numbers equal
trec_eval's on the same run. A sample without relevant ids is a DataError (trec_eval skips such
queries; silently skipping here would change n). The corpus value is the mean over samples.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from evalharness.errors import DataError, SpecError
from evalharness.metrics.base import MeanMetric, MetricKind, TaskKind
from evalharness.types import Output, Sample, Score

RETRIEVED = "retrieved_ids"
RELEVANT = "relevant_ids"
SCORES = "retrieved_scores"


def _as_list(value: Any, where: str) -> list[Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)  # a CSV cell holding a JSON list or object
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: expected a list (or JSON text of one), got {value[:40]!r}") from exc
    if hasattr(value, "tolist"):  # numpy arrays from Parquet / Arrow
        value = value.tolist()
    if isinstance(value, dict):
        return [value]
    if not isinstance(value, (list, tuple)):
        raise DataError(f"{where}: expected a list, got {type(value).__name__}")
    return list(value)


def relevance(sample: Sample) -> dict[str, float]:
    """The sample's judged ids -> grade (a list means grade 1 each)."""
    where = f"sample {sample.id!r}: {RELEVANT}"
    if RELEVANT not in sample.fields or sample.fields[RELEVANT] is None:
        raise DataError(f"{where}: missing (retrieval metrics need the relevant ids of every sample)")
    items = _as_list(sample.fields[RELEVANT], where)
    if len(items) == 1 and isinstance(items[0], dict):
        grades: dict[str, float] = {}
        for key, grade in items[0].items():
            if isinstance(grade, bool) or not isinstance(grade, (int, float)) or not math.isfinite(grade):
                raise DataError(f"{where}: grade of {key!r} must be a number, got {grade!r}")
            grades[str(key)] = float(grade)
    else:
        grades = {str(i): 1.0 for i in items}
    if not any(g > 0 for g in grades.values()):
        raise DataError(f"{where}: no id with a grade above 0 (retrieval metrics are undefined without one)")
    return grades


def ranking(sample: Sample) -> list[str]:
    """The retrieved ids in rank order, first occurrences only (see the module docstring for ties)."""
    where = f"sample {sample.id!r}: {RETRIEVED}"
    if RETRIEVED not in sample.fields or sample.fields[RETRIEVED] is None:
        raise DataError(f"{where}: missing (retrieval metrics need the ranked list of retrieved ids)")
    ids = [str(i) for i in _as_list(sample.fields[RETRIEVED], where)]
    if sample.fields.get(SCORES) is not None:
        scores = _as_list(sample.fields[SCORES], f"sample {sample.id!r}: {SCORES}")
        if len(scores) != len(ids):
            raise DataError(f"sample {sample.id!r}: {SCORES} has {len(scores)} numbers for {len(ids)} retrieved ids")
        try:
            pairs = [(float(s), i) for s, i in zip(scores, ids, strict=True)]
        except (TypeError, ValueError) as exc:
            raise DataError(f"sample {sample.id!r}: {SCORES} must be numbers: {exc}") from exc
        ids = [i for _, i in sorted(pairs, reverse=True)]  # trec_eval: score descending, then id descending
    seen: set[str] = set()
    out = []
    for i in ids:
        if i not in seen:
            seen.add(i)
            out.append(i)
    return out


def recall_at(ranked: list[str], rel: dict[str, float], k: int) -> float:
    relevant = {i for i, g in rel.items() if g > 0}
    return sum(i in relevant for i in ranked[:k]) / len(relevant)


def precision_at(ranked: list[str], rel: dict[str, float], k: int) -> float:
    return sum(rel.get(i, 0.0) > 0 for i in ranked[:k]) / k


def hit_rate_at(ranked: list[str], rel: dict[str, float], k: int) -> float:
    return float(any(rel.get(i, 0.0) > 0 for i in ranked[:k]))


def mrr_at(ranked: list[str], rel: dict[str, float], k: int) -> float:
    for rank, i in enumerate(ranked[:k], start=1):
        if rel.get(i, 0.0) > 0:
            return 1.0 / rank
    return 0.0


def ndcg_at(ranked: list[str], rel: dict[str, float], k: int) -> float:
    dcg = sum(rel.get(i, 0.0) / math.log2(rank + 1) for rank, i in enumerate(ranked[:k], start=1) if rel.get(i, 0.0) > 0)
    ideal = sorted((g for g in rel.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(rank + 1) for rank, g in enumerate(ideal, start=1))
    return dcg / idcg


def average_precision(ranked: list[str], rel: dict[str, float], k: int | None = None) -> float:
    n_rel = sum(g > 0 for g in rel.values())
    hits, total = 0, 0.0
    for rank, i in enumerate(ranked if k is None else ranked[:k], start=1):
        if rel.get(i, 0.0) > 0:
            hits += 1
            total += hits / rank
    return total / n_rel


_FUNCS: dict[str, Callable[..., float]] = {
    "recall": recall_at, "precision": precision_at, "hit_rate": hit_rate_at, "mrr": mrr_at, "ndcg": ndcg_at,
}
FAMILIES: tuple[str, ...] = tuple(_FUNCS)


class RetrievalMetric(MeanMetric):
    """One retrieval measure at a cutoff; the corpus value is the mean over samples (0-1)."""

    kinds: frozenset[TaskKind] = frozenset({"generate", "retrieval"})
    kind: MetricKind = "bounded"
    scale = (0.0, 1.0)

    def __init__(self, family: str, k: int | None) -> None:
        if family != "map" and (k is None or k < 1):
            raise SpecError(f"metric {family}@{k}: k must be a positive integer")
        self.family, self.k = family, k
        self.name = "map" if family == "map" else f"{family}@{k}"
        if family == "hit_rate":
            self.kind = "binary"

    def value(self, ranked: list[str], rel: dict[str, float]) -> float:
        if self.family == "map":
            return average_precision(ranked, rel)
        return float(_FUNCS[self.family](ranked, rel, self.k))

    def score(self, sample: Sample, output: Output) -> Score:
        return Score(value=self.value(ranking(sample), relevance(sample)))


def recall(k: int) -> RetrievalMetric:
    return RetrievalMetric("recall", k)


def precision(k: int) -> RetrievalMetric:
    return RetrievalMetric("precision", k)


def hit_rate(k: int) -> RetrievalMetric:
    return RetrievalMetric("hit_rate", k)


def mrr(k: int) -> RetrievalMetric:
    return RetrievalMetric("mrr", k)


def ndcg(k: int) -> RetrievalMetric:
    return RetrievalMetric("ndcg", k)


def mean_average_precision() -> RetrievalMetric:
    return RetrievalMetric("map", None)
