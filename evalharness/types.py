"""Core value types that flow through the pipeline. Frozen, no I/O.

Flow: Sample -> Request(s) -> Response(s) -> Output -> Score(s) -> MetricResult.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

RequestKind = Literal["generate", "loglikelihood", "loglikelihood_rolling"]
REQUEST_KINDS: tuple[RequestKind, ...] = ("generate", "loglikelihood", "loglikelihood_rolling")


@dataclass(frozen=True)
class Message:
    """One chat message."""

    role: str
    content: str


@dataclass(frozen=True)
class Sample:
    """One evaluation item, after field mapping.

    `fields` holds the mapped row (what templates see); `choices`/`gold` are set for
    multiple choice; `references` for generation; `document` for perplexity.
    """

    id: str
    fields: dict[str, Any]
    choices: tuple[str, ...] = ()
    gold: int | None = None
    references: tuple[str, ...] = ()
    document: str | None = None


@dataclass(frozen=True)
class GenParams:
    """Decoding parameters of a generate request."""

    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int = 0


@dataclass(frozen=True)
class Request:
    """One model call.

    Exactly one of `prompt` (plain text) or `messages` (chat; the backend applies the
    model's chat template) is set. For loglikelihood, `continuation` is scored given the
    context; for loglikelihood_rolling, `prompt` is the whole document.
    `repeat` separates sampled repeats of the same request in the cache.
    """

    kind: RequestKind
    prompt: str | None = None
    messages: tuple[Message, ...] | None = None
    continuation: str = ""
    gen: GenParams | None = None
    repeat: int = 0

    def cache_payload(self) -> dict[str, Any]:
        """What identifies this request's output (given the backend identity)."""
        payload: dict[str, Any] = {"kind": self.kind}
        if self.prompt is not None:
            payload["prompt"] = self.prompt
        if self.messages is not None:
            payload["messages"] = [[m.role, m.content] for m in self.messages]
        if self.kind == "loglikelihood":
            payload["continuation"] = self.continuation
        if self.kind == "generate" and self.gen is not None:
            gen = asdict(self.gen)
            gen["stop"] = list(self.gen.stop)
            if self.gen.temperature == 0.0:
                # Greedy decoding ignores these; dropping them lets equal requests share cache.
                gen.pop("top_p")
                gen.pop("seed")
            else:
                payload["repeat"] = self.repeat
            payload["gen"] = gen
        return payload


@dataclass(frozen=True)
class Response:
    """A backend's answer to one Request.

    generate: `text`. loglikelihood: `logprob`, `is_greedy`. rolling: `logprob`, `n_tokens`.
    `error` is set when the request failed after retries (never scored as wrong).
    `model_tokens`: the token positions a local model ran for this answer (its share of a packed
    row or a shared prefix computed once); None where the backend does not say (APIs).
    """

    text: str | None = None
    logprob: float | None = None
    is_greedy: bool | None = None
    n_tokens: int | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    model_tokens: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Response:
        return cls(**data)


@dataclass(frozen=True)
class Output:
    """Everything the model produced for one sample, ready to score.

    generate: `generations` (one per repeat) and `extracted` (after answer extraction).
    multiple_choice: `logprobs` and `is_greedy`, one per choice.
    perplexity: `logprobs` holds the document log-likelihood, `n_tokens` its token count.
    """

    generations: tuple[str, ...] = ()
    extracted: tuple[str, ...] = ()
    logprobs: tuple[float, ...] = ()
    is_greedy: tuple[bool, ...] = ()
    n_tokens: int = 0


@dataclass(frozen=True)
class Score:
    """A metric's verdict on one sample.

    `value` is the per-sample number shown in logs and used by paired tests; `stats` are the
    sufficient statistics the metric's `aggregate` consumes (defaults to `(value,)`).
    """

    value: float
    stats: tuple[float, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def agg_stats(self) -> tuple[float, ...]:
        return self.stats if self.stats else (self.value,)


@dataclass(frozen=True)
class MetricResult:
    """A corpus-level metric value with its bootstrap confidence interval."""

    name: str
    value: float
    ci_low: float
    ci_high: float
    stderr: float
    n: int
    higher_is_better: bool
    ci_method: str = "bootstrap-percentile"
    resamples: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
