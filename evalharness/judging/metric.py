"""A judge as a metric: `score_batch` emits judge requests, `aggregate` averages parsed verdicts.

In a task file: `metrics: [{name: judge, params: {judge: single_rating}}]`; the metric is named
after the judge. The judge backend is not part of the task: the caller binds it from the run
config (`--judge-model`, `--judge-model-args`) with `bind_judges` before scoring.

Per-sample sufficient statistics are `(value or 0, parsed)`, so `aggregate` (and every bootstrap
resample) is the mean over parsed verdicts only: an unparseable verdict is never a minimum.
`summary(scores)` adds what a plain MetricResult lacks: `n` (parsed), `n_unparseable`, the
unparseable rate, position consistency (pairwise), agreement across repeats (`flaky` items) and
agreement with human labels (a `human_label` column) where present.

`per: context` and `per: claim` judges give one verdict per unit of a sample (each retrieved
context; each claim of the answer, judging/claims.py): one JudgeItem per unit, judged like any
other item (likelihood verdicts, repeats, the one retry), then `combine_units` makes the sample's
value the mean of its parsed unit verdicts. Its details list every unit (`contexts` / `claims`:
status, value, the claim's text, the reason a verdict failed) and the results entry counts them.
An answer without claims has nothing to judge: the sample is unparseable with that reason.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Literal

import numpy as np

from evalharness.backends.base import Backend, load_backend
from evalharness.errors import DataError, UsageError
from evalharness.execution.cache import NullCache, ResponseCache
from evalharness.judging.agreement import cohen_kappa, krippendorff_alpha, percent_agreement
from evalharness.judging.calls import JudgeItem, Judgment
from evalharness.judging.claims import split_claims
from evalharness.judging.engine import judge_items
from evalharness.metrics.base import Metric
from evalharness.spec.judge import JudgeSpec, find_judge
from evalharness.types import Output, RunStats, Sample, Score


def _text(value: Any) -> str:
    """A field as text; chat prompts (lists of [role, content]) become their last user turn."""
    if value is None:
        return ""
    if isinstance(value, list):
        turns = [t for t in value if isinstance(t, (list, tuple)) and len(t) == 2]
        users = [str(c) for r, c in turns if r == "user"]
        return users[-1] if users else "\n".join(str(v) for v in value)
    return str(value)


def _answers(spec: JudgeSpec, sample: Sample, output: Output) -> tuple[str, ...]:
    answer = output.generations[0] if output.generations else ""
    if spec.mode == "pairwise":
        if spec.inputs.baseline not in sample.fields:
            raise DataError(f"judge {spec.name}: sample {sample.id!r} has no {spec.inputs.baseline!r} column to compare against")
        return (answer, _text(sample.fields[spec.inputs.baseline]))
    if spec.mode == "ranking":
        alts = sample.fields.get(spec.inputs.alternatives)
        if not isinstance(alts, (list, tuple)) or not alts:
            raise DataError(f"judge {spec.name}: sample {sample.id!r} needs a list column {spec.inputs.alternatives!r} to rank against")
        return (answer, *(str(a) for a in alts))
    return (answer,)


def _reference(spec: JudgeSpec, sample: Sample) -> str | None:
    key = spec.inputs.reference
    if key is None:
        return None
    if key == "references" and sample.references:
        return sample.references[0]
    if key in sample.fields:
        return _text(sample.fields[key])
    if spec.mode == "reference":
        raise DataError(f"judge {spec.name}: sample {sample.id!r} has no reference ({key!r})")
    return None


@functools.lru_cache(maxsize=64)
def _printed(template: str, system: str) -> frozenset[str]:
    """The variables a judge's prompt reads (its template and system message)."""
    from jinja2 import meta

    from evalharness.prompting.render import environment

    return frozenset(meta.find_undeclared_variables(environment().parse(template + "\n" + system)))


