"""Per-sample data of a report: the drill-down rows, sample statuses, run-to-run diffs.

A sample's status in one run, decided here so the page's filters and the tests agree:
    e  error: the model call failed
    u  unparseable: a judge verdict did not parse, or a metric gave no score
    r  right / w  wrong: by the task's first 0/1-valued metric (acc, exact_match, ...; 0/100 counts)
    "" neither: the task has no 0/1 metric (perplexity, BLEU-only tasks)
A sample is *flipped* when its first metric's score differs between runs, or when a judge
marked it `inconsistent` / `flipped` (pairwise verdict changed with the answer order).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from evalharness.report.data import Run, finite

DEFAULT_MAX_TEXT = 4000


def _clip_tail(text: str, limit: int, where: str) -> str:
    """The end of a long prompt (the question is last; few-shot context comes first)."""
    if limit <= 0 or len(text) <= limit:
        return text
    return f"[… {len(text) - limit:,} characters omitted; full text in {where} …]\n" + text[-limit:]


def _clip_head(text: str, limit: int, where: str) -> str:
    if limit <= 0 or len(text) <= limit:
        return text
    return text[:limit] + f"\n[… {len(text) - limit:,} characters omitted; full text in {where} …]"


MAX_ID = 200  # characters of a sample id the page shows (ids pair samples in Python, not on the page)


def _shown_id(sid: str) -> str:
    """A sample id as the page shows it: cut past MAX_ID (50 ids of 200 KB made a 10 MB page)."""
    return sid if len(sid) <= MAX_ID else f"{sid[:MAX_ID]}… ({len(sid):,} characters)"


def prompt_text(prompt: Any) -> str:
    """A prompt as text: plain prompts as they are, chat prompts as `[role]` blocks."""
    if isinstance(prompt, list):
        return "\n\n".join(f"[{m[0]}]\n{m[1]}" if isinstance(m, (list, tuple)) and len(m) == 2 else str(m) for m in prompt)
    return "" if prompt is None else str(prompt)


def _readable_judge(d: dict[str, Any]) -> dict[str, Any]:
    """A judge's details as the page shows them: the verdict, and the judge's text as prose (not a
    JSON list): its explanation when the verdict parsed, its raw reply and the reason when not."""
    out = dict(d)
    verdicts = d.get("verdicts")
    if isinstance(verdicts, list) and verdicts and "verdict" not in d:
        out["verdict"] = ", ".join(f"{v:g}" if isinstance(v, (int, float)) else str(v) for v in verdicts)
    for key in ("raw", "first_raw", "reason"):
        v = d.get(key)
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            out[key] = "\n\n".join(v)
    if "explanation" not in out and d.get("status") in ("unparseable", "error") and out.get("reason"):
        out["explanation"] = f"{d['status']}: {out['reason']}"
    for key in ("claims", "contexts"):  # per-claim / per-context judges: one line per unit verdict
        units = d.get(key)
        if isinstance(units, list) and units and all(isinstance(u, dict) for u in units):
            out[key] = "\n".join(_unit_line(i, u) for i, u in enumerate(units, 1))
            if "verdict" not in out and isinstance(d.get("value"), (int, float)):
                parsed = sum(u.get("status") == "parsed" for u in units)
                out["verdict"] = f"{d['value']:.3g} (mean of {parsed} of {len(units)} {key})"
    return out


def _unit_line(i: int, unit: dict[str, Any]) -> str:
    """`2. [0] Rome is the capital of Spain.` / `3. [unparseable: no [[rating]] found] ...`."""
    value = unit.get("value")
    if unit.get("status") == "parsed" and isinstance(value, (int, float)):
        verdict = f"{value:g}"
    else:
        verdict = f"{unit.get('status', '?')}: {unit.get('reason', '')}".rstrip(": ")
    text = unit.get("claim")
    return f"{i}. [{verdict}]" + (f" {text}" if isinstance(text, str) else "")


def _details(rec: dict[str, Any], limit: int, where: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for metric, d in (rec.get("score_details") or {}).items():
        if not isinstance(d, dict):
            d = {"detail": d}
        elif "status" in d:
            d = _readable_judge(d)
        clean: dict[str, Any] = {}
        for k, v in d.items():
            if isinstance(v, float):
                clean[k] = finite(v)
            elif isinstance(v, (int, bool)) or v is None:
                clean[k] = v
            else:
                clean[k] = _clip_head(v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str), limit, where)
        out[str(metric)] = clean
    return out


def _unparseable(scores: list[float | None], details: dict[str, dict[str, Any]]) -> bool:
    for d in details.values():
        for key in ("status", "verdict", "outcome"):
            if str(d.get(key, "")).lower() in {"unparseable", "unparsable", "invalid"}:
                return True
        if d.get("unparseable") is True:
            return True
    return any(s is None for s in scores)


def _inconsistent(details: dict[str, dict[str, Any]]) -> bool:
    for d in details.values():
        if d.get("inconsistent") is True or d.get("flipped") is True or str(d.get("status", "")).lower() == "inconsistent":
            return True
    return False


def declared_scale(runs: list[Run], task: str, metric: str) -> tuple[float, float] | None:
    """The metric's declared range (results.json `scale`) where every run declaring one agrees."""
    scales = {tuple(m["scale"]) for r in runs if task in r.tasks
              if isinstance(m := r.tasks[task].get("metrics", {}).get(metric), dict) and m.get("scale")}
    if len(scales) != 1:
        return None
    low, high = next(iter(scales))
    return (float(low), float(high)) if low < high else None


