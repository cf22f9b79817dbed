"""`per: claim` judging: the claim splitter, per-claim verdicts against scripted judges, and `faithfulness`.

Splitter cases: tests/cases/claim_splits.json (one parametrized test).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from evalharness.cli import main
from evalharness.errors import DataError
from evalharness.execution.predictions import read_predictions
from evalharness.judging.claims import split_claims
from evalharness.judging.metric import NO_CLAIMS, JudgeMetric
from evalharness.judging.verdicts import parse_rating
from evalharness.spec.judge import JudgeSpec, find_judge
from evalharness.types import Output, Request, Response, Sample
from tests.test_judge_likelihood import LLJudge
from tests.test_judges import Judge
from tests.test_rag import _between, bound_judge

CASES = json.loads((Path(__file__).parent / "cases" / "claim_splits.json").read_text("utf-8"))["cases"]
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "rag_predictions.jsonl"
CONTEXT = "[1] Paris is the capital of France. Berlin is the capital of Germany."


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_claim_splits(case: dict[str, Any]) -> None:
    assert list(split_claims(case["answer"]).texts) == case["claims"]


def test_claims_past_the_limit_are_merged_into_the_last() -> None:
    answer = " ".join(f"Claim number {i} holds." for i in range(40))
    claims = split_claims(answer)
    assert len(claims.texts) == 32 and claims.merged == 8
    assert claims.texts[30] == "Claim number 30 holds."
    assert claims.texts[31] == " ".join(f"Claim number {i} holds." for i in range(31, 40))  # judged, not dropped
    assert split_claims(answer, max_claims=1).texts == (answer,)
    assert split_claims("One. Two.", max_claims=2) == split_claims("One. Two.")
    assert split_claims("One. Two.").merged == 0


@pytest.mark.parametrize(("answer", "n_claims"), [
    ("Sentence number one is here. " * 35_000, 32),  # 1 MB of sentences
    ("x" * 1_000_000, 1),  # 1 MB without a space or a terminator
    ("." * 1_000_000, 0),  # 1 MB of punctuation
    (". " * 500_000, 0),
    ("word\n" * 200_000, 1),  # 1 MB of hard-wrapped lines
    ("- item:\n" * 125_000, 32),  # a million characters of nested lead-ins
])
def test_hostile_answers_split_in_linear_time(answer: str, n_claims: int) -> None:
    start = time.perf_counter()
    claims = split_claims(answer)
    assert time.perf_counter() - start < 10  # about 1 s on a loaded 2-core machine; quadratic would take minutes
    assert len(claims.texts) == n_claims
    if n_claims == 32 and answer.startswith("Sentence"):
        assert claims.merged == 35_000 - 32 and claims.texts[-1].count("Sentence") == 35_000 - 31


def test_a_null_answer_names_the_field(tmp_path: Path) -> None:
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"question": "q", "answer": None, "contexts": ["c"]}) + "\n")
    with pytest.raises(DataError, match=r"row 1: answer: expected a string or a list of strings, got null"):
        read_predictions(preds)
    with pytest.raises(TypeError, match="expected a string answer"):
        split_claims(None)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------- the metric


def _metric(backend: Any, **over: Any) -> JudgeMetric:
    metric: JudgeMetric = bound_judge("faithfulness", backend, **over)
    return metric


def _claim(prompt: str) -> str:
    return _between(prompt, "Claim")


def _samples(*answers: str) -> tuple[list[Sample], list[Output]]:
    samples = [Sample(id=f"s{i}", fields={"prompt": "Which capitals?", "context": CONTEXT}) for i in range(len(answers))]
    return samples, [Output(generations=(a,)) for a in answers]


VERDICTS = {"Paris is the capital of France.": "The context says so. [[1]]",
            "Rome is the capital of Spain.": "Not in the context. [[0]]",
            "Berlin is the capital of Germany.": "[[1]]"}


def test_the_value_is_the_share_of_claims_supported() -> None:
    judge = Judge(lambda prompt, _: VERDICTS.get(_claim(prompt), "I am not sure."))
    metric = _metric(judge)
    scores = metric.score_batch(*_samples(" ".join(VERDICTS), "Paris is the capital of France."))
    assert scores[0].value == pytest.approx(2 / 3) and scores[0].stats == pytest.approx((2 / 3, 1.0))
    assert scores[1].value == 1.0
    claims = scores[0].extra["claims"]
    assert [(c["claim"], c["status"], c["value"]) for c in claims] == [
        ("Paris is the capital of France.", "parsed", 1.0), ("Rome is the capital of Spain.", "parsed", 0.0),
        ("Berlin is the capital of Germany.", "parsed", 1.0)]
    # each claim was judged alone against the whole context, with the whole answer shown for reference
    prompts = [r.prompt or "" for r in judge.received]
    assert len(prompts) == 4 and all(CONTEXT in p for p in prompts)
    assert all(" ".join(VERDICTS) in p for p in prompts[:3])
    summary = metric.summary(scores)
    assert summary["n"] == 2
    assert summary["claims"] == {"n": 4, "n_parsed": 4, "n_unparseable": 0, "n_errors": 0,
                                 "n_answers_without_claims": 0, "n_answers_merged": 0}
    assert summary["judge"]["scale"] == [0.0, 1.0]
    assert metric.aggregate(np.array([s.stats for s in scores])) == pytest.approx((2 / 3 + 1) / 2)


def test_unparseable_claims_are_counted_and_left_out_of_the_mean() -> None:
    judge = Judge(lambda prompt, _: VERDICTS.get(_claim(prompt), "I am not sure."))
    metric = _metric(judge)
    answer = "Paris is the capital of France. Madrid is big. Rome is the capital of Spain."
    scores = metric.score_batch(*_samples(answer, "Madrid is big. Lisbon is old."))
    assert scores[0].value == 0.5 and scores[0].extra["status"] == "parsed"  # (1 + 0) / 2, not (1 + 0 + 0) / 3
    bad = scores[0].extra["claims"][1]
    assert bad["status"] == "unparseable" and bad["value"] is None and "no [[rating]] found" in bad["reason"]
    assert scores[0].extra["retried"] is True  # the unparseable claim got its one format retry
    # no claim of the second answer parsed: the sample is unparseable, never a 0
    assert scores[1].extra["status"] == "unparseable" and scores[1].stats == (0.0, 0.0)
    summary = metric.summary(scores)
    assert summary["n"] == 1 and summary["n_unparseable"] == 1
    assert summary["claims"]["n"] == 5 and summary["claims"]["n_parsed"] == 2 and summary["claims"]["n_unparseable"] == 3


def test_a_half_verdict_on_a_yes_no_claim_is_unparseable() -> None:
    """faithfulness's scale is 0-1 with `integer: true`: `[[0.5]]` is no verdict (a rating judge's
    `[[7.5]]` on 1-10 still is)."""
    half = {"Paris is the capital of France.": "Partly. [[0.5]]", "Rome is the capital of Spain.": "[[0]]"}
    judge = Judge(lambda prompt, _: half.get(_claim(prompt), "[[1]]") if "whole number" not in prompt else "[[0.5]]")
    metric = _metric(judge)
    scores = metric.score_batch(*_samples("Paris is the capital of France. Rome is the capital of Spain."))
    first = scores[0].extra["claims"][0]
    assert first["status"] == "unparseable" and "not a whole number" in first["reason"]
    assert scores[0].value == 0.0  # only the parsed claim (0) counts
    assert any("whole number" in (r.prompt or "") or "whole number" in str(r.messages) for r in judge.received)
    assert parse_rating("[[7.5]]", 1, 10).value == 7.5
    assert not parse_rating("[[1.0]]", 0, 1, integer=True).ok and parse_rating("[[1]]", 0, 1, integer=True).value == 1.0


@pytest.mark.parametrize("answer", ["", "   \n ", "... !!! --"])
def test_an_answer_without_claims_is_unparseable_with_its_reason(answer: str) -> None:
    judge = Judge(lambda prompt, _: "[[1]]")
    metric = _metric(judge)
    scores = metric.score_batch(*_samples(answer, "Paris is the capital of France."))
    assert judge.received and all("Paris" in _claim(r.prompt or "") for r in judge.received)  # nothing sent for it
    first = scores[0]
    assert first.extra["status"] == "unparseable" and first.extra["claims"] == [] and first.extra["reason"] == [NO_CLAIMS]
    assert first.stats == (0.0, 0.0)
    summary = metric.summary(scores)
    assert summary["n"] == 1 and summary["n_unparseable"] == 1 and summary["claims"]["n_answers_without_claims"] == 1
    assert summary["parse_rate"] == 1.0  # no judge reply failed to parse: there was none for the empty answer


class Failing(Judge):
    """A judge whose calls for claims about Rome fail (the backend answers with an error)."""

    def generate(self, requests: Sequence[Request]) -> list[Response]:
        ok = super().generate(requests)
        return [Response(error="HTTP 500") if "Rome" in _claim(r.prompt or "") else resp for r, resp in zip(requests, ok, strict=True)]


def test_failed_judge_calls_are_errors_not_zeros() -> None:
    metric = _metric(Failing(lambda prompt, _: "[[1]]"))
    scores = metric.score_batch(*_samples("Paris is the capital of France. Rome is old.", "Rome is old. Rome is big."))
    assert scores[0].value == 1.0  # the failed claim is left out, as an unparseable one is
    assert scores[0].extra["claims"][1] == {"claim": "Rome is old.", "status": "error", "value": None, "reason": "HTTP 500"}
    assert scores[1].extra["status"] == "error" and scores[1].stats == (0.0, 0.0)
    summary = metric.summary(scores)
    assert summary["n_errors"] == 1 and summary["claims"]["n_errors"] == 3 and summary["claims"]["n_parsed"] == 1


def test_max_claims_is_a_judge_setting() -> None:
    judge = Judge(lambda prompt, _: "[[0]]" if "Rome" in _claim(prompt) else "[[1]]")
    metric = _metric(judge, max_claims=2)
    scores = metric.score_batch(*_samples("Paris is the capital of France. Berlin is big. Rome is old. Oslo is cold."))
    claims = scores[0].extra["claims"]
    assert [c["claim"] for c in claims] == ["Paris is the capital of France.", "Berlin is big. Rome is old. Oslo is cold."]
    assert scores[0].value == 0.5 and scores[0].extra["claims_merged"] == 2
    assert metric.summary(scores)["claims"]["n_answers_merged"] == 1
    with pytest.raises(ValueError, match="max_claims: only per: claim"):
        JudgeSpec.model_validate({"name": "x", "mode": "single", "template": "{{ answer }}", "max_claims": 3})
    with pytest.raises(ValueError, match="per: claim judging needs mode single"):
        JudgeSpec.model_validate({"name": "x", "mode": "pairwise", "template": "{{ answer_a }}", "per": "claim"})


def test_per_claim_likelihood_verdicts() -> None:
    def score(prompt: str, continuation: str) -> float:
        best = "[[0]]" if "Rome" in _claim(prompt) else "[[1]]"
        return 0.0 if continuation.strip() == best else -2.0

    judge = LLJudge(score)
    metric = _metric(judge, verdict={"method": "likelihood"})
    scores = metric.score_batch(*_samples("Paris is the capital of France. Rome is the capital of Spain. Berlin is big."))
    assert scores[0].value == pytest.approx(2 / 3)
    assert {r.continuation for r in judge.received} == {"[[0]]", "[[1]]"}  # the binary scale's two verdicts
    assert len(judge.received) == 6 and all(r.kind == "loglikelihood" for r in judge.received)
    p = 1 / (1 + math.exp(-2.0))  # the softmax weight of the better verdict, 2 nats ahead
    summary = metric.summary(scores)
    assert summary["verdict_method"] == "likelihood"
    # expected score: the mean over claims of P(supported) = (p + (1 - p) + p) / 3
    assert summary["expected_score"] == pytest.approx((2 * p + (1 - p)) / 3)


def test_faithfulness_is_per_claim_and_the_rating_is_kept() -> None:
    faith = find_judge("faithfulness").spec
    assert (faith.per, faith.mode, faith.value_range, faith.claim_limit) == ("claim", "single", (0.0, 1.0), 32)
    rating = find_judge("faithfulness_rating").spec
    assert (rating.per, rating.mode, rating.value_range) == ("sample", "single", (1.0, 5.0))
    assert rating.inputs.context == faith.inputs.context == "context"


# ---------------------------------------------------------------------------------- end to end


def _score(tmp_path: Path, preds: Path, out: str, judge_args: str, judge: str = "faithfulness") -> dict[str, Any]:
    assert main(["score", "--predictions", str(preds), "--judge", judge, "--judge-model", "fake",
                 "--judge-model-args", judge_args, "--no-cache", "--task-name", "rag",
                 "--output", str(tmp_path / out)]) == 0
    return json.loads((tmp_path / out / "results.json").read_text())["tasks"]["rag"]["metrics"][Path(judge).stem]


def test_score_the_rag_example_with_the_fake_judge_then_gate_and_report(tmp_path: Path) -> None:
    m = _score(tmp_path, EXAMPLE, "one", "output=Supported. [[1]]")
    assert m["value"] == 1.0 and m["scale"] == [0.0, 1.0] and m["kind"] == "bounded"
    assert m["claims"]["n"] == 5 and m["n"] == 4
    rows = [json.loads(line) for line in EXAMPLE.read_text().splitlines()] * 10
    many = tmp_path / "many.jsonl"
    many.write_text("".join(json.dumps(dict(r, id=f"{r['id']}-{i}")) + "\n" for i, r in enumerate(rows)))
    # likelihood verdicts from the fake model's hashed log-likelihoods: a mix of 0s and 1s
    judge = tmp_path / "faith_ll.yaml"
    judge.write_text(find_judge("faithfulness").path.read_text().replace("name: faithfulness", "name: faith_ll")  # type: ignore[union-attr]
                     + "verdict: likelihood\n")
    ll = _score(tmp_path, many, "ll", "seed=3", judge=str(judge))
    assert 0.0 < ll["value"] < 1.0 and 0.0 <= ll["ci_low"] <= ll["value"] <= ll["ci_high"] <= 1.0
    assert ll["claims"]["n"] == 50 and ll["verdict_method"] == "likelihood" and 0.0 < ll["expected_score"] < 1.0
    assert _score(tmp_path, many, "base", "output=[[1]]")["value"] == 1.0
    assert _score(tmp_path, many, "again", "output=[[1]]")["value"] == 1.0
    assert _score(tmp_path, many, "worse", "output=[[0]]")["value"] == 0.0
    assert main(["gate", str(tmp_path / "again"), "--baseline", str(tmp_path / "base")]) == 0
    assert main(["gate", str(tmp_path / "worse"), "--baseline", str(tmp_path / "base"), "--allow-mismatch"]) == 1
    from evalharness.report.data import load_runs
    from evalharness.report.samples import declared_scale

    assert declared_scale(load_runs([tmp_path / "base", tmp_path / "worse"]), "rag", "faithfulness") == (0.0, 1.0)
    assert main(["report", str(tmp_path / "base"), str(tmp_path / "worse"), "--output", str(tmp_path / "r.html")]) == 0
    html = (tmp_path / "r.html").read_text()
    assert "faithfulness" in html and "50 claims: 50 parsed" in html  # the judge table counts the unit verdicts


def test_repeated_claim_verdicts_report_agreement_per_claim() -> None:
    """generation.samples: 3 judges every claim three times; agreement is across each claim's
    repeats, and the claim whose verdicts differ is the flaky one."""
    def reply(prompt: str, repeat: int) -> str:
        return "[[0]]" if repeat == 2 and _claim(prompt).startswith("Paris") else VERDICTS[_claim(prompt)]

    metric = _metric(Judge(reply), generation={"samples": 3, "temperature": 0.7, "max_tokens": 64})
    [score] = metric.score_batch(*_samples(" ".join(VERDICTS)))
    claims = score.extra["claims"]
    assert [c["repeat_verdicts"] for c in claims] == [[1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]
    assert [c["flaky"] for c in claims] == [True, False, False]
    assert score.value == pytest.approx((2 / 3 + 0 + 1) / 3)
    agreement = metric.summary([score])["agreement"]
    assert agreement["per"] == "claim" and agreement["n_flaky"] == 1 and agreement["samples_per_item"] == 3
    assert agreement["percent_agreement"] == pytest.approx((1 / 3 + 1 + 1) / 3)


def test_the_console_counts_unparseable_claim_verdicts() -> None:
    from evalharness.cli.console import warnings

    results = {"tasks": {"rag": {"metrics": {"faithfulness": {
        "n": 3, "n_unparseable": 1, "claims": {"n": 10, "n_parsed": 7, "n_unparseable": 3, "n_errors": 0}}}}}}
    assert warnings(results) == [
        "warning: 3 of 10 verdicts per claim unparseable (faithfulness, task rag); left out of their samples' means",
        "warning: 1 of 4 samples without a parsed verdict (faithfulness, task rag)"]
    results["tasks"]["rag"]["metrics"]["faithfulness"].update(n_unparseable=0, claims={"n": 10, "n_unparseable": 0})
    assert warnings(results) == []


def test_the_report_lists_each_claim_verdict_of_a_sample(tmp_path: Path) -> None:
    from evalharness.report.data import judge_metrics, load_runs
    from evalharness.report.samples import _readable_judge

    _score(tmp_path, EXAMPLE, "one", "output=Supported. [[1]]")
    [row] = judge_metrics(load_runs([tmp_path / "one"]))
    assert row["units"] == "5 claims: 5 parsed"
    shown = _readable_judge({"status": "parsed", "value": 0.5, "claims": [
        {"claim": "Paris is in France.", "status": "parsed", "value": 1.0},
        {"claim": "Rome is in Spain.", "status": "parsed", "value": 0.0},
        {"claim": "Madrid is big.", "status": "unparseable", "value": None, "reason": "no [[rating]] found"}]})
    assert shown["claims"] == ("1. [1] Paris is in France.\n2. [0] Rome is in Spain.\n"
                               "3. [unparseable: no [[rating]] found] Madrid is big.")
    assert shown["verdict"] == "0.5 (mean of 2 of 3 claims)"
