"""`openai-embeddings`: `embed` requests through an OpenAI-compatible `/v1/embeddings` endpoint.

For OpenAI and any compatible server (vLLM, llama.cpp, TEI, Ollama, ...). It shares the chat and
completions backends' machinery (backend.py): the key from the environment (never a model arg),
the adaptive concurrency limit, retries within a time budget, the final sweep, the stop on a
server that is not there, and the runner's streaming (answers cached in pieces as they arrive).

Texts go `batch_size` to a call (`input` is a list); the server's `index` of each item says which
input it embeds, whatever order the items come in. A reply that is not JSON or has no `data` list
is retried like any garbled reply; a well-formed reply that cannot be right (too few or too many
vectors, an index out of range or repeated, a vector that is not a list of finite numbers, vectors
of different sizes) fails its texts at once: the same server would answer the same way again.
A failed text comes back as a Response with `error` (the task reports it in one line; a rerun asks
again). The call's `usage.prompt_tokens` is split over its texts (their sum is the call's count).

`truncate_prompt_tokens=N` (vLLM's extension of the request; -1: the model's own limit) has the
server cut each text to N tokens, as a local sentence-transformers encoder cuts at max_seq_length;
without it vLLM refuses a text longer than its max_model_len (HTTP 400, the text fails).
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, cast

from evalharness.backends.openai import aio
from evalharness.backends.openai.common import IMPL_VERSION, OpenAIOptions, _OpenAIBase
from evalharness.backends.options import at_least
from evalharness.errors import BackendError
from evalharness.types import Request, RequestKind, Response

DEFAULT_BATCH = 32


@dataclass(frozen=True)
class EmbeddingsOptions(OpenAIOptions):
    """The API backends' model args, plus `dimensions` and `truncate_prompt_tokens` (sent to the server when set)."""

    dimensions: int | None = at_least(1, None)
    truncate_prompt_tokens: int | None = at_least(-1, None)


