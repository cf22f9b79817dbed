"""Retries, backoff and the adaptive concurrency limit, on a fake clock (no HTTP here)."""

from __future__ import annotations

import asyncio
import random

import pytest

from evalharness.backends.openai.aio import (
    AdaptiveLimiter,
    Failed,
    GiveUp,
    LoopThread,
    Retryable,
    RetryPolicy,
    call_with_retries,
    feed_all,
    parse_retry_after,
    run_all,
)


class FakeTime:
    """A clock that only moves when someone sleeps on it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def _flaky(errors: list[Exception], result: str = "ok") -> tuple[list[int], object]:
    calls = [0]

    async def attempt() -> str:
        calls[0] += 1
        if errors:
            raise errors.pop(0)
        return result

    return calls, attempt


def test_backoff_grows_exponentially_with_bounded_jitter() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=4.0)
    rng = random.Random(1)
    for retry in range(8):
        cap = min(4.0, 0.5 * 2**retry)
        delays = [policy.delay(retry, None, rng) for _ in range(50)]
        assert all(cap / 2 <= d <= cap for d in delays)
        assert len(set(delays)) > 1  # jittered, so clients do not retry in lockstep


def test_retry_after_wins_over_backoff_and_is_capped() -> None:
    policy = RetryPolicy(base_delay=0.5, max_retry_after=60.0)
    assert policy.delay(0, 7.0, random.Random(0)) == 7.0
    assert policy.delay(5, 0.0, random.Random(0)) == 0.0
    assert policy.delay(0, 3600.0, random.Random(0)) == 60.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "0.25"}, 0.25),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}, 10.0),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    now = 1445412480.0  # 2015-10-21 07:28:00 UTC
    assert parse_retry_after(headers, now=now) == expected


def test_transient_errors_are_retried_with_the_policy_delays() -> None:
    t = FakeTime()
    policy = RetryPolicy(max_retries=5, base_delay=1.0)
    calls, attempt = _flaky([Retryable("HTTP 500"), Retryable("timed out"), Retryable("HTTP 429", retry_after=7.0, rate_limited=True)])
    limiter = AdaptiveLimiter(4, clock=t.clock, sleep=t.sleep)
    result = asyncio.run(call_with_retries(attempt, limiter, policy, rng=random.Random(0), sleep=t.sleep))  # type: ignore[arg-type]
    assert result == "ok" and calls[0] == 4
    rng = random.Random(0)
    expected = [policy.delay(0, None, rng), policy.delay(1, None, rng)]
    assert t.sleeps[:2] == expected
    assert t.sleeps[2] == 7.0  # Retry-After honoured exactly
    assert limiter.in_flight == 0


def test_retries_are_bounded_and_end_in_a_failure_not_an_exception() -> None:
    t = FakeTime()
    calls, attempt = _flaky([Retryable("HTTP 503: overloaded") for _ in range(10)])
    policy = RetryPolicy(max_retries=3, base_delay=1.0, max_delay=2.0)
    result = asyncio.run(call_with_retries(attempt, AdaptiveLimiter(2), policy, rng=random.Random(0), sleep=t.sleep))  # type: ignore[arg-type]
    assert isinstance(result, Failed)
    assert calls[0] == 4 and result.attempts == 4 and result.transient
    assert "HTTP 503: overloaded" in result.message and "gave up after 4 attempts" in result.message
    assert len(t.sleeps) == 3 and sum(t.sleeps) <= 1.0 + 2.0 + 2.0


def test_give_up_fails_at_once_and_fatal_errors_propagate() -> None:
    calls, attempt = _flaky([GiveUp("HTTP 400: prompt too long")])
    limiter = AdaptiveLimiter(2)
    result = asyncio.run(call_with_retries(attempt, limiter, RetryPolicy(), rng=random.Random(0)))  # type: ignore[arg-type]
    assert isinstance(result, Failed) and not result.transient and calls[0] == 1
    _, fatal = _flaky([KeyError("boom")])
    with pytest.raises(KeyError):
        asyncio.run(call_with_retries(fatal, limiter, RetryPolicy(), rng=random.Random(0)))  # type: ignore[arg-type]
    assert limiter.in_flight == 0  # the slot came back


def test_limiter_never_exceeds_its_window() -> None:
    limiter = AdaptiveLimiter(3)
    seen: list[int] = []

    async def work(_: int) -> int:
        await limiter.acquire()
        seen.append(limiter.in_flight)
        await asyncio.sleep(0.001)
        await limiter.release(ok=True)
        return 1

    async def main() -> None:
        await asyncio.gather(*(work(i) for i in range(30)))

    asyncio.run(main())
    assert max(seen) == 3 and limiter.peak == 3


def test_aimd_halves_once_per_burst_of_429s_and_recovers() -> None:
    t = FakeTime()
    limiter = AdaptiveLimiter(16, cooldown=1.0, clock=t.clock, sleep=t.sleep)

    async def rate_limited(n: int) -> None:
        for _ in range(n):
            await limiter.acquire()
            await limiter.release(ok=False)

    async def succeed(n: int) -> None:
        for _ in range(n):
            await limiter.acquire()
            await limiter.release(ok=True)

    asyncio.run(rate_limited(5))  # one wave of 429s: one decrease
    assert limiter.window == 8 and limiter.decreases == 1
    t.now += 1.0
    asyncio.run(rate_limited(1))  # still limited a second later: decrease again
    t.now += 1.0
    asyncio.run(rate_limited(1))
    assert limiter.window == 2
    for _ in range(10):
        t.now += 1.0
        asyncio.run(rate_limited(1))
    assert limiter.window == 1  # never below the minimum
    asyncio.run(succeed(20))
    assert 4 <= limiter.window < 16  # additive: about one slot per window of successes
    asyncio.run(succeed(200))
    assert limiter.window == 16  # and fully back


def test_retry_after_pauses_every_new_attempt() -> None:
    t = FakeTime()
    limiter = AdaptiveLimiter(8, clock=t.clock, sleep=t.sleep)

    async def main() -> None:
        await limiter.acquire()
        await limiter.release(ok=False, retry_after=5.0)
        await limiter.acquire()  # another request, not the one that got the 429

    asyncio.run(main())
    assert t.now >= 5.0 and t.sleeps == [5.0]


def test_run_all_keeps_order_and_cancels_the_rest_on_a_fatal_error() -> None:
    async def ok_attempts() -> list[object]:
        def make(i: int) -> object:
            async def attempt() -> int:
                await asyncio.sleep(0.001 * (5 - i))
                return i

            return attempt

        return await run_all(list(range(5)), make, AdaptiveLimiter(3), RetryPolicy(), rng=random.Random(0))  # type: ignore[arg-type]

    assert asyncio.run(ok_attempts()) == [0, 1, 2, 3, 4]

    finished: list[int] = []

    async def fatal() -> None:
        def make(i: int) -> object:
            async def attempt() -> int:
                if i == 0:
                    raise RuntimeError("bad key")
                await asyncio.sleep(0.5)
                finished.append(i)
                return i

            return attempt

        await run_all(list(range(4)), make, AdaptiveLimiter(4), RetryPolicy(), rng=random.Random(0))  # type: ignore[arg-type]

    with pytest.raises(RuntimeError, match="bad key"):
        asyncio.run(fatal())
    assert finished == []


def test_loop_thread_keeps_state_between_calls() -> None:
    loop = LoopThread()
    try:
        limiter = AdaptiveLimiter(2)

        async def use() -> int:
            await limiter.acquire()
            await limiter.release(ok=True)
            return limiter.peak

        assert loop.run(use()) == 1
        assert loop.run(use()) == 1  # same loop: the limiter's condition still works
    finally:
        loop.close()


def test_retries_go_on_for_the_budget_then_stop_within_it() -> None:
    t = FakeTime()
    calls, attempt = _flaky([Retryable("HTTP 503") for _ in range(100)])
    policy = RetryPolicy(budget=60.0, base_delay=1.0, max_delay=8.0)
    limiter = AdaptiveLimiter(2, clock=t.clock, sleep=t.sleep)
    result = asyncio.run(call_with_retries(attempt, limiter, policy, rng=random.Random(0), sleep=t.sleep,  # type: ignore[arg-type]
                                           clock=t.clock))
    assert isinstance(result, Failed) and result.transient
    # More than a fixed 7 attempts: as many as fit in 60 s of backoff (about 0.75 + 1.5 + 3 + 6 + 6 + ...).
    assert calls[0] == result.attempts > 7 and sum(t.sleeps) <= 60.0 and result.seconds == sum(t.sleeps)
    assert sum(t.sleeps) + 8.0 > 60.0  # and it stopped only when the next wait no longer fitted
    assert f"gave up after {calls[0]} attempts in {sum(t.sleeps):.1f} s" in result.message and result.error == "HTTP 503"


def test_a_retry_after_longer_than_the_budget_left_ends_the_pass() -> None:
    t = FakeTime()
    calls, attempt = _flaky([Retryable("HTTP 429", retry_after=50.0, rate_limited=True) for _ in range(3)])
    policy = RetryPolicy(budget=30.0, max_retry_after=120.0)
    result = asyncio.run(call_with_retries(attempt, AdaptiveLimiter(2, clock=t.clock, sleep=t.sleep), policy,  # type: ignore[arg-type]
                                           rng=random.Random(0), sleep=t.sleep, clock=t.clock))
    assert isinstance(result, Failed) and calls[0] == 1 and t.sleeps == []


def _streaky(failures: dict[int, int], log: list[int]) -> object:
    """attempt_for: item i fails its first failures[i] attempts (503), then returns i; every call is logged."""
    left = dict(failures)

    def make(i: int) -> object:
        async def attempt() -> int:
            log.append(i)
            await asyncio.sleep(0)
            if left.get(i, 0) > 0:
                left[i] -= 1
                raise Retryable("HTTP 503")
            return i

        return attempt

    return make


@pytest.mark.parametrize("how", ["run_all", "feed_all"])
def test_requests_still_failed_after_the_main_pass_get_a_final_sweep(how: str) -> None:
    t = FakeTime()
    # Budget 10 s at base 1 s: about 4 attempts a pass. Items 2 and 5 fail 6 times: they fail the
    # main pass and succeed in the sweep, which starts only when every other item is done.
    policy = RetryPolicy(budget=10.0, base_delay=1.0, max_delay=8.0)
    limiter = AdaptiveLimiter(8, clock=t.clock, sleep=t.sleep)
    log: list[int] = []
    make = _streaky({2: 6, 5: 6}, log)
    if how == "run_all":
        out = asyncio.run(run_all(list(range(10)), make, limiter, policy, rng=random.Random(0), sleep=t.sleep))  # type: ignore[arg-type]
    else:
        got: dict[int, object] = {}
        asyncio.run(feed_all(list(range(10)), make, limiter, policy, rng=random.Random(0), put=got.__setitem__,  # type: ignore[arg-type]
                             workers=4, sleep=t.sleep))
        out = [got[i] for i in range(10)]
        assert list(got)[-2:] in ([2, 5], [5, 2])  # held back until their sweep was over
    assert out == list(range(10))
    assert log.count(2) == log.count(5) == 7
    last_main = max(i for i, item in enumerate(log) if item not in (2, 5))
    first_sweep = min(i for i, item in enumerate(log) if item in (2, 5) and log[: i + 1].count(item) > 4)
    assert first_sweep > last_main


def test_the_sweep_runs_at_a_quarter_of_the_concurrency_and_keeps_a_pause() -> None:
    limiter = AdaptiveLimiter(16)
    limiter.paused_until = 123.0
    calm = limiter.calmed()
    assert calm.window == 4 and calm.max == 4 and calm.paused_until == 123.0
    limiter.limit = 2.0  # already down to 2 after 429s: the sweep does not go above it
    assert limiter.calmed().window == 2
    assert AdaptiveLimiter(1).calmed().window == 1


def test_max_retries_zero_means_no_retry_and_no_sweep() -> None:
    log: list[int] = []
    out = asyncio.run(run_all([0, 1], _streaky({1: 1}, log), AdaptiveLimiter(2), RetryPolicy(max_retries=0),  # type: ignore[arg-type]
                              rng=random.Random(0)))
    assert out[0] == 0 and isinstance(out[1], Failed) and log.count(1) == 1


def test_a_slow_save_does_not_hold_back_the_next_piece() -> None:
    """Each item is handed over within about `seconds` of arriving, even when saving takes most of it."""
    import time

    loop = LoopThread()
    try:
        async def produce(put: object) -> None:
            for i in range(120):
                put(i, time.monotonic())  # type: ignore[operator]
                await asyncio.sleep(0.01)

        ages = []
        for piece in loop.stream(produce, size=1000, seconds=0.25):  # type: ignore[arg-type]
            now = time.monotonic()
            ages += [now - arrived for _, arrived in piece]
            time.sleep(0.2)  # a slow disk
        assert len(ages) == 120
        # Counting the next deadline from the end of the save instead would make this about 0.45 s.
        assert max(ages) < 0.4, max(ages)
    finally:
        loop.close()
