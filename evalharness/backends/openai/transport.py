"""HTTP for the OpenAI-compatible backends: the openai package's client, or lean httpcore pools.

HTTP: by default through the `openai` package's client (`SDKTransport`, its retries off; ours
apply), which POSTs the API's JSON that we build and returns the raw reply we parse. The package
is given its own aiohttp client (`openai[aiohttp]`, in our `api` extra), or, where aiohttp is
missing, its default httpx client. With `transport=httpcore` (`Clients`) the package is
bypassed: each request in flight has its own one-connection httpcore pool, reused LIFO, all
sharing one TLS context; httpx does the calls where an environment proxy applies or a client is
passed in. Client CPU per request at concurrency 64 on 2 cores (loopback fixture server,
bench/results/api_bench.md): the package with its default httpx client 1.4-1.5 ms (one pool of
up to 1,000 connections, which httpcore scans and probes on each request and each release),
with aiohttp 0.6-0.7 ms, httpcore 0.4-0.5 ms. At 64 x 10 requests/s the client's loop thread
must stay well under one core.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from evalharness.backends.openai import aio


@dataclass(frozen=True)
class _Reply:
    status_code: int
    content: bytes
    headers: Mapping[str, str]

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


def _proxied(url: str) -> bool:
    """Whether an HTTP(S)_PROXY from the environment applies to `url` (then httpx, which honours it)."""
    import urllib.request

    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    return bool(proxies.get(parts.scheme) or proxies.get("all")) and not urllib.request.proxy_bypass(parts.hostname or "")


class Clients:
    """One keep-alive connection per request in flight, each its own pool, reused LIFO.

    httpcore directly (one-connection pools; they share one TLS context): a shared pool of many
    connections scans and probes every connection on each request, and httpx's layers on top
    (request/response models, URL, auth, cookies) cost a third of the CPU of a request. Where an
    environment proxy applies, or a client is passed in (`http_client`), httpx does the calls.
    The limiter bounds the requests in flight, so at most that many pools exist.
    """

    def __init__(self, timeout: float, base_url: str, shared: Any = None) -> None:
        self.shared = shared
        self.use_httpx = shared is not None or _proxied(base_url)
        self.timeout = timeout
        self.idle: list[Any] = []
        self.all: list[Any] = []
        self._tls: Any = None
        self._ext = {"timeout": {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}}

    def _new(self) -> Any:
        import httpcore
        import httpx

        if self._tls is None:
            self._tls = httpx.create_ssl_context()
        if self.use_httpx:
            client: Any = httpx.AsyncClient(timeout=self.timeout, verify=self._tls,
                                            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))
        else:
            client = httpcore.AsyncConnectionPool(ssl_context=self._tls, max_connections=1, max_keepalive_connections=1)
        self.all.append(client)
        return client

    async def post(self, url: str, content: bytes, headers: dict[str, str]) -> _Reply:
        """POST; transport failures raise Retryable (the caller maps HTTP statuses)."""
        import httpcore
        import httpx

        client = self.shared if self.shared is not None else (self.idle.pop() if self.idle else self._new())
        try:
            if self.use_httpx:
                r = await client.post(url, content=content, headers=headers)
                return _Reply(r.status_code, r.content, r.headers)
            raw = await client.request(b"POST", url, headers=list(headers.items()), content=content, extensions=self._ext)
            status = raw.status
            if 200 <= status < 300:
                return _Reply(status, raw.content, {})
            return _Reply(status, raw.content, {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw.headers})
        except (httpx.TimeoutException, httpcore.TimeoutException):
            raise aio.Retryable("timed out") from None
        except (httpx.RequestError, httpcore.NetworkError, httpcore.ProtocolError, httpcore.ProxyError,
                httpcore.UnsupportedProtocol) as exc:  # refused, reset, dropped mid-reply, a garbled stream
            if _not_connected(exc):  # name the cause ("connection refused"), not the wrapper's summary
                cause = _root_cause(exc)
                raise aio.Retryable(f"connection error: {type(cause).__name__}: {cause}", connect=True) from None
            raise aio.Retryable(f"connection error: {type(exc).__name__}: {exc}") from None
        finally:
            if client is not self.shared:
                self.idle.append(client)

    async def aclose(self) -> None:
        for client in self.all:
            await client.aclose()
        self.all.clear()
        self.idle.clear()


def _sdk_http_client(openai: Any, timeout: float, connections: int) -> Any:
    """The HTTP client the `openai` package is given: its own aiohttp client where aiohttp is
    installed (the `api` extra installs it), else its default httpx client. Either way there is
    room for `connections` (the concurrency limit) without waiting for a free one."""
    limits_type = type(openai.DEFAULT_CONNECTION_LIMITS)  # the package's own httpx(2).Limits
    limits = limits_type(max_connections=max(1000, connections), max_keepalive_connections=max(100, connections))
    try:
        return openai.DefaultAioHttpClient(timeout=timeout, limits=limits)  # openai[aiohttp]
    except (AttributeError, RuntimeError):  # an older openai, or aiohttp missing
        return openai.DefaultAsyncHttpxClient(timeout=timeout, limits=limits)


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and every exception behind it (causes and contexts)."""
    chain = [exc]
    while (nxt := chain[-1].__cause__ or chain[-1].__context__) is not None and nxt not in chain:
        chain.append(nxt)
    return chain


