"""OpenAI-compatible APIs: `openai-chat` (chat completions) and `openai-completions` (completions).

For OpenAI and any compatible server (vLLM, llama.cpp, Ollama, ...). Requests run concurrently
on a private event loop under an adaptive limit, transient failures retried within a time budget
(`retry_budget`, default 120 s per request) and then once more in a final sweep at reduced
concurrency (`aio`). The runner takes them through `stream`: every request of a kind is in the
pipeline at once and finished ones come back in pieces at least every `flush_seconds`, which the
runner caches while the next requests are already in flight (a batch per call would leave every
slot idle while each batch is saved), so a killed run loses little more than what was in flight.
A request that fails still comes back as a Response with `error`: its sample is marked failed,
never scored, and retried on the next run.

A server that is not there stops the run with one line instead of failing every request slowly:
one that has never answered and refuses connections (or whose host name does not resolve) for
`CONNECT_GRACE` seconds, or one that has refused every connection for a whole `retry_budget`.

HTTP goes through `transport.py` (the openai package's client by default, or httpcore with
`transport=httpcore`); its CPU cost per request is measured in BENCHMARKS.md (api_bench).

Log-likelihood uses the completions API with `echo=True, logprobs=1, max_tokens=1` (as
lm-evaluation-harness's `local-completions`): the server echoes the prompt's tokens with their
log-probabilities and character offsets. We send text, not token ids, so the continuation's
tokens are found by offsets, counted back from the end of the prompt (robust to a BOS token the
server adds in front): every token that ends inside the continuation is scored. A token that
straddles the context/continuation boundary is scored whole; lm-eval, which tokenizes the two
apart, would split it. The prompt's first token has no log-probability (nothing precedes it):
lm-eval sends token ids with an end-of-text token in front to score it; here `prefix=TEXT` (e.g.
`prefix=<|endoftext|>`) is put before rolling documents and empty contexts for the same effect.
Without a prefix a rolling document's first token is left out, and `n_tokens` counts only the
scored tokens. A server that returns no prompt log-probabilities is a BackendError on the first
request, before any other work.

The API key is never a model arg: it is read from OPENAI_API_KEY or the variable named by
`api_key_env`, sent only in the Authorization header, and scrubbed from every error message.
"""

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, cast

from evalharness.backends.openai import aio
from evalharness.backends.openai.common import (
    CONNECT_GRACE,
    DEFAULT_KEY_ENV,
    IMPL_VERSION,
    OPENAI_URL,
    OpenAIOptions,
    _OpenAIBase,
)
from evalharness.backends.openai.echo import EchoError, score_echo
from evalharness.errors import BackendError
from evalharness.types import GenParams, Request, RequestKind, Response

__all__ = ["CONNECT_GRACE", "DEFAULT_KEY_ENV", "IMPL_VERSION", "OPENAI_URL", "ChatOptions", "CompletionsOptions",
           "OpenAIChatBackend", "OpenAICompletionsBackend", "OpenAIOptions"]


@dataclass(frozen=True)
class ChatOptions(OpenAIOptions):
    structured_output: bool = True


@dataclass(frozen=True)
class CompletionsOptions(OpenAIOptions):
    prefix: str = ""


class OpenAIChatBackend(_OpenAIBase):
    """Chat completions: `--model openai-chat --model-args model=NAME[,base_url=URL]`.

    A plain-text prompt is sent as one user message; the server applies the model's template.
    """

    name = "openai-chat"
    is_chat = True

    options_class: ClassVar[type[OpenAIOptions]] = ChatOptions

    def __init__(self, model: str, **model_args: Any) -> None:
        super().__init__(model, **model_args)
        structured = cast(ChatOptions, self.options).structured_output
        # Judges with a JSON verdict (rubrics) ask for it under their schema (judging/engine.py):
        # OpenAI's structured outputs; vLLM's server decodes under the schema. A server that
        # rejects `response_format` needs structured_output=false.
        self.supports_json_schema = structured

    def generate_json(self, requests: Sequence[Request], schema: dict[str, Any]) -> list[Response]:
        """Generate with `response_format` set to `schema` (the reply is one JSON object that fits it)."""
        fmt = {"type": "json_schema", "json_schema": {"name": "verdict", "schema": schema, "strict": True}}
        return self._run(requests, lambda r: self._generate_one(r, fmt))

    async def _generate_one(self, request: Request, response_format: dict[str, Any] | None = None) -> Response:
        gen = request.gen or GenParams()
        if gen.max_tokens < 1:
            return Response(text="")
        if request.messages is not None:
            messages = [{"role": m.role, "content": m.content} for m in request.messages]
        else:
            messages = [{"role": "user", "content": request.prompt or ""}]
        body = {"model": self.model, "messages": messages, **self._gen_body(gen, request.repeat)}
        if response_format is not None:
            body["response_format"] = response_format
        data = await self._call("/chat/completions", body)
        choice = data["choices"][0]
        message = choice.get("message")
        if not isinstance(message, dict):
            raise aio.Retryable("malformed response from the server: choices[0] has no 'message'")
        text = message.get("content")
        if text is None:
            raise aio.GiveUp(f"the reply has no text (finish_reason={choice.get('finish_reason')!r})")
        if not isinstance(text, str):
            raise aio.Retryable("malformed response from the server: message.content is not a string")
        prompt_tokens, completion_tokens = self._usage(data)
        return Response(text=self._cut(text, gen), prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)


