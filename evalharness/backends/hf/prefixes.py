"""Few-shot prefix reuse glue: group requests by a shared prefix, compute it once, keep it cached."""

from __future__ import annotations

from typing import Any

from evalharness.backends import prefix_cache
from evalharness.backends.hf.core import HFCore, _returned_cache


class HFPrefixes(HFCore):
    """Finds and computes the shared prefixes that scoring and generation continue from."""

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