def item_for(spec: JudgeSpec, sample: Sample, output: Output) -> JudgeItem:
    q = spec.inputs.question
    ctx = spec.inputs.context
    for key in (q, ctx):
        if key and key in sample.fields and sample.fields[key] is None:
            raise DataError(f"judge {spec.name}: sample {sample.id!r}: {key!r} is null (the judge would see no {key})")
    if q and q not in sample.fields and "question" in _printed(spec.template or "", spec.system or ""):
        raise DataError(f"judge {spec.name}: sample {sample.id!r}: no {q!r} field, and the judge's prompt shows the question "
                        f"(give a {q!r} column, or name another field with the judge's question input)")
    return JudgeItem(
        id=sample.id,
        answers=_answers(spec, sample, output),
        question=_text(sample.fields.get(q)) if q else "",
        reference=_reference(spec, sample),
        context=_text(sample.fields[ctx]) if ctx and ctx in sample.fields else None,
    )


# `per` -> the key of a sample's per-unit verdicts in its details and of their counts in results
UNIT_KEYS = {"context": "contexts", "claim": "claims"}
NO_CLAIMS = "the answer makes no claims (it is empty, or only punctuation): nothing to judge"


def _contexts(spec: JudgeSpec, sample: Sample) -> list[str]:
    contexts = sample.fields.get(spec.inputs.contexts)
    if isinstance(contexts, np.ndarray):  # Parquet / Arrow lists
        contexts = contexts.tolist()
    if not isinstance(contexts, (list, tuple)) or not contexts:
        raise DataError(f"judge {spec.name}: sample {sample.id!r} needs a non-empty list column "
                        f"{spec.inputs.contexts!r} (one verdict per retrieved context)")
    return [_text(c) for c in contexts]


def unit_items(spec: JudgeSpec, samples: Sequence[Sample],
               outputs: Sequence[Output]) -> tuple[list[JudgeItem], list[int], list[dict[str, Any]]]:
    """`per: context` / `per: claim` judging: one item per (sample, retrieved context or claim of its
    answer), each item's sample index, and per sample what its details add (`claims_merged`)."""
    items: list[JudgeItem] = []
    owners: list[int] = []
    notes: list[dict[str, Any]] = []
    for n, (sample, output) in enumerate(zip(samples, outputs, strict=True)):
        base = item_for(spec, sample, output)
        note: dict[str, Any] = {}
        if spec.per == "context":
            units = _contexts(spec, sample)
        else:
            claims = split_claims(base.answers[0], spec.claim_limit)
            units = list(claims.texts)
            if claims.merged:
                note["claims_merged"] = claims.merged  # sentences past max_claims, judged inside the last claim
        for u, text in enumerate(units):
            uid = f"{sample.id}#{spec.per}{u}"
            items.append(replace(base, id=uid, context=text) if spec.per == "context" else replace(base, id=uid, claim=text))
            owners.append(n)
        notes.append(note)
    return items, owners, notes


def combine_units(spec: JudgeSpec, sample_id: str, group: Sequence[Judgment]) -> Judgment:
    """A sample's judgment from its per-context or per-claim ones: the mean of the parsed verdicts;
    unparseable when none parsed (or there was nothing to judge: an answer without claims, which
    ragas scores NaN), an error only when every call failed."""
    method = "likelihood" if spec.likelihood else "generate"
    parsed = [j.value for j in group if j.status == "parsed" and j.value is not None]
    if parsed:
        status = "parsed"
    elif group and all(j.status == "error" for j in group):
        status = "error"
    else:
        status = "unparseable"
    expected = [j.likelihood["expected_score"] for j in group if j.likelihood and "expected_score" in j.likelihood]
    return Judgment(id=sample_id, status=status, value=sum(parsed) / len(parsed) if parsed else None,
                    calls=[c for j in group for c in j.calls], method=method,
                    likelihood={"expected_score": sum(expected) / len(expected)} if expected else None)


