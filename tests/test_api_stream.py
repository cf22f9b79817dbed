"""API throughput plumbing: limiter wake-ups, streamed pieces, slots busy while the runner saves."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from typing import Any

import pytest

from evalharness.backends.openai.aio import AdaptiveLimiter, GiveUp, LoopThread, RetryPolicy, feed_all, run_all
from evalharness.backends.openai.backend import OpenAIChatBackend
from evalharness.execution.cache import NullCache
from evalharness.execution.runner import run_requests
from evalharness.types import GenParams, Request
from tests.openai_fixture_server import FakeOpenAIServer


def test_a_release_wakes_only_as_many_waiters_as_there_are_free_slots() -> None:
    # Every pass of acquire's loop reads the clock once: count the passes. Waking every queued
    # request on each release (notify_all) makes this quadratic (about n * n / 2 passes), and
    # waking as many as there are free slots on each release about n * 16 / 2 here.
    passes = [0]

    def clock() -> float:
        passes[0] += 1
        return time.monotonic()

    limiter = AdaptiveLimiter(16, clock=clock)

    async def attempt() -> int:
        await asyncio.sleep(0)
        return 1

    n = 400
    out = asyncio.run(run_all(range(n), lambda _: attempt, limiter, RetryPolicy(max_retries=0), rng=random.Random(0)))
    assert out == [1] * n and limiter.peak == 16
    assert passes[0] < 3 * n  # about two each: one on arrival, one when woken


def test_feed_all_puts_every_result_with_a_bounded_number_of_workers() -> None:
    limiter = AdaptiveLimiter(3)
    active = [0, 0]  # now, most at once

    async def attempt(i: int) -> int:
        active[0] += 1
        active[1] = max(active[1], active[0])
        await asyncio.sleep(0.001)
        active[0] -= 1
        if i == 7:
            raise GiveUp("no")
        return i * i

    got: dict[int, Any] = {}
    asyncio.run(feed_all(range(50), lambda i: lambda: attempt(i), limiter, RetryPolicy(max_retries=0),
                         rng=random.Random(0), put=got.__setitem__, workers=5))
    assert sorted(got) == list(range(50)) and active[1] <= 3
    assert all(got[i] == i * i for i in range(50) if i != 7) and got[7].message == "no"


def test_stream_yields_bounded_pieces_and_raises_a_fatal_error() -> None:
    loop = LoopThread()
    try:
        async def produce(put: Any) -> None:
            for i in range(25):
                put(i, i)
                await asyncio.sleep(0)

        pieces = list(loop.stream(produce, size=10, seconds=5.0))
        assert [i for p in pieces for i, _ in p] == list(range(25)) and max(len(p) for p in pieces) <= 10

        async def broken(put: Any) -> None:
            put(0, "first")
            await asyncio.sleep(0.01)
            raise RuntimeError("fatal")

        seen = []
        with pytest.raises(RuntimeError, match="fatal"):
            for piece in loop.stream(broken, size=1, seconds=5.0):
                seen.extend(piece)
        assert seen == [(0, "first")]
    finally:
        loop.close()


def test_closing_a_stream_early_cancels_what_is_in_flight() -> None:
    loop = LoopThread()
    cancelled = threading.Event()
    try:
        async def slow(put: Any) -> None:
            put(0, 0)
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        gen = loop.stream(slow, size=1, seconds=5.0)
        assert next(gen) == [(0, 0)]
        gen.close()
        assert cancelled.wait(5)
    finally:
        loop.close()


class _SavingCache(NullCache):
    """Records how many requests the server had in flight each time the runner saved a piece."""

    def __init__(self, server: FakeOpenAIServer) -> None:
        self.server = server
        self.in_flight_at_save: list[int] = []

    def put_many(self, items: Any) -> None:
        self.in_flight_at_save.append(self.server.in_flight)
        time.sleep(0.05)  # a slow disk


def test_requests_stay_in_flight_while_the_runner_saves_a_piece() -> None:
    with FakeOpenAIServer(latency=0.05) as srv:
        backend = OpenAIChatBackend(model="toy", base_url=srv.url, max_concurrency="8", chunk_size="8")
        cache = _SavingCache(srv)
        reqs = [Request(kind="generate", prompt=f"Q{i}", gen=GenParams(max_tokens=8)) for i in range(64)]
        responses, _, stats = run_requests(backend, reqs, cache, progress=False)
        backend.close()
    assert all(r.error is None for r in responses) and stats.computed == 64 and srv.calls == 64
    assert len(cache.in_flight_at_save) >= 8  # pieces of at most chunk_size
    # A batch per call would leave nothing in flight while saving; the stream keeps the slots busy.
    assert max(cache.in_flight_at_save) > 0


def test_an_environment_proxy_sends_the_calls_through_httpx(monkeypatch: pytest.MonkeyPatch) -> None:
    from evalharness.backends.openai.transport import Clients as _Clients

    for var in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    assert not _Clients(5.0, "http://10.1.2.3:8000/v1").use_httpx  # no proxy: httpcore pools
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    assert _Clients(5.0, "http://10.1.2.3:8000/v1").use_httpx
    monkeypatch.setenv("NO_PROXY", "10.1.2.3")
    assert not _Clients(5.0, "http://10.1.2.3:8000/v1").use_httpx


def test_a_client_passed_in_serves_every_call_with_the_same_retries() -> None:
    import httpx

    with FakeOpenAIServer(stall=1.0) as srv:
        srv.script.extend(["500", "drop", "timeout", "429"])
        backend = OpenAIChatBackend(model="toy", base_url=srv.url, backoff_base="0.01", timeout="0.3",
                                    http_client=httpx.AsyncClient(timeout=0.3))
        reqs = [Request(kind="generate", prompt=f"Q{i}", gen=GenParams(max_tokens=8)) for i in range(3)]
        out = backend.generate(reqs)
        backend.close()
    assert [r.error for r in out] == [None] * 3 and srv.calls == 3 + 4
    assert backend.limiter.decreases == 1  # the 429 was seen as a rate limit
