"""The OpenAI-compatible backends against a real HTTP server on 127.0.0.1 with injected faults."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evalharness.backends.openai.backend import OpenAIChatBackend, OpenAICompletionsBackend
from evalharness.backends.openai.echo import score_echo
from evalharness.backends.openai.pricing import resolve_price
from evalharness.cli import main
from evalharness.errors import BackendError
from evalharness.types import GenParams, Message, Request
from tests.openai_fixture_server import RETRYABLE_FAULTS, SPECIAL, FakeOpenAIServer, generation, is_argmax, token_logprob, tokenize

FAST = {"backoff_base": "0.01", "max_retries": "3", "timeout": "5"}


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as srv:
        yield srv


def _gen(prompt: str, **kw: Any) -> Request:
    return Request(kind="generate", prompt=prompt, gen=GenParams(max_tokens=8, stop=("\n",)), **kw)


def _completions(srv: FakeOpenAIServer, **kw: Any) -> OpenAICompletionsBackend:
    return OpenAICompletionsBackend(model="toy", base_url=srv.url, **{**FAST, **kw})


def _expected_ll(context: str, continuation: str) -> tuple[float, bool]:
    """The fixture model's log-likelihood of the continuation's (whitespace) tokens."""
    seen, total, greedy = context, 0.0, True
    for tok in tokenize(continuation):
        total += token_logprob(seen, tok)
        greedy = greedy and is_argmax(seen, tok)
        seen += tok
    return total, greedy


# ---- generation, usage, identity ------------------------------------------------------------------


def test_chat_and_completions_generate_with_usage(server: FakeOpenAIServer) -> None:
    comp = _completions(server)
    [r] = comp.generate([_gen("Q: capital?\nA:")])
    assert r.error is None and r.text == generation("Q: capital?\nA:").split("\n")[0]
    assert r.prompt_tokens == len(tokenize("Q: capital?\nA:")) and r.completion_tokens > 0
    chat = OpenAIChatBackend(model="toy", base_url=server.url, **FAST)
    [c] = chat.generate([Request(kind="generate", messages=(Message("user", "hi"),), gen=GenParams(max_tokens=8, stop=("\n",)))])
    assert c.text == generation("user: hi").split("\n")[0]
    body = server.bodies[-1]
    assert body["messages"] == [{"role": "user", "content": "hi"}] and body["stop"] == ["\n"] and body["temperature"] == 0.0
    assert chat.is_chat and not comp.is_chat


def test_identity_names_model_and_server_but_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-identity-marker")
    b = OpenAIChatBackend(model="gpt-4o", base_url="http://user:pw@127.0.0.1:9/v1/chat/completions")
    ident = b.identity()
    assert ident["model"] == "gpt-4o" and ident["base_url"] == "http://127.0.0.1:9/v1"
    assert "sk-identity-marker" not in json.dumps(ident) and "pw" not in json.dumps(ident)


# ---- concurrency, retries, faults -----------------------------------------------------------------


def test_concurrency_limit_is_respected_and_used() -> None:
    with FakeOpenAIServer(latency=0.05) as srv:
        b = _completions(srv, max_concurrency="4")
        started = time.perf_counter()
        out = b.generate([_gen(f"Q{i}") for i in range(32)])
        elapsed = time.perf_counter() - started
    assert all(r.error is None for r in out)
    assert srv.max_in_flight == 4  # never more, and the slots were really used
    assert elapsed < 32 * 0.05 / 2  # far faster than one at a time (1.6 s)
    assert b.chunk_size >= 16 * 4  # the runner hands over enough requests to fill the slots


HTTP_PATHS = ["aiohttp", "httpx", "httpcore"]  # openai package + aiohttp (default), openai package + httpx, ours


def _via(path: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Model args (and a patch) that send requests down one HTTP path."""
    if path == "httpcore":
        return {"transport": "httpcore"}
    if path == "httpx":  # as if aiohttp were not installed
        import openai

        def missing(**_kw: Any) -> Any:
            raise RuntimeError("aiohttp is not installed")

        monkeypatch.setattr(openai, "DefaultAioHttpClient", missing)
    return {}


