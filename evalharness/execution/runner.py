"""Runs requests through a backend: dedupe, cache lookup, length-sorted batches, progress.

Each finished batch is written to the cache before the next starts, so a crash loses at
most the batch in flight; a streaming (API) backend hands back what has arrived at least every
`flush_seconds`, so a crash loses its requests in flight and about that long of answers.
`on_batch` lets the caller persist per-sample results as they land.

Who computes the batches is an `Executor`: `LocalExecutor` (this process), the launcher shards
of `distributed.py` (`accelerate launch` / `torchrun` / `mpirun`: rank r takes batches r, r+N,
...) or the Ray workers of `ray_executor.py`. Every executor is handed the same batches a
single process would run, so each batch has the same composition and the same results.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from evalharness.backends.base import Backend, run_kind
from evalharness.errors import BackendError
from evalharness.execution.cache import NullCache, ResponseCache, answers, request_key
from evalharness.types import REQUEST_KINDS, Request, RequestKind, Response, RunStats


@dataclass
class Piece:
    """A finished batch: its keys and responses; `cached` when they came from a cache, not a model."""

    keys: list[str]
    responses: list[Response]
    cached: bool = False


class Executor:
    """Computes batches of requests; `LocalExecutor` (this process) unless a launcher or Ray is in use.

    `full_basis` executors split the list of every unique request (cached or not) so that
    processes which cannot talk to each other agree on who computes what; they look the cache
    up per batch themselves. The hooks below default to a single process that writes results.
    """

    name = "local"
    full_basis = False

    @property
    def is_main(self) -> bool:
        """Whether this process scores and writes the results (launcher ranks other than 0 do not)."""
        return True

    def begin_task(self, task: str) -> None:
        """A task's requests are about to run."""

    def finish(self) -> None:
        """Every task ran to its end (a launcher's rank 0 merges and removes the shard files)."""

    def fail(self, message: str) -> None:
        """This process broke; tell the others (launcher ranks)."""

    def describe(self) -> dict[str, Any] | None:
        """results.json `executor` block; None for a plain local run (no block)."""
        return None

    def run(
        self, backend: Backend, kind: RequestKind, chunks: list[list[str]], by_key: dict[str, Request],
        cache: ResponseCache | NullCache, done: dict[str, Response],
    ) -> Iterator[Piece]:
        """Yield each chunk's responses as it finishes, in any order."""
        if backend.streams and kind in backend.supports:
            # API backends keep their requests in flight while the caller saves each piece.
            ks = [k for chunk in chunks for k in chunk]
            size = max((len(c) for c in chunks), default=1)
            for idx, responses in backend.stream(kind, [by_key[k] for k in ks], size):
                yield Piece([ks[i] for i in idx], responses)
            return
        for chunk in chunks:
            yield Piece(chunk, run_kind(backend, kind, [by_key[k] for k in chunk]))

    def close(self) -> None:
        """Release workers (the run is over or broke)."""
        return None


class LocalExecutor(Executor):
    """This process computes every batch; a backend that streams (API backends) streams them."""


def _context_text(r: Request) -> str:
    if r.messages is not None:
        return "\x00".join(m.content for m in r.messages)
    return r.prompt or ""


def _order(r: Request) -> tuple[int, str, int, str]:
    # Longest context first (OOM shows up at once, padding is minimal). The context, not the
    # total length, leads: a question's choices must stay adjacent (and so in one chunk) for
    # backends that compute a shared context once.
    ctx = _context_text(r)
    return (-len(ctx), ctx, -len(r.continuation), r.continuation)


def run_requests(
    backend: Backend,
    requests: Sequence[Request],
    cache: ResponseCache | NullCache,
    *,
    known: dict[str, Response] | None = None,
    on_batch: Callable[[dict[str, Response]], None] | None = None,
    desc: str = "requests",
    progress: bool = True,
    executor: Executor | None = None,
) -> tuple[list[Response], list[str], RunStats]:
    """Responses aligned with `requests`, plus each request's cache key and run statistics."""
    done, keys, stats = compute_requests(backend, requests, cache, known=known, on_batch=on_batch, desc=desc,
                                         progress=progress, executor=executor)
    missing = [k for k in keys if k not in done]
    if missing:  # an executor that lost work must say so itself; this is the last line of defence
        raise BackendError(f"{len(set(missing))} request(s) came back from no worker ({desc})")
    return [done[k] for k in keys], keys, stats


