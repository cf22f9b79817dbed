"""What both OpenAI-compatible API backends share: their options, the client and the key,
one HTTP call and its errors, retries under an adaptive limit, streaming, usage and cost.
See `backend.py` for the whole story."""

from __future__ import annotations

import json
import os
import random
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

from evalharness.backends.base import Backend
from evalharness.backends.openai import aio
from evalharness.backends.openai.pricing import Price, resolve_price
from evalharness.backends.openai.transport import Clients, SDKTransport, shutdown
from evalharness.backends.options import Options, at_least
from evalharness.errors import BackendError
from evalharness.types import GenParams, Request, RequestKind, Response

T = TypeVar("T")

# Bump when a change here can change outputs, so old cache entries stop matching.
IMPL_VERSION = 1
OPENAI_URL = "https://api.openai.com/v1"
DEFAULT_KEY_ENV = "OPENAI_API_KEY"
# Seconds a server that has never answered may refuse connections before the run stops: long
# enough for a retry or two (a blip), short enough that a wrong port fails at once.
CONNECT_GRACE = 0.5
# Distinct requests that must have failed (with no good reply since) before a failing server may stop the run.
MIN_FAILING_TO_STOP = 3


@dataclass(frozen=True)
class OpenAIOptions(Options):
    """The model args both API backends take (the key never: see the module docstring)."""

    int_error: ClassVar[str] = "--model-args: {name} must be a whole number, got {value!r}"
    min_error: ClassVar[str] = "--model-args: {name} must be >= {minimum}, got {value!r}"
    float_error: ClassVar[str] = "{backend}: timeout, retry_budget and backoff_base must be seconds"
    bool_error: ClassVar[str] = "{backend}: {name} must be true or false, got {value!r}"

    model: str
    base_url: str | None = None
    api_key_env: str | None = None
    max_concurrency: int = at_least(1, 8)
    max_retries: int | None = at_least(0, None)
    timeout: float = 120.0
    retry_budget: float = 120.0
    chunk_size: int | None = at_least(1, None)
    batch_size: int | Literal["auto"] | None = at_least(1, None)
    price_prompt: Any = None  # read by pricing.resolve_price
    price_completion: Any = None
    api_key: Any = None  # refused, never stored
    http_client: Any = None
    backoff_base: float = 0.5
    transport: str = "openai"