def _unit_detail(spec: JudgeSpec, item: JudgeItem, j: Judgment) -> dict[str, Any]:
    """One context's or claim's verdict in the sample's details (the claim's text included)."""
    out: dict[str, Any] = {"claim": item.claim} if spec.per == "claim" else {}
    out.update(status=j.status, value=j.value)
    if j.status != "parsed":
        out["reason"] = "; ".join(c.error or c.verdict.reason for c in j.calls if not c.verdict.ok)
    if len(j.repeat_verdicts) > 1:  # generation.samples > 1: each unit's repeats, for agreement
        out.update(repeat_verdicts=j.repeat_verdicts, flaky=j.flaky)
    return out


class JudgeMetric(Metric):
    """An LLM judge as a Metric; unusable until a backend is bound."""

    higher_is_better = True
    kinds = frozenset({"generate"})

    def __init__(self, spec: JudgeSpec, source: str | None = None) -> None:
        self.spec = spec
        self.name = spec.name
        # a rating on the judge's scale (1-10), a win share in [0, 1], a rubric score; the per-sample
        # statistics are (value, parsed), so its CI is the bootstrap of `aggregate` over parsed verdicts
        self.kind = "bounded"
        self.scale = spec.value_range
        self.source = source  # the judge file, for errors
        self.backend: Backend | None = None
        self.cache: ResponseCache | NullCache = NullCache()
        self.progress = False
        self.judge_stats = RunStats()  # the judge's requests and tokens, kept apart from the model's

    @property
    def judge_backend(self) -> Backend | None:
        return self.backend

    def bind(self, backend: Backend, cache: ResponseCache | NullCache, progress: bool = False) -> None:
        from evalharness.judging.likelihood import check_backend

        check_backend(self.spec, backend, self.source)  # a likelihood judge on a chat-only API: refused now
        self.backend, self.cache, self.progress = backend, cache, progress

    def score(self, sample: Sample, output: Output) -> Score:
        return self.score_batch([sample], [output])[0]

    def score_batch(self, samples: Sequence[Sample], outputs: Sequence[Output]) -> list[Score]:
        if self.backend is None:
            raise UsageError(f"judge {self.name!r} needs a judge model: pass --judge-model (and --judge-model-args)")
        notes: list[dict[str, Any]] = [{} for _ in samples]
        if self.spec.per == "sample":
            items = [item_for(self.spec, s, o) for s, o in zip(samples, outputs, strict=True)]
            owners = list(range(len(samples)))
        else:
            items, owners, notes = unit_items(self.spec, samples, outputs)
        judgments = judge_items(self.spec, items, self.backend, self.cache, progress=self.progress, stats=self.judge_stats)
        grouped: list[list[tuple[JudgeItem, Judgment]]] = [[] for _ in samples]
        for owner, item, j in zip(owners, items, judgments, strict=True):
            grouped[owner].append((item, j))
        return [self._score(sample, group, note) for sample, group, note in zip(samples, grouped, notes, strict=True)]

    def _score(self, sample: Sample, group: list[tuple[JudgeItem, Judgment]], note: dict[str, Any]) -> Score:
        """A sample's Score from its judgment(s); per-unit verdicts listed in its details."""
        if self.spec.per == "sample":
            j = group[0][1]
            extra = j.details()
        else:
            j = combine_units(self.spec, sample.id, [u for _, u in group])
            extra = {**j.details(), **note, UNIT_KEYS[self.spec.per]: [_unit_detail(self.spec, i, u) for i, u in group]}
            if not group:
                extra["reason"] = [NO_CLAIMS]
        human = sample.fields.get(self.spec.inputs.human)
        if human is not None and human != "":
            extra["human"] = human
        if j.value is None:
            return Score(value=math.nan, stats=(0.0, 0.0), extra=extra)
        return Score(value=j.value, stats=(j.value, 1.0), extra=extra)

    def aggregate(self, stats: np.ndarray) -> float:
        if len(stats) == 0 or stats[:, 1].sum() == 0:
            return math.nan
        return float((stats[:, 0] * stats[:, 1]).sum() / stats[:, 1].sum())

    def summary(self, scores: Sequence[Score]) -> dict[str, Any]:
        """Fields merged into this judge's results.json entry (they override `n`)."""
        return summarize(self.spec, [s.extra for s in scores], [s.value for s in scores])