def _root_cause(exc: BaseException) -> BaseException:
    """The deepest exception behind `exc` that is not a task cancellation (how a deadline ends)."""
    return next((e for e in reversed(_chain(exc)) if not isinstance(e, asyncio.CancelledError)), exc)


def _not_connected(exc: BaseException) -> bool:
    """Whether the request never reached the server: connection refused, or a host name that does
    not resolve (a dropped or reset connection did reach it, and is only retried)."""
    import httpcore
    import httpx

    return any(isinstance(e, (ConnectionRefusedError, socket.gaierror, httpx.ConnectError, httpcore.ConnectError))
               for e in _chain(exc))


class SDKTransport:
    """The default transport: the `openai` package's client (its HTTP stack, TLS, proxies and
    headers) with its own retries off (`max_retries=0`): retries, backoff and concurrency are ours.
    Unless a client is passed in, the package gets `_sdk_http_client`. Same interface as
    `Clients`; the leaner httpcore path is `transport=httpcore`."""

    def __init__(self, key: str, base_url: str, timeout: float, http_client: Any = None, connections: int = 64) -> None:
        import openai

        self.base_url = base_url
        self.client = openai.AsyncOpenAI(api_key=key, base_url=base_url, timeout=timeout, max_retries=0,
                                         http_client=http_client or _sdk_http_client(openai, timeout, connections))

    async def post(self, url: str, content: bytes, headers: dict[str, str]) -> _Reply:
        """POST the JSON body; HTTP statuses come back as replies, transport failures as Retryable."""
        import httpx
        import openai

        path = url[len(self.base_url):] if url.startswith(self.base_url) else url
        try:
            r = await self.client.post(path, cast_to=httpx.Response, content=content,
                                       options={"headers": {"Content-Type": "application/json"}})
            return _Reply(r.status_code, r.content, r.headers)
        except openai.APIStatusError as exc:
            return _Reply(exc.status_code, exc.response.content, exc.response.headers)
        except openai.APIConnectionError as exc:  # timed out, refused, reset, dropped mid-reply
            # APITimeoutError included: the aiohttp client maps a dropped connection to a
            # ConnectTimeout, so what happened is read off the root cause.
            cause = _root_cause(exc)
            if isinstance(cause, TimeoutError) or "Timeout" in type(cause).__name__:
                raise aio.Retryable("timed out") from None
            raise aio.Retryable(f"connection error: {type(cause).__name__}: {cause}", connect=_not_connected(exc)) from None

    async def aclose(self) -> None:
        await self.client.close()


def shutdown(loop: aio.LoopThread, clients: list[Any]) -> None:
    """Close the clients' connections on their loop, then stop the loop."""
    while clients:
        try:
            loop.run(clients.pop().aclose())
        except Exception:  # noqa: BLE001 - closing a dead connection must not fail a finished run
            pass
    loop.close()


