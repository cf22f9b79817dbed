"""The Backend contract: batch in, batch out, one method per request kind; a base class with defaults.

A backend is constructed cheaply: `identity()` must not load weights, so a fully cached
rerun never loads the model. Heavy work happens on the first request.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from evalharness.errors import BackendError
from evalharness.registry import Registry
from evalharness.types import Request, RequestKind, Response


class Backend:
    """What the runner needs from a model: subclass it (built-ins and plugins alike).

    Every backend sets `name`, `supports` (the request kinds it serves) and `batch_size`, and
    implements `identity()` and the method of each kind it supports. The other members have
    defaults that describe a plain local model, so callers never probe for them.
    """

    name: str = "backend"
    supports: frozenset[RequestKind] = frozenset()
    # How many requests the runner hands over per call (and caches per step).
    batch_size: int = 1
    # Requests per runner step when it differs from batch_size (API backends keep more in flight).
    chunk_size: int | None = None
    # Whether `generate_json` decodes under a JSON schema (structured output for rubric judges).
    supports_json_schema: bool = False
    # Accelerators one replica needs (the Ray executor reserves this many per actor).
    gpus_per_replica: int = 1
    # Whether `stream` keeps requests in flight across runner steps (API backends).
    streams: bool = False
    # Model args that change how fast, not what comes out: left out of a run's identity (the
    # output folder's name and the check that refuses another configuration's folder).
    runtime_args: frozenset[str] = frozenset({"batch_size", "max_concurrency", "device"})

    # Whether prompts go through a chat template (or a chat API) by default; a backend that finds
    # out lazily (from its tokenizer) overrides it with a property.
    is_chat: bool = False

    def identity(self) -> dict[str, Any]:
        """What determines outputs (model, revision, dtype, template); goes into cache keys."""
        raise NotImplementedError(f"backend {self.name!r} does not define identity()")

    def generate(self, requests: Sequence[Request]) -> list[Response]:
        raise BackendError(f"backend {self.name!r} cannot serve 'generate' requests")

    def loglikelihood(self, requests: Sequence[Request]) -> list[Response]:
        raise BackendError(f"backend {self.name!r} cannot serve 'loglikelihood' requests")

    def loglikelihood_rolling(self, requests: Sequence[Request]) -> list[Response]:
        raise BackendError(f"backend {self.name!r} cannot serve 'loglikelihood_rolling' requests")

    def embed(self, requests: Sequence[Request]) -> list[Response]:
        """One embedding per request (`Response.embedding`) of the request's `prompt`."""
        raise BackendError(f"backend {self.name!r} cannot serve 'embed' requests")

    def generate_json(self, requests: Sequence[Request], schema: dict[str, Any]) -> list[Response]:
        """Generate under a JSON schema; only called when `supports_json_schema` is true."""
        raise BackendError(f"backend {self.name!r} cannot decode under a JSON schema")

    def stream(self, kind: RequestKind, requests: Sequence[Request], size: int) -> Iterator[tuple[list[int], list[Response]]]:
        """Yield (indices, responses) pieces as they finish, in any order; only called when `streams` is true."""
        raise BackendError(f"backend {self.name!r} does not stream")

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        """USD for these tokens; None where the price is unknown. Local models have no price (see `priced`)."""
        return None

    # Whether the backend has a notion of price at all (API backends); local models' usage has no cost fields.
    priced: bool = False

    def close(self) -> None:
        """Release connections, engines or worker processes; the backend may be used again afterwards."""
        return None


BACKENDS: Registry[Any] = Registry("backend", entry_point_group="evalharness.backends")


def run_kind(backend: Backend, kind: RequestKind, requests: Sequence[Request]) -> list[Response]:
    """Dispatch a homogeneous batch to the backend method for its kind."""
    if kind not in backend.supports:
        raise BackendError(f"backend {backend.name!r} cannot serve {kind!r} requests")
    method = {
        "generate": backend.generate,
        "loglikelihood": backend.loglikelihood,
        "loglikelihood_rolling": backend.loglikelihood_rolling,
        "embed": backend.embed,
    }[kind]
    responses = method(requests)
    if len(responses) != len(requests):
        raise BackendError(
            f"backend {backend.name!r} returned {len(responses)} responses for {len(requests)} requests"
        )
    return responses


def parse_model_args(text: str | None) -> dict[str, str]:
    """Parse `k=v,k2=v2` (lm-evaluation-harness style) into a dict of strings."""
    args: dict[str, str] = {}
    seen: dict[str, int] = {}
    if not text:
        return args
    for position, part in enumerate(text.split(","), start=1):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            # The part's text is not echoed: it may be a secret typed with the wrong separator.
            raise BackendError(f"--model-args: item {position} is not of the form key=value")
        key = key.strip()
        if key in seen:  # last-wins would silently drop one of them
            raise BackendError(f"--model-args: {key} is given twice (items {seen[key]} and {position})")
        seen[key] = position
        args[key] = value.strip()
    return args


def load_backend(name: str, model_args: dict[str, Any] | None = None) -> Backend:
    """Build a backend by registry name; unknown arguments are a clear error."""
    factory = BACKENDS.get(name)
    try:
        backend = factory(**(model_args or {}))
    except TypeError as exc:
        raise BackendError(f"backend {name!r}: bad --model-args: {exc}") from exc
    if not isinstance(backend, Backend):
        raise BackendError(f"backend {name!r} ({type(backend).__module__}.{type(backend).__name__}) does not subclass "
                           "evalharness.backends.base.Backend; plugin backends must")
    return backend


def as_bool(value: Any) -> bool:
    """Read a boolean from a model-args string."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise BackendError(f"expected a boolean, got {value!r}")