class OpenAIEmbeddingsBackend(_OpenAIBase):
    """Embeddings: `--model openai-embeddings --model-args model=NAME[,base_url=URL,batch_size=N,dimensions=D,truncate_prompt_tokens=T]`."""

    name = "openai-embeddings"
    supports: frozenset[RequestKind] = frozenset({"embed"})
    priced = True

    options_class: ClassVar[type[OpenAIOptions]] = EmbeddingsOptions

    def __init__(self, model: str, **model_args: Any) -> None:
        base_url = model_args.get("base_url")
        if isinstance(base_url, str):  # an endpoint URL works too
            base_url = base_url.strip().rstrip("/")
            model_args["base_url"] = base_url[: -len("/embeddings")] if base_url.endswith("/embeddings") else base_url
        super().__init__(model, **model_args)
        opts = cast(EmbeddingsOptions, self.options)
        # texts per HTTP call (the runner's pieces stay `chunk_size`: several calls in flight at once)
        self.batch_size = opts.batch_size if isinstance(opts.batch_size, int) else DEFAULT_BATCH
        self.dimensions = opts.dimensions
        self.truncate_prompt_tokens = opts.truncate_prompt_tokens

    def identity(self) -> dict[str, Any]:
        ident = {"backend": self.name, "impl": IMPL_VERSION, "model": self.model, "base_url": self.base_url}
        if self.dimensions is not None:
            ident["dimensions"] = self.dimensions
        if self.truncate_prompt_tokens is not None:  # cut texts embed differently (absent: keys as before)
            ident["truncate_prompt_tokens"] = self.truncate_prompt_tokens
        return ident

    def generate(self, requests: Sequence[Request]) -> list[Response]:
        raise BackendError(f"backend {self.name!r} only embeds text ('embed' requests); use openai-chat or "
                           "openai-completions to generate")

    def loglikelihood(self, requests: Sequence[Request]) -> list[Response]:
        raise BackendError(f"backend {self.name!r} only embeds text ('embed' requests); use openai-completions "
                           "to score log-likelihoods")

    # ---- batches of texts -------------------------------------------------------------------

    def _batches(self, requests: Sequence[Request]) -> list[list[Request]]:
        return [list(requests[i : i + self.batch_size]) for i in range(0, len(requests), self.batch_size)]

    def _spread(self, batch: list[Request], result: list[Response] | aio.Failed) -> list[Response]:
        if isinstance(result, aio.Failed):
            return [Response(error=f"{self.name}: {result.message}") for _ in batch]
        return result

    def embed(self, requests: Sequence[Request]) -> list[Response]:
        if not requests:
            return []
        batches = self._batches(requests)
        self._get_client()

        async def run() -> list[list[Response] | aio.Failed]:
            return await aio.run_all(batches, lambda batch: self._watched(lambda: self._embed_batch(batch), batch),
                                     self.limiter, self.policy, rng=self._rng)

        results = self._loop.run(run())
        return [r for batch, result in zip(batches, results, strict=True) for r in self._spread(batch, result)]

    def stream(self, kind: RequestKind, requests: Sequence[Request], size: int) -> Iterator[tuple[list[int], list[Response]]]:
        """Every text, `batch_size` to a call, calls concurrent; handed back in pieces as calls finish."""
        if kind != "embed":
            raise BackendError(f"backend {self.name!r} cannot serve {kind!r} requests")
        if not requests:
            return
        batches = self._batches(requests)
        self._get_client()

        def begin(put: Callable[[int, Any], None]) -> Any:
            def put_batch(b: int, result: Any) -> None:
                for j, response in enumerate(self._spread(batches[b], result)):
                    put(b * self.batch_size + j, response)

            return aio.feed_all(batches, lambda batch: self._watched(lambda: self._embed_batch(batch), batch), self.limiter, self.policy,
                                rng=self._rng, put=put_batch, workers=4 * self.max_concurrency)

        for piece in self._loop.stream(begin, size=max(1, size), seconds=self.flush_seconds):
            yield [i for i, _ in piece], [r for _, r in piece]

    def _attempt(self, kind: RequestKind) -> Callable[[Request], Awaitable[Response]]:
        raise BackendError(f"backend {self.name!r} cannot serve {kind!r} requests")

    # ---- one call ---------------------------------------------------------------------------

    def _parse_json(self, content: bytes) -> dict[str, Any]:
        """A JSON object with a `data` list (the chat/completions check for `choices` does not apply)."""
        try:
            data = json.loads(content)
        except (ValueError, UnicodeDecodeError):
            text = content[:200].decode("utf-8", "replace")
            raise aio.Retryable(f"malformed response from the server (not JSON): {self._snip(text)!r}") from None
        if not isinstance(data, dict):
            raise aio.Retryable(f"malformed response from the server: expected a JSON object, got {type(data).__name__}")
        if not isinstance(data.get("data"), list):
            error = data.get("error")
            if error:
                raise aio.Retryable(f"server error in a 200 response: {self._snip(json.dumps(error))}")
            raise aio.Retryable("malformed response from the server: no 'data' list")
        return data

    async def _embed_batch(self, batch: list[Request]) -> list[Response]:
        body: dict[str, Any] = {"model": self.model, "input": [r.prompt or "" for r in batch], "encoding_format": "float"}
        if self.dimensions is not None:
            body["dimensions"] = self.dimensions
        if self.truncate_prompt_tokens is not None:
            body["truncate_prompt_tokens"] = self.truncate_prompt_tokens
        data = await self._call("/embeddings", body)
        vectors = _vectors(data["data"], len(batch))
        prompt_tokens, _ = self._usage(data)
        share, extra = divmod(prompt_tokens, len(batch))
        return [Response(embedding=vec, prompt_tokens=share + (1 if i < extra else 0)) for i, vec in enumerate(vectors)]


def _vectors(items: list[Any], n: int) -> list[tuple[float, ...]]:
    """The n vectors in input order (by each item's `index`; list order where no item has one)."""
    if len(items) != n:
        raise aio.GiveUp(f"the server returned {len(items)} embeddings for {n} inputs")
    has_index = [isinstance(it, dict) and "index" in it for it in items]
    if any(has_index) and not all(has_index):
        raise aio.GiveUp("the server gave an 'index' to some embeddings and not to others")
    out: list[tuple[float, ...] | None] = [None] * n
    for pos, item in enumerate(items):
        if not isinstance(item, dict):
            raise aio.GiveUp(f"data[{pos}] is not an object")
        index = item["index"] if all(has_index) else pos
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < n or out[index] is not None:
            raise aio.GiveUp(f"data[{pos}].index is {index!r}: not a distinct input position 0..{n - 1}")
        vec = item.get("embedding")
        if not isinstance(vec, list) or not vec:
            raise aio.GiveUp(f"data[{pos}].embedding is not a list of numbers (got {type(vec).__name__}; "
                             "base64 encoding is not read)")
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in vec):
            raise aio.GiveUp(f"data[{pos}].embedding holds a value that is not a finite number")
        out[index] = tuple(float(x) for x in vec)
    sizes = {len(v) for v in out if v is not None}
    if len(sizes) != 1:
        raise aio.GiveUp(f"the server returned embeddings of different sizes ({', '.join(map(str, sorted(sizes)))})")
    return [v for v in out if v is not None]
