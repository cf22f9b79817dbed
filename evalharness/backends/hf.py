"""Hugging Face transformers backend: local folders, hub ids and GGUF files.

Log-likelihoods follow lm-evaluation-harness 0.4.x `HFLM` token for token (same context /
continuation split, BOS-or-EOS prefix for an empty context, left truncation, rolling windows),
so scores are comparable. It does less work: the continuations of one context share a packed
row (the context once; each continuation sees the context and itself, through a 4D mask), and
log-softmax runs only at the scored positions. Requests that start with the same long block of
tokens (a few-shot prefix) compute it once and reuse its key/value cache across batches and calls
(`prefix_cache.py`), for log-likelihoods and generation alike. torch and transformers are imported
lazily.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from evalharness.backends import prefix_cache
from evalharness.backends.base import Backend, as_bool
from evalharness.errors import BackendError
from evalharness.types import GenParams, Request, RequestKind, Response

if TYPE_CHECKING:
    import torch

T = TypeVar("T")
R = TypeVar("R")

# Bump when a change here can change outputs, so old cache entries stop matching.
IMPL_VERSION = 1
_DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
           "float16": "float16", "fp16": "float16", "half": "float16", "auto": "auto"}
_HASHED_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "tokenizer.model",
                 "special_tokens_map.json", "chat_template.jinja", "generation_config.json")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")
_TOKENIZER_INFINITY = 1000000000000000019884624838656  # lm-eval: "no limit" model_max_length
_DEFAULT_MAX_LENGTH = 2048  # lm-eval's default when neither config nor tokenizer says


def _opt_int(value: Any, what: str) -> int | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in {"", "none"}):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise BackendError(f"hf backend: {what} must be an integer, got {value!r}") from None
    if number < 1:
        raise BackendError(f"hf backend: {what} must be >= 1, got {value!r}")
    return number


def _opt_bool(value: Any) -> bool | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in {"", "none"}):
        return None
    return as_bool(value)


def _sha256(path: str, limit: int | None = None) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read() if limit is None else handle.read(limit))
    return digest.hexdigest()


def folder_fingerprint(folder: str) -> dict[str, Any]:
    """A cheap fingerprint of a model folder: hashes of small files, size+mtime of weights."""
    small: dict[str, str] = {}
    weights: dict[str, list[int]] = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue
        if name in _HASHED_FILES:
            small[name] = _sha256(path)
        elif name.endswith(_WEIGHT_SUFFIXES):
            stat = os.stat(path)
            weights[name] = [stat.st_size, stat.st_mtime_ns]
    return {"files": small, "weights": weights}


def _hub_commit(repo_id: str, revision: str | None) -> str | None:
    """The commit a hub id resolves to in the local HF cache (no network), if known."""
    if revision and len(revision) == 40 and all(c in "0123456789abcdef" for c in revision):
        return revision
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
    except ImportError:  # pragma: no cover - transformers always brings it
        return None
    ref = os.path.join(HF_HUB_CACHE, "models--" + repo_id.replace("/", "--"), "refs", revision or "main")
    try:
        with open(ref) as handle:
            return handle.read().strip() or None
    except OSError:
        return None


def _returned_cache(out: Any) -> Any:
    """The cache a forward pass returns (`cache` in transformers 5.x, `past_key_values` before)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


def rolling_windows(
    tokens: list[int], prefix: int, max_len: int, context_len: int
) -> Iterator[tuple[list[int], list[int]]]:
    """lm-eval `get_rolling_token_windows` + `make_disjoint_window`: (context, scored) pairs."""
    if not tokens:
        return
    pred_len = max_len - context_len + 1
    first = min(max_len, len(tokens))
    windows = [([prefix, *tokens[: first - 1]], tokens[:first])]
    done = first
    while done < len(tokens):
        n = min(len(tokens) - done, pred_len)
        end = done + n
        windows.append((tokens[max(0, end - max_len - 1): end - 1], tokens[end - n: end]))
        done += n
    for ctx, cont in windows:
        yield ctx[: len(ctx) - (len(cont) - 1)], cont


