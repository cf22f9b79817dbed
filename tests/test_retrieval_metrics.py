"""Retrieval metrics (metrics/retrieval.py) against trec_eval (pytrec-eval-terrier) and by hand."""

from __future__ import annotations

import random

import pytest

from evalharness.errors import DataError, RegistryError, SpecError
from evalharness.metrics.base import METRICS, build_metric
from evalharness.types import Output, Sample

KS = (1, 3, 5, 10)


def _sample(sid: str, **fields: object) -> Sample:
    return Sample(id=sid, fields=dict(fields))


def _random_runs(seed: int, n_queries: int = 60) -> tuple[dict, dict]:
    """Qrels with graded relevance (0-3) and runs whose scores tie often."""
    rng = random.Random(seed)
    qrels, run = {}, {}
    for q in range(n_queries):
        docs = [f"d{rng.randrange(40)}" for _ in range(30)]
        judged = {d: rng.choice([0, 1, 1, 2, 3]) for d in rng.sample(sorted(set(docs)), k=min(8, len(set(docs))))}
        if not any(g > 0 for g in judged.values()):
            judged[docs[0]] = 1
        qrels[f"q{q}"] = judged
        ret = list(dict.fromkeys(docs))[: rng.randint(1, 20)]
        run[f"q{q}"] = {d: float(rng.randint(0, 4)) for d in ret}  # few distinct scores: many ties
    return qrels, run


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equal_to_trec_eval_on_random_runs_with_ties_and_grades(seed: int) -> None:
    pytrec_eval = pytest.importorskip("pytrec_eval")
    qrels, run = _random_runs(seed)
    cut = ",".join(map(str, KS))
    measures = {f"P.{cut}", f"recall.{cut}", f"ndcg_cut.{cut}", f"success.{cut}", "map", "recip_rank"}
    ref = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    samples = [_sample(q, retrieved_ids=list(run[q]), retrieved_scores=list(run[q].values()), relevant_ids=qrels[q])
               for q in qrels]
    names = {"map": "map", **{f"{f}@{k}": f"{t}_{k}" for k in KS for f, t in
                              (("precision", "P"), ("recall", "recall"), ("ndcg", "ndcg_cut"), ("hit_rate", "success"))}}
    checked = 0
    for ours, theirs in names.items():
        metric = build_metric(ours)
        for s in samples:
            assert metric.score(s, Output()).value == pytest.approx(ref[s.id][theirs], abs=1e-9), (ours, s.id)
            checked += 1
    # MRR@k is trec_eval's recip_rank on the run cut to its top k (by trec_eval's own order)
    for k in KS:
        metric = build_metric(f"mrr@{k}")
        top = {q: dict(sorted(r.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)[:k]) for q, r in run.items()}
        ref_k = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top)
        for s in samples:
            assert metric.score(s, Output()).value == pytest.approx(ref_k[s.id]["recip_rank"], abs=1e-9)
            checked += 1
    assert checked == len(samples) * (len(names) + len(KS))


def test_list_order_is_the_ranking_and_repeats_count_once() -> None:
    s = _sample("q", retrieved_ids=["x", "a", "a", "b"], relevant_ids=["a", "b"])
    assert build_metric("mrr@10").score(s, Output()).value == 0.5
    assert build_metric("precision@3").score(s, Output()).value == pytest.approx(2 / 3)  # x, a, b
    assert build_metric("recall@2").score(s, Output()).value == 0.5
    assert build_metric("hit_rate@1").score(s, Output()).value == 0.0
    assert build_metric("map").score(s, Output()).value == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_graded_ndcg_by_hand() -> None:
    s = _sample("q", retrieved_ids=["b", "a", "z"], relevant_ids={"a": 2, "b": 1, "c": 0})
    import math

    dcg = 1 / math.log2(2) + 2 / math.log2(3)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert build_metric("ndcg@10").score(s, Output()).value == pytest.approx(dcg / idcg)


def test_names_any_k_and_listing() -> None:
    assert build_metric("recall@37").name == "recall@37"
    assert build_metric("ndcg@1").kind == "bounded" and build_metric("ndcg@1").scale == (0.0, 1.0)
    assert build_metric("hit_rate@3").kind == "binary"
    assert {"recall@k", "ndcg@k", "mrr@k", "map"} <= set(METRICS.names())
    with pytest.raises(RegistryError, match="did you mean 'recall@k'"):
        build_metric("recal@10")
    for bad in ("recall@0", "recall@x", "recall@"):
        with pytest.raises((RegistryError, SpecError)):
            build_metric(bad)


def test_missing_or_empty_relevance_is_a_data_error() -> None:
    metric = build_metric("recall@5")
    with pytest.raises(DataError, match="relevant_ids"):
        metric.score(_sample("q", retrieved_ids=["a"]), Output())
    with pytest.raises(DataError, match="grade above 0"):
        metric.score(_sample("q", retrieved_ids=["a"], relevant_ids={"a": 0}), Output())
    with pytest.raises(DataError, match="retrieved_scores"):
        metric.score(_sample("q", retrieved_ids=["a"], retrieved_scores=[1, 2], relevant_ids=["a"]), Output())
