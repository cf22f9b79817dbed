"""Async calls under an adaptive concurrency limit, retried within a time budget. No HTTP in here.

    call_with_retries(attempt, limiter, policy) -> result | Failed
    an attempt may raise:
    ├── Retryable   429, 5xx, timeout, dropped connection, a garbled body: back off and try again
    ├── GiveUp      this request cannot succeed (HTTP 400, a refusal): Failed at once, no retry
    └── anything else propagates: a fatal error for the whole run (bad key, unknown model)

A transient failure is retried, with exponential backoff and jitter (a Retry-After wins), for as
long as the request's time budget lasts (`RetryPolicy.budget`, counted from its first attempt),
not a fixed number of times: a bad minute on the server costs time, not answers. `run_all` and
`feed_all` then give every request that still failed one final sweep, after the main pass, under
a calmed limiter (a quarter of the concurrency, a fresh budget): an unlucky streak at 30% faults
ends there, not in a failed sample.

The limiter is AIMD, as TCP: a 429 halves the concurrency limit (at most once per `cooldown`
seconds, so one wave of 429s counts once, and sustained 429s keep halving it); each success
adds 1/limit, so a full window of successes adds one slot back. A Retry-After pauses every new
attempt until it has passed, not only the one that got it. Clock, sleep and random source are
injectable so tests are deterministic.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from evalharness.backends.openai.loop import LoopThread

__all__ = ["AdaptiveLimiter", "Failed", "GiveUp", "LoopThread", "RetryPolicy", "Retryable", "call_with_retries",
           "feed_all", "parse_retry_after", "run_all"]

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]


class Retryable(Exception):
    """A transient failure: the same request may well succeed later."""

    def __init__(self, message: str, *, retry_after: float | None = None, rate_limited: bool = False,
                 connect: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.rate_limited = rate_limited
        self.connect = connect  # the request never reached the server (refused, no such host)


class GiveUp(Exception):
    """This request will not succeed however often it is sent."""


@dataclass(frozen=True)
class Failed:
    """What a request that exhausted its retries (or gave up) leaves behind."""

    message: str
    attempts: int
    transient: bool = True  # False: the request itself was refused (GiveUp), not the weather
    error: str = ""  # the last attempt's error, without the count of attempts
    seconds: float = 0.0  # from the first attempt to giving up


@dataclass(frozen=True)
class RetryPolicy:
    """Retries within a time budget, exponential backoff with jitter; a server's Retry-After wins, up to a cap.

    A retry is made while the time since the request's first attempt plus the wait before the
    retry fits in `budget` seconds; `max_retries`, when set, caps the retries too (0: no retries
    and no final sweep).
    """

    budget: float = 120.0
    max_retries: int | None = None
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 120.0

    @property
    def sweeps(self) -> bool:
        """Whether requests still failed after the main pass get a final sweep."""
        return self.max_retries != 0

    def allows(self, retries_done: int, elapsed: float, wait: float) -> bool:
        """Whether one more retry fits: under the cap, and its start within the budget."""
        if self.max_retries is not None and retries_done >= self.max_retries:
            return False
        return elapsed + wait <= self.budget

    def delay(self, retry: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before retry number `retry` (0-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        cap = min(self.max_delay, self.base_delay * 2.0**retry)
        return cap * (0.5 + 0.5 * rng.random())  # "equal jitter": spread out, never near zero


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds from `retry-after-ms`, or `Retry-After` as seconds (fractions allowed) or an HTTP date."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when - (time.time() if now is None else now)
    return max(0.0, seconds) if math.isfinite(seconds) else None


class AdaptiveLimiter:
    """At most `limit` attempts in flight; the limit adapts to 429s (AIMD)."""

    def __init__(
        self,
        max_concurrency: int,
        *,
        min_concurrency: int = 1,
        cooldown: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.max = max_concurrency
        self.min = max(1, min(min_concurrency, max_concurrency))
        self.limit = float(max_concurrency)
        self.cooldown = cooldown
        self.clock = clock
        self.sleep = sleep
        self.in_flight = 0
        self.peak = 0
        self.decreases = 0
        self.paused_until = -math.inf
        self._last_decrease = -math.inf
        self._cond: asyncio.Condition | None = None

    def calmed(self) -> AdaptiveLimiter:
        """A limiter for the final sweep: a quarter of the concurrency (at most the current window),
        the same pause (a Retry-After still counts)."""
        calm = AdaptiveLimiter(max(1, min(self.window, self.max // 4)), cooldown=self.cooldown, clock=self.clock,
                               sleep=self.sleep)
        calm.paused_until = self.paused_until
        return calm

    @property
    def window(self) -> int:
        """The whole number of attempts allowed in flight now."""
        return max(self.min, int(self.limit))

    def _condition(self) -> asyncio.Condition:
        if self._cond is None:
            self._cond = asyncio.Condition()
        return self._cond

    async def acquire(self) -> None:
        cond = self._condition()
        async with cond:
            while True:
                wait = self.paused_until - self.clock()
                if wait > 0:
                    cond.release()
                    try:
                        await self.sleep(wait)
                    finally:
                        await cond.acquire()
                    continue
                if self.in_flight < self.window:
                    break
                await cond.wait()
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)

    async def release(self, *, ok: bool | None, retry_after: float | None = None) -> None:
        """End an attempt: ok=True a success, ok=False a 429, None anything else."""
        cond = self._condition()
        async with cond:
            self.in_flight -= 1
            before = self.window
            if ok is True:
                self.limit = min(float(self.max), self.limit + 1.0 / self.limit)
            elif ok is False:
                now = self.clock()
                if now - self._last_decrease >= self.cooldown:
                    self.limit = max(float(self.min), self.limit / 2.0)
                    self._last_decrease = now
                    self.decreases += 1
                if retry_after is not None:
                    self.paused_until = max(self.paused_until, now + retry_after)
            # One slot freed (plus any the window grew by): wake that many waiters. notify_all
            # would wake every queued request on each release only to put all but one back to
            # sleep, O(queue) per request; notifying every free slot each time over-wakes too
            # (waiters woken earlier have not run yet). A woken waiter that finds no slot (or a
            # pause) waits again; whoever holds a slot notifies on release, so none is stranded.
            cond.notify(1 + max(0, self.window - before))


async def call_with_retries(
    attempt: Callable[[], Awaitable[T]],
    limiter: AdaptiveLimiter,
    policy: RetryPolicy,
    *,
    rng: random.Random,
    sleep: Sleep = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T | Failed:
    """Run `attempt` until it succeeds, gives up, or its retries no longer fit `policy`'s budget."""
    last = "no attempt made"
    started: float | None = None
    attempts = 0
    while True:
        await limiter.acquire()
        if started is None:
            started = clock()
        attempts += 1
        try:
            result = await attempt()
        except Retryable as exc:
            wait = None if exc.retry_after is None else min(exc.retry_after, policy.max_retry_after)
            await limiter.release(ok=False if exc.rate_limited else None, retry_after=wait)
            last = str(exc)
            delay = policy.delay(attempts - 1, exc.retry_after, rng)
            if not policy.allows(attempts - 1, clock() - started, delay):
                break
            await sleep(delay)
            continue
        except GiveUp as exc:
            await limiter.release(ok=None)
            return Failed(str(exc), attempts, transient=False, error=str(exc), seconds=clock() - started)
        except BaseException:
            await limiter.release(ok=None)
            raise
        await limiter.release(ok=True)
        return result
    seconds = clock() - started
    return Failed(f"{last} ({_gave_up(attempts, seconds)})", attempts, error=last, seconds=seconds)