class OpenAICompletionsBackend(_OpenAIBase):
    """Completions: generation, and log-likelihood where the server echoes prompt logprobs.

    Extra model arg: `prefix=TEXT`, put before rolling documents and empty contexts so their
    first token gets a log-probability (e.g. `<|endoftext|>`; see the module docstring).
    """

    name = "openai-completions"
    supports: frozenset[RequestKind] = frozenset({"generate", "loglikelihood", "loglikelihood_rolling"})

    options_class: ClassVar[type[OpenAIOptions]] = CompletionsOptions

    def __init__(self, model: str, **model_args: Any) -> None:
        super().__init__(model, **model_args)
        self.prefix = cast(CompletionsOptions, self.options).prefix or ""
        self._echo_checked = False

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "prefix": self.prefix}

    @staticmethod
    def _prompt(request: Request) -> str:
        if request.messages is not None:
            raise BackendError("openai-completions takes plain prompts; use openai-chat for chat messages")
        return request.prompt or ""

    async def _generate_one(self, request: Request) -> Response:
        gen = request.gen or GenParams()
        if gen.max_tokens < 1:
            return Response(text="")
        body = {"model": self.model, "prompt": self._prompt(request), **self._gen_body(gen, request.repeat)}
        data = await self._call("/completions", body)
        text = data["choices"][0].get("text")
        if not isinstance(text, str):
            raise aio.Retryable("malformed response from the server: choices[0].text is not a string")
        prompt_tokens, completion_tokens = self._usage(data)
        return Response(text=self._cut(text, gen), prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)

    # ---- log-likelihood -----------------------------------------------------------------------

    def _attempt(self, kind: RequestKind) -> Callable[[Request], Awaitable[Response]]:
        if kind == "generate":
            return self._generate_one
        rolling = kind == "loglikelihood_rolling"

        def one(request: Request) -> Awaitable[Response]:
            self._prompt(request)  # chat messages: a clear error
            return self._echo_one(request, rolling)

        return one

    def loglikelihood(self, requests: Sequence[Request]) -> list[Response]:
        return self._scored(requests, rolling=False)

    def loglikelihood_rolling(self, requests: Sequence[Request]) -> list[Response]:
        return self._scored(requests, rolling=True)

    def _scored(self, requests: Sequence[Request], rolling: bool) -> list[Response]:
        for r in requests:
            self._prompt(r)  # chat messages are refused before any call

        def one(r: Request) -> Awaitable[Response]:
            return self._echo_one(r, rolling)

        if self._echo_checked or not requests:
            return self._run(requests, one)
        # The first request goes alone: a server that cannot echo prompt logprobs fails here,
        # once, with a clear error, instead of failing every sample.
        first = self._run_raw(requests[:1], one)[0]
        if isinstance(first, aio.Failed) and not first.transient and first.message.startswith("HTTP 4"):
            raise BackendError(f"{self.name}: {self.base_url} refused a log-likelihood request (echo=True, logprobs=1): "
                               f"{first.message}")
        self._echo_checked = isinstance(first, Response)
        return [self._as_response(first), *self._run(requests[1:], one)]

    async def _echo_one(self, request: Request, rolling: bool) -> Response:
        if rolling:
            scored = request.prompt or ""
            context = self.prefix
        else:
            scored = request.continuation
            context = self._prompt(request) or self.prefix
        if not scored:
            return Response(logprob=0.0, is_greedy=True, n_tokens=0)
        body = {"model": self.model, "prompt": context + scored, "max_tokens": 1, "temperature": 0.0,
                "logprobs": 1, "echo": True}
        data = await self._call("/completions", body)
        prompt_tokens, completion_tokens = self._usage(data)
        try:
            logprob, greedy, n_tokens = score_echo(data["choices"][0].get("logprobs"), prompt_tokens, len(scored),
                                                   skip_first=rolling)
        except EchoError as exc:
            raise BackendError(
                f"{self.name}: {self.base_url} returned no prompt log-probabilities for echo=True, logprobs=1 ({exc}); "
                "this server cannot score log-likelihoods (vLLM's OpenAI server can)"
            ) from None
        return Response(logprob=logprob, is_greedy=greedy if not rolling else None, n_tokens=n_tokens,
                        prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
