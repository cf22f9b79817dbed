"""Judging items: judge requests -> the shared runner (batching, cache) -> strict verdicts -> one retry.

Flow for a list of `JudgeItem`s:
  1. one request per item x repeat x order (pairwise runs both orders when `pairwise.swap`),
  2. `run_requests` (the same runner, batching and response cache as model requests),
  3. strict parsing (verdicts.py); each unparseable reply gets ONE retry: the conversation plus
     the judge's reply plus a format reminder (a different request, so it is cached apart),
  4. a reply still unparseable is `unparseable` (raw text kept): excluded from the mean.
     A pairwise item is unparseable when either order's verdict is.
Chat backends (`is_chat`) get system + user messages; others get one plain prompt.

`verdict: likelihood` replaces steps 2-4: the same rendered prompt is sent as loglikelihood
requests, one per allowed verdict (judging/likelihood.py), and the most likely verdict is taken;
nothing is generated, parsed or retried. A judge backend without loglikelihood is refused first.

Structured output: a backend with `supports_json_schema = True` and a method
`generate_json(requests, schema) -> list[Response]` gets rubric requests with the verdict's JSON
schema; the schema goes into the cache identity, so structured and free-text replies never mix.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from evalharness.backends.base import Backend
from evalharness.execution.cache import NullCache, ResponseCache
from evalharness.execution.runner import run_requests
from evalharness.judging import likelihood as lk
from evalharness.judging.calls import Call, JudgeItem, Judgment
from evalharness.judging.verdicts import Verdict, json_schema, labels, neutralize, parse, reminder
from evalharness.prompting.render import render
from evalharness.spec.judge import JudgeSpec
from evalharness.types import GenParams, Message, Request, RequestKind, Response, RunStats


class _SchemaBackend(Backend):
    """A view of a backend that answers generate requests under a JSON schema."""

    def __init__(self, inner: Backend, schema: dict[str, Any]) -> None:
        self.inner, self.schema = inner, schema
        self.name = f"{inner.name}+json_schema"
        self.supports: frozenset[RequestKind] = frozenset({"generate"})
        self.batch_size = inner.batch_size

    def identity(self) -> dict[str, Any]:
        return {**self.inner.identity(), "json_schema": self.schema}

    def generate(self, requests: Sequence[Request]) -> list[Response]:
        return self.inner.generate_json(requests, self.schema)


def judge_backend(backend: Backend, spec: JudgeSpec) -> Backend:
    """The backend judge requests go to: structured output where the backend supports it."""
    schema = json_schema(spec)
    if schema is not None and backend.supports_json_schema:
        return _SchemaBackend(backend, schema)
    return backend


def _orders(spec: JudgeSpec, n: int, rotate: int = 0) -> list[tuple[int, ...]]:
    base = tuple(range(n))
    if spec.mode == "ranking" and n > 1:
        k = rotate % n
        base = base[k:] + base[:k]  # callers rotate by item so no answer is always first
    if spec.mode == "pairwise" and spec.pairwise.swap:
        return [base, tuple(reversed(base))]
    return [base]


def _fields(spec: JudgeSpec, item: JudgeItem, order: tuple[int, ...]) -> dict[str, Any]:
    answers = [neutralize(item.answers[i]) for i in order]
    return {
        "question": neutralize(item.question),
        "answer": answers[0],
        "answer_a": answers[0],
        "answer_b": answers[1] if len(answers) > 1 else "",
        "answers": [{"label": lab, "text": t} for lab, t in zip(labels(len(answers)), answers, strict=True)],
        "reference": neutralize(item.reference) if item.reference is not None else None,
        "context": neutralize(item.context) if item.context is not None else None,
        "claim": neutralize(item.claim) if item.claim is not None else None,
        "criteria": [{"name": c.name, "description": c.description, "min": c.scale.min, "max": c.scale.max} for c in spec.criteria],
        "scale_min": spec.scale.min,
        "scale_max": spec.scale.max,
    }


def _request(spec: JudgeSpec, item: JudgeItem, order: tuple[int, ...], repeat: int, chat: bool) -> Request:
    fields = _fields(spec, item, order)
    user = render(spec.template, fields, where=f"judge {spec.name}: template: row {item.id}")
    system = render(spec.system, fields, where=f"judge {spec.name}: system: row {item.id}") if spec.system else None
    gen = GenParams(max_tokens=spec.generation.max_tokens, temperature=spec.generation.temperature)
    if chat:
        msgs = ((Message("system", system),) if system else ()) + (Message("user", user),)
        return Request(kind="generate", messages=msgs, gen=gen, repeat=repeat)
    prompt = (system + "\n\n" if system else "") + user
    return Request(kind="generate", prompt=prompt, gen=gen, repeat=repeat)


def _retry_request(req: Request, raw: str, note: str) -> Request:
    if req.messages is not None:
        msgs = (*req.messages, Message("assistant", raw), Message("user", note))
        return Request(kind="generate", messages=msgs, gen=req.gen, repeat=req.repeat)
    return Request(kind="generate", prompt=f"{req.prompt}{raw}\n\n{note}\n", gen=req.gen, repeat=req.repeat)


def run_calls(
    spec: JudgeSpec, items: Sequence[JudgeItem], backend: Backend, cache: ResponseCache | NullCache,
    progress: bool = False, rotate: bool = False, stats: RunStats | None = None,
) -> list[list[Call]]:
    """Every judge call for every item, each parsed, unparseable ones retried once.

    `stats`, when given, accumulates the judge's request counts and tokens (retries included).
    """
    from evalharness.results.usage import merge_stats
    lk.check_backend(spec, backend)
    if spec.likelihood:
        return _likelihood_calls(spec, items, backend, cache, progress, rotate, stats)
    jb = judge_backend(backend, spec)
    chat = backend.is_chat
    plan: list[tuple[int, tuple[int, ...], int, Request]] = []
    for idx, item in enumerate(items):
        for order in _orders(spec, len(item.answers), idx if rotate else 0):
            for r in range(spec.generation.samples):
                plan.append((idx, order, r, _request(spec, item, order, r, chat)))
    desc = f"judge {spec.name}"
    responses, _, first_stats = run_requests(jb, [p[3] for p in plan], cache, desc=desc, progress=progress)
    if stats is not None:
        merge_stats(stats, first_stats)
    calls = []
    for (_, order, r, _), resp in zip(plan, responses, strict=True):
        raw = resp.text or ""
        verdict = parse(raw, spec, len(order)) if resp.error is None else Verdict(False, reason="backend error")
        calls.append(Call(order=order, repeat=r, verdict=verdict, raw=raw, error=resp.error))
    todo = [i for i, c in enumerate(calls) if not c.verdict.ok and c.error is None]
    if todo:
        retries = [_retry_request(plan[i][3], calls[i].raw, reminder(spec, len(plan[i][1]))) for i in todo]
        again, _, retry_stats = run_requests(jb, retries, cache, desc=f"{desc} (retry)", progress=progress)
        if stats is not None:
            merge_stats(stats, retry_stats)
        for i, resp in zip(todo, again, strict=True):
            raw = resp.text or ""
            verdict = parse(raw, spec, len(plan[i][1])) if resp.error is None else Verdict(False, reason="backend error")
            calls[i] = Call(order=calls[i].order, repeat=calls[i].repeat, verdict=verdict, raw=raw, retried=True,
                            first_raw=calls[i].raw, error=resp.error)
    grouped: list[list[Call]] = [[] for _ in items]
    for (idx, *_), call in zip(plan, calls, strict=True):
        grouped[idx].append(call)
    return grouped


def _likelihood_calls(
    spec: JudgeSpec, items: Sequence[JudgeItem], backend: Backend, cache: ResponseCache | NullCache,
    progress: bool, rotate: bool, stats: RunStats | None,
) -> list[list[Call]]:
    """One Call per item x order: every allowed verdict scored as a continuation, the argmax kept."""
    from evalharness.results.usage import merge_stats

    chat = backend.is_chat
    slots: list[Slot] = []
    for idx, item in enumerate(items):
        for order in _orders(spec, len(item.answers), idx if rotate else 0):
            slots.append((idx, order, _request(spec, item, order, 0, chat)))
    desc = f"judge {spec.name} (likelihood)"

    def score(per_slot: list[list[lk.Option]]) -> list[list[Response]]:
        reqs = [Request(kind="loglikelihood", prompt=base.prompt, messages=base.messages, continuation=o.text)
                for (_, _, base), opts in zip(slots, per_slot, strict=True) for o in opts]
        responses, _, got = run_requests(backend, reqs, cache, desc=desc, progress=progress)
        if stats is not None:
            merge_stats(stats, got)
        out, i = [], 0
        for opts in per_slot:
            out.append(responses[i: i + len(opts)])
            i += len(opts)
        return out

    calls = _rubric_calls(spec, slots, score) if spec.format == "json_criteria" else _choice_calls(spec, slots, score)
    grouped: list[list[Call]] = [[] for _ in items]
    for (idx, _, _), call in zip(slots, calls, strict=True):
        grouped[idx].append(call)
    return grouped


Slot = tuple[int, tuple[int, ...], Request]  # (item index, answer order, the rendered request)
Scorer = Callable[[list[list[lk.Option]]], list[list[Response]]]


def _failure(resps: Sequence[Response]) -> str | None:
    for r in resps:
        if r.error is not None or r.logprob is None:
            return r.error or "the backend returned no log-likelihood"
    return None


def _rubric_calls(spec: JudgeSpec, slots: list[Slot], score: Scorer) -> list[Call]:
    """Rubric verdicts by likelihood: criterion by criterion, each conditioned on the earlier choices."""
    calls: list[Call] = []
    crit = spec.criteria
    chosen: list[list[int]] = [[] for _ in slots]
    dists: list[dict[str, Any]] = [{} for _ in slots]
    exps: list[dict[str, float]] = [{} for _ in slots]
    errors: list[str | None] = [None] * len(slots)
    for k, c in enumerate(crit):
        opts = [[] if errors[s] else lk.criterion_options(crit, k, chosen[s]) for s in range(len(slots))]
        for s, resps in enumerate(score(opts)):
            if errors[s]:
                continue
            errors[s] = _failure(resps)
            if errors[s]:
                continue
            lps = [float(r.logprob or 0.0) for r in resps]
            probs = lk.normalise(lps)
            values = [int(o.value) for o in opts[s]]
            chosen[s].append(values[lk.argmax(lps)])
            dists[s][c.name] = {str(v): round(p, 6) for v, p in zip(values, probs, strict=True)}
            exps[s][c.name] = lk.expected(values, probs)
    for s, (_, order, _) in enumerate(slots):
        if errors[s]:
            calls.append(Call(order=order, repeat=0, verdict=Verdict(False, reason="backend error"), raw="", error=errors[s]))
            continue
        value = {c.name: float(v) for c, v in zip(crit, chosen[s], strict=True)}
        calls.append(Call(order=order, repeat=0, verdict=Verdict(True, value), raw=lk.rubric_text(crit, chosen[s]),
                          dist=dists[s], expected=exps[s]))
    return calls


def _choice_calls(spec: JudgeSpec, slots: list[Slot], score: Scorer) -> list[Call]:
    """Ratings and choices by likelihood: every allowed verdict scored at once, the argmax kept."""
    calls: list[Call] = []
    opts = [lk.options(spec, len(order)) for _, order, _ in slots]
    for (_, order, _), os, resps in zip(slots, opts, score(opts), strict=True):
        err = _failure(resps)
        if err:
            calls.append(Call(order=order, repeat=0, verdict=Verdict(False, reason="backend error"), raw="", error=err))
            continue
        lps = [float(r.logprob or 0.0) for r in resps]
        probs = lk.normalise(lps)
        best = os[lk.argmax(lps)]
        dist = {o.text: round(p, 6) for o, p in zip(os, probs, strict=True)}
        exp: float | None = None
        if spec.format == "bracket_rating":
            exp = lk.expected([float(o.value) for o in os], probs)
        elif spec.format == "bracket_choice":
            p = dict(zip([o.value for o in os], probs, strict=True))
            exp = (p["A"] if order[0] == 0 else p["B"]) + 0.5 * p["C"]  # win share of answers[0]
        calls.append(Call(order=order, repeat=0, verdict=Verdict(True, best.value), raw=best.text, dist=dist, expected=exp))
    return calls


def _share(call: Call) -> float:
    """Win share of answers[0] in a pairwise call (A/B refer to prompt order)."""
    v = call.verdict.value
    if v == "C":
        return 0.5
    first_wins = v == "A"
    return 1.0 if first_wins == (call.order[0] == 0) else 0.0


def combine(spec: JudgeSpec, item: JudgeItem, calls: list[Call]) -> Judgment:
    """One Judgment per item from its calls (all repeats and orders)."""
    if not spec.likelihood:
        return _combine(spec, item, calls)
    if any(c.error for c in calls):  # no text to be unparseable: a failed score is an error
        return Judgment(item.id, "error", None, calls, method="likelihood")
    j = _combine(spec, item, calls)
    j.method = "likelihood"
    j.likelihood = _likelihood_details(spec, calls)
    return j


def _likelihood_details(spec: JudgeSpec, calls: list[Call]) -> dict[str, Any]:
    """Per-item extras of a likelihood judgment: distributions, and expected values (means over calls)."""
    out: dict[str, Any] = {"distributions": [c.dist for c in calls]}
    if spec.mode in {"single", "reference"}:
        out["expected_score"] = sum(c.expected for c in calls) / len(calls)
    elif spec.mode == "rubric":
        crit = {cr.name: sum(c.expected[cr.name] for c in calls) / len(calls) for cr in spec.criteria}
        out["expected_criteria"] = crit
        out["expected_score"] = _rubric_value(spec, crit)
    elif spec.mode == "pairwise":
        out["expected_share"] = sum(c.expected for c in calls) / len(calls)
    return out


def _combine(spec: JudgeSpec, item: JudgeItem, calls: list[Call]) -> Judgment:
    if any(c.error for c in calls) and not any(c.verdict.ok for c in calls):
        return Judgment(item.id, "error", None, calls)
    if not all(c.verdict.ok for c in calls):
        return Judgment(item.id, "unparseable", None, calls)
    if spec.mode == "pairwise":
        return _combine_pairwise(spec, item, calls)
    per_repeat: list[Any] = []
    ranking = None
    criteria = None
    for c in calls:
        v = c.verdict.value
        if spec.mode == "rubric":
            per_repeat.append(_rubric_value(spec, v))
        elif spec.mode == "ranking":
            order = [c.order[labels(len(c.order)).index(lab)] for lab in v]
            ranking = ranking or order
            n = len(order)
            per_repeat.append((n - 1 - order.index(0)) / (n - 1) if n > 1 else 1.0)
        else:
            per_repeat.append(float(v))
    if spec.mode == "rubric":
        criteria = {cr.name: sum(c.verdict.value[cr.name] for c in calls) / len(calls) for cr in spec.criteria}
    value = sum(per_repeat) / len(per_repeat)
    return Judgment(item.id, "parsed", value, calls, criteria=criteria, ranking=ranking,
                    flaky=len(set(map(_key, (c.verdict.value for c in calls)))) > 1, repeat_verdicts=per_repeat)


def _key(v: Any) -> Any:
    return tuple(sorted(v.items())) if isinstance(v, dict) else tuple(v) if isinstance(v, list) else v


def _rubric_value(spec: JudgeSpec, v: dict[str, float]) -> float:
    """Mean of the criteria, each mapped linearly onto the judge's scale."""
    lo, hi = spec.scale.min, spec.scale.max
    parts = [lo + (v[c.name] - c.scale.min) / (c.scale.max - c.scale.min) * (hi - lo) for c in spec.criteria]
    return sum(parts) / len(parts)


