"""Core value types that flow through the pipeline. Frozen, no I/O.

Flow: Sample -> Request(s) -> Response(s) -> Output -> Score(s) -> MetricResult.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

RequestKind = Literal["generate", "loglikelihood", "loglikelihood_rolling", "embed"]
REQUEST_KINDS: tuple[RequestKind, ...] = ("generate", "loglikelihood", "loglikelihood_rolling", "embed")


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
    context; for loglikelihood_rolling, `prompt` is the whole document; for embed, `prompt` is
    the text to encode.
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
    embed: `embedding` (the text's vector, as the backend returns it).
    `error` is set when the request failed after retries (never scored as wrong).
    `model_tokens`: the token positions a local model ran for this answer (its share of a packed
    row or a shared prefix computed once); None where the backend does not say (APIs).
    """

    text: str | None = None
    logprob: float | None = None
    is_greedy: bool | None = None
    n_tokens: int | None = None
    embedding: tuple[float, ...] | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    model_tokens: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Response:
        if data.get("embedding") is not None:
            data = {**data, "embedding": tuple(data["embedding"])}
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
    """A corpus-level metric value with its confidence interval (evalharness.stats.bootstrap).

    `ci_low`/`ci_high` are None where no interval is defined (one sample, no resamples, a
    spread of zero with nothing to bound it); `ci_reason` then says why. `stderr` is None where
    it is undefined (fewer than two samples). `to_json` writes strict JSON: NaN becomes null.
    """

    name: str
    value: float
    ci_low: float | None
    ci_high: float | None
    stderr: float | None
    n: int
    higher_is_better: bool
    ci_method: str = "bootstrap-percentile"
    resamples: int = 0
    ci_reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("value", "ci_low", "ci_high", "stderr"):
            v = out[key]
            if isinstance(v, float) and not math.isfinite(v):
                out[key] = None
        if out["ci_reason"] is None:
            del out["ci_reason"]
        return out


@dataclass
class RunStats:
    """Request and token counts of one run (or one judge), as results.json's usage blocks report them."""

    requests: int = 0
    unique: int = 0
    cache_hits: int = 0
    computed: int = 0
    failed: int = 0
    prompt_tokens: int = 0  # every answer used, cached ones included
    completion_tokens: int = 0
    computed_prompt_tokens: int = 0  # only the answers the backend computed in this run
    computed_completion_tokens: int = 0
    # Of the answers computed in this run that say what the model ran (local models): their
    # prompt + completion tokens, and the token positions actually run (shared prefixes once).
    tokens_requested: int = 0
    tokens_computed: int = 0
    batches: int = 0
    errors: list[str] = field(default_factory=list)
