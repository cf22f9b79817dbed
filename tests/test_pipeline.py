"""End-to-end flow on the fake backend: task file -> results.json + samples log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evalharness.backends.fake import FakeBackend
from evalharness.errors import UsageError
from evalharness.execution.pipeline import RunConfig, evaluate
from evalharness.spec.task import load_task_file


def _run(fixtures: Path, tmp_path: Path, task: str, **kw: object) -> dict:
    cfg = RunConfig(
        tasks=[load_task_file(fixtures / task)],
        model="fake",
        output=tmp_path / "run",
        cache_dir=tmp_path / "cache",
        progress=False,
        bootstrap_resamples=200,
        **kw,  # type: ignore[arg-type]
    )
    return evaluate(cfg)


def test_mc_results_schema_and_fingerprint(fixtures: Path, tmp_path: Path) -> None:
    res = _run(fixtures, tmp_path, "mc.yaml", model_args={"prefer": "blue"})
    assert res["schema_version"] == 1
    t = res["tasks"]["toy_mc"]
    assert t["n_samples"] == 4
    acc = t["metrics"]["acc"]
    assert set(acc) >= {"value", "ci_low", "ci_high", "stderr", "n"}
    assert acc["ci_low"] <= acc["value"] <= acc["ci_high"]
    fp = t["fingerprint"]
    assert set(fp) >= {"task_file_hash", "prompt_template_hash", "model_identity_hash", "harness_version", "seed"}
    on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
    assert on_disk["tasks"]["toy_mc"]["metrics"]["acc"]["value"] == acc["value"]
    records = [json.loads(x) for x in (tmp_path / "run" / "samples" / "toy_mc.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == ["q1", "q2", "q3", "q4"]
    # The fake prefers the continuation containing "blue": q1 is right whatever else happens.
    assert records[0]["predicted"] == 0 and records[0]["scores"]["acc"] == 1.0
    assert records[0]["prompt"] == "Question: What color is the sky?\nAnswer:"


def test_mc_acc_matches_logprobs(fixtures: Path, tmp_path: Path) -> None:
    _run(fixtures, tmp_path, "mc.yaml")
    records = [json.loads(x) for x in (tmp_path / "run" / "samples" / "toy_mc.jsonl").read_text().splitlines()]
    for r in records:
        best = max(range(len(r["logprobs"])), key=lambda i: r["logprobs"][i])
        assert r["scores"]["acc"] == float(best == r["gold"])


def test_generate_exact_match_uses_extraction(fixtures: Path, tmp_path: Path) -> None:
    res = _run(fixtures, tmp_path, "qa.yaml", model_args={"script": None, "output": "  Paris\nmore"})
    records = [json.loads(x) for x in (tmp_path / "run" / "samples" / "toy_qa.jsonl").read_text().splitlines()]
    assert records[0]["generations"] == ["  Paris"]  # cut at the stop sequence
    assert records[0]["extracted"] == ["Paris"]
    assert records[0]["scores"]["exact_match"] == 100.0
    assert res["tasks"]["toy_qa"]["metrics"]["exact_match"]["value"] == pytest.approx(20.0)


def test_perplexity_metrics(fixtures: Path, tmp_path: Path) -> None:
    res = _run(fixtures, tmp_path, "ppl.yaml")
    m = res["tasks"]["toy_ppl"]["metrics"]
    assert m["word_perplexity"]["value"] > 1.0
    assert m["bits_per_byte"]["higher_is_better"] is False


def test_second_run_served_from_cache_without_model_calls(fixtures: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _run(fixtures, tmp_path, "mc.yaml")
    assert first["tasks"]["toy_mc"]["usage"]["computed"] == 12
    calls: list[int] = []
    orig = FakeBackend.loglikelihood

    def spy(self: FakeBackend, reqs: list) -> list:  # type: ignore[type-arg]
        calls.append(len(reqs))
        return orig(self, reqs)

    monkeypatch.setattr(FakeBackend, "loglikelihood", spy)
    import shutil

    shutil.rmtree(tmp_path / "run")  # not the samples log: the cache alone must serve it
    second = _run(fixtures, tmp_path, "mc.yaml")
    assert calls == []
    assert second["tasks"]["toy_mc"]["usage"]["cache_hits"] == 12
    assert second["tasks"]["toy_mc"]["metrics"] == first["tasks"]["toy_mc"]["metrics"]


def test_resume_from_samples_log_without_cache(fixtures: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _run(fixtures, tmp_path, "mc.yaml", use_cache=False)
    calls: list[int] = []
    orig = FakeBackend.loglikelihood

    def spy(self: FakeBackend, reqs: list) -> list:  # type: ignore[type-arg]
        calls.append(len(reqs))
        return orig(self, reqs)

    monkeypatch.setattr(FakeBackend, "loglikelihood", spy)
    log = tmp_path / "run" / "samples" / "toy_mc.jsonl"
    lines = log.read_text().splitlines()
    log.write_text("\n".join(lines[:2]) + "\n" + lines[2][:30])  # two finished samples and a torn line
    second = _run(fixtures, tmp_path, "mc.yaml", use_cache=False)
    assert sum(calls) == 6  # only the two unfinished questions' 3 choices each
    assert second["tasks"]["toy_mc"]["metrics"] == first["tasks"]["toy_mc"]["metrics"]


def test_different_model_is_refused_the_same_folder(fixtures: Path, tmp_path: Path) -> None:
    first = _run(fixtures, tmp_path, "mc.yaml", use_cache=False)
    with pytest.raises(UsageError, match="another model configuration"):
        _run(fixtures, tmp_path, "mc.yaml", use_cache=False, model_args={"seed": "other"})
    assert json.loads((tmp_path / "run" / "results.json").read_text())["created"] == first["created"]  # not replaced


def test_judge_as_a_task_metric_uses_the_judge_model(fixtures: Path, tmp_path: Path) -> None:
    text = (fixtures / "qa.yaml").read_text().replace(
        "metrics: [exact_match, f1]", "metrics: [exact_match, {name: judge, params: {judge: mt_bench_single, question: question}}]"
    )
    task_file = tmp_path / "qa_judged.yaml"
    task_file.write_text(text)
    (tmp_path / "qa.jsonl").write_text((fixtures / "qa.jsonl").read_text())
    cfg = RunConfig(
        tasks=[load_task_file(task_file)], model="fake", model_args={"output": "Paris"}, output=tmp_path / "run",
        cache_dir=tmp_path / "cache", progress=False, bootstrap_resamples=100,
        judge_model="fake", judge_model_args={"script": {"Capital of France": "Good. Rating: [[9]]"}, "output": "no verdict"},
    )
    res = evaluate(cfg)
    judged = res["tasks"]["toy_qa"]["metrics"]["mt_bench_single"]
    # One sample gets a parseable [[9]]; the rest never parse (even after the retry) and are excluded.
    assert judged["value"] == 9.0 and judged["n"] == 1
    assert judged["n_unparseable"] == res["tasks"]["toy_qa"]["n_samples"] - 1
    with pytest.raises(Exception, match="need --judge-model"):
        evaluate(RunConfig(tasks=cfg.tasks, model="fake", output=tmp_path / "run2", cache_dir=tmp_path / "cache",
                           progress=False))