def compute_requests(
    backend: Backend,
    requests: Sequence[Request],
    cache: ResponseCache | NullCache,
    *,
    known: dict[str, Response] | None = None,
    on_batch: Callable[[dict[str, Response]], None] | None = None,
    desc: str = "requests",
    progress: bool = True,
    executor: Executor | None = None,
) -> tuple[dict[str, Response], list[str], RunStats]:
    """The responses this process got (all of them, except on a launcher rank other than 0),
    each request's cache key, and run statistics."""
    executor = executor or LocalExecutor()
    identity = backend.identity()
    keys = [request_key(identity, r) for r in requests]
    stats = RunStats(requests=len(requests))
    by_key: dict[str, Request] = {}
    for k, r in zip(keys, requests, strict=True):
        by_key.setdefault(k, r)
    stats.unique = len(by_key)
    # a resumed log may hold answers this run does not ask for (a smaller --limit): not counted, not used
    done: dict[str, Response] = {k: r for k, r in (known or {}).items() if k in by_key and answers(by_key[k], r)}
    stats.cache_hits = sum(1 for k in by_key if k in done)
    if executor.full_basis:
        todo = list(by_key)  # every rank splits the same list; the executor skips what is known
    else:
        cached = {k: r for k, r in cache.get_many([k for k in by_key if k not in done]).items() if answers(by_key[k], r)}
        stats.cache_hits += len(cached)
        done.update(cached)
        todo = [k for k in by_key if k not in done]
    if on_batch is not None and done:
        on_batch(dict(done))
    if todo:
        _compute(_Job(backend, by_key, cache, done, stats, executor, on_batch), todo, desc, progress)
    for resp in done.values():
        stats.prompt_tokens += resp.prompt_tokens
        stats.completion_tokens += resp.completion_tokens
    return done, keys, stats


@dataclass
class _Job:
    """One `compute_requests` call's state: what to compute, where answers go, how to report."""

    backend: Backend
    by_key: dict[str, Request]
    cache: ResponseCache | NullCache
    done: dict[str, Response]
    stats: RunStats
    executor: Executor
    on_batch: Callable[[dict[str, Response]], None] | None = None


def _compute(job: _Job, todo: list[str], desc: str, progress: bool) -> None:
    from tqdm import tqdm

    bar = tqdm(total=len(todo), desc=desc, unit="req", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    try:
        for kind in REQUEST_KINDS:
            ks = sorted((k for k in todo if job.by_key[k].kind == kind), key=lambda k: _order(job.by_key[k]))
            if not ks:
                continue
            size = max(1, int(job.backend.chunk_size or job.backend.batch_size))
            chunks = [ks[start : start + size] for start in range(0, len(ks), size)]
            for piece in job.executor.run(job.backend, kind, chunks, job.by_key, job.cache, job.done):
                _take(job, piece)
                bar.update(len(piece.keys))
    finally:
        bar.close()


def _take(job: _Job, piece: Piece) -> None:
    """Cache, keep, announce and count one finished piece."""
    fresh = dict(zip(piece.keys, piece.responses, strict=True))
    # Resumed answers a sharded rank passes on again were counted when the run started.
    seen = sum(1 for k in fresh if k in job.done) if piece.cached else 0
    if not piece.cached:
        job.cache.put_many(list(fresh.items()))  # before the log: a logged answer is always cached
    job.done.update(fresh)
    if job.on_batch is not None:
        job.on_batch(fresh)
    stats = job.stats
    if piece.cached:
        stats.cache_hits += len(fresh) - seen
        return
    stats.batches += 1
    stats.computed += sum(1 for r in piece.responses if r.error is None)
    stats.computed_prompt_tokens += sum(r.prompt_tokens for r in piece.responses)
    stats.computed_completion_tokens += sum(r.completion_tokens for r in piece.responses)
    ran = [r for r in piece.responses if r.model_tokens is not None and r.error is None]
    stats.tokens_requested += sum(r.prompt_tokens + r.completion_tokens for r in ran)
    stats.tokens_computed += sum(r.model_tokens or 0 for r in ran)
    failed = [r.error for r in piece.responses if r.error is not None]
    stats.failed += len(failed)
    stats.errors.extend(e for e in failed if e)
