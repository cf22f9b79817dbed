"""A loopback HTTP server speaking enough of the OpenAI API for tests and benchmarks.

Deterministic "model": a whitespace tokenizer, log-probabilities from a hash of (recent text,
token), generations from a hash of the prompt. Latency and fault injection: 429 with
Retry-After, 500, 503, malformed JSON, a 200 without choices, dropped connections, responses
slower than the client's timeout; `streaks` make chosen requests fail many times in a row.
`/embeddings` answers with `embedder` (texts -> vectors; by default hash vectors), its items in
reverse order (each with its `index`), or broken on purpose (`embed_fault`). It
counts calls and the most requests ever in flight, and logs when each answer was sent.
Binds 127.0.0.1 only.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import socket
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SPECIAL = "<|endoftext|>"
RETRYABLE_FAULTS = ("429", "500", "503", "garbage", "missing", "drop", "timeout")
_WORDS = ["alpha", "beta", "gamma", "Paris", "4", "blue", "yes", "no", "42"]


def unit(*parts: str) -> float:
    digest = hashlib.sha256("\x00".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def tokenize(text: str) -> list[str]:
    """Words with their leading whitespace; the end-of-text marker is one token."""
    out: list[str] = []
    for piece in re.split(f"({re.escape(SPECIAL)})", text):
        if piece == SPECIAL:
            out.append(piece)
        elif piece:
            out.extend(re.findall(r"\s*\S+|\s+", piece))
    return out


def token_logprob(before: str, token: str) -> float:
    return -(0.05 + 3.0 * unit(before[-40:], token))


def is_argmax(before: str, token: str) -> bool:
    return unit("greedy", before[-40:], token) < 0.5


def generation(prompt: str) -> str:
    n = 1 + int(unit("n", prompt) * 3)
    return " " + " ".join(_WORDS[int(unit(str(i), prompt) * len(_WORDS))] for i in range(n)) + "\nmore text"


def fits(schema: dict[str, Any], prompt: str) -> dict[str, Any]:
    """A deterministic object that fits a flat JSON schema (integers within their bounds)."""
    out: dict[str, Any] = {}
    for name, prop in schema.get("properties", {}).items():
        if prop.get("type") == "integer":
            lo, hi = int(prop.get("minimum", 0)), int(prop.get("maximum", 10))
            out[name] = lo + int(unit("fits", name, prompt) * (hi - lo + 1))
        else:
            out[name] = f"{name} of the fixture model"
    return out


def hash_vectors(texts: list[str]) -> list[list[float]]:
    """Deterministic 8-dimensional vectors of bags of words (no model)."""
    out = []
    for text in texts:
        vec = [0.0] * 8
        for word in text.lower().split():
            vec[int(unit("embed", word) * 8)] += 1.0
        out.append(vec)
    return out


class _QuietServer(ThreadingHTTPServer):
    """A client that goes away mid-request (a SIGKILLed run, a dropped-connection fault) is part
    of what the tests do: no traceback for it on stderr. Anything else is still printed."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


