"""The hf backend's options, loading (tokenizer, model, limits) and text-to-token encoding."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar

from evalharness.backends import prefix_cache
from evalharness.backends.base import Backend
from evalharness.backends.hf.files import _hub_commit, folder_fingerprint
from evalharness.backends.options import Options
from evalharness.errors import BackendError
from evalharness.types import Request, RequestKind

T = TypeVar("T")
R = TypeVar("R")

# Bump when a change here can change outputs, so old cache entries stop matching.
IMPL_VERSION = 1
_DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
           "float16": "float16", "fp16": "float16", "half": "float16", "auto": "auto"}
_TOKENIZER_INFINITY = 1000000000000000019884624838656  # lm-eval: "no limit" model_max_length
_DEFAULT_MAX_LENGTH = 2048  # lm-eval's default when neither config nor tokenizer says


@dataclass(frozen=True)
class HFOptions(Options):
    """The hf backend's model args. Every number is >= 1; `none` (or empty) leaves one unset."""

    none_words: ClassVar[frozenset[str]] = frozenset({"", "none"})
    min_int: ClassVar[int | None] = 1
    int_error: ClassVar[str] = "hf backend: {name} must be an integer, got {value!r}"
    min_error: ClassVar[str] = "hf backend: {name} must be >= 1, got {value!r}"
    bool_error: ClassVar[str] = "expected a boolean, got {value!r}"

    pretrained: str
    revision: str | None = None
    dtype: str = "float32"
    device: str = "cpu"
    batch_size: int | Literal["auto"] | None = 8
    max_length: int | None = None
    trust_remote_code: bool = False
    gguf_file: str | None = None
    threads: int | None = None
    stride: int | None = None
    add_bos_token: bool | None = None
    group_contexts: bool = True
    prefix_reuse: bool = True
    prefix_min_tokens: int | None = 64
    prefix_cache_mb: int | None = 1024


