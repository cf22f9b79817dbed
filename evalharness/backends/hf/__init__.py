"""Hugging Face transformers backend: local folders, hub ids and GGUF files.

Log-likelihoods follow lm-evaluation-harness 0.4.x `HFLM` token for token (same context /
continuation split, BOS-or-EOS prefix for an empty context, left truncation, rolling windows),
so scores are comparable. It does less work: the continuations of one context share a packed
row (the context once; each continuation sees the context and itself, through a 4D mask), and
log-softmax runs only at the scored positions. Requests that start with the same long block of
tokens (a few-shot prefix) compute it once and reuse its key/value cache across batches and calls
(`prefix_cache.py`), for log-likelihoods and generation alike. torch and transformers are imported
lazily.

The package splits it by job: `core` (options, loading, encoding), `prefixes` (prefix reuse
glue), `scoring` (log-likelihoods), `generation`, `files` (identity of a model on disk).
"""

from __future__ import annotations

from evalharness.backends.hf.core import IMPL_VERSION, HFOptions
from evalharness.backends.hf.files import folder_fingerprint
from evalharness.backends.hf.generation import HFGeneration
from evalharness.backends.hf.scoring import HFScoring, rolling_windows


class HFBackend(HFScoring, HFGeneration):
    """A causal LM through transformers. All arguments may arrive as strings (`--model-args`; see `HFOptions`)."""


__all__ = ["IMPL_VERSION", "HFBackend", "HFOptions", "folder_fingerprint", "rolling_windows"]
