"""Log-likelihoods (lm-eval `HFLM` token for token): packed rows, a 4D mask, log-softmax where scored."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from evalharness.backends import prefix_cache
from evalharness.backends.hf.prefixes import HFPrefixes
from evalharness.types import Request, Response

if TYPE_CHECKING:
    import torch


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



class HFScoring(HFPrefixes):
    """`loglikelihood` and `loglikelihood_rolling` of `HFBackend`."""

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

    def _score_rows(
        self, lines: list[list[_Row]], prefix: prefix_cache.Prefix | None = None
    ) -> dict[int, tuple[float, bool]]:
        """One forward pass over left-padded lines of packed rows (after a shared `prefix`, which
        their positions continue); log-softmax only where scored."""
        import torch

        ids, pos, seg, head, where = self._pack_lines(lines, len(prefix.tokens) if prefix is not None else 0)
        width = ids.shape[1]
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

    def _pack_lines(
        self, lines: list[list[_Row]], skip: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[tuple[int, int, list[int], list[int]]]]:
        """Left-padded token ids, positions, segment ids and head segments of `lines` (after `skip`
        shared prefix tokens), and where each pair is scored: (pair, line, positions, targets)."""
        import torch

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
        return ids, pos, seg, head, where

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