def _gave_up(attempts: int, seconds: float, swept: int = 0) -> str:
    text = f"gave up after {attempts} attempt{'s' if attempts > 1 else ''} in {seconds:.1f} s"
    return text + (f", the last {swept} in a final sweep at reduced concurrency" if swept else "")


async def _retry_failed(
    attempt_for: Callable[[Any], Callable[[], Awaitable[T]]],
    first: Failed,
    item: Any,
    limiter: AdaptiveLimiter,
    policy: RetryPolicy,
    rng: random.Random,
    sleep: Sleep,
) -> T | Failed:
    """The final sweep for one request that failed the main pass: a fresh budget under `limiter`."""
    again = await call_with_retries(attempt_for(item), limiter, policy, rng=rng, sleep=sleep)
    if not isinstance(again, Failed) or not again.transient:
        return again
    attempts, seconds = first.attempts + again.attempts, first.seconds + again.seconds
    return Failed(f"{again.error} ({_gave_up(attempts, seconds, again.attempts)})", attempts, error=again.error,
                  seconds=seconds)


async def run_all(
    items: Sequence[Any],
    attempt_for: Callable[[Any], Callable[[], Awaitable[T]]],
    limiter: AdaptiveLimiter,
    policy: RetryPolicy,
    *,
    rng: random.Random,
    sleep: Sleep = asyncio.sleep,
) -> list[T | Failed]:
    """`call_with_retries` for every item, concurrently, results in input order; what still failed
    gets the final sweep.

    A fatal error in one cancels the rest before it propagates, so nothing keeps running.
    """
    results: list[T | Failed] = await _gather([call_with_retries(attempt_for(item), limiter, policy, rng=rng, sleep=sleep)
                                                for item in items])
    failed = [i for i, r in enumerate(results) if isinstance(r, Failed) and r.transient]
    if failed and policy.sweeps:
        calm = limiter.calmed()
        swept = await _gather([_retry_failed(attempt_for, results[i], items[i], calm, policy, rng, sleep)  # type: ignore[arg-type]
                               for i in failed])
        for i, result in zip(failed, swept, strict=True):
            results[i] = result
    return results