@pytest.mark.parametrize("path", HTTP_PATHS)
def test_connections_are_kept_alive_and_bounded_by_the_concurrency(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Keep-alive connections, reused: 200 requests at concurrency 6 open at most 6 connections
    # (a connection per request, or one never handed back, would open ~200).
    with FakeOpenAIServer(latency=0.01) as srv:
        b = _completions(srv, max_concurrency="6", **_via(path, monkeypatch))
        out = b.generate([_gen(f"Q{i}") for i in range(200)])
        b.close()
    assert all(r.error is None for r in out)
    assert srv.max_in_flight == 6 and 1 <= srv.connections <= 6


def test_the_packages_client_has_room_for_the_whole_concurrency_limit() -> None:
    # Its default of 1,000 connections would queue requests our limiter counts as in flight (and
    # time them out while they wait for a connection).
    b = OpenAIChatBackend(model="m", base_url="http://127.0.0.1:9/v1", max_concurrency="1500")
    try:
        client = b._get_client().client._client  # type: ignore[union-attr]
        assert client._transport.limits.max_connections >= 1500
    finally:
        b.close()


@pytest.mark.parametrize("path", HTTP_PATHS)
def test_every_http_path_names_a_dropped_connection_and_a_timeout(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeOpenAIServer(stall=1.0) as srv:
        srv.script.extend(["drop", "timeout"])
        b = _completions(srv, timeout="0.3", max_retries="0", max_concurrency="1", **_via(path, monkeypatch))
        dropped, stalled, fine = b.generate([_gen("Q1"), _gen("Q2"), _gen("Q3")])
        b.close()
    assert dropped.error is not None and "connection error" in dropped.error, dropped.error
    assert stalled.error is not None and "timed out after 0.3 s" in stalled.error, stalled.error
    assert fine.error is None and fine.text


def test_retry_after_is_honoured(server: FakeOpenAIServer) -> None:
    server.retry_after = "0.4"
    server.script.extend(["429"])
    b = _completions(server)
    started = time.perf_counter()
    [r] = b.generate([_gen("Q")])
    assert r.error is None and server.calls == 2
    assert time.perf_counter() - started >= 0.4
    assert b.limiter.decreases == 1  # and the limit came down


def test_transient_faults_are_retried_until_success(server: FakeOpenAIServer) -> None:
    server.script.extend(["500", "503", "drop"])
    b = _completions(server, max_concurrency="1")
    [r] = b.generate([_gen("Q")])
    assert r.error is None and server.calls == 4


def test_timeout_is_retried() -> None:
    with FakeOpenAIServer(stall=1.0) as srv:
        srv.script.append("timeout")
        b = _completions(srv, timeout="0.3")
        started = time.perf_counter()
        [r] = b.generate([_gen("Q")])
    assert r.error is None and srv.calls == 2 and time.perf_counter() - started < 1.0


def test_retries_are_bounded_and_the_request_fails_with_its_error(server: FakeOpenAIServer) -> None:
    # max_retries caps each pass: 3 attempts in the main pass, 3 more in the final sweep.
    server.fault_rate, server.faults = 1.0, ("500",)
    [r] = _completions(server, max_retries="2").generate([_gen("Q")])
    assert server.calls == 6
    assert r.error is not None and "HTTP 500" in r.error and "gave up after 6 attempts" in r.error
    assert "the last 3 in a final sweep" in r.error


def test_retries_go_on_for_the_time_budget_not_a_count(server: FakeOpenAIServer) -> None:
    server.fault_rate, server.faults = 1.0, ("500",)
    b = _completions(server, max_retries="", retry_budget="0.6", backoff_base="0.02")
    started = time.perf_counter()
    [r] = b.generate([_gen("Q")])
    elapsed = time.perf_counter() - started
    # Two passes (main and sweep) of about 0.6 s each, backoff doubling from 0.01-0.02 s: many
    # more than 7 attempts, and the time bounded by the budget.
    assert 1.0 <= elapsed < 2.5, elapsed
    assert server.calls > 10 and r.error is not None and "HTTP 500" in r.error
    server.fault_rate = 0.0
    [ok] = b.generate([_gen("Q")])
    assert ok.error is None


def test_max_retries_zero_means_one_attempt_and_no_sweep(server: FakeOpenAIServer) -> None:
    server.script.extend(["503"])
    [r] = _completions(server, max_retries="0").generate([_gen("Q")])
    assert server.calls == 1 and r.error is not None and "HTTP 503" in r.error


@pytest.mark.parametrize(
    ("fault", "message"),
    [("garbage", "malformed response from the server (not JSON)"), ("missing", "malformed response from the server: no 'choices'")],
)
def test_garbage_from_the_server_is_a_clear_error(server: FakeOpenAIServer, fault: str, message: str) -> None:
    server.fault_rate, server.faults = 1.0, (fault,)
    [r] = _completions(server, max_retries="1").generate([_gen("Q")])
    assert r.error is not None and message in r.error and r.text is None


def test_bad_request_fails_at_once_without_retries(server: FakeOpenAIServer) -> None:
    server.script.append("echo_key")
    [r] = _completions(server).generate([_gen("Q")])
    assert server.calls == 1 and r.error is not None and "HTTP 400" in r.error


# ---- log-likelihood -------------------------------------------------------------------------------


def test_loglikelihood_sums_the_continuation_tokens(server: FakeOpenAIServer) -> None:
    b = _completions(server)
    reqs = [Request(kind="loglikelihood", prompt="Question: sky?\nAnswer:", continuation=c) for c in (" blue", " dark green", "")]
    out = b.loglikelihood(reqs)
    for req, r in zip(reqs[:2], out, strict=False):
        expected, greedy = _expected_ll(req.prompt or "", req.continuation)
        assert r.logprob == pytest.approx(expected) and r.is_greedy == greedy
        assert r.n_tokens == len(tokenize(req.continuation))
    assert out[2].logprob == 0.0 and out[2].is_greedy  # empty continuation: no call
    assert server.bodies[0]["echo"] is True and server.bodies[0]["logprobs"] == 1


def test_rolling_loglikelihood_with_and_without_a_prefix(server: FakeOpenAIServer) -> None:
    doc = "The cat sat on the mat."
    toks = tokenize(doc)
    [plain] = _completions(server).loglikelihood_rolling([Request(kind="loglikelihood_rolling", prompt=doc)])
    # No prefix: the first token has no log-probability and is left out.
    assert plain.n_tokens == len(toks) - 1
    assert plain.logprob == pytest.approx(_expected_ll(toks[0], "".join(toks[1:]))[0])
    [pre] = _completions(server, prefix=SPECIAL).loglikelihood_rolling([Request(kind="loglikelihood_rolling", prompt=doc)])
    assert pre.n_tokens == len(toks) and pre.logprob == pytest.approx(_expected_ll(SPECIAL, doc)[0])


def test_offsets_are_counted_from_the_end_when_the_server_adds_a_bos_token() -> None:
    with FakeOpenAIServer(bos="<s>") as srv:
        b = _completions(srv)
        [ll] = b.loglikelihood([Request(kind="loglikelihood", prompt="Q: x\nA:", continuation=" yes")])
        [roll] = b.loglikelihood_rolling([Request(kind="loglikelihood_rolling", prompt="one two three")])
    assert ll.logprob == pytest.approx(_expected_ll("<s>Q: x\nA:", " yes")[0])
    assert roll.n_tokens == 3  # BOS gives the first word a context


def test_server_without_prompt_logprobs_fails_before_any_other_work() -> None:
    with FakeOpenAIServer(echo_logprobs=False) as srv:
        reqs = [Request(kind="loglikelihood", prompt=f"Q{i}:", continuation=" a") for i in range(10)]
        with pytest.raises(BackendError, match="no prompt log-probabilities"):
            _completions(srv).loglikelihood(reqs)
        assert srv.calls == 1


def test_score_echo_rejects_mismatched_logprobs() -> None:
    from evalharness.backends.openai.aio import Retryable

    with pytest.raises(Retryable, match="differ in length"):
        score_echo({"tokens": ["a", "b"], "token_logprobs": [None]}, 2, 1, skip_first=False)


# ---- the whole CLI: failure, resume, cache, faults, the key ----------------------------------------


def _run(fixtures: Path, tmp_path: Path, srv: FakeOpenAIServer, task: str, *extra: str, model: str = "openai-completions",
         args: str = "", out: str = "run", cache: str = "cache") -> int:
    given = dict(kv.split("=", 1) for kv in args.split(",") if kv)  # a key given twice is refused: later ones replace defaults
    merged = {"model": "toy", "base_url": srv.url, "backoff_base": "0.01", "max_retries": "3", "timeout": "2", **given}
    model_args = ",".join(f"{k}={v}" for k, v in merged.items())
    return main(["run", "--model", model, "--model-args", model_args, "--tasks", ",".join(str(fixtures / t) for t in task.split(",")),
                 "--output", str(tmp_path / out), "--cache-dir", str(tmp_path / cache), "--no-progress", "--bootstrap", "100", *extra])


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_failed_samples_are_marked_exit_nonzero_and_are_retried_on_rerun(fixtures: Path, tmp_path: Path,
                                                                      server: FakeOpenAIServer) -> None:
    server.fail_if_contains = "2 + 2"
    assert _run(fixtures, tmp_path, server, "mc.yaml") == 1
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["tasks"]["toy_mc"]["n_failed"] == 1
    [failed] = [r for r in _records(tmp_path / "run" / "samples" / "toy_mc.jsonl") if "error" in r]
    assert failed["id"] == "q2" and "HTTP 500" in failed["error"] and "scores" not in failed
    server.fail_if_contains = None
    before = server.calls
    assert _run(fixtures, tmp_path, server, "mc.yaml") == 0
    assert server.calls - before == 3  # only q2's three choices were asked again
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["tasks"]["toy_mc"]["n_failed"] == 0
    before = server.calls
    assert _run(fixtures, tmp_path, server, "mc.yaml", out="run2") == 0  # new run dir, same cache
    assert server.calls == before  # every answer came from the cache


def test_thirty_percent_faults_give_the_same_results_as_no_faults(fixtures: Path, tmp_path: Path) -> None:
    tasks = "mc.yaml,qa.yaml,ppl.yaml"
    with FakeOpenAIServer() as clean:
        assert _run(fixtures, tmp_path, clean, tasks, out="clean", cache="c1") == 0
    with FakeOpenAIServer(fault_rate=0.3, seed=3, stall=0.5, retry_after="0.05") as faulty:
        faulty.script.extend(RETRYABLE_FAULTS)  # every kind of fault at least once, then 30% at random
        assert _run(fixtures, tmp_path, faulty, tasks, out="faulty", cache="c2", args="max_retries=12,timeout=0.2") == 0
        assert set(faulty.faults_served) == set(RETRYABLE_FAULTS) and faulty.calls > clean.calls
    a = json.loads((tmp_path / "clean" / "results.json").read_text())
    b = json.loads((tmp_path / "faulty" / "results.json").read_text())
    for name in a["tasks"]:
        assert b["tasks"][name]["n_failed"] == 0
        assert a["tasks"][name]["metrics"] == b["tasks"][name]["metrics"]
        clean_recs = {r["id"]: r.get("scores") for r in _records(tmp_path / "clean" / "samples" / f"{name}.jsonl")}
        faulty_recs = {r["id"]: r.get("scores") for r in _records(tmp_path / "faulty" / "samples" / f"{name}.jsonl")}
        assert clean_recs == faulty_recs


def test_chat_backend_refuses_loglikelihood_before_any_call(fixtures: Path, tmp_path: Path, server: FakeOpenAIServer,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(fixtures, tmp_path, server, "mc.yaml", model="openai-chat") == 2
    assert "cannot serve 'loglikelihood'" in capsys.readouterr().err and server.calls == 0


@pytest.mark.parametrize("echo", ["echo_key", "echo_key_at_cut"])
def test_the_key_is_used_but_never_written_anywhere(fixtures: Path, tmp_path: Path, server: FakeOpenAIServer, echo: str,
                                                    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    marker = "sk-MARKER-5b1f0c9e7d"
    monkeypatch.setenv("MY_EVAL_KEY", marker)
    server.script.append(echo)  # a server that echoes the Authorization header in its error (at the cut: in part)
    code = _run(fixtures, tmp_path, server, "qa.yaml", args="api_key_env=MY_EVAL_KEY", model="openai-chat")
    assert code == 1  # the echoing request failed (HTTP 400)
    assert server.auth and all(a == f"Bearer {marker}" for a in server.auth)
    captured = capsys.readouterr()
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".sqlite" for p in written) and any(p.name == "results.json" for p in written)
    for p in written:
        assert marker[:10].encode() not in p.read_bytes(), p  # not even the part before a cut
    assert marker[:10] not in captured.out + captured.err
    failed = [r for r in _records(tmp_path / "run" / "samples" / "toy_qa.jsonl") if "error" in r]
    assert failed and "<reda" in failed[0]["error"]  # "<redacted>", maybe cut


def test_a_key_in_model_args_is_refused_without_echoing_it(fixtures: Path, tmp_path: Path, server: FakeOpenAIServer,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(fixtures, tmp_path, server, "qa.yaml", args="api_key=sk-LEAK-123") == 2
    err = capsys.readouterr().err
    assert "api_key_env" in err and "sk-LEAK-123" not in err and server.calls == 0


def test_a_refused_key_stops_the_run_with_a_clear_error(fixtures: Path, tmp_path: Path, server: FakeOpenAIServer,
                                                        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-MARKER-refused")
    server.fault_rate, server.faults = 1.0, ("401",)
    assert _run(fixtures, tmp_path, server, "qa.yaml") == 2
    err = capsys.readouterr().err
    assert "refused the API key from $OPENAI_API_KEY" in err and "sk-MARKER-refused" not in err


def test_official_api_needs_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(BackendError, match="set OPENAI_API_KEY"):
        OpenAIChatBackend(model="gpt-4o").generate([_gen("Q")])
    with pytest.raises(BackendError, match="NOPE_KEY: that environment variable is not set"):
        OpenAIChatBackend(model="gpt-4o", api_key_env="NOPE_KEY").generate([_gen("Q")])


# ---- cost -----------------------------------------------------------------------------------------


def test_cost_from_model_args_table_or_unknown() -> None:
    b = OpenAIChatBackend(model="local", base_url="http://127.0.0.1:9/v1", price_prompt="1.5", price_completion="3")
    assert b.cost(1_000_000, 2_000_000) == pytest.approx(7.5)
    assert OpenAIChatBackend(model="gpt-4o", base_url="http://127.0.0.1:9/v1").cost(10, 10) is None  # local: not the table
    snapshot = resolve_price("gpt-4o-mini-2024-07-18", official_api=True)
    assert snapshot is not None and snapshot.cost(1_000_000, 0) == pytest.approx(0.15)
    assert resolve_price("mystery-model", official_api=True) is None
    with pytest.raises(BackendError, match="give both"):
        resolve_price("x", official_api=False, price_prompt="1")


def test_results_record_tokens_and_cost(fixtures: Path, tmp_path: Path, server: FakeOpenAIServer) -> None:
    assert _run(fixtures, tmp_path, server, "qa.yaml", args="price_prompt=2,price_completion=8") == 0
    usage = json.loads((tmp_path / "run" / "results.json").read_text())["tasks"]["toy_qa"]["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["cost_usd"] == pytest.approx((usage["prompt_tokens"] * 2 + usage["completion_tokens"] * 8) / 1e6)
    assert _run(fixtures, tmp_path, server, "qa.yaml", out="run2", cache="cache2") == 0
    assert json.loads((tmp_path / "run2" / "results.json").read_text())["tasks"]["toy_qa"]["usage"]["cost_usd"] is None


# ---- structured output (rubric judges) ------------------------------------------------------------


def _rubric_scores(backend: OpenAIChatBackend) -> list[Any]:
    from evalharness.execution.cache import NullCache
    from evalharness.judging.metric import judge_metric
    from evalharness.types import Output, Sample

    metric = judge_metric("rubric_helpfulness")
    metric.bind(backend, NullCache())
    samples = [Sample(id=str(i), fields={"prompt": f"question {i}"}) for i in range(3)]
    outputs = [Output(generations=(f"answer {i}",), extracted=(f"answer {i}",)) for i in range(3)]
    return metric.score_batch(samples, outputs)


def test_chat_judges_a_rubric_under_its_json_schema(server: FakeOpenAIServer) -> None:
    from tests.openai_fixture_server import fits

    scores = _rubric_scores(OpenAIChatBackend(model="judge", base_url=server.url, **FAST))
    assert len(server.bodies) == 3  # one call each: no format-reminder retries
    fmt = server.bodies[0]["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    schema = fmt["json_schema"]["schema"]
    assert schema["required"] == ["explanation", "relevance", "accuracy", "completeness", "clarity"]
    assert schema["properties"]["clarity"] == {"type": "integer", "minimum": 1, "maximum": 5}
    for i, score in enumerate(scores):  # the calls ran concurrently: find each sample's by its answer
        [body] = [b for b in server.bodies if f"answer {i}" in b["messages"][-1]["content"]]
        prompt = "\n".join(f"{m['role']}: {m['content']}" for m in body["messages"])
        expected = {k: v for k, v in fits(schema, prompt).items() if k != "explanation"}
        assert score.extra["criteria"] == expected
        assert score.value == pytest.approx(sum(expected.values()) / 4)


def test_structured_output_can_be_switched_off(server: FakeOpenAIServer) -> None:
    scores = _rubric_scores(OpenAIChatBackend(model="judge", base_url=server.url, structured_output="false", **FAST))
    assert all("response_format" not in body for body in server.bodies)
    # The fixture's free text is no JSON verdict: each reply was retried once with a reminder, then unparseable.
    assert len(server.bodies) == 6 and all(s.extra["status"] == "unparseable" for s in scores)
    with pytest.raises(BackendError, match="structured_output must be true or false"):
        OpenAIChatBackend(model="judge", base_url=server.url, structured_output="maybe")
