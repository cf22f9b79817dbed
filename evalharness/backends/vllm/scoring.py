"""Log-likelihoods on a vLLM engine: prompt log-probabilities, or one request per question.

Today's path (`score_pairs`) sends each (context, continuation) as its own prompt with
`prompt_logprobs=1` and sums the continuation's entries; vLLM skips its prefix cache for such
requests (0.32: `SamplingParams.skip_reading_prefix_cache`), so every choice recomputes its context.

When two or more requests share a context and each continuation is exactly one token (MMLU's
" A" ... " D", after lm-eval's context/continuation split), `score_questions` sends ONE request per
context instead: prompt = the context, `max_tokens=1`, greedy, and `logprob_token_ids` = the
choices' token ids (vLLM >= 0.32), which returns the raw log-softmax at the next position for
exactly those ids (the default `logprobs_mode=raw_logprobs`; no `max_logprobs` needed, since that
cap applies to top-k counts) plus the greedy (sampled) token's. A choice is greedy when its
log-prob is at least the sampled token's: the same test as rank 1 (no token strictly higher).
Without `prompt_logprobs` the prefix cache applies, across choices and across questions that share
a few-shot prefix. vLLM reports ranks only for the sampled token here (it numbers the requested ids
1, 2, ...), so ranks are not read.

Both return, beside each pair's score, the token positions the engine ran for it (prompt length
less vLLM's `num_cached_tokens`; a question's share split over its choices), for usage.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Pair = tuple[list[int], list[int]]
Score = tuple[float, bool] | str


def score_loglikelihood(llm: Any, pairs: Sequence[Pair], context_len: int,
                        by_question: bool = True) -> tuple[list[Score], list[int]]:
    """Scores and token positions run for each pair: questions of one-token choices as one request each, the rest as today."""
    groups = question_groups(pairs) if by_question and token_logprobs_supported() else []
    grouped = {i for group in groups for i in group}
    rest = [i for i in range(len(pairs)) if i not in grouped]
    scores: list[Score] = [(0.0, True)] * len(pairs)
    work = [0] * len(pairs)
    for at, score, ran in zip(rest, *score_pairs(llm, [pairs[i] for i in rest], context_len), strict=True):
        scores[at], work[at] = score, ran
    q_scores, q_work = score_questions(llm, pairs, groups, context_len)
    for i, score in q_scores.items():
        scores[i], work[i] = score, q_work[i]
    return scores, work


def token_logprobs_supported() -> bool:
    """Whether this vLLM's SamplingParams takes `logprob_token_ids` (0.32 does; older ones raise TypeError)."""
    from vllm import SamplingParams

    try:
        SamplingParams(max_tokens=1, logprob_token_ids=[0])
    except TypeError:
        return False
    return True


def _max_token_ids() -> int:
    try:
        from vllm.sampling_params import MAX_LOGPROB_TOKEN_IDS
    except ImportError:
        return 128
    return int(MAX_LOGPROB_TOKEN_IDS)


def question_groups(pairs: Sequence[Pair]) -> list[list[int]]:
    """Pair indices by context, for contexts with two or more pairs whose continuations are each one token."""
    by_context: dict[tuple[int, ...], list[int]] = {}
    for i, (ctx, _) in enumerate(pairs):
        by_context.setdefault(tuple(ctx), []).append(i)
    limit = _max_token_ids()
    return [group for group in by_context.values()
            if len(group) >= 2 and all(len(pairs[i][1]) == 1 for i in group)
            and len({pairs[i][1][0] for i in group}) <= limit]


def score_pairs(llm: Any, pairs: Sequence[Pair], context_len: int) -> tuple[list[Score], list[int]]:
    """Sum the prompt log-probabilities of each continuation; greedy when every token ranks first."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    limit = context_len - 1
    todo: list[int] = []
    prompts = []
    out: list[Score] = [(0.0, True)] * len(pairs)
    work = [0] * len(pairs)
    for i, (ctx, cont) in enumerate(pairs):
        if not cont:
            continue
        if len(cont) >= limit:
            out[i] = f"continuation of {len(cont)} tokens exceeds max_model_len {context_len}"
            continue
        todo.append(i)
        prompts.append(TokensPrompt(prompt_token_ids=(ctx + cont)[-limit:]))
    if not prompts:
        return out, work
    params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=1)
    results = llm.generate(prompts, params, use_tqdm=False)
    for i, prompt, res in zip(todo, prompts, results, strict=True):
        cont = pairs[i][1]
        ids = prompt["prompt_token_ids"]
        entries = res.prompt_logprobs
        total, greedy = 0.0, True
        for pos in range(len(ids) - len(cont), len(ids)):
            entry = entries[pos][ids[pos]]
            total += float(entry.logprob)
            greedy = greedy and entry.rank == 1
        out[i] = (total, greedy)
        work[i] = _ran(ids, res)
    return out, work


def score_questions(llm: Any, pairs: Sequence[Pair], groups: Sequence[list[int]],
                    context_len: int) -> tuple[dict[int, Score], dict[int, int]]:
    """One greedy one-token request per group's context, asking for the choices' log-probs (see the module docstring)."""
    if not groups:
        return {}, {}
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    # As today's prompt (ctx + cont)[-limit:] with a one-token continuation: the same left context.
    keep = context_len - 2
    choices = [sorted({pairs[i][1][0] for i in group}) for group in groups]
    # One width for the call: vLLM pads shorter id lists with token 0 at -inf, which would shadow a
    # real choice 0; repeating a group's own ids pads it with true values instead.
    width = max(len(ids) for ids in choices)
    prompts = [TokensPrompt(prompt_token_ids=pairs[group[0]][0][-keep:]) for group in groups]
    params = [SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=ids + [ids[0]] * (width - len(ids)))
              for ids in choices]
    results = llm.generate(prompts, params, use_tqdm=False)
    scores: dict[int, Score] = {}
    work: dict[int, int] = {}
    for group, prompt, res in zip(groups, prompts, results, strict=True):
        sample = res.outputs[0]
        entries = sample.logprobs[0]
        top = float(entries[sample.token_ids[0]].logprob)
        share, rest = divmod(_ran(prompt["prompt_token_ids"], res), len(group))
        for k, i in enumerate(group):
            logprob = float(entries[pairs[i][1][0]].logprob)
            scores[i] = (logprob, logprob >= top)
            work[i] = share + (rest if k == 0 else 0)
    return scores, work


def _ran(prompt_ids: list[int], result: Any) -> int:
    """Prompt positions the engine computed: those it did not read from its prefix cache."""
    return len(prompt_ids) - int(getattr(result, "num_cached_tokens", None) or 0)
