"""A deterministic in-package backend for tests and dry runs.

Outputs are scripted (`enqueue`, `script`) or derived from a hash of the request, so the same
request always gets the same answer. Every request received is recorded in `received`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from evalharness.backends.base import Backend
from evalharness.backends.options import Options, at_least
from evalharness.types import Request, RequestKind, Response


def _unit(*parts: str) -> float:
    """A stable pseudo-random number in [0, 1) from strings."""
    digest = hashlib.sha256("\x00".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _context(request: Request) -> str:
    if request.messages is not None:
        return "\n".join(f"{m.role}: {m.content}" for m in request.messages)
    return request.prompt or ""


@dataclass(frozen=True)
class FakeOptions(Options):
    """The fake backend's model args."""

    float_error: ClassVar[str] = "backend {backend!r}: {name}: expected seconds, got {value!r}"

    output: str | None = None
    seed: str | int = 0
    batch_size: int = at_least(1, 8)
    script: dict[str, str] | None = None
    prefer: str | None = None
    fail: bool = False
    delay: float = at_least(0, 0.0)
    trace: str | None = None
    api_key: str | None = None


class FakeBackend(Backend):
    """Deterministic fake model. Model args: `output` (fixed text), `seed`, `batch_size`.

    Test hooks that never change outputs (so they stay out of `identity`): `delay` (seconds
    slept per batch call, to give crash tests something to interrupt), `trace` (a file to
    which each received request's cache payload is appended, one flushed line per request,
    so tests can count recomputation across processes) and `api_key` (accepted and
    ignored, so tests can check that a credential never reaches any file written).
    """

    name = "fake"
    supports: frozenset[RequestKind] = frozenset({"generate", "loglikelihood", "loglikelihood_rolling", "embed"})
    runtime_args = Backend.runtime_args | {"trace", "delay"}  # the test hooks

    def __init__(self, **model_args: Any) -> None:
        opts = FakeOptions.parse(model_args, owner=type(self).__name__, backend=self.name)
        self.output = opts.output
        self.seed = str(opts.seed)
        self.batch_size = opts.batch_size
        self.script = dict(opts.script or {})
        self.prefer = opts.prefer
        self.fail = opts.fail
        self.delay = opts.delay
        self.trace = opts.trace
        # api_key is never stored: nothing can leak what is not kept
        self.queue: deque[str] = deque()
        self.received: list[Request] = []
        self.calls = 0

    def identity(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "output": self.output,
            "seed": self.seed,
            "script": sorted(self.script.items()),
            "prefer": self.prefer,
        }

    def enqueue(self, *outputs: str) -> None:
        """Serve these generations, in order, before falling back to the script."""
        self.queue.extend(outputs)

    def _text(self, request: Request) -> str:
        if self.queue:
            return self.queue.popleft()
        context = _context(request)
        for needle, answer in self.script.items():
            if needle in context:
                return answer
        if self.output is not None:
            return self.output
        words = ["alpha", "beta", "gamma", "delta", "42", "7", "Paris", "yes", "no"]
        n = 1 + int(_unit(self.seed, context, str(request.repeat)) * 4)
        return " ".join(words[int(_unit(self.seed, context, str(i), str(request.repeat)) * len(words))] for i in range(n))

    def _record(self, requests: Sequence[Request]) -> None:
        self.calls += 1
        self.received.extend(requests)
        if self.trace:
            lines = "".join(json.dumps(r.cache_payload(), sort_keys=True) + "\n" for r in requests)
            # One O_APPEND write per batch, so concurrent processes never interleave inside a line.
            fd = os.open(self.trace, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, lines.encode("utf-8"))
            finally:
                os.close(fd)
        if self.delay > 0:
            time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("fake backend asked to fail")

    def generate(self, requests: Sequence[Request]) -> list[Response]:
        self._record(requests)
        out = []
        for req in requests:
            text = self._text(req)
            if req.gen is not None:
                for stop in req.gen.stop:
                    if stop and stop in text:
                        text = text[: text.index(stop)]
            out.append(Response(text=text, prompt_tokens=len(_context(req).split()), completion_tokens=len(text.split())))
        return out

    def loglikelihood(self, requests: Sequence[Request]) -> list[Response]:
        self._record(requests)
        out = []
        for req in requests:
            context = _context(req)
            cont = req.continuation
            logprob = -(1.0 + 4.0 * _unit(self.seed, context, cont)) * max(1, len(cont.split()))
            if self.prefer is not None and self.prefer in cont:
                logprob = -0.01
            out.append(Response(logprob=logprob, is_greedy=logprob > -0.5, prompt_tokens=len(context.split())))
        return out

    def loglikelihood_rolling(self, requests: Sequence[Request]) -> list[Response]:
        self._record(requests)
        out = []
        for req in requests:
            doc = req.prompt or ""
            n_tokens = max(1, len(doc.split()))
            logprob = -(2.0 + _unit(self.seed, doc)) * n_tokens
            out.append(Response(logprob=logprob, n_tokens=n_tokens, prompt_tokens=n_tokens))
        return out

    def embed(self, requests: Sequence[Request]) -> list[Response]:
        """A hashed bag of words (64 dimensions, unit length): texts that share words are close."""
        self._record(requests)
        out = []
        for req in requests:
            vec = [0.0] * 64
            words = re.findall(r"\w+", (req.prompt or "").lower())
            for word in words:
                vec[int(_unit(self.seed, "embed", word) * 64)] += 1.0
            norm = math.sqrt(sum(v * v for v in vec)) or 1.0
            out.append(Response(embedding=tuple(v / norm for v in vec), prompt_tokens=len(words)))
        return out