def summarize(spec: JudgeSpec, details: Sequence[dict[str, Any]], values: Sequence[float]) -> dict[str, Any]:
    statuses = [d.get("status") for d in details]
    n_parsed = sum(s == "parsed" for s in statuses)
    n_unp = sum(s == "unparseable" for s in statuses)
    n_err = sum(s == "error" for s in statuses)
    n_none = sum(d.get("claims") == [] for d in details)  # per: claim answers without claims: no reply to parse
    n_judged = len(details) - n_err - n_none
    out: dict[str, Any] = {
        "n": n_parsed,
        "n_unparseable": n_unp,
        "unparseable_rate": n_unp / len(details) if details else math.nan,
        # verdicts that parsed, of the judge replies that came back (1 by construction under likelihood)
        "parse_rate": (n_judged - n_unp + n_none) / n_judged if n_judged else math.nan,
        "n_retried": sum(bool(d.get("retried")) for d in details),
        "n_errors": n_err,
        "judge": {"name": spec.name, "mode": spec.mode, "scale": list(spec.value_range), "verdict": spec.verdict.method},
    }
    if spec.likelihood:
        # verdicts are the argmax over the allowed verdicts' log-likelihoods, never parsed text
        out["verdict_method"] = "likelihood"
        expected = [d["expected_score"] for d in details if "expected_score" in d]
        if expected:  # G-Eval style: the probability-weighted score, beside the argmax mean (`value`)
            out["expected_score"] = sum(expected) / len(expected)
        shares = [d["expected_share"] for d in details if "expected_share" in d]
        if shares:
            out["expected_share"] = sum(shares) / len(shares)
    if spec.per != "sample":
        out[UNIT_KEYS[spec.per]] = unit_counts(spec, details)
    if spec.mode == "pairwise" and spec.pairwise.swap:
        judged = [d for d in details if "consistent" in d]
        out["n_inconsistent"] = sum(not d["consistent"] for d in judged)
        out["position_consistency"] = sum(d["consistent"] for d in judged) / len(judged) if judged else math.nan
    if spec.mode == "rubric":
        crit = [d["criteria"] for d in details if "criteria" in d]
        out["criteria"] = {c.name: (sum(x[c.name] for x in crit) / len(crit) if crit else math.nan) for c in spec.criteria}
    # agreement across repeats: per item, or per context / claim for the judges that judge those
    items = details if spec.per == "sample" else [u for d in details for u in d.get(UNIT_KEYS[spec.per], [])]
    repeats = [d["repeat_verdicts"] for d in items if "repeat_verdicts" in d]
    if repeats:
        level: Literal["nominal", "interval"] = "nominal" if spec.mode == "pairwise" else "interval"
        clean = [[v for v in r if v is not None] for r in repeats]
        out["agreement"] = {
            "samples_per_item": spec.generation.samples,
            "percent_agreement": percent_agreement(clean),
            "krippendorff_alpha": krippendorff_alpha(clean, level),
            "n_flaky": sum(bool(d.get("flaky")) for d in items),
        }
        if spec.per != "sample":
            out["agreement"]["per"] = spec.per  # items are contexts / claims, n_flaky counts them
    pairs = [(d["human"], v) for d, v in zip(details, values, strict=True) if "human" in d and d.get("status") == "parsed"]
    if pairs:
        human = [_as_label(h) for h, _ in pairs]
        judge = [_as_label(v) for _, v in pairs]
        out["human_agreement"] = {"n": len(pairs), "percent_agreement": sum(a == b for a, b in zip(human, judge, strict=True)) / len(pairs),
                                  "cohen_kappa": cohen_kappa(human, judge)}
    return out