class FakeOpenAIServer:
    """Start with `with FakeOpenAIServer(...) as server:`; `server.url` is the base URL (…/v1)."""

    def __init__(
        self,
        *,
        latency: float = 0.0,
        fault_rate: float = 0.0,
        faults: tuple[str, ...] = RETRYABLE_FAULTS,
        seed: int = 0,
        retry_after: str | None = "0.05",
        stall: float = 1.0,
        echo_logprobs: bool = True,
        bos: str | None = None,
        port: int = 0,
    ) -> None:
        self.port = port
        self.latency = latency
        self.fault_rate = fault_rate
        self.faults = faults
        self.retry_after = retry_after
        self.stall = stall
        self.echo_logprobs = echo_logprobs
        self.bos = bos
        self.fail_if_contains: str | None = None
        # /embeddings: texts -> vectors (default: hash vectors), and a deliberate defect of every reply:
        # "count" (one vector short), "nan", "nonlist" (embedding is a string), "badindex" (every index 0)
        self.embedder: Callable[[list[str]], list[list[float]]] = hash_vectors
        self.embed_fault: str | None = None
        # A request whose body contains a key fails that many times in a row first (a streak
        # of the fault kinds in `faults`, in turn), then is answered.
        self.streaks: dict[str, int] = {}
        self.replies: list[tuple[float, str]] = []  # (time.monotonic() when sent, prompt) of every 200 answer
        self.script: deque[str] = deque()
        self.calls = 0
        self.ok = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.connections = 0  # TCP connections accepted (keep-alive reuse keeps this low)
        self.faults_served: Counter[str] = Counter()
        self.auth: list[str] = []
        self.bodies: list[dict[str, Any]] = []
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._sockets: list[socket.socket] = []  # every accepted connection, closed by stop()

    # ---- lifecycle --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> FakeOpenAIServer:
        server = self

        class Handler(_Handler):
            owner = server

        httpd = _QuietServer(("127.0.0.1", self.port), Handler)
        httpd.daemon_threads = True
        httpd.block_on_close = False  # type: ignore[attr-defined]
        self._httpd = httpd
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening and hang up every open connection (a server that went away)."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- behaviour --------------------------------------------------------------------------

    def pick_fault(self, body: dict[str, Any]) -> str | None:
        with self._lock:
            self.calls += 1
            self.bodies.append(body)
            text = json.dumps(body)
            if self.fail_if_contains and self.fail_if_contains in text:
                return "500"
            for key, left in self.streaks.items():
                if left and key in text:
                    self.streaks[key] = left - 1
                    return self.faults[left % len(self.faults)]
            if self.script:
                return self.script.popleft()
            if self.fault_rate and self._rng.random() < self.fault_rate:
                return self._rng.choice(self.faults)
            return None

    def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        prompt = body.get("prompt", "")
        prompt = prompt[0] if isinstance(prompt, list) else prompt
        max_tokens = int(body.get("max_tokens") or 16)
        if body.get("echo"):
            return self._echo(prompt, max_tokens, body.get("logprobs"))
        text = self._cut(generation(prompt), body.get("stop"))
        usage = {"prompt_tokens": len(tokenize(prompt)), "completion_tokens": len(tokenize(text))}
        return {"id": "cmpl-1", "object": "text_completion", "model": body.get("model"),
                "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": "stop"}], "usage": usage}

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        messages = body.get("messages") or []
        prompt = "\n".join(f"{m['role']}: {m['content']}" for m in messages)
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_schema":  # structured output: one object that fits the schema
            text = json.dumps(fits(fmt["json_schema"]["schema"], prompt))
        else:
            text = self._cut(generation(prompt), body.get("stop"))
        usage = {"prompt_tokens": len(tokenize(prompt)), "completion_tokens": len(tokenize(text))}
        return {"id": "chat-1", "object": "chat.completion", "model": body.get("model"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": usage}

    def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else list(texts or [])
        vectors: list[Any] = [list(v) for v in self.embedder(texts)]
        items = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        if self.embed_fault == "count":
            items = items[:-1]
        elif self.embed_fault == "nan" and items:
            items[0]["embedding"][0] = float("nan")
        elif self.embed_fault == "nonlist" and items:
            items[0]["embedding"] = "AAAAAA=="
        elif self.embed_fault == "badindex":
            for item in items:
                item["index"] = 0
        usage = {"prompt_tokens": sum(len(tokenize(t)) for t in texts)}
        usage["total_tokens"] = usage["prompt_tokens"]
        return {"object": "list", "model": body.get("model"), "data": items[::-1], "usage": usage}

    @staticmethod
    def _cut(text: str, stop: Any) -> str:
        for s in [stop] if isinstance(stop, str) else (stop or []):
            if s and s in text:
                text = text[: text.index(s)]
        return text

    def _echo(self, prompt: str, max_tokens: int, logprobs: Any) -> dict[str, Any]:
        tokens = ([self.bos] if self.bos else []) + tokenize(prompt)
        values: list[float | None] = []
        tops: list[dict[str, float] | None] = []
        offsets: list[int] = []
        seen = ""
        for i, tok in enumerate(tokens):
            offsets.append(len(seen))
            if i == 0:
                values.append(None)
                tops.append(None)
            else:
                lp = token_logprob(seen, tok)
                values.append(lp)
                tops.append({tok: lp} if is_argmax(seen, tok) else {tok: lp, " other": lp + 0.25})
            seen += tok
        n_prompt = len(tokens)
        if max_tokens > 0:
            offsets.append(len(seen))
            tokens.append(" ok")
            values.append(-0.5)
            tops.append({" ok": -0.5})
        lp_obj = {"tokens": tokens, "token_logprobs": values, "top_logprobs": tops, "text_offset": offsets}
        return {"id": "cmpl-echo", "object": "text_completion",
                "choices": [{"index": 0, "text": seen + (" ok" if max_tokens > 0 else ""),
                             "logprobs": lp_obj if (self.echo_logprobs and logprobs is not None) else None,
                             "finish_reason": "length"}],
                "usage": {"prompt_tokens": n_prompt, "completion_tokens": 1 if max_tokens > 0 else 0}}


class _Handler(BaseHTTPRequestHandler):
    owner: FakeOpenAIServer
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without this, Nagle + delayed ACK add 40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.owner._lock:
            self.owner.connections += 1
            self.owner._sockets.append(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload)
        except OSError:  # the client timed out and hung up: expected under fault injection
            self.close_connection = True

    def do_POST(self) -> None:
        srv = self.owner
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            self._send(400, b'{"error": {"message": "bad json"}}')
            return
        with srv._lock:
            srv.in_flight += 1
            srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
            srv.auth.append(self.headers.get("Authorization", ""))
        try:
            self._answer(srv, body)
        finally:
            with srv._lock:
                srv.in_flight -= 1

    def _answer(self, srv: FakeOpenAIServer, body: dict[str, Any]) -> None:
        fault = srv.pick_fault(body)
        if fault:
            with srv._lock:
                srv.faults_served[fault] += 1
        if srv.latency:
            time.sleep(srv.latency)
        if fault == "429":
            headers = {"Retry-After": srv.retry_after} if srv.retry_after is not None else {}
            self._send(429, b'{"error": {"message": "Rate limit reached", "type": "requests"}}', headers)
            return
        if fault in ("500", "503"):
            self._send(int(fault), b'{"error": {"message": "server overloaded"}}')
            return
        if fault == "garbage":
            self._send(200, b'{"choices": [{"text": "trunc')
            return
        if fault == "missing":
            self._send(200, b'{"id": "x", "object": "text_completion"}')
            return
        if fault == "drop":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if fault == "timeout":
            time.sleep(srv.stall)
        if fault == "echo_key":
            message = json.dumps({"error": {"message": f"bad request from {self.headers.get('Authorization')}"}})
            self._send(400, message.encode())
            return
        if fault == "echo_key_at_cut":  # the key starts 5 characters before error snippets are cut (200)
            message = '{"error": {"message": "' + "x" * 164 + f" {self.headers.get('Authorization')}" + '"}}'
            self._send(400, message.encode())
            return
        if fault == "401":
            self._send(401, b'{"error": {"message": "Incorrect API key provided"}}')
            return
        if self.path.endswith("/embeddings"):
            payload = srv.embeddings(body)
        elif self.path.endswith("/chat/completions"):
            payload = srv.chat(body)
        elif self.path.endswith("/completions"):
            payload = srv.completion(body)
        else:
            self._send(404, b'{"error": {"message": "no such route"}}')
            return
        with srv._lock:
            srv.ok += 1
        self._send(200, json.dumps(payload).encode())
        prompt = body.get("prompt") if "prompt" in body else json.dumps(body.get("messages", body.get("input")))
        with srv._lock:
            srv.replies.append((time.monotonic(), str(prompt)))