@dataclass
class _Row:
    """One packed sequence: a prefix, then continuations that each see the prefix and themselves."""

    prefix: list[int]
    items: list[tuple[int, list[int]]] = field(default_factory=list)  # (pair index, continuation)

    def __len__(self) -> int:
        return len(self.prefix) + sum(len(cont) - 1 for _, cont in self.items)


class HFBackend(Backend):
    """A causal LM through transformers. All arguments may arrive as strings (`--model-args`)."""

    name = "hf"
    supports: frozenset[RequestKind] = frozenset({"generate", "loglikelihood", "loglikelihood_rolling"})

    def __init__(
        self,
        pretrained: str,
        revision: str | None = None,
        dtype: str = "float32",
        device: str = "cpu",
        batch_size: int | str = 8,
        max_length: int | str | None = None,
        trust_remote_code: bool | str = False,
        gguf_file: str | None = None,
        threads: int | str | None = None,
        stride: int | str | None = None,
        add_bos_token: bool | str | None = None,
        group_contexts: bool | str = True,
        prefix_reuse: bool | str = True,
        prefix_min_tokens: int | str = 64,
        prefix_cache_mb: int | str = 1024,
    ) -> None:
        self.pretrained = str(pretrained)
        self.revision = revision or None
        self.gguf_file = gguf_file or None
        path = os.path.expanduser(self.pretrained)
        if os.path.isfile(path) and path.endswith(".gguf") and self.gguf_file is None:
            path, self.gguf_file = os.path.split(os.path.abspath(path))
        self.local_path: str | None = os.path.abspath(path) if os.path.isdir(path) else None
        if self.local_path is None and self._looks_like_path(self.pretrained):
            raise BackendError(f"hf backend: model folder {self.pretrained!r} does not exist")
        if str(dtype).lower() not in _DTYPES:
            raise BackendError(f"hf backend: dtype must be one of {sorted(set(_DTYPES.values()))}, got {dtype!r}")
        self.dtype = _DTYPES[str(dtype).lower()]
        self.device = str(device).lower()
        if self.device.split(":")[0] not in {"cpu", "cuda", "auto", "mps"}:
            raise BackendError(f"hf backend: device must be cpu, cuda[:N], mps or auto, got {device!r}")
        auto = str(batch_size).strip().lower() == "auto"
        self._auto_batch = auto
        self.batch_size: int = (8 if self.device == "cpu" else 64) if auto else _opt_int(batch_size, "batch_size") or 8
        self._micro = self.batch_size
        # Requests per runner hand-over (and per cache write): several forward batches, so the
        # choices of many questions are packed together and rows can be sorted by length.
        self.chunk_size = self.batch_size * 8
        self._max_length_arg = _opt_int(max_length, "max_length")
        self.trust_remote_code = as_bool(trust_remote_code)
        self.threads = _opt_int(threads, "threads")
        self.stride = _opt_int(stride, "stride")
        self.add_bos_token = _opt_bool(add_bos_token)
        self.group_contexts = as_bool(group_contexts)
        # Few-shot prefix reuse: a block of >= prefix_min_tokens tokens that starts several requests
        # is computed once; its key/value caches are kept up to prefix_cache_mb, least recently used
        # evicted. Same outputs up to float32 summation order (like batch size: not in identity()).
        self.prefix_reuse = as_bool(prefix_reuse)
        self.prefix_min_tokens = _opt_int(prefix_min_tokens, "prefix_min_tokens") or 64
        mb = _opt_int(prefix_cache_mb, "prefix_cache_mb") or 1024
        self.prefixes = prefix_cache.PrefixCache(mb * 2**20)
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

    # ---- scoring ----------------------------------------------------------------------------

    def loglikelihood(self, requests: Sequence[Request]) -> list[Response]:
        """Sum of log-probs of each continuation given its context, and whether it is greedy."""
        if not requests:
            return []
        self._load()
        contexts = [self._text(r) for r in requests]
        memo: dict[str, list[int]] = {}  # a question's choices share one context: encode it once
        pairs = [self._encode_pair(c, r.continuation, memo) for c, r in zip(contexts, requests, strict=True)]
        scores, work = self._score_pairs(pairs)
        out: list[Response] = []
        for (ctx, cont), score, ran in zip(pairs, scores, work, strict=True):
            if isinstance(score, str):
                out.append(Response(error=score, prompt_tokens=len(ctx)))
            else:
                out.append(Response(logprob=score[0], is_greedy=score[1], prompt_tokens=len(ctx) + len(cont),
                                    model_tokens=ran))
        return out

    def loglikelihood_rolling(self, requests: Sequence[Request]) -> list[Response]:
        """Log-likelihood of whole documents in lm-eval's rolling windows (`stride` to overlap)."""
        if not requests:
            return []
        self._load()
        context_len = 1 if self.stride is None else max(1, self.max_length - min(self.stride, self.max_length) + 1)
        docs = [self._encode(self._text(r)) for r in requests]
        pairs: list[tuple[list[int], list[int]]] = []
        owner: list[int] = []
        for i, tokens in enumerate(docs):
            for window in rolling_windows(tokens, self._prefix_id, self.max_length, context_len):
                pairs.append(window)
                owner.append(i)
        scores, work = self._score_pairs(pairs)
        totals = [0.0] * len(requests)
        ran = [0] * len(requests)
        errors: dict[int, str] = {}
        for i, score, w in zip(owner, scores, work, strict=True):
            ran[i] += w
            if isinstance(score, str):
                errors[i] = score
            else:
                totals[i] += score[0]
        return [
            Response(error=errors[i], n_tokens=len(t)) if i in errors
            else Response(logprob=totals[i], n_tokens=len(t), prompt_tokens=len(t), model_tokens=ran[i])
            for i, t in enumerate(docs)
        ]

    def _rows(self, pairs: Sequence[tuple[list[int], list[int]]]) -> tuple[list[_Row], dict[int, int], dict[int, str]]:
        """Pack unique pairs into rows; equal pairs share a slot (alias), bad ones get an error."""
        limit = self.max_length
        slots: dict[tuple[tuple[int, ...], tuple[int, ...]], int] = {}
        alias: dict[int, int] = {}
        errors: dict[int, str] = {}
        groups: dict[tuple[tuple[int, ...], int], list[tuple[int, list[int]]]] = {}
        for i, (ctx, cont) in enumerate(pairs):
            if not cont:
                continue
            if len(cont) > limit:
                errors[i] = f"continuation of {len(cont)} tokens exceeds max_length {limit}"
                continue
            key = (tuple(ctx), tuple(cont))
            if key in slots:
                alias[i] = slots[key]
                continue
            slots[key] = i
            inp = (ctx + cont)[-(limit + 1):][:-1]  # lm-eval's left truncation
            head = tuple(inp[: len(inp) - len(cont) + 1])
            groups.setdefault((head, -1 if self.group_contexts else i), []).append((i, cont))
        rows: list[_Row] = []
        for (prefix_key, _), items in groups.items():
            prefix = list(prefix_key)
            row = _Row(prefix)
            for item in items:
                if row.items and len(row) + len(item[1]) - 1 > limit:
                    rows.append(row)
                    row = _Row(prefix)
                row.items.append(item)
            rows.append(row)
        rows.sort(key=lambda r: (-len(r), r.prefix))
        return rows, alias, errors

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

    def _score_pairs(
        self, pairs: Sequence[tuple[list[int], list[int]]]
    ) -> tuple[list[tuple[float, bool] | str], list[int]]:
        """lm-eval `_loglikelihood_tokens` over (context, continuation) token pairs.

        Also returns the tokens the model ran for each pair: its share of its packed row, plus a
        shared prefix's tokens for the first pair that needed them computed.
        """
        rows, alias, errors = self._rows(pairs)
        results: dict[int, tuple[float, bool]] = {}
        work = [0] * len(pairs)
        for prefix, extra, lines in self._plan_rows(rows):
            if extra:
                work[lines[0][0].items[0][0]] += extra
            skip = len(prefix.tokens) if prefix is not None else 0
            for batch, scored in self._batches(lines, partial(self._score_rows, prefix=prefix)):
                results.update(scored)
                for row in (row for line in batch for row in line):
                    share, rest = divmod(len(row) - skip, len(row.items))
                    for k, (i, _) in enumerate(row.items):
                        work[i] += share + (rest if k == 0 else 0)
        out: list[tuple[float, bool] | str] = []
        for i, (_, cont) in enumerate(pairs):
            if i in errors:
                out.append(errors[i])
            elif not cont:
                out.append((0.0, True))
            else:
                out.append(results[alias.get(i, i)])
        return out, work

    # ---- shared prefixes --------------------------------------------------------------------

    def _plan_rows(self, rows: list[_Row]) -> list[tuple[prefix_cache.Prefix | None, int, list[list[_Row]]]]:
        """Rows grouped by a shared prefix: (prefix or None, tokens computed for it now, lines).

        A line is what one batch position runs: one row, or after a shared prefix several rows'
        remainders packed side by side (first fit, longest first, up to the longest remainder), so
        short remainders do not pad up to the longest one.
        """
        heads = [row.prefix for row in rows]  # every row keeps >= 1 head token: its logits score the first choice token
        jobs: list[tuple[prefix_cache.Prefix | None, int, list[list[_Row]]]] = []
        for prefix, extra, idx in self._plan_prefixes(heads, [len(h) - 1 for h in heads]):
            group = sorted((rows[i] for i in idx), key=lambda r: (-len(r), r.prefix))
            if prefix is None:
                jobs.append((None, 0, [[row] for row in group]))
                continue
            skip = len(prefix.tokens)
            room = len(group[0]) - skip
            lines: list[list[_Row]] = []
            free: list[int] = []
            for row in group:
                size = len(row) - skip
                at = next((k for k, f in enumerate(free) if f >= size), None)
                if at is None:
                    lines.append([row])
                    free.append(room - size)
                else:
                    lines[at].append(row)
                    free[at] -= size
            jobs.append((prefix, extra, lines))
        return jobs

    def _plan_prefixes(
        self, seqs: list[list[int]], limits: list[int]
    ) -> list[tuple[prefix_cache.Prefix | None, int, list[int]]]:
        """Sequence indices grouped by a reusable prefix (computed or found in the cache), in order."""
        if not self.prefix_reuse or not seqs:
            return [(None, 0, list(range(len(seqs))))]
        least = self.prefix_min_tokens
        out: list[tuple[prefix_cache.Prefix | None, int, list[int]]] = []
        for shared, idx in prefix_cache.plan_groups(seqs, limits, least):
            first = seqs[idx[0]]
            hi = shared if len(idx) > 1 else limits[idx[0]]
            cached = self.prefixes.longest(first, least, hi) if hi >= least else None
            prefix, extra = cached, 0
            if len(idx) > 1 and (cached is None or shared - len(cached.tokens) >= least):
                # Compute the group's prefix, from the longest cached part of it if there is one.
                prefix = self._compute_prefix(first[:shared], cached)
                extra = shared - (len(cached.tokens) if cached is not None else 0) if prefix is not None else 0
                if prefix is None:
                    return [(None, 0, list(range(len(seqs))))]
            out.append((prefix, extra, idx))
        # One group per prefix (a cached one may serve several), and one for everything unshared.
        merged: dict[int, tuple[prefix_cache.Prefix | None, int, list[int]]] = {}
        for prefix, extra, idx in out:
            key = id(prefix) if prefix is not None else 0
            have = merged.get(key)
            merged[key] = (prefix, extra, idx) if have is None else (prefix, have[1] + extra, have[2] + idx)
        plain = merged.pop(0, None)
        return ([(None, 0, sorted(plain[2]))] if plain else []) + list(merged.values())

    def _compute_prefix(self, tokens: list[int], base: prefix_cache.Prefix | None) -> prefix_cache.Prefix | None:
        """Keys and values of `tokens` (extending `base`), kept in the prefix cache; None if unsupported."""
        import torch

        model, device = self.model, self.model.device
        start = len(base.tokens) if base is not None else 0
        kwargs: dict[str, Any] = {"logits_to_keep": 1} if self._keep_arg else {}
        if base is not None:
            kwargs[self._cache_arg] = prefix_cache.expand(base.layers, 1)
        ids = torch.tensor([tokens[start:]], device=device)
        pos = torch.arange(start, len(tokens), device=device)[None]
        try:
            with torch.inference_mode():
                out = model(input_ids=ids, position_ids=pos, use_cache=True, **kwargs)
        except (TypeError, ValueError, AttributeError, NotImplementedError):
            self.prefix_reuse = False  # this model's forward does not take a cache like that
            return None
        layers = prefix_cache.capture(_returned_cache(out), len(tokens))
        if layers is None:
            self.prefix_reuse = False  # not a plain DynamicCache (sliding window, hybrid, static, ...)
            return None
        entry = prefix_cache.Prefix(tuple(tokens), layers, prefix_cache.nbytes(layers))
        self.prefixes.put(entry)
        return entry

    def _score_rows(
        self, lines: list[list[_Row]], prefix: prefix_cache.Prefix | None = None
    ) -> dict[int, tuple[float, bool]]:
        """One forward pass over left-padded lines of packed rows (after a shared `prefix`, which
        their positions continue); log-softmax only where scored."""
        import torch

        skip = len(prefix.tokens) if prefix is not None else 0
        sizes = [sum(len(row) - skip for row in line) for line in lines]
        width = max(sizes)
        ids = torch.full((len(lines), width), self._pad_id, dtype=torch.long)
        pos = torch.zeros((len(lines), width), dtype=torch.long)
        seg = torch.full((len(lines), width), -1, dtype=torch.long)
        head = torch.zeros((len(lines), width), dtype=torch.long)
        where: list[tuple[int, int, list[int], list[int]]] = []  # (pair, line, positions, targets)
        for b, line in enumerate(lines):
            offset = width - sizes[b]
            tokens: list[int] = []
            positions: list[int] = []
            segments: list[int] = []
            heads: list[int] = []
            s = 0  # segment ids: a row's head, then one per continuation; a row sees its own head only
            for row in line:
                p, h, n0 = len(row.prefix), s, len(tokens)
                tokens += row.prefix[skip:]
                positions += range(skip, p)
                segments += [h] * (p - skip)
                last = offset + len(tokens) - 1
                for i, cont in row.items:
                    s += 1
                    at = offset + len(tokens)
                    where.append((i, b, [last, *range(at, at + len(cont) - 1)], cont))
                    tokens += cont[:-1]
                    positions += range(p, p + len(cont) - 1)
                    segments += [s] * (len(cont) - 1)
                s += 1
                heads += [h] * (len(tokens) - n0)
            ids[b, offset:] = torch.tensor(tokens)
            pos[b, offset:] = torch.tensor(positions)
            seg[b, offset:] = torch.tensor(segments)
            head[b, offset:] = torch.tensor(heads)
        if prefix is None:
            first = min(idx[0] for _, _, idx, _ in where)
            keep = width - first
            logits = self._forward_packed(ids, pos, seg, keep)
            at_col = {q: q - (width - logits.shape[1]) for _, _, idx, _ in where for q in idx}
        else:  # several rows per line: logits only at the positions some line scores
            cols = sorted({q for _, _, idx, _ in where for q in idx})
            logits = self._forward_packed(ids, pos, seg, cols, prefix=prefix, head=head)
            at_col = {q: k for k, q in enumerate(cols)}
        b_idx = torch.tensor([b for _, b, idx, _ in where for _ in idx])
        p_idx = torch.tensor([at_col[q] for _, _, idx, _ in where for q in idx])
        picked = logits[b_idx, p_idx].float()
        logp = torch.log_softmax(picked, dim=-1)
        targets = torch.tensor([t for *_, cont in where for t in cont])
        token_lp = logp.gather(1, targets[:, None])[:, 0].tolist()
        greedy = (picked.argmax(dim=-1) == targets).tolist()
        out: dict[int, tuple[float, bool]] = {}
        n = 0
        for i, _, _, cont in where:
            k = len(cont)
            out[i] = (float(sum(token_lp[n: n + k])), bool(all(greedy[n: n + k])))
            n += k
        return out

    def _forward_packed(
        self, ids: torch.Tensor, pos: torch.Tensor, seg: torch.Tensor, keep: int | list[int],
        prefix: prefix_cache.Prefix | None = None, head: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits under the packed-row attention mask (after `prefix`): of the last `keep` positions,
        or of the positions listed in `keep`. A query sees earlier keys of its row's head segment
        (`head`, default 0) and of its own segment."""
        import torch

        model = self.model
        device = model.device
        batch, width = ids.shape
        causal = torch.ones((width, width), dtype=torch.bool).tril()
        seg_q, seg_k = seg[:, :, None], seg[:, None, :]
        head_q = head[:, :, None] if head is not None else 0
        allowed = causal & ((seg_k == head_q) | (seg_k == seg_q)) & (seg_k >= 0) & (seg_q >= 0)
        allowed |= torch.eye(width, dtype=torch.bool)  # padding rows attend to themselves: no NaN
        kwargs: dict[str, Any] = {}
        if self._keep_arg:
            kwargs["logits_to_keep"] = keep if isinstance(keep, int) else torch.tensor(keep, device=device)
        if prefix is not None:  # every position sees the whole shared prefix, held in the cache
            shared = torch.ones((batch, width, len(prefix.tokens)), dtype=torch.bool)
            allowed = torch.cat([shared, allowed], dim=-1)
            kwargs[self._cache_arg] = prefix_cache.expand(prefix.layers, batch)
        dtype = model.dtype if model.dtype.is_floating_point else torch.float32
        mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, torch.finfo(dtype).min)
        with torch.inference_mode():
            out = model(input_ids=ids.to(device), position_ids=pos.to(device),
                        attention_mask=mask[:, None].to(device), use_cache=prefix is not None, **kwargs)
        logits: torch.Tensor = out.logits
        if isinstance(keep, int):
            logits = logits[:, -keep:]
        elif not self._keep_arg:
            logits = logits[:, keep]
        return logits.cpu()

    # ---- generation -------------------------------------------------------------------------

    def generate(self, requests: Sequence[Request]) -> list[Response]:
        """Greedy or seeded sampling, left-padded batches, cut at the first stop string."""
        if not requests:
            return []
        self._load()
        encoded = []
        for r in requests:
            gen = r.gen or GenParams()
            room = max(1, self.max_length - gen.max_tokens)
            encoded.append(self._encode(self._text(r))[-room:])
        results = {i: Response(text="", prompt_tokens=len(encoded[i]), model_tokens=0)
                   for i, r in enumerate(requests) if (r.gen or GenParams()).max_tokens < 1}
        todo = [i for i in range(len(requests)) if i not in results]
        groups = self._plan_prefixes([encoded[i] for i in todo], [len(encoded[i]) - 1 for i in todo])
        for prefix, extra, idx in groups:
            order = sorted((todo[j] for j in idx), key=lambda i: -len(encoded[i]))
            skip = len(prefix.tokens) if prefix is not None else 0
            run = partial(self._generate_some, encoded, requests, prefix)
            for chunk, texts in self._batches(order, run):
                for i, (text, n_new) in zip(chunk, texts, strict=True):
                    # The model ran the prompt after the shared prefix, then each new token but the last.
                    ran = len(encoded[i]) - skip + max(0, n_new - 1) + extra
                    extra = 0
                    results[i] = Response(text=text, prompt_tokens=len(encoded[i]), completion_tokens=n_new,
                                          model_tokens=ran)
        return [results[i] for i in range(len(requests))]

    def _generate_some(
        self, encoded: list[list[int]], requests: Sequence[Request], prefix: prefix_cache.Prefix | None,
        chunk: list[int],
    ) -> list[tuple[str, int]]:
        return self._generate_batch([encoded[i] for i in chunk], [requests[i] for i in chunk], prefix)

    def _sample(self, logits: torch.Tensor, gen: GenParams, generator: torch.Generator | None) -> int:
        import torch

        if gen.temperature <= 0 or generator is None:
            return int(logits.argmax())
        probs = torch.softmax(logits.float() / gen.temperature, dim=-1)
        if gen.top_p < 1.0:
            # transformers TopPLogitsWarper: drop the low tail whose total mass is <= 1 - top_p.
            sorted_p, sorted_i = probs.sort()
            drop = sorted_p.cumsum(-1) <= 1 - gen.top_p
            drop[-1] = False
            probs = probs.clone()
            probs[sorted_i[drop]] = 0.0
        return int(torch.multinomial(probs.cpu(), 1, generator=generator))

    def _generate_batch(
        self, prompts: list[list[int]], requests: list[Request], prefix: prefix_cache.Prefix | None = None
    ) -> list[tuple[str, int]]:
        """Decode a left-padded batch step by step; finished rows leave the batch.

        With a shared `prefix`, its cached keys and values come first and each prompt's remaining
        tokens are left-padded after it (the attention mask skips the padding in between).
        """
        import torch

        model, device = self.model, self.model.device
        gens = [r.gen or GenParams() for r in requests]
        rngs = [torch.Generator().manual_seed(g.seed + r.repeat) if g.temperature > 0 else None
                for g, r in zip(gens, requests, strict=True)]
        skip = len(prefix.tokens) if prefix is not None else 0
        width = max(len(p) for p in prompts) - skip
        ids = torch.full((len(prompts), width), self._pad_id, dtype=torch.long)
        attn = torch.zeros((len(prompts), width), dtype=torch.long)
        for b, p in enumerate(prompts):
            ids[b, width - len(p) + skip:] = torch.tensor(p[skip:])
            attn[b, width - len(p) + skip:] = 1
        pos = (attn.cumsum(-1) - 1).clamp(min=0) + skip
        kwargs: dict[str, Any] = {"logits_to_keep": 1} if self._keep_arg else {}
        cache: Any = None
        if prefix is not None:
            attn = torch.cat([torch.ones((len(prompts), skip), dtype=torch.long), attn], dim=1)
            cache = prefix_cache.expand(prefix.layers, len(prompts))
        new: list[list[int]] = [[] for _ in prompts]
        active = list(range(len(prompts)))
        with torch.inference_mode():
            out = model(input_ids=ids.to(device), attention_mask=attn.to(device),
                        position_ids=pos.to(device), use_cache=True, **{self._cache_arg: cache}, **kwargs)
            cache = _returned_cache(out)
            next_pos = pos[:, -1:] + 1
            while True:
                last = out.logits[:, -1].cpu()
                still: list[int] = []
                for j, b in enumerate(active):
                    token = self._sample(last[j], gens[b], rngs[b])
                    new[b].append(token)
                    if not self._finished(new[b], gens[b], token):
                        still.append(j)
                if not still:
                    break
                tokens = torch.tensor([[new[active[j]][-1]] for j in still])
                if len(still) < len(active):
                    index = torch.tensor(still)
                    cache.batch_select_indices(index.to(device))
                    attn, next_pos = attn[index], next_pos[index]
                active = [active[j] for j in still]
                attn = torch.cat([attn, torch.ones((len(active), 1), dtype=torch.long)], dim=1)
                out = model(input_ids=tokens.to(device), attention_mask=attn.to(device),
                            position_ids=next_pos.to(device), use_cache=True, **{self._cache_arg: cache}, **kwargs)
                next_pos = next_pos + 1
        return [(self._cut(toks, g), len(toks)) for toks, g in zip(new, gens, strict=True)]

    def _finished(self, tokens: list[int], gen: GenParams, token: int) -> bool:
        if token in self._eos_ids or len(tokens) >= gen.max_tokens:
            return True
        if not gen.stop:
            return False
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        return any(s and s in text for s in gen.stop)

    def _cut(self, tokens: list[int], gen: GenParams) -> str:
        if tokens and tokens[-1] in self._eos_ids:
            tokens = tokens[:-1]
        text: str = self.tokenizer.decode(tokens, skip_special_tokens=True)
        for stop in gen.stop:
            if stop:
                text = text.split(stop)[0]
        return text
