"""Generation: greedy or seeded sampling over left-padded batches, after a shared prefix where there is one."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from evalharness.backends import prefix_cache
from evalharness.backends.hf.core import _returned_cache
from evalharness.backends.hf.prefixes import HFPrefixes
from evalharness.types import GenParams, Request, Response

if TYPE_CHECKING:
    import torch


class HFGeneration(HFPrefixes):
    """`generate` of `HFBackend`."""

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