def correct_metric(metrics: list[str], runs_records: list[list[dict[str, Any]]],
                   runs: list[Run] | None = None, task: str = "") -> tuple[int, float] | None:
    """(index, right value) of the first metric declared binary in results.json (`kind`, `scale`).

    Files from before the declaration (no run declares a kind) fall back to the values: the first
    metric whose scores are all 0/1 (or all 0/100)."""
    entries = [r.tasks[task]["metrics"] for r in runs or [] if task in r.tasks]
    if any("kind" in m for e in entries for m in e.values()):
        for j, metric in enumerate(metrics):
            declared = [e[metric] for e in entries if metric in e]
            if declared and all(m.get("kind") == "binary" for m in declared):
                return j, float((declared[0].get("scale") or [0.0, 1.0])[1])
        return None
    for j, metric in enumerate(metrics):
        values = {rec.get("scores", {}).get(metric) for recs in runs_records for rec in recs if "error" not in rec}
        values.discard(None)
        if not values:
            continue
        if values <= {0, 1}:
            return j, 1.0
        if values <= {0, 100}:
            return j, 100.0
    return None


def _output(rec: dict[str, Any], limit: int, where: str) -> dict[str, Any]:
    if "generations" in rec:
        gens = [str(g) for g in rec.get("generations") or []]
        out: dict[str, Any] = {"t": [_clip_head(g, limit, where) for g in gens]}
        extracted = [str(x) for x in rec.get("extracted") or []]
        if extracted and extracted != gens:
            out["x"] = [_clip_head(x, limit, where) for x in extracted]
        return out
    if "predicted" in rec:
        choices = rec.get("choices") or []
        pred = rec["predicted"]
        text = str(choices[pred]) if isinstance(pred, int) and 0 <= pred < len(choices) else str(pred)
        return {"t": [_clip_head(text, limit, where)], "pi": pred, "lp": [finite(x) for x in rec.get("logprobs") or []]}
    if "logprob" in rec:
        return {"t": [f"log-likelihood {rec['logprob']:.4f} over {rec.get('n_tokens', '?')} tokens"]}
    return {"t": []}


@dataclass
class TaskSamples:
    """One task's drill-down payload (what the page embeds as JSON) and its per-run score lists."""

    task: str
    payload: dict[str, Any]
    primary_scores: list[list[float]]  # per run of this task, for the distribution chart
    missing: list[str]  # labels of runs whose per-sample log is absent


def _sample_output(rec: dict[str, Any], metrics: list[str], correct: tuple[int, float] | None, max_text: int,
                   where: str) -> dict[str, Any]:
    """One run's cell of a sample row: output, scores, details and its right/wrong/unparseable/error mark."""
    out = _output(rec, max_text, where)
    scores_raw = rec.get("scores") or {}
    scores = [finite(scores_raw.get(m)) for m in metrics]
    details = _details(rec, max_text, where)
    if details:
        out["d"] = details
    if "error" in rec:
        out["e"], out["k"] = _clip_head(str(rec["error"]), max_text, where), "e"
    elif _unparseable([s for m, s in zip(metrics, scores, strict=True) if m in scores_raw or not scores_raw], details):
        out["k"] = "u"
    elif correct is not None and metrics[correct[0]] in scores_raw:  # a run lacking the metric is neither
        out["k"] = "r" if scores[correct[0]] == correct[1] else "w"
    else:
        out["k"] = ""
    if _inconsistent(details):
        out["f"] = 1
    out["s"] = scores
    return out


