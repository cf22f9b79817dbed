"""Token usage and cost: the model under test and the judge apart; used by the evaluation vs computed now."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from evalharness.cli import main
from evalharness.execution.pipeline import RunConfig, evaluate
from evalharness.results.usage import add_blocks, usage_line
from evalharness.spec.task import load_task_file
from tests.openai_fixture_server import FakeOpenAIServer

JUDGED = "metrics: [exact_match, {name: judge, params: {judge: mt_bench_single, question: question}}]"


def _judged_task(fixtures: Path, tmp_path: Path) -> Path:
    task = tmp_path / "qa_judged.yaml"
    task.write_text((fixtures / "qa.yaml").read_text().replace("metrics: [exact_match, f1]", JUDGED))
    (tmp_path / "qa.jsonl").write_text((fixtures / "qa.jsonl").read_text())
    return task


def _fake_prompt_tokens(trace: Path) -> tuple[int, int]:
    """Requests the fake backend received (its trace file) and their prompt tokens, as it counts them."""
    payloads = [json.loads(line) for line in trace.read_text().splitlines()]
    total = 0
    for p in payloads:
        context = p["prompt"] if "prompt" in p else "\n".join(f"{r}: {c}" for r, c in p["messages"])
        total += len(context.split())
    return len(payloads), total


def test_model_and_judge_usage_are_apart_and_cache_hits_cost_nothing_now(fixtures: Path, tmp_path: Path) -> None:
    task = load_task_file(_judged_task(fixtures, tmp_path))
    model_trace, judge_trace = tmp_path / "model.trace", tmp_path / "judge.trace"

    def run(out: str) -> dict[str, Any]:
        return evaluate(RunConfig(
            tasks=[task], model="fake", model_args={"output": "Paris", "trace": str(model_trace)}, output=tmp_path / out,
            cache_dir=tmp_path / "cache", progress=False, bootstrap_resamples=100, judge_model="fake",
            judge_model_args={"script": {"Capital of France": "Good. Rating: [[9]]"}, "output": "no verdict",
                              "trace": str(judge_trace)},
        ))

    res = run("run1")
    t = res["tasks"]["toy_qa"]
    n_model, model_prompt = _fake_prompt_tokens(model_trace)
    n_judge, judge_prompt = _fake_prompt_tokens(judge_trace)
    assert n_model == 5 and n_judge == 5 + 4  # four verdicts never parse: each retried once
    usage, judge = t["usage"], t["judge_usage"]
    assert (usage["requests"], usage["computed"], usage["prompt_tokens"], usage["completion_tokens"]) == (5, 5, model_prompt, 5)
    assert (usage["computed_prompt_tokens"], usage["computed_completion_tokens"]) == (model_prompt, 5)
    # The judge's replies: one "Good. Rating: [[9]]" (3 words), eight "no verdict" (2 words each).
    assert (judge["requests"], judge["computed"], judge["prompt_tokens"], judge["completion_tokens"]) == (9, 9, judge_prompt, 3 + 8 * 2)
    assert judge["computed_prompt_tokens"] == judge_prompt and judge_prompt != model_prompt
    assert "cost_usd" not in usage and "cost_usd" not in judge  # fake backends have no price
    assert res["usage"]["model"] == usage and res["usage"]["judge"] == judge  # one task: totals are its blocks
    on_disk = json.loads((tmp_path / "run1" / "results.json").read_text())
    assert on_disk["usage"] == res["usage"] and on_disk["tasks"]["toy_qa"]["judge_usage"] == judge

    again = run("run2")["tasks"]["toy_qa"]  # a new run directory, the same cache: nothing computed now
    assert _fake_prompt_tokens(model_trace)[0] == 5 and _fake_prompt_tokens(judge_trace)[0] == 9
    u2, j2 = again["usage"], again["judge_usage"]
    assert (u2["prompt_tokens"], u2["completion_tokens"], u2["cache_hits"], u2["computed"]) == (model_prompt, 5, 5, 0)
    assert (u2["computed_prompt_tokens"], u2["computed_completion_tokens"]) == (0, 0)
    assert (j2["prompt_tokens"], j2["completion_tokens"], j2["cache_hits"], j2["computed"]) == (judge_prompt, 19, 9, 0)
    assert (j2["computed_prompt_tokens"], j2["computed_completion_tokens"]) == (0, 0)


def test_a_task_without_a_judge_has_no_judge_usage(fixtures: Path, tmp_path: Path) -> None:
    res = evaluate(RunConfig(tasks=[load_task_file(fixtures / "qa.yaml")], model="fake", output=tmp_path / "run",
                             cache_dir=tmp_path / "cache", progress=False, bootstrap_resamples=100))
    assert "judge_usage" not in res["tasks"]["toy_qa"] and set(res["usage"]) == {"model"}
    assert usage_line(res).startswith("usage: model ") and "judge" not in usage_line(res)


def test_run_prints_one_usage_line(fixtures: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    task = _judged_task(fixtures, tmp_path)
    argv = ["run", "--model", "fake", "--model-args", "output=Paris", "--tasks", str(task), "--judge-model", "fake",
            "--judge-model-args", "output=Fine. [[7]]", "--cache-dir", str(tmp_path / "cache"), "--no-progress",
            "--bootstrap", "100"]
    assert main([*argv, "--output", str(tmp_path / "a")]) == 0
    res = json.loads((tmp_path / "a" / "results.json").read_text())
    p = res["usage"]["model"]["prompt_tokens"]
    jp = res["usage"]["judge"]["prompt_tokens"]
    [line] = [x for x in capsys.readouterr().out.splitlines() if x.startswith("usage:")]
    assert line == (f"usage: model {p:,} prompt + 5 completion tokens (computed now {p:,} + 5; from cache/resume 0 + 0); "
                    f"judge {jp:,} prompt + 10 completion tokens (computed now {jp:,} + 10; from cache/resume 0 + 0)")
    assert main([*argv, "--output", str(tmp_path / "b")]) == 0  # everything from the cache now
    [line] = [x for x in capsys.readouterr().out.splitlines() if x.startswith("usage:")]
    assert f"model {p:,} prompt + 5 completion tokens (computed now 0 + 0; from cache/resume {p:,} + 5)" in line
    assert f"judge {jp:,} prompt + 10 completion tokens (computed now 0 + 0; from cache/resume {jp:,} + 10)" in line


def test_adding_blocks_keeps_unknown_costs_unknown() -> None:
    a = {"requests": 2, "prompt_tokens": 10, "completion_tokens": 1, "cost_usd": 0.5, "computed_cost_usd": 0.25}
    b = {"requests": 3, "prompt_tokens": 5, "completion_tokens": 2, "cost_usd": None, "computed_cost_usd": 0.0}
    total = add_blocks([a, b])
    assert total is not None
    assert (total["requests"], total["prompt_tokens"], total["completion_tokens"]) == (5, 15, 3)
    assert total["cost_usd"] is None and total["computed_cost_usd"] == 0.25
    assert add_blocks([a, a])["cost_usd"] == 1.0  # type: ignore[index]
    assert "cost_usd" not in add_blocks([{"prompt_tokens": 1}])  # type: ignore[operator]
    assert add_blocks([]) is None


def _served_tokens(srv: FakeOpenAIServer) -> tuple[int, int]:
    """The tokens the fixture server reported for every request it answered (no faults injected)."""
    prompt = completion = 0
    for body in srv.bodies:
        usage = (srv.chat(body) if "messages" in body else srv.completion(body))["usage"]
        prompt, completion = prompt + usage["prompt_tokens"], completion + usage["completion_tokens"]
    return prompt, completion


def test_cost_of_model_and_judge_from_their_own_prices(fixtures: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    task = _judged_task(fixtures, tmp_path)
    with FakeOpenAIServer() as model_srv, FakeOpenAIServer() as judge_srv:
        common = "backoff_base=0.01,max_retries=3,timeout=5"

        def run(out: str, judge_prices: str) -> tuple[dict[str, Any], str]:
            argv = ["run", "--model", "openai-completions",
                    "--model-args", f"model=toy,base_url={model_srv.url},{common},price_prompt=2,price_completion=8",
                    "--tasks", str(task), "--judge-model", "openai-chat",
                    "--judge-model-args", f"model=judge,base_url={judge_srv.url},{common}{judge_prices}",
                    "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--bootstrap", "100", "--output", str(tmp_path / out)]
            assert main(argv) == 0
            [line] = [x for x in capsys.readouterr().out.splitlines() if x.startswith("usage:")]
            return json.loads((tmp_path / out / "results.json").read_text()), line

        res, line = run("a", ",price_prompt=1,price_completion=4")
        model_p, model_c = _served_tokens(model_srv)
        judge_p, judge_c = _served_tokens(judge_srv)
        assert model_p > 0 and judge_p > model_p and judge_c > 0
        usage, judge = res["tasks"]["toy_qa"]["usage"], res["tasks"]["toy_qa"]["judge_usage"]
        assert (usage["prompt_tokens"], usage["completion_tokens"]) == (model_p, model_c)
        assert (judge["prompt_tokens"], judge["completion_tokens"]) == (judge_p, judge_c)
        assert usage["cost_usd"] == pytest.approx((model_p * 2 + model_c * 8) / 1e6)
        assert judge["cost_usd"] == pytest.approx((judge_p * 1 + judge_c * 4) / 1e6)
        assert usage["computed_cost_usd"] == pytest.approx(usage["cost_usd"])
        assert res["usage"]["judge"]["cost_usd"] == pytest.approx(judge["cost_usd"])
        assert line.count("cost $") == 2 and "unknown" not in line

        calls = (model_srv.calls, judge_srv.calls)
        res, line = run("b", "")  # same cache; the judge now has no price
        assert (model_srv.calls, judge_srv.calls) == calls  # nothing sent: all from the cache
    usage, judge = res["tasks"]["toy_qa"]["usage"], res["tasks"]["toy_qa"]["judge_usage"]
    assert usage["cost_usd"] == pytest.approx((model_p * 2 + model_c * 8) / 1e6)  # what the evaluation used
    assert usage["computed_cost_usd"] == 0.0 and usage["computed_prompt_tokens"] == 0  # what this run spent
    assert judge["cost_usd"] is None and judge["computed_cost_usd"] is None and judge["prompt_tokens"] == judge_p
    assert "cost $" in line.split("; judge")[0] and line.endswith("cost unknown (no price for this model)")