def _clean_url(url: str) -> str:
    """The base URL without credentials, query or a trailing endpoint path (lm-eval style URLs work too)."""
    parts = urlsplit(url.strip())
    if not parts.scheme or not parts.hostname:
        raise BackendError(f"--model-args: base_url must look like http://HOST:PORT/v1, got {url!r}")
    netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
    path = parts.path.rstrip("/")
    for suffix in ("/chat/completions", "/completions"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
    return urlunsplit((parts.scheme, netloc, path, "", ""))


def _snippet(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "..."


class _OpenAIBase(Backend):
    """What both API backends share: client, key, retries, concurrency, usage and cost."""

    name = "openai"
    supports: frozenset[RequestKind] = frozenset({"generate"})
    is_chat = False
    streams = True
    priced = True

    options_class: ClassVar[type[OpenAIOptions]] = OpenAIOptions

    def __init__(self, model: str, **model_args: Any) -> None:
        opts = self.options_class.parse({"model": model, **model_args}, owner=type(self).__name__, backend=self.name)
        self.options = opts
        if opts.api_key is not None:
            # Never echo the value: it would land in logs and error reports.
            raise BackendError(
                f"{self.name}: api_key is not accepted in --model-args (it would be recorded); "
                f"export it and pass api_key_env=VARIABLE_NAME (default {DEFAULT_KEY_ENV})"
            )
        if not str(model).strip():
            raise BackendError(f"{self.name}: --model-args model=NAME is required")
        self.model = str(model).strip()
        self.base_url = _clean_url(opts.base_url or OPENAI_URL)
        self.official = urlsplit(self.base_url).hostname == "api.openai.com"
        self.api_key_env = opts.api_key_env or None
        self.max_concurrency = opts.max_concurrency
        self.max_retries = opts.max_retries
        self.timeout = opts.timeout
        if not opts.retry_budget >= 0:
            raise BackendError(f"{self.name}: --model-args: retry_budget must be seconds >= 0, "
                               f"got {model_args.get('retry_budget')!r}")
        # The runner caches results in pieces of this many (see `stream`; per call for a plain
        # batch): large enough to keep every slot busy, small enough that a crash loses little.
        self.chunk_size = opts.chunk_size or max(64, 16 * self.max_concurrency)
        self.batch_size = opts.batch_size if isinstance(opts.batch_size, int) else self.max_concurrency
        self.price: Price | None = resolve_price(
            self.model, official_api=self.official, price_prompt=opts.price_prompt, price_completion=opts.price_completion
        )
        self.policy = aio.RetryPolicy(budget=opts.retry_budget, max_retries=self.max_retries, base_delay=opts.backoff_base)
        self.limiter = aio.AdaptiveLimiter(self.max_concurrency)
        self._rng = random.Random(0)
        self._loop = aio.LoopThread()
        # A backend dropped without close(): its connections are closed and the loop's thread stopped.
        self._open: list[Any] = []
        weakref.finalize(self, shutdown, self._loop, self._open)
        self._http_client = opts.http_client
        if opts.transport not in {"openai", "httpcore"}:
            raise BackendError(f"{self.name}: transport must be openai (the openai package, default) or httpcore")
        self.transport = opts.transport
        self._client: Clients | SDKTransport | None = None
        self._key: str | None = None
        self._headers: dict[str, str] = {}
        self._answered = False  # any HTTP reply at all, even an error status, since the start
        self._refused_since: float | None = None  # the first connection refused since the last reply
        self._failing_since: float | None = None  # the first transient failure since the last good reply
        self._failures = 0  # transient failures since the last good reply
        self._failing_items: set[int] = set()  # the requests (ids) those failures were for

    # ---- identity, cost, lifecycle ----------------------------------------------------------

    def identity(self) -> dict[str, Any]:
        """The model name and server; never the key, never prices (they do not change outputs)."""
        return {"backend": self.name, "impl": IMPL_VERSION, "model": self.model, "base_url": self.base_url}

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        """USD for these tokens, or None when the price is unknown (report tokens only)."""
        return None if self.price is None else self.price.cost(prompt_tokens, completion_tokens)

    def close(self) -> None:
        self._client = None
        shutdown(self._loop, self._open)

    # ---- the key and the client -------------------------------------------------------------

    def _api_key(self) -> str:
        env = self.api_key_env or DEFAULT_KEY_ENV
        key = os.environ.get(env, "").strip()
        if key:
            return key
        if self.api_key_env:
            raise BackendError(f"{self.name}: api_key_env={env}: that environment variable is not set")
        if self.official:
            raise BackendError(f"{self.name}: set {DEFAULT_KEY_ENV} (or name another variable with api_key_env=NAME)")
        return "EMPTY"  # local servers (vLLM, llama.cpp) take any key

    def _get_client(self) -> Clients | SDKTransport:
        if self._client is None:
            try:
                import httpcore  # noqa: F401
                import httpx  # noqa: F401
            except ImportError:
                raise BackendError(f"{self.name}: the httpx package is missing; pip install 'evalharness[api]'") from None
            from evalharness.version import __version__

            self._key = self._api_key()
            self._headers = {"Authorization": f"Bearer {self._key}", "Content-Type": "application/json",
                             "Accept": "application/json", "User-Agent": f"evalharness/{__version__}"}
            if self.transport == "openai":
                self._client = SDKTransport(self._key, self.base_url, self.timeout, self._http_client, self.max_concurrency)
            else:
                self._client = Clients(self.timeout, self.base_url, self._http_client)
            self._open.append(self._client)
        return self._client

    def _snip(self, text: str) -> str:
        """A server's text for an error message: the key scrubbed first, then cut (cut first, a key
        straddling the cut would survive in part)."""
        return _snippet(self._scrub(text))

    def _scrub(self, text: str) -> str:
        if self._key and len(self._key) >= 4 and self._key != "EMPTY":
            text = text.replace(self._key, "<redacted>")
        return text

    # ---- one HTTP call ----------------------------------------------------------------------

    async def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST `body` to base_url + path; transient faults raise Retryable, the reply is parsed here."""
        try:
            response = await self._get_client().post(self.base_url + path, json.dumps(body).encode(), self._headers)
        except aio.Retryable as exc:
            message = f"timed out after {self.timeout:g} s" if str(exc) == "timed out" else self._scrub(str(exc))
            if exc.connect:
                self._check_reachable(message)
            raise aio.Retryable(message, retry_after=exc.retry_after, rate_limited=exc.rate_limited,
                                connect=exc.connect) from None
        self._answered, self._refused_since = True, None
        if not 200 <= response.status_code < 300:
            raise self._status_error(response)
        return self._parse_json(response.content)

    def _watched(self, call: Callable[[], Awaitable[T]], item: object) -> Callable[[], Awaitable[T]]:
        """One attempt of `call` (for `item`) whose outcome feeds the failing-server check: a transient
        failure (anywhere: status, garbled body, malformed choices, timeout) counts, a success resets."""
        async def attempt() -> T:
            try:
                result = await call()
            except aio.Retryable as exc:
                if not exc.connect:  # refused connections have their own check (_check_reachable)
                    self._check_failing(str(exc), id(item))
                raise
            self._failing_since, self._failures = None, 0
            self._failing_items.clear()
            return result

        return attempt

    def _check_failing(self, cause: str, item: int) -> None:
        """Stop the run (BackendError) when a server that answers has failed every request (5xx,
        429, garbage, timeouts) for a whole retry budget: retrying each remaining request for its
        own budget would take hours and save nothing. Any good reply resets the clock, so a
        server failing 30% of requests, or down for less than the budget, never trips this; nor
        do one or two requests the server always fails (a prompt that crashes it) when nothing
        else is left: those end as failed samples, as before."""
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        self._failures += 1
        self._failing_items.add(item)
        failing_for = now - self._failing_since
        if len(self._failing_items) >= MIN_FAILING_TO_STOP and failing_for >= max(self.policy.budget, CONNECT_GRACE):
            raise BackendError(f"{self.name}: every request to {self.base_url} has failed for {failing_for:.0f} s "
                               f"(retry_budget; {self._failures:,} attempts, none answered): last {cause}; "
                               "rerun the same command when the server is healthy (cached answers are kept)")

    def _check_reachable(self, cause: str) -> None:
        """Stop the run (BackendError) when the server is not there, rather than retry every
        request for its whole budget: it never answered and has refused connections for
        CONNECT_GRACE seconds, or it has refused every connection for a whole retry budget."""
        now = time.monotonic()
        if self._refused_since is None:
            self._refused_since = now
        refused_for = now - self._refused_since
        if not self._answered and refused_for >= CONNECT_GRACE:
            raise BackendError(f"{self.name}: cannot connect to {self.base_url}: {cause}; is the server running, "
                               "and is base_url right?")
        if self._answered and refused_for >= max(self.policy.budget, CONNECT_GRACE):
            raise BackendError(f"{self.name}: {self.base_url} has refused every connection for {refused_for:.0f} s "
                               f"(retry_budget): {cause}; rerun the same command when it is back (cached answers are kept)")

    def _status_error(self, response: Any) -> Exception:
        code = int(response.status_code)
        try:
            text = response.text
        except Exception:  # noqa: BLE001 - an unreadable error body is no reason to crash
            text = ""
        detail = self._snip(text or f"HTTP {code}")
        retry_after = aio.parse_retry_after(response.headers)
        if code == 429:
            return aio.Retryable(f"HTTP 429 rate limited: {detail}", retry_after=retry_after, rate_limited=True)
        if code in (408, 409) or code >= 500:
            return aio.Retryable(f"HTTP {code}: {detail}", retry_after=retry_after)
        if code in (401, 403):
            env = self.api_key_env or DEFAULT_KEY_ENV
            return BackendError(f"{self.name}: HTTP {code} from {self.base_url}: the server refused the API key from ${env}")
        if code == 404:
            return BackendError(f"{self.name}: HTTP 404 from {self.base_url}: unknown model {self.model!r} or wrong base_url ({detail})")
        return aio.GiveUp(f"HTTP {code}: {detail}")

    def _parse_json(self, content: bytes) -> dict[str, Any]:
        try:
            data = json.loads(content)
        except (ValueError, UnicodeDecodeError):
            text = content[:200].decode("utf-8", "replace")
            raise aio.Retryable(f"malformed response from the server (not JSON): {self._snip(text)!r}") from None
        if not isinstance(data, dict):
            raise aio.Retryable(f"malformed response from the server: expected a JSON object, got {type(data).__name__}")
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            error = data.get("error")
            if error:
                raise aio.Retryable(f"server error in a 200 response: {self._snip(json.dumps(error))}")
            raise aio.Retryable("malformed response from the server: no 'choices'")
        return data

    @staticmethod
    def _usage(data: dict[str, Any]) -> tuple[int, int]:
        usage = data.get("usage")
        if not isinstance(usage, dict):
            return 0, 0
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        return (prompt if isinstance(prompt, int) else 0), (completion if isinstance(completion, int) else 0)

    # ---- batches ----------------------------------------------------------------------------

    def _run_raw(self, requests: Sequence[Request], one: Callable[[Request], Awaitable[Response]]) -> list[Response | aio.Failed]:
        if not requests:
            return []
        self._get_client()

        async def batch() -> list[Response | aio.Failed]:
            return await aio.run_all(requests, lambda r: self._watched(lambda: one(r), r), self.limiter, self.policy,
                                     rng=self._rng)

        return self._loop.run(batch())

    def _run(self, requests: Sequence[Request], one: Callable[[Request], Awaitable[Response]]) -> list[Response]:
        """Run `one` for every request concurrently; a failure becomes that request's error Response."""
        return [self._as_response(r) for r in self._run_raw(requests, one)]

    def _as_response(self, result: Response | aio.Failed) -> Response:
        return result if isinstance(result, Response) else Response(error=f"{self.name}: {result.message}")

    @staticmethod
    def _gen_body(gen: GenParams, repeat: int) -> dict[str, Any]:
        body: dict[str, Any] = {"max_tokens": gen.max_tokens, "temperature": gen.temperature}
        if gen.temperature > 0:
            body["top_p"] = gen.top_p
            body["seed"] = gen.seed + repeat
        stops = [s for s in gen.stop if s]
        if stops:
            body["stop"] = stops[:4]  # the API takes at most four; all of them are applied below
        return body

    @staticmethod
    def _cut(text: str, gen: GenParams) -> str:
        for stop in gen.stop:
            if stop and stop in text:
                text = text[: text.index(stop)]
        return text

    def generate(self, requests: Sequence[Request]) -> list[Response]:
        return self._run(requests, self._generate_one)

    # Pieces the runner saves (cache, sample log) while the next requests are already in flight:
    # an answer reaches the cache within about this long (plus one save) of arriving, so a killed
    # run asks again only for what was in flight and the answers of the last moment.
    flush_seconds = 0.25

    def _attempt(self, kind: RequestKind) -> Callable[[Request], Awaitable[Response]]:
        if kind != "generate":
            raise BackendError(f"backend {self.name!r} cannot serve {kind!r} requests")
        return self._generate_one

    def stream(self, kind: RequestKind, requests: Sequence[Request], size: int) -> Iterator[tuple[list[int], list[Response]]]:
        """Every request of one kind, concurrently, handed back in pieces as they finish.

        Yields (indices into `requests`, their responses), at most `size` at a time or every
        `flush_seconds`. Unlike a batch per call, the slots stay busy while the caller saves a
        piece: no idle gap between batches. Closing the generator early cancels what is in flight.
        """
        from evalharness.backends.base import run_kind

        start = 0
        if kind != "generate" and requests:
            # Log-likelihood: the first request goes alone (the completions backend checks there,
            # once, that the server returns prompt log-probabilities).
            yield [0], run_kind(self, kind, requests[:1])
            start = 1
        rest = requests[start:]
        if not rest:
            return
        one = self._attempt(kind)
        self._get_client()

        def begin(put: Callable[[int, Any], None]) -> Any:
            return aio.feed_all(rest, lambda r: self._watched(lambda: one(r), r), self.limiter, self.policy, rng=self._rng,
                                 put=lambda i, result: put(start + i, self._as_response(result)),
                                 workers=4 * self.max_concurrency)

        for piece in self._loop.stream(begin, size=max(1, size), seconds=self.flush_seconds):
            yield [i for i, _ in piece], [r for _, r in piece]

    async def _generate_one(self, request: Request) -> Response:
        raise NotImplementedError

    def loglikelihood(self, requests: Sequence[Request]) -> list[Response]:
        raise BackendError(
            f"{self.name} cannot score log-likelihoods: chat completions return no prompt log-probabilities; "
            "use openai-completions with a server that supports echo with logprobs (e.g. vLLM)"
        )

    def loglikelihood_rolling(self, requests: Sequence[Request]) -> list[Response]:
        return self.loglikelihood(requests)
