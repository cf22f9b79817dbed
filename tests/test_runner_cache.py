"""Runner and response cache: dedupe, batching, failures never cached, concurrent writers."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
from pathlib import Path

import pytest

from evalharness.backends.fake import FakeBackend
from evalharness.errors import BackendError
from evalharness.execution.cache import ResponseCache, request_key
from evalharness.execution.runner import run_requests
from evalharness.prompting.extract import extract
from evalharness.registry import Registry
from evalharness.spec.task import ExtractSpec
from evalharness.types import GenParams, Request, Response


def _reqs() -> list[Request]:
    gen = GenParams(max_tokens=5)
    return [Request(kind="generate", prompt=f"q{i % 3}", gen=gen) for i in range(9)] + [
        Request(kind="loglikelihood", prompt="ctx", continuation=" a"),
        Request(kind="loglikelihood_rolling", prompt="a whole document"),
    ]


def test_duplicates_run_once_and_results_align(tmp_path: Path) -> None:
    backend = FakeBackend(batch_size=2)
    cache = ResponseCache(tmp_path / "c.sqlite")
    reqs = _reqs()
    responses, _keys, stats = run_requests(backend, reqs, cache, progress=False)
    assert stats.unique == 5 and stats.computed == 5 and len(backend.received) == 5
    assert responses[0] == responses[3] == responses[6]
    assert responses[9].logprob is not None and responses[10].n_tokens == 3
    assert stats.batches == backend.calls == 4  # 3 unique generates in batches of 2, then 1 + 1
    again, _, stats2 = run_requests(FakeBackend(batch_size=2), reqs, cache, progress=False)
    assert again == responses and stats2.cache_hits == 5 and stats2.computed == 0


def test_failed_responses_are_not_cached(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c.sqlite")
    key = request_key({"m": 1}, _reqs()[0])
    cache.put_many([(key, Response(error="timeout")), ("other", Response(text="ok"))])
    assert cache.get_many([key, "other"]) == {"other": Response(text="ok")}


def test_corrupt_row_is_a_miss(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c.sqlite")
    cache.put_many([("k", Response(text="ok"))])
    with sqlite3.connect(tmp_path / "c.sqlite") as conn:
        conn.execute("UPDATE responses SET value='{not json' WHERE key='k'")
    assert cache.get_many(["k"]) == {}


def test_sampled_repeats_are_cached_apart_greedy_ones_together() -> None:
    hot = GenParams(temperature=0.8)
    assert request_key({}, Request(kind="generate", prompt="p", gen=hot, repeat=0)) != request_key(
        {}, Request(kind="generate", prompt="p", gen=hot, repeat=1)
    )
    cold = GenParams(temperature=0.0)
    assert request_key({}, Request(kind="generate", prompt="p", gen=cold, repeat=0)) == request_key(
        {}, Request(kind="generate", prompt="p", gen=cold, repeat=1)
    )


def test_backend_that_cannot_serve_a_kind_fails_clearly(tmp_path: Path) -> None:
    backend = FakeBackend()
    backend.supports = frozenset({"generate"})
    with pytest.raises(BackendError, match="cannot serve 'loglikelihood'"):
        run_requests(backend, _reqs()[9:10], ResponseCache(tmp_path / "c.sqlite"), progress=False)


def _writer(path: str, start: int) -> None:
    cache = ResponseCache(path)
    for i in range(start, start + 200, 10):
        cache.put_many([(f"k{j}", Response(text=str(j))) for j in range(i, i + 10)])
    cache.close()


def test_two_processes_share_one_cache(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite")
    procs = [mp.get_context("spawn").Process(target=_writer, args=(path, s)) for s in (0, 200)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    cache = ResponseCache(path)
    got = cache.get_many(f"k{j}" for j in range(400))
    assert len(got) == 400 and got["k399"].text == "399"


@pytest.mark.parametrize(
    ("text", "spec", "want"),
    [
        ("The answer is 42. Yes", ExtractSpec(regex=r"answer is (\d+)"), "42"),
        ("1 then 2 then 3", ExtractSpec(regex=r"(\d)", match="last"), "3"),
        ("no digits", ExtractSpec(regex=r"(\d)", fallback="empty"), ""),
        ("  MiXeD  ", ExtractSpec(lowercase=True), "mixed"),
        ("$1,000", ExtractSpec(remove=["$", ","]), "1000"),
    ],
)
def test_extraction(text: str, spec: ExtractSpec, want: str) -> None:
    assert extract(text, spec) == want


def test_registry_suggests_close_names_and_loads_lazily() -> None:
    reg: Registry[object] = Registry("widget")
    reg.register("json_dumps", "json:dumps")
    import json

    assert reg.get("json_dumps") is json.dumps
    with pytest.raises(Exception, match="did you mean 'json_dumps'"):
        reg.get("json_dump")