def unit_counts(spec: JudgeSpec, details: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Counts of the per-context or per-claim verdicts (results.json `contexts` / `claims`)."""
    key = UNIT_KEYS[spec.per]
    units = [u for d in details for u in d.get(key, [])]
    out = {"n": len(units), "n_parsed": sum(u["status"] == "parsed" for u in units),
           "n_unparseable": sum(u["status"] == "unparseable" for u in units),
           "n_errors": sum(u["status"] == "error" for u in units)}
    if spec.per == "claim":
        # answers with nothing to judge (unparseable samples, not claims), and answers past max_claims
        out["n_answers_without_claims"] = sum(key in d and not d[key] for d in details)
        out["n_answers_merged"] = sum(bool(d.get("claims_merged")) for d in details)
    return out


def _as_label(v: Any) -> Any:
    """Human labels and judge values on one footing: A/B/C as win shares, numbers to the nearest half."""
    if isinstance(v, str):
        s = v.strip()
        if s in {"A", "B", "C"}:
            return {"A": 1.0, "B": 0.0, "C": 0.5}[s]
        try:
            v = float(s)
        except ValueError:
            return s
    return round(float(v) * 2) / 2


def judge_metric(judge: str, question: str | None = None, reference: str | None = None, context: str | None = None,
                 samples: int | None = None, temperature: float | None = None) -> JudgeMetric:
    """The `judge` metric factory: a judge by built-in name or path, with optional input overrides."""
    loaded = find_judge(judge)
    spec = loaded.spec
    inputs: dict[str, Any] = {}
    for key, val in (("question", question), ("reference", reference), ("context", context)):
        if val is not None:
            inputs[key] = val
    gen: dict[str, Any] = {}
    if samples is not None:
        gen["samples"] = int(samples)
    if temperature is not None:
        gen["temperature"] = float(temperature)
    if inputs or gen:
        data = spec.model_dump()
        data["inputs"].update(inputs)
        data["generation"].update(gen)
        spec = JudgeSpec.model_validate(data)
    return JudgeMetric(spec, source=str(loaded.path) if loaded.path else judge)


def needs_judge(metrics: Sequence[Any]) -> bool:
    return any(isinstance(m, JudgeMetric) for m in metrics)


def bind_judges(metrics: Sequence[Any], model: str | None, model_args: dict[str, Any] | None,
                cache: ResponseCache | NullCache, progress: bool = False) -> Backend | None:
    """Give every judge metric the judge backend (loaded once); a clear error when none was named."""
    judges = [m for m in metrics if isinstance(m, JudgeMetric)]
    if not judges:
        return None
    if not model:
        raise UsageError(f"judge metric(s) {', '.join(m.name for m in judges)} need --judge-model")
    backend = load_backend(model, model_args)
    for m in judges:
        m.bind(backend, cache, progress)
    return backend


class JudgeSession:
    """Judges named on the command line, bound to one judge backend and the response cache.

    `score` and `run` use it the same way: `metrics += session.metrics`, score, then
    `session.describe()` into results.json `config.judge`, and `session.close()`.
    """

    def __init__(self, names: Sequence[str], model: str | None, model_args: dict[str, Any] | None = None,
                 cache_dir: Any = None, use_cache: bool = True, progress: bool = False) -> None:
        from pathlib import Path

        from evalharness.execution.cache import default_home

        self.metrics = [judge_metric(n) for n in names]
        self.model, self.model_args = model, dict(model_args or {})
        self.cache: ResponseCache | NullCache = NullCache()
        self.backend: Backend | None = None
        if self.metrics:
            if use_cache:
                self.cache = ResponseCache(Path(cache_dir or default_home() / "cache") / "responses.sqlite")
            self.backend = bind_judges(self.metrics, model, self.model_args, self.cache, progress)

    def describe(self) -> dict[str, Any]:
        from evalharness.results.store import redact

        return {
            "judges": {m.name: {"mode": m.spec.mode, "verdict": m.spec.verdict.method, "spec": m.spec.model_dump(exclude_none=True)}
                       for m in self.metrics},
            "backend": self.model,
            "args": redact(self.model_args),
            "identity": self.backend.identity() if self.backend is not None else None,
        }

    def close(self) -> None:
        self.cache.close()
