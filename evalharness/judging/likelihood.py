"""Verdicts read from the judge's log-likelihoods (`verdict: likelihood` in a judge file).

No text is generated. The judge prompt is rendered exactly as for `verdict: generate` (same
template, same system message, same chat formatting: a chat backend gets system + user
messages and applies the model's chat template, add_generation_prompt included, for
loglikelihood requests just as for generate ones; other backends get the one plain prompt).
Then every verdict string the mode's parser accepts is scored as the continuation of that
prompt, i.e. as the first thing the judge's reply would say, by loglikelihood requests through
the same runner and response cache as everything else. The verdict is the most likely option
(argmax), so every verdict parses: the parse rate is 1 by construction and nothing is retried.

The options (each also accepted by verdicts.parse; `[[1]]` and `[[10]]` are both closed by
`]]`, so a shorter number is never a prefix of a longer one):

    bracket_rating   "[[lo]]" .. "[[hi]]", every integer on the judge's scale
    bracket_choice   "[[A]]", "[[B]]", "[[C]]" (C = tie)
    bracket_ranking  every ordering "[[B, A, C]]" of the labels (n! options; at most 5 answers)
    json_criteria    criterion by criterion, in the rubric's order: `{"c1": N,` for every N on
                     c1's scale; then `{"c1": <best>, "c2": N,` and so on, the last one closed
                     with `}` (a constrained greedy decode of the JSON verdict, without the
                     optional "explanation")

The normalised distribution over the options (softmax of their log-likelihoods, i.e. the
probabilities renormalised over the allowed verdicts) is kept per call, and for ratings the
probability-weighted expected score (G-Eval, Liu et al. 2023, arXiv:2303.16634) is recorded
beside the argmax: the argmax is the verdict, the expected score is extra information.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import permutations
from typing import Any

from evalharness.backends.base import Backend
from evalharness.errors import BackendError, DataError
from evalharness.judging.verdicts import labels
from evalharness.spec.judge import CriterionSpec, JudgeSpec

MAX_RANKED = 5  # a ranking of n answers has n! orderings to score


@dataclass(frozen=True)
class Option:
    """One allowed verdict: its value (as the parser would return it) and its text."""

    value: Any
    text: str


def options(spec: JudgeSpec, n_answers: int = 2) -> list[Option]:
    """The verdicts a non-rubric judge can give, as continuations to score."""
    fmt = spec.format
    if fmt == "bracket_rating":
        return [Option(float(v), f"[[{v}]]") for v in range(spec.scale.min, spec.scale.max + 1)]
    if fmt == "bracket_choice":
        return [Option(v, f"[[{v}]]") for v in ("A", "B", "C")]
    if fmt == "bracket_ranking":
        if n_answers > MAX_RANKED:
            raise DataError(f"judge {spec.name}: verdict: likelihood ranks at most {MAX_RANKED} answers "
                            f"({n_answers}! orderings is too many to score); use verdict: generate")
        return [Option(list(p), "[[" + ", ".join(p) + "]]") for p in permutations(labels(n_answers))]
    raise ValueError(f"options: {fmt} verdicts are scored criterion by criterion (criterion_options)")


def criterion_options(criteria: Sequence[CriterionSpec], k: int, chosen: Sequence[int]) -> list[Option]:
    """The options of rubric criterion `k`, given the values chosen for the criteria before it."""
    head = ", ".join(f'"{c.name}": {v}' for c, v in zip(criteria[:k], chosen, strict=True))
    c = criteria[k]
    end = "}" if k == len(criteria) - 1 else ","
    prefix = "{" + head + (", " if head else "") + f'"{c.name}": '
    return [Option(v, f"{prefix}{v}{end}") for v in range(c.scale.min, c.scale.max + 1)]


def rubric_text(criteria: Sequence[CriterionSpec], chosen: Sequence[int]) -> str:
    """The JSON verdict the chosen values make (what verdicts.parse_criteria accepts)."""
    return "{" + ", ".join(f'"{c.name}": {v}' for c, v in zip(criteria, chosen, strict=True)) + "}"


def normalise(logprobs: Sequence[float]) -> list[float]:
    """Softmax of the options' log-likelihoods: probabilities renormalised over the allowed verdicts."""
    top = max(logprobs)
    weights = [math.exp(lp - top) for lp in logprobs]
    total = sum(weights)
    return [w / total for w in weights]


def argmax(logprobs: Sequence[float]) -> int:
    """The most likely option; a tie goes to the first listed (deterministic)."""
    return max(range(len(logprobs)), key=lambda i: (logprobs[i], -i))


def expected(values: Sequence[float], probs: Sequence[float]) -> float:
    return float(sum(v * p for v, p in zip(values, probs, strict=True)))


def check_backend(spec: JudgeSpec, backend: Backend, source: str | None = None) -> None:
    """Refuse, before any work, a likelihood judge on a backend that cannot score log-likelihoods."""
    if not spec.likelihood:
        return
    supports = backend.supports
    if "loglikelihood" in supports:
        return
    where = source or f"judge {spec.name}"
    name = backend.name
    raise BackendError(
        f"{where}: verdict: likelihood needs a judge backend that scores log-likelihoods, but {name!r} serves only "
        f"{', '.join(sorted(supports)) or 'no'} requests; use verdict: generate, or a judge model such as smollm2, hf, "
        "vllm or openai-completions"
    )
