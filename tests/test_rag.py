"""`evalharness score` on RAG rows: retrieval metrics and the judge triad against a scripted judge server."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from evalharness.cli import main
from evalharness.errors import DataError
from evalharness.execution.predictions import read_predictions
from evalharness.spec.judge import JudgeSpec, find_judge
from tests.openai_fixture_server import FakeOpenAIServer

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "rag_predictions.jsonl"
ROWS = [json.loads(line) for line in EXAMPLE.read_text().splitlines()]
RELEVANT_TEXTS = {c["text"] for r in ROWS for c in r["contexts"] if c["id"] in r["relevant_ids"]}
UNSUPPORTED_CLAIMS = {"I do not know.", "The 2012 Act took that power away."}  # row 4 holds a supported claim too


def _between(prompt: str, what: str) -> str:
    m = re.search(rf"\[The Start of {what}\]\n(.*?)\n\[The End of {what}\]", prompt, re.DOTALL)
    assert m, prompt
    return m.group(1)


class ScriptedJudge(FakeOpenAIServer):
    """Known verdicts. context_relevance: 5 for the relevant passage, else 1. faithfulness (per claim):
    0 for the refusal and for row 4's invented second claim, else 1. faithfulness_rating: 1 for the
    refusal, else 5. answer_relevance: 1 for the refusal, no verdict at all for the Scotland question."""

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        prompt = "\n".join(m["content"] for m in body["messages"])
        answer = _between(prompt, "Answer") if "[The Start of Answer]" in prompt else ""
        if "[The Start of Passage]" in prompt:
            text = "Relevant. [[5]]" if _between(prompt, "Passage") in RELEVANT_TEXTS else "Unrelated. [[1]]"
        elif "[The Start of Claim]" in prompt:
            assert "[1] " in _between(prompt, "Context") and "[2] " in _between(prompt, "Context")
            text = "Not stated. [[0]]" if _between(prompt, "Claim") in UNSUPPORTED_CLAIMS else "Stated. [[1]]"
        elif "[The Start of Context]" in prompt:
            assert "[1] " in _between(prompt, "Context") and "[2] " in _between(prompt, "Context")
            text = "[[1]]" if answer == "I do not know." else "All supported. [[5]]"
        elif "Scotland" in _between(prompt, "Question"):
            text = "I cannot rate this."
        else:
            text = "[[1]]" if answer == "I do not know." else "[[5]]"
        return {"id": "chat-1", "object": "chat.completion", "model": body.get("model"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 3}}


def _score(tmp_path: Path, preds: Path, out: str, server: ScriptedJudge) -> dict[str, Any]:
    argv = ["score", "--predictions", str(preds), "--metrics", "recall@1,recall@2,mrr@10,ndcg@10,map",
            "--judge", "faithfulness,faithfulness_rating,answer_relevance,context_relevance", "--judge-model", "openai-chat",
            "--judge-model-args", f"model=judge,base_url={server.url},max_retries=1,backoff_base=0.01",
            "--no-cache", "--task-name", "rag", "--output", str(tmp_path / out)]
    assert main(argv) == 0
    return json.loads((tmp_path / out / "results.json").read_text())["tasks"]["rag"]["metrics"]


def test_rag_rows_map_onto_samples() -> None:
    samples, outputs = read_predictions(EXAMPLE)
    assert len(samples) == 4
    s, o = samples[1], outputs[1]
    assert o.generations == ("outdoors",) and s.references == ("outdoors",)
    assert s.fields["prompt"] == ROWS[1]["question"]
    assert s.fields["retrieved_ids"] == [c["id"] for c in ROWS[1]["contexts"]]
    assert s.fields["contexts"] == [c["text"] for c in ROWS[1]["contexts"]]
    assert s.fields["context"].startswith("[1] " + ROWS[1]["contexts"][0]["text"])


def test_rag_file_scored_with_retrieval_metrics_and_the_triad(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    with ScriptedJudge() as server:
        metrics = _score(tmp_path, EXAMPLE, "run", server)
    # the relevant passage is first in rows 1 and 3, second in rows 2 and 4
    assert metrics["recall@1"]["value"] == 0.5 and metrics["recall@2"]["value"] == 1.0
    assert metrics["mrr@10"]["value"] == 0.75 and metrics["map"]["value"] == 0.75
    assert metrics["recall@1"]["ci_low"] is not None and metrics["recall@1"]["n"] == 4
    cr = metrics["context_relevance"]
    assert cr["value"] == 3.0 and cr["n"] == 4  # (5 + 1) / 2 for every row
    assert cr["contexts"] == {"n": 8, "n_parsed": 8, "n_unparseable": 0, "n_errors": 0}
    faith = metrics["faithfulness"]  # the share of claims supported: 1, 1, 0 (the refusal), 1 of 2
    assert faith["value"] == 0.625 and faith["n"] == 4 and faith["scale"] == [0.0, 1.0]
    assert faith["claims"] == {"n": 5, "n_parsed": 5, "n_unparseable": 0, "n_errors": 0,
                               "n_answers_without_claims": 0, "n_answers_merged": 0}
    assert metrics["faithfulness_rating"]["value"] == 4.0  # the holistic rating: 5, 5, 1 (the refusal), 5
    assert metrics["faithfulness_rating"]["scale"] == [1.0, 5.0]
    ar = metrics["answer_relevance"]
    assert ar["value"] == pytest.approx(11 / 3) and ar["n"] == 3 and ar["n_unparseable"] == 1  # never a minimum
    records = [json.loads(x) for x in (tmp_path / "run" / "samples" / "rag.jsonl").read_text().splitlines()]
    # row 2 retrieved the distractor first: its per-context verdicts are in rank order
    assert records[1]["score_details"]["context_relevance"]["contexts"] == [{"status": "parsed", "value": 1.0},
                                                                             {"status": "parsed", "value": 5.0}]
    assert records[0]["retrieved_ids"] == [c["id"] for c in ROWS[0]["contexts"]]
    assert records[3]["scores"]["faithfulness"] == 0.5
    assert records[3]["score_details"]["faithfulness"]["claims"] == [
        {"claim": "The Scottish Parliament can alter income tax by up to 3 pence in the pound.", "status": "parsed", "value": 1.0},
        {"claim": "The 2012 Act took that power away.", "status": "parsed", "value": 0.0}]


def test_rag_run_is_gated(tmp_path: Path) -> None:
    worse = tmp_path / "worse.jsonl"
    rows = [dict(r, contexts=list(reversed(r["contexts"]))) for r in ROWS * 10]
    rows = [dict(r, id=f"{r['id']}-{i}") for i, r in enumerate(rows)]
    good = [dict(r, contexts=sorted(r["contexts"], key=lambda c: c["id"] not in r["relevant_ids"])) for r in rows]
    worse.write_text("".join(json.dumps(r) + "\n" for r in good[:20] + rows[20:]))
    best = tmp_path / "best.jsonl"
    best.write_text("".join(json.dumps(r) + "\n" for r in good))
    for name, preds in (("base", best), ("cur", worse)):
        assert main(["score", "--predictions", str(preds), "--metrics", "recall@1,mrr@10", "--task-name", "rag",
                     "--output", str(tmp_path / name)]) == 0
    assert main(["gate", str(tmp_path / "base"), "--baseline", str(tmp_path / "base")]) == 0
    assert main(["gate", str(tmp_path / "cur"), "--baseline", str(tmp_path / "base")]) == 1


def test_context_relevance_is_judged_per_context() -> None:
    spec = find_judge("context_relevance").spec
    assert spec.per == "context" and spec.mode == "single"
    with pytest.raises(ValueError, match="per: context"):
        JudgeSpec.model_validate({"name": "x", "mode": "pairwise", "template": "{{ answer_a }}", "per": "context"})


def test_bad_rag_rows_name_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"answer": "a", "contexts": []}) + "\n")
    with pytest.raises(DataError, match="row 1: missing column"):
        read_predictions(bad)
    bad.write_text(json.dumps({"question": "q", "answer": "a", "contexts": [{"id": "x"}]}) + "\n")
    with pytest.raises(DataError, match=r"contexts\[0\] has no 'text'"):
        read_predictions(bad)


def test_a_rag_row_needs_no_reference(tmp_path: Path) -> None:
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"question": "q", "answer": "a", "contexts": ["c"]}) + "\n")
    samples, outputs = read_predictions(preds)
    assert samples[0].references == () and outputs[0].generations == ("a",)


def bound_judge(name: str, backend: Any, **over: Any) -> Any:
    """A built-in judge as a metric, with spec fields overridden, bound to `backend` (no cache)."""
    from evalharness.execution.cache import NullCache
    from evalharness.judging.metric import JudgeMetric

    data = find_judge(name).spec.model_dump()
    data.update(over)
    metric = JudgeMetric(JudgeSpec.model_validate(data))
    metric.bind(backend, NullCache())
    return metric


def _rag_samples() -> tuple[list[Any], list[Any]]:
    from evalharness.types import Output, Sample

    samples = [Sample(id="a", fields={"prompt": "q", "contexts": ["GOOD", "BAD", "ODD"]}),
               Sample(id="b", fields={"prompt": "q", "contexts": ["ODD"]})]
    return samples, [Output(generations=("x",)), Output(generations=("y",))]


def test_per_context_unparseable_accounting() -> None:
    from tests.test_judges import Judge

    def reply(prompt: str, repeat: int) -> str:
        passage = _between(prompt, "Passage")
        return {"GOOD": "[[5]]", "BAD": "[[2]]"}.get(passage, "no rating")

    metric = bound_judge("context_relevance", Judge(reply))
    samples, outputs = _rag_samples()
    scores = metric.score_batch(samples, outputs)
    assert scores[0].value == 3.5 and scores[0].stats == (3.5, 1.0)  # the unparseable context is left out, not a 1
    assert scores[0].extra["contexts"][2]["status"] == "unparseable"
    assert scores[1].extra["status"] == "unparseable" and scores[1].stats == (0.0, 0.0)
    summary = metric.summary(scores)
    assert summary["n"] == 1 and summary["n_unparseable"] == 1
    assert summary["contexts"] == {"n": 4, "n_parsed": 2, "n_unparseable": 2, "n_errors": 0}


def test_per_context_likelihood_verdicts() -> None:
    from tests.test_judge_likelihood import LLJudge

    def score(prompt: str, continuation: str) -> float:
        best = "[[4]]" if "GOOD" in prompt else "[[1]]"
        return 0.0 if continuation.strip() == best else -5.0

    metric = bound_judge("context_relevance", LLJudge(score), verdict={"method": "likelihood"})
    samples, outputs = _rag_samples()
    scores = metric.score_batch(samples, outputs)
    assert [s.value for s in scores] == [2.0, 1.0]  # (4 + 1 + 1) / 3, then 1
    assert metric.summary(scores)["verdict_method"] == "likelihood"
    assert 1.0 < metric.summary(scores)["expected_score"] < 2.0