def task_samples(task: str, runs: list[Run], max_text: int = DEFAULT_MAX_TEXT) -> TaskSamples:
    """Join the task's per-sample logs of every run by sample id."""
    having = [r for r in runs if task in r.tasks]
    metrics: list[str] = []
    hib: list[bool] = []
    for r in having:
        for metric, m in r.tasks[task]["metrics"].items():
            if metric not in metrics:
                metrics.append(metric)
                hib.append(bool(m.get("higher_is_better", True)))
    records = [r.samples(task) for r in having]
    correct = correct_metric(metrics, records, having, task)
    by_id: dict[str, dict[str, Any]] = {}
    missing = [r.label for r, recs in zip(having, records, strict=True) if not recs]
    primary: list[list[float]] = [[] for _ in having]
    for k, (run, recs) in enumerate(zip(having, records, strict=True)):
        where = f"{run.path.name}/samples/{task}.jsonl"
        for rec in recs:
            sid = str(rec.get("id"))
            row = by_id.get(sid)
            if row is None:
                row = {"id": _shown_id(sid), "p": _clip_tail(prompt_text(rec.get("prompt")), max_text, where),
                       "o": [None] * len(having)}
                if rec.get("references"):
                    row["r"] = [_clip_head(str(x), max_text, where) for x in rec["references"]]
                if rec.get("choices"):
                    row["c"] = [_clip_head(str(x), max_text, where) for x in rec["choices"]]
                    row["g"] = rec.get("gold")
                by_id[sid] = row
            out = _sample_output(rec, metrics, correct, max_text, where)
            scores = out["s"]
            row["o"][k] = out
            if scores and scores[0] is not None:
                primary[k].append(scores[0])
    rows = list(by_id.values())
    for row in rows:
        firsts = {o["s"][0] if o["s"] else None for o in row["o"] if o is not None}
        if len(firsts) > 1 or any(o is not None and o.get("f") for o in row["o"]):
            row["f"] = 1
    payload = {
        "task": task,
        "kind": having[0].tasks[task].get("kind", "") if having else "",
        "runs": [r.label for r in having],
        "metrics": metrics,
        "hib": hib,
        "correct": None if correct is None else {"metric": metrics[correct[0]], "value": correct[1]},
        "samples": rows,
    }
    return TaskSamples(task, payload, primary, missing)


@dataclass
class DiffSummary:
    """Run B against run A on one task, by the task's first metric."""

    task: str
    metric: str
    run_a: str
    run_b: str
    common: int
    changed: int
    improved: int
    regressed: int
    only_a: int
    only_b: int
    comparable: bool  # same task file and prompt template in both runs


def diffs(ts: TaskSamples, runs: list[Run]) -> list[DiffSummary]:
    """Each later run of the task against the first one given (the baseline)."""
    labels: list[str] = ts.payload["runs"]
    if len(labels) < 2:
        return []
    by_label = {r.label: r for r in runs}
    hib = ts.payload["hib"][0] if ts.payload["hib"] else True
    out = []
    for b in range(1, len(labels)):
        common = changed = improved = regressed = only_a = only_b = 0
        for row in ts.payload["samples"]:
            oa, ob = row["o"][0], row["o"][b]
            if oa is None or ob is None:
                only_a += ob is None and oa is not None
                only_b += oa is None and ob is not None
                continue
            common += 1
            sa, sb = oa["s"][0] if oa["s"] else None, ob["s"][0] if ob["s"] else None
            if sa != sb:
                changed += 1
                if sa is not None and sb is not None:
                    better = sb > sa if hib else sb < sa
                    improved += better
                    regressed += not better
        fa = by_label[labels[0]].tasks[ts.task].get("fingerprint", {})
        fb = by_label[labels[b]].tasks[ts.task].get("fingerprint", {})
        comparable = all(fa.get(k) == fb.get(k) for k in ("task_file_hash", "prompt_template_hash", "num_fewshot"))
        out.append(DiffSummary(ts.task, ts.payload["metrics"][0], labels[0], labels[b], common, changed, improved, regressed,
                               only_a, only_b, comparable))
    return out
