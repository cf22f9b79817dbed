"""Shared-prefix reuse for the hf backend: find long common token prefixes, keep their KV caches.

Every question of a few-shot task starts with the same block (an MMLU subject's description and
5 dev examples, GSM8K's 8 worked examples). A causal model's keys and values for those tokens do
not depend on what follows them, so the block is computed once (batch 1), kept here, and
expanded along the batch dimension for every batch of requests that starts with it; each request
then runs only its own suffix.

Prefixes are found from token ids, not task names (user tasks benefit too): `plan_groups` sorts
the sequences, takes the longest common prefix of sorted neighbours and splits them into
contiguous groups so that the tokens computed are fewest (a small dynamic programme). The cache
holds prefixes across calls (a subject spread over several runner chunks computes its block once),
bounded in bytes and evicted least recently used first.

Only transformers' `DynamicCache` with plain full-attention layers is used (`capture` returns
None for anything else: sliding windows, linear attention, quantized or static caches), so
another model type falls back to the unshared path.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class Prefix:
    """The keys and values of a token prefix, one (keys, values) pair per layer, batch 1."""

    tokens: tuple[int, ...]
    layers: list[tuple[Any, Any]]
    nbytes: int


class PrefixCache:
    """Prefix KV caches keyed by their tokens; at most `max_bytes` in all, least recently used evicted."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[int, ...], Prefix] = OrderedDict()
        self.nbytes = 0
        self.hits = 0
        self.stored = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._entries)

    def longest(self, tokens: Sequence[int], lo: int, hi: int) -> Prefix | None:
        """The longest cached prefix of `tokens` whose length is in [lo, hi] (marked as used)."""
        best: Prefix | None = None
        for key, entry in self._entries.items():
            n = len(key)
            if lo <= n <= hi and (best is None or n > len(best.tokens)) and tuple(tokens[:n]) == key:
                best = entry
        if best is not None:
            self._entries.move_to_end(best.tokens)
            self.hits += 1
        return best

    def put(self, entry: Prefix) -> None:
        """Keep `entry` (unless it alone exceeds the budget), evicting the least recently used."""
        if entry.nbytes > self.max_bytes:
            return
        old = self._entries.pop(entry.tokens, None)
        if old is not None:
            self.nbytes -= old.nbytes
        while self._entries and self.nbytes + entry.nbytes > self.max_bytes:
            _, gone = self._entries.popitem(last=False)
            self.nbytes -= gone.nbytes
            self.evicted += 1
        self._entries[entry.tokens] = entry
        self.nbytes += entry.nbytes
        self.stored += 1

    def clear(self) -> None:
        self._entries.clear()
        self.nbytes = 0


def _common(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def plan_groups(
    seqs: Sequence[Sequence[int]], limits: Sequence[int], min_len: int, overhead: int = 16
) -> list[tuple[int, list[int]]]:
    """Split sequences into groups that share a prefix; returns (shared length, indices) per group.

    A group of two or more shares `shared` >= `min_len` tokens (at most `limits[i]` for each member:
    the caller keeps at least one token of every sequence out of the prefix); a lone sequence comes
    back as (0, [i]). Groups are contiguous runs of the lexicographically sorted sequences, chosen
    to minimise the tokens computed (each group's prefix once, plus `overhead` per group, plus every
    member's suffix).
    """
    n = len(seqs)
    order = sorted(range(n), key=lambda i: tuple(seqs[i]))
    lcp = [0] + [_common(seqs[order[k - 1]], seqs[order[k]]) for k in range(1, n)]
    lens = [len(seqs[i]) for i in order]
    caps = [limits[i] for i in order]
    best = [0] * (n + 1)  # best[j]: fewest tokens for the first j sorted sequences
    cut: list[tuple[int, int]] = [(0, 0)] * (n + 1)  # (group start, shared length) ending at j
    for j in range(1, n + 1):
        best[j], cut[j] = best[j - 1] + lens[j - 1], (j - 1, 0)
        shared = caps[j - 1]
        total = lens[j - 1]
        for i in range(j - 2, -1, -1):  # group order[i .. j-1]
            shared = min(shared, lcp[i + 1], caps[i])
            if shared < min_len:
                break
            total += lens[i]
            count = j - i
            cost = best[i] + shared + overhead + total - count * shared
            if cost < best[j]:
                best[j], cut[j] = cost, (i, shared)
    groups: list[tuple[int, list[int]]] = []
    j = n
    while j > 0:
        i, shared = cut[j]
        groups.append((shared, [order[k] for k in range(i, j)]))
        j = i
    groups.reverse()
    return groups


def capture(cache: Any, length: int) -> list[tuple[Any, Any]] | None:
    """Per-layer (keys, values) of a model's returned cache, or None where reuse is unsupported."""
    try:
        from transformers.cache_utils import DynamicCache, DynamicLayer
    except ImportError:  # pragma: no cover - an old transformers without the layered Cache API
        return None
    if type(cache) is not DynamicCache:
        return None
    layers = getattr(cache, "layers", None)
    if not layers:
        return None
    out: list[tuple[Any, Any]] = []
    for layer in layers:
        if type(layer) is not DynamicLayer:
            return None
        keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
        if keys is None or values is None or keys.dim() != 4 or keys.shape[0] != 1 or keys.shape[-2] != length:
            return None
        out.append((keys, values))
    return out


def expand(layers: list[tuple[Any, Any]], batch: int) -> Any:
    """A fresh DynamicCache holding the prefix for `batch` rows; the stored tensors are never written."""
    from transformers.cache_utils import DynamicCache

    cache = DynamicCache(ddp_cache_data=list(layers))  # copies the batch-1 tensors (torch.cat)
    if batch > 1:
        built: list[Any] = list(cache.layers)
        for layer, (keys, values) in zip(built, layers, strict=True):
            # Views, not copies: each layer's update concatenates the new keys onto them.
            layer.keys = keys.expand(batch, -1, -1, -1)
            layer.values = values.expand(batch, -1, -1, -1)
    return cache


def nbytes(layers: list[tuple[Any, Any]]) -> int:
    return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in layers)