def _returned_cache(out: Any) -> Any:
    """The cache a forward pass returns (`cache` in transformers 5.x, `past_key_values` before)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


class HFCore(Backend):
    """Options, loading and encoding, shared by the scoring and generation halves of `HFBackend`."""

    name = "hf"
    supports: frozenset[RequestKind] = frozenset({"generate", "loglikelihood", "loglikelihood_rolling"})

    def __init__(self, **model_args: Any) -> None:
        opts = HFOptions.parse(model_args, owner=type(self).__name__, backend=self.name)
        self.options = opts
        self.pretrained = str(opts.pretrained)
        self.revision = opts.revision or None
        self.gguf_file = opts.gguf_file or None
        path = os.path.expanduser(self.pretrained)
        if os.path.isfile(path) and path.endswith(".gguf") and self.gguf_file is None:
            path, self.gguf_file = os.path.split(os.path.abspath(path))
        self.local_path: str | None = os.path.abspath(path) if os.path.isdir(path) else None
        if self.local_path is None and self._looks_like_path(self.pretrained):
            raise BackendError(f"hf backend: model folder {self.pretrained!r} does not exist")
        if str(opts.dtype).lower() not in _DTYPES:
            raise BackendError(f"hf backend: dtype must be one of {sorted(set(_DTYPES.values()))}, got {opts.dtype!r}")
        self.dtype = _DTYPES[str(opts.dtype).lower()]
        self.device = str(opts.device).lower()
        if self.device.split(":")[0] not in {"cpu", "cuda", "auto", "mps"}:
            raise BackendError(f"hf backend: device must be cpu, cuda[:N], mps or auto, got {opts.device!r}")
        self._auto_batch = opts.batch_size == "auto"
        auto_size = 8 if self.device == "cpu" else 64
        self.batch_size: int = auto_size if opts.batch_size == "auto" else opts.batch_size or 8
        self._micro = self.batch_size
        # Requests per runner hand-over (and per cache write): several forward batches, so the
        # choices of many questions are packed together and rows can be sorted by length.
        self.chunk_size = self.batch_size * 8
        self._max_length_arg = opts.max_length
        self.trust_remote_code = opts.trust_remote_code
        self.threads = opts.threads
        self.stride = opts.stride
        self.add_bos_token = opts.add_bos_token
        self.group_contexts = opts.group_contexts
        # Few-shot prefix reuse: a block of >= prefix_min_tokens tokens that starts several requests
        # is computed once; its key/value caches are kept up to prefix_cache_mb, least recently used
        # evicted. Same outputs up to float32 summation order (like batch size: not in identity()).
        self.prefix_reuse = opts.prefix_reuse
        self.prefix_min_tokens = opts.prefix_min_tokens or 64
        self.prefixes = prefix_cache.PrefixCache((opts.prefix_cache_mb or 1024) * 2**20)
        self._cache_arg = "past_key_values"
        self.model: Any = None
        self.tokenizer: Any = None
        self.max_length = self._max_length_arg or 0
        self._eos_ids: set[int] = set()
        self._prefix: int | None = None
        self._bos_text: str | None = None
        self._pad_id = 0
        self._keep_arg = False

    @property
    def is_chat(self) -> bool:  # type: ignore[override]  # lazy: known once the tokenizer loads
        """Whether the model has a chat template (read from the folder's files; no weights loaded)."""
        if self.tokenizer is not None:
            return bool(getattr(self.tokenizer, "chat_template", None))
        if self.local_path is not None and self.gguf_file is None:
            folder = self.local_path
            if os.path.isfile(os.path.join(folder, "chat_template.jinja")):
                return True
            try:
                import json

                with open(os.path.join(folder, "tokenizer_config.json"), encoding="utf-8") as handle:
                    return bool(json.load(handle).get("chat_template"))
            except (OSError, ValueError):
                return False
        # A hub id or a GGUF file: ask the tokenizer, which is cheap to load.
        from transformers import AutoTokenizer

        source, kwargs = self._load_source()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        except (OSError, ValueError, KeyError) as exc:
            raise BackendError(f"hf backend: cannot load the tokenizer of {self.pretrained!r}: {exc}") from exc
        return bool(getattr(self.tokenizer, "chat_template", None))

    @staticmethod
    def _looks_like_path(name: str) -> bool:
        return name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name

    # ---- identity and loading -------------------------------------------------------------

    def identity(self) -> dict[str, Any]:
        """Model, revision, dtype and a fingerprint of the weights; never loads the model."""
        ident: dict[str, Any] = {
            "backend": self.name, "impl": IMPL_VERSION, "model": self.pretrained,
            "revision": self.revision, "dtype": self.dtype, "gguf_file": self.gguf_file,
            "max_length": self._max_length_arg, "stride": self.stride, "add_bos_token": self.add_bos_token,
        }
        if self.local_path is not None:
            ident["fingerprint"] = folder_fingerprint(self.local_path)
        else:
            ident["commit"] = _hub_commit(self.pretrained, self.revision)
        return ident

    def _load_source(self) -> tuple[str, dict[str, Any]]:
        """Where from_pretrained reads, and its common keyword arguments."""
        kwargs: dict[str, Any] = {"trust_remote_code": self.trust_remote_code}
        if self.gguf_file:
            kwargs["gguf_file"] = self.gguf_file
        if self.local_path is not None:
            return self.local_path, {**kwargs, "local_files_only": True}
        return self.pretrained, {**kwargs, "revision": self.revision}

    def _load(self) -> None:
        """Load tokenizer and model on first use."""
        if self.model is not None:
            return
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if self.threads:
            torch.set_num_threads(self.threads)
        device = self.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        source, kwargs = self._load_source()
        dtype: Any = self.dtype if self.dtype == "auto" else getattr(torch, self.dtype)
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
            model: Any = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs)
        except (OSError, ValueError, KeyError) as exc:
            raise BackendError(f"hf backend: cannot load {self.pretrained!r}: {exc}") from exc
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self._finish_load()

    def _finish_load(self) -> None:
        config = self.model.config
        cfg = getattr(config, "text_config", None) or config
        if not self._max_length_arg:
            lengths = [getattr(cfg, a, None) for a in ("n_positions", "max_position_embeddings", "n_ctx")]
            known = [int(v) for v in lengths if v is not None]
            tok_max = getattr(self.tokenizer, "model_max_length", None)
            if known:
                self.max_length = known[0]
            elif tok_max is not None and tok_max != _TOKENIZER_INFINITY:
                self.max_length = int(tok_max)
            else:
                self.max_length = _DEFAULT_MAX_LENGTH
        tok = self.tokenizer
        self._prefix = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        self._bos_text = tok.decode([self._prefix]) if self._prefix is not None else None
        eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        self._eos_ids = {tok.eos_token_id} if tok.eos_token_id is not None else set()
        self._eos_ids.update(eos if isinstance(eos, list) else [] if eos is None else [eos])
        self._pad_id = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        if self._auto_batch:
            self._micro = 64 if self.model.device.type == "cuda" else 8
        import inspect

        params = inspect.signature(self.model.forward).parameters
        self._keep_arg = "logits_to_keep" in params
        # transformers 5.x renamed `past_key_values` to `cache` (the old name warns, then goes).
        self._cache_arg = "cache" if "cache" in params else "past_key_values"

    # ---- text and tokens ------------------------------------------------------------------

    def _text(self, request: Request) -> str:
        """The request's context: the plain prompt, or the chat template applied to messages."""
        if request.messages is None:
            return request.prompt or ""
        if not getattr(self.tokenizer, "chat_template", None):
            raise BackendError(
                f"hf backend: {self.pretrained!r} has no chat template; use a plain `prompt` for this model"
            )
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        text: str = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return text

    @property
    def _prefix_id(self) -> int:
        """lm-eval `prefix_token_id`: what an empty context is conditioned on (BOS, else EOS)."""
        if self._prefix is None:
            raise BackendError(f"hf backend: {self.pretrained!r} has neither a BOS nor an EOS token to condition on")
        return self._prefix

    def _encode(self, text: str, add_special_tokens: bool | None = None) -> list[int]:
        """lm-eval `HFLM.tok_encode`: tokenizer defaults, no second BOS if the text has one."""
        kwargs: dict[str, bool] = {}
        if add_special_tokens is not None:
            kwargs["add_special_tokens"] = add_special_tokens
        elif self.add_bos_token is not None:
            kwargs["add_special_tokens"] = self.add_bos_token
        if add_special_tokens is None and self._bos_text and text.startswith(self._bos_text):
            kwargs["add_special_tokens"] = False
        return list(self.tokenizer.encode(text, **kwargs))

    def _encode_pair(
        self, context: str, continuation: str, memo: dict[str, list[int]] | None = None
    ) -> tuple[list[int], list[int]]:
        """lm-eval `LM.loglikelihood` + `_encode_pair` for a causal model (`memo`: contexts seen)."""
        if context == "":
            cont = self._encode(continuation, add_special_tokens=False)
            if not cont or cont[0] != self._prefix_id:
                return [self._prefix_id], cont
            return cont[:1], cont[1:]
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        whole = self._encode(context + continuation)
        ctx = memo.get(context) if memo is not None else None
        if ctx is None:
            ctx = self._encode(context)
            if memo is not None:
                memo[context] = ctx
        return ctx, whole[len(ctx):]


    def _batches(self, items: list[T], run: Callable[[list[T]], R]) -> Iterator[tuple[list[T], R]]:
        """`(batch, run(batch))` over micro-batches of `items`; with an automatic batch size a CUDA
        out-of-memory error halves the micro-batch and retries (nothing else is retried)."""
        start = 0
        while start < len(items):
            batch = items[start: start + self._micro]
            try:
                out = run(batch)
            except Exception as exc:
                if not (self._auto_batch and self._micro > 1 and "out of memory" in str(exc).lower()):
                    raise
                self._micro //= 2
                self._empty_cache()
                continue
            yield batch, out
            start += len(batch)

    def _empty_cache(self) -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
