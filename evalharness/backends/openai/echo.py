"""Reading prompt log-probabilities from an echoed completion (`echo=True, logprobs=1`).

The server tokenizes the text itself, so the scored tokens are found by character offsets,
counted back from the end of the prompt: that stays right when the server puts a BOS token in
front. See `openai_api` for how this matches lm-evaluation-harness.
"""

from __future__ import annotations

from typing import Any

from evalharness.backends.openai.aio import GiveUp, Retryable


class EchoError(Exception):
    """The server answered an echo request without prompt log-probabilities."""


def _token_ends(tokens: list[Any], offsets: Any, n_prompt: int) -> list[int]:
    """Where each prompt token ends, in the server's character offsets."""
    if isinstance(offsets, list) and len(offsets) >= n_prompt and all(isinstance(o, int) for o in offsets[:n_prompt]):
        ends = [int(o) for o in offsets[1:n_prompt]]
        last = offsets[n_prompt] if len(offsets) > n_prompt and isinstance(offsets[n_prompt], int) else None
        ends.append(last if last is not None else offsets[n_prompt - 1] + len(str(tokens[n_prompt - 1])))
        return ends
    ends, at = [], 0
    for token in tokens[:n_prompt]:
        at += len(str(token))
        ends.append(at)
    return ends


def score_echo(logprobs: Any, prompt_tokens: int, n_chars: int, *, skip_first: bool) -> tuple[float, bool, int]:
    """Sum the log-probabilities of the prompt tokens covering its last `n_chars` characters.

    Returns (log-likelihood, whether every scored token was the argmax, tokens scored). The
    prompt's first token has no log-probability: skipped when `skip_first`, else an error.
    """
    if not isinstance(logprobs, dict) or not isinstance(logprobs.get("token_logprobs"), list):
        raise EchoError("choices[0].logprobs.token_logprobs is missing")
    tokens, values = logprobs.get("tokens"), logprobs["token_logprobs"]
    if not isinstance(tokens, list) or len(tokens) != len(values):
        raise Retryable("malformed logprobs from the server: tokens and token_logprobs differ in length")
    n_prompt = prompt_tokens if 0 < prompt_tokens <= len(values) else len(values) - 1  # max_tokens=1 adds one
    if n_prompt < 1:
        raise EchoError("the prompt was not echoed")
    ends = _token_ends(tokens, logprobs.get("text_offset"), n_prompt)
    start = ends[-1] - n_chars
    first = next(i for i, end in enumerate(ends) if end > start)
    tops = logprobs.get("top_logprobs")
    total, greedy, n = 0.0, True, 0
    for i in range(first, n_prompt):
        value = values[i]
        if value is None:
            if i == 0 and skip_first:
                continue
            if i == 0:
                raise GiveUp("the first prompt token has no log-probability (empty context); set prefix=<BOS text>")
            raise Retryable(f"malformed logprobs from the server: token {i} has none")
        if not isinstance(value, (int, float)):
            raise Retryable(f"malformed logprobs from the server: token {i} is {value!r}")
        total += float(value)
        n += 1
        top = tops[i] if isinstance(tops, list) and i < len(tops) else None
        if not isinstance(top, dict) or not top:
            greedy = False
        elif float(value) < max(float(v) for v in top.values()) - 1e-6:
            greedy = False
    return total, greedy, n