def _combine_pairwise(spec: JudgeSpec, item: JudgeItem, calls: list[Call]) -> Judgment:
    shares: list[float | None] = []
    consistent = True
    for r in range(spec.generation.samples):
        rs = [_share(c) for c in calls if c.repeat == r]
        if len(set(rs)) > 1:
            consistent = False
            shares.append(0.5 if spec.pairwise.inconsistent_as == "tie" else None)
        else:
            shares.append(rs[0])
    kept = [s for s in shares if s is not None]
    flaky = len(set(shares)) > 1
    swap = spec.pairwise.swap
    if not kept:
        return Judgment(item.id, "inconsistent", None, calls, consistent=False, flaky=flaky, repeat_verdicts=shares)
    return Judgment(item.id, "parsed", sum(kept) / len(kept), calls, consistent=consistent if swap else None,
                    flaky=flaky, repeat_verdicts=shares)


def judge_items(
    spec: JudgeSpec, items: Sequence[JudgeItem], backend: Backend, cache: ResponseCache | NullCache,
    progress: bool = False, rotate: bool = False, stats: RunStats | None = None,
) -> list[Judgment]:
    """Judge every item; the one entry point both the metric and the arena use (`stats`: see run_calls)."""
    need = 2 if spec.mode in {"pairwise", "ranking"} else 1
    for item in items:
        if len(item.answers) < need:
            from evalharness.errors import DataError

            raise DataError(f"judge {spec.name}: item {item.id!r} has {len(item.answers)} answer(s); {spec.mode} needs {need}")
    grouped = run_calls(spec, items, backend, cache, progress=progress, rotate=rotate, stats=stats)
    return [combine(spec, item, calls) for item, calls in zip(items, grouped, strict=True)]
