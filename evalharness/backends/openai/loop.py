"""A private event loop on a daemon thread, so synchronous callers (the runner) can run the
API backends' coroutines and take their answers in pieces as they finish."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    """A private event loop on a daemon thread: sync callers run coroutines on it.

    Keeping one loop for the backend's life keeps HTTP connections and the limiter's state
    alive between the runner's batches (asyncio.run per batch would drop both).
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._thread is None or not self._thread.is_alive():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="evalharness-aio", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self._ensure())
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def stream(self, start: Callable[[Callable[[int, Any], None]], Coroutine[Any, Any, None]], *, size: int,
               seconds: float) -> Iterator[list[tuple[int, Any]]]:
        """Run `start(put)` on the loop; yield what it `put`s, in pieces of at most `size` items or
        every `seconds`, while it keeps running: the caller saves one piece while the next is made.

        The coroutine's fatal error is raised here; closing the generator early cancels it. On a
        KeyboardInterrupt what has arrived is yielded first, then the interrupt is raised.
        """
        # The loop thread only appends; this thread wakes once per piece (or deadline), not per
        # result: a wake-up per result would hand the GIL back and forth thousands of times.
        box: list[tuple[int, Any]] = []
        ready = threading.Event()

        def put(index: int, result: Any) -> None:
            box.append((index, result))
            if len(box) >= size:
                ready.set()

        future = asyncio.run_coroutine_threadsafe(start(put), self._ensure())
        future.add_done_callback(lambda _: ready.set())  # runs after every put: the loop is serial
        pending: list[tuple[int, Any]] = []
        deadline = time.monotonic() + seconds
        try:
            while True:
                try:
                    ready.wait(timeout=max(0.0, deadline - time.monotonic()))
                except KeyboardInterrupt:
                    # Ctrl-C: stop what is in flight, hand over what has arrived (the caller saves
                    # it), then let the interrupt go on.
                    future.cancel()
                    pending.extend(box[:])
                    for i in range(0, len(pending), size):
                        yield pending[i : i + size]
                    raise
                ready.clear()
                finished = future.done()
                taken = box[:]
                del box[: len(taken)]  # only appends happen meanwhile: the first len(taken) are these
                pending.extend(taken)
                if finished:
                    for i in range(0, len(pending), size):  # finished work is saved even before an error
                        yield pending[i : i + size]
                    future.result()  # a fatal error surfaces here
                    return
                if len(pending) >= size or time.monotonic() >= deadline:
                    # The next deadline counts from now, not from when the caller is done saving:
                    # an answer waits at most `seconds` (or one slow save) to be handed over.
                    deadline = time.monotonic() + seconds
                    out, pending = pending, []
                    for i in range(0, len(out), size):
                        yield out[i : i + size]
        finally:
            future.cancel()  # no-op once finished; else stops every request still in flight

    def close(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
            if not thread.is_alive():
                loop.close()