async def _gather(coros: Sequence[Coroutine[Any, Any, T]]) -> list[T]:
    """Every coroutine's result, in order; a fatal error in one cancels the rest, then propagates."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def feed_all(
    items: Iterable[Any],
    attempt_for: Callable[[Any], Callable[[], Awaitable[T]]],
    limiter: AdaptiveLimiter,
    policy: RetryPolicy,
    *,
    rng: random.Random,
    put: Callable[[int, T | Failed], None],
    workers: int,
    sleep: Sleep = asyncio.sleep,
) -> None:
    """`call_with_retries` for every item, `put(index, result)` as each one finishes (any order).

    `workers` coroutines share the items, so memory stays flat however many there are (a task
    per item would not); with more workers than the limiter's window, a request sleeping in
    backoff leaves its slot to the next one. A request that still fails is held back until the
    main pass is over and put after its final sweep. A fatal error cancels the rest and propagates.
    """
    held: list[tuple[int, Any, Failed]] = []

    async def work(todo: Iterator[tuple[int, Any]]) -> None:
        for index, item in todo:
            result = await call_with_retries(attempt_for(item), limiter, policy, rng=rng, sleep=sleep)
            if isinstance(result, Failed) and result.transient and policy.sweeps:
                held.append((index, item, result))
            else:
                put(index, result)

    async def sweep(todo: Iterator[tuple[int, Any, Failed]], calm: AdaptiveLimiter) -> None:
        for index, item, first in todo:
            put(index, await _retry_failed(attempt_for, first, item, calm, policy, rng, sleep))

    main = iter(enumerate(items))
    await _gather([work(main) for _ in range(max(1, workers))])
    if held:
        calm = limiter.calmed()
        rest = iter(held)
        await _gather([sweep(rest, calm) for _ in range(max(1, min(workers, len(held))))])
