"""Human labels: export samples for annotation, import the labels back, agreement with the judges.

Two kinds of label, as human evaluation of LLM output usually collects them:
    rating      a Likert score of one run's answer (scale from the task's judge, else 1-5)
    preference  which of two runs' answers is better (A, B or tie), with the model names blinded:
                each item shows the runs in a seeded random order and the key (item -> which run
                is A) goes to a separate key file, never into the file annotators see.

Files are CSV or JSONL (by suffix). Import validates every row; the first bad row stops the
import with `FILE:LINE: field: what was expected` (exit 2). Blank labels are skipped (counted).
Imported labels are kept in `RUN_DIR/human/labels.jsonl` (unblinded, one record per label) and
summarised into results.json `tasks.<task>.human`:
    ratings    {n, mean, ci_low, ci_high, scale}                       (bootstrap CI over items)
    pairwise   {n, wins, losses, ties, win_rate, ci_low, ci_high, against}  (ties count half)
    agreement  {<judge metric>: {n, percent_agreement, cohen_kappa, spearman}}
Agreement pairs each human label with the judge's verdict on the same sample: ratings against the
judge's rating (percent agreement and kappa only when both use the same scale; Spearman always);
preferences against the preference the judge's ratings of the two runs imply (higher wins).
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from evalharness.errors import DataError, UsageError
from evalharness.results.store import (
    atomic_write_text,
    csv_cell,
    csv_uncell,
    load_results,
    read_jsonl_tolerant,
    task_samples_log,
    write_json,
    write_jsonl,
)

RATING_FIELDS = ["item", "task", "sample_id", "prompt", "response", "reference", "scale", "rating", "comment"]
PAIR_FIELDS = ["item", "task", "sample_id", "prompt", "response_a", "response_b", "preference", "comment"]
PREFERENCES = {"a": "A", "b": "B", "tie": "tie", "c": "tie"}
JUDGE_KEYS = {"n_unparseable", "position_consistency", "n_flaky"}


def _fmt(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in {".csv", ".jsonl"}:
        raise UsageError(f"{path}: expected a .csv or .jsonl file name")
    return suffix[1:]


def _text(prompt: Any) -> str:
    if isinstance(prompt, list):  # chat prompt: [[role, content], ...]
        return "\n\n".join(f"[{m[0]}] {m[1]}" if isinstance(m, list) and len(m) == 2 else str(m) for m in prompt)
    return "" if prompt is None else str(prompt)


def _samples(run_dir: Path, results: dict[str, Any], task: str) -> dict[str, dict[str, Any]]:
    log = task_samples_log(run_dir, task, results["tasks"][task])
    return {str(r["id"]): r for r in read_jsonl_tolerant(log) if r.get("generations") and "id" in r}


def judge_metrics(task_result: dict[str, Any]) -> list[str]:
    return [m for m, v in task_result.get("metrics", {}).items() if isinstance(v, dict) and JUDGE_KEYS & set(v)]


def judge_scale(metric: str) -> tuple[int, int] | None:
    """The rating scale of a built-in judge metric (named after its judge), if it rates."""
    from evalharness.spec.judge import find_judge

    try:
        spec = find_judge(metric).spec
    except Exception:  # noqa: BLE001 - not a built-in judge (or not loadable): no scale to borrow
        return None
    return (spec.scale.min, spec.scale.max) if spec.mode == "single" else None


def _tasks(results: dict[str, Any], task: str | None) -> list[str]:
    names = list(results.get("tasks", {}))
    if task is not None:
        if task not in names:
            raise UsageError(f"--task: {task!r} is not in this run (it has {', '.join(names) or 'no tasks'})")
        return [task]
    return names


def export_ratings(run_dir: Path, task: str | None = None, limit: int | None = None,
                   scale: tuple[int, int] | None = None) -> list[dict[str, Any]]:
    """Rows for Likert rating of one run's generated answers."""
    results = load_results(run_dir)
    rows = []
    for t in _tasks(results, task):
        recs = _samples(run_dir, results, t)
        judges = [s for m in judge_metrics(results["tasks"][t]) if (s := judge_scale(m))]
        lo, hi = scale or (judges[0] if judges else (1, 5))
        for sid, rec in list(recs.items())[:limit]:
            rows.append({"item": f"{t}/{sid}", "task": t, "sample_id": sid, "prompt": _text(rec.get("prompt")),
                         "response": str(rec["generations"][0]), "reference": "; ".join(map(str, rec.get("references") or [])),
                         "scale": f"{lo}-{hi}", "rating": "", "comment": ""})
    if not rows:
        raise DataError(f"{run_dir}: no generated answers to annotate (annotation covers generate tasks)")
    return rows


def export_pairwise(run_a: Path, run_b: Path, task: str | None = None, limit: int | None = None,
                    seed: int = 0) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Blinded rows comparing two runs on their common samples, and the key that unblinds them."""
    from evalharness.report.data import model_name

    res = [load_results(run_a), load_results(run_b)]
    rng = random.Random(seed)
    rows, items = [], {}
    for t in [t for t in _tasks(res[0], task) if t in res[1].get("tasks", {})]:
        recs = [_samples(run_a, res[0], t), _samples(run_b, res[1], t)]
        for sid in [s for s in recs[0] if s in recs[1]][:limit]:
            first = rng.randrange(2)  # which run is shown as A
            order = [first, 1 - first]
            item = f"{t}/{sid}"
            items[item] = {"A": order[0], "B": order[1]}
            rows.append({"item": item, "task": t, "sample_id": sid, "prompt": _text(recs[0][sid].get("prompt")),
                         "response_a": str(recs[order[0]][sid]["generations"][0]),
                         "response_b": str(recs[order[1]][sid]["generations"][0]), "preference": "", "comment": ""})
    if not rows:
        raise DataError(f"{run_a}, {run_b}: no common generated samples to compare")
    key = {"kind": "pairwise", "seed": seed,
           "runs": [{"path": str(p.resolve()), "model": model_name(r)} for p, r in zip((run_a, run_b), res, strict=True)],
           "items": items}
    return rows, key


def write_rows(path: Path, rows: list[dict[str, Any]], fields: list[str]) -> None:
    if _fmt(path) == "jsonl":
        atomic_write_text(path, "".join(json.dumps({k: r.get(k, "") for k in fields}, ensure_ascii=False) + "\n" for r in rows))
        return
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows({k: csv_cell(v) for k, v in row.items()} for row in rows)  # no live formulas for annotators
    atomic_write_text(path, buf.getvalue())


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) of a CSV or JSONL label file; an unreadable line is a one-line error."""
    fmt = _fmt(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 (byte {exc.start})") from None
    if fmt == "jsonl":
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{i}: not valid JSON: {exc.msg}") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{i}: expected a JSON object per line")
            yield i, row
        return
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "item" not in reader.fieldnames:
        raise DataError(f"{path}:1: header: expected an `item` column (a file written by `evalharness annotate export`)")
    start = reader.line_num + 1
    for row in reader:  # a quoted field may span lines: report the line where the row starts
        yield start, {k: csv_uncell(v) for k, v in row.items() if k is not None}
        start = reader.line_num + 1


def _rating(value: Any, scale: tuple[int, int], where: str) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer of hundreds of digits
        number = math.nan
    if isinstance(value, bool) or not number.is_integer() or not scale[0] <= number <= scale[1]:
        raise DataError(f"{where}: rating: expected a whole number from {scale[0]} to {scale[1]}, got {value!r}")
    return int(number)


def _scale(text: Any, where: str) -> tuple[int, int]:
    found = re.fullmatch(r"\s*([0-9]{1,6})\s*-\s*([0-9]{1,6})\s*", str(text or "1-5"))  # ASCII digits, a sane size
    if found is None or int(found[1]) >= int(found[2]):
        raise DataError(f"{where}: scale: expected MIN-MAX such as 1-5, got {str(text)[:40]!r}")
    return int(found[1]), int(found[2])


def parse_labels(path: Path, run_dir: Path, key: dict[str, Any] | None) -> tuple[list[dict[str, Any]], int]:
    """Validated, unblinded label records for `run_dir`, and the number of blank rows."""
    results = load_results(run_dir)
    known = {t: set(_samples(run_dir, results, t)) for t in results.get("tasks", {})}
    labels, blank, seen = [], 0, set()
    scales: dict[str, tuple[int, int]] = {}
    me = None
    if key is not None:
        paths = [str(Path(r["path"]).resolve()) for r in key["runs"]]
        if str(run_dir.resolve()) not in paths:
            raise UsageError(f"--run: {run_dir} is neither run of the key file ({', '.join(paths)})")
        me = paths.index(str(run_dir.resolve()))
    for line, row in read_rows(path):
        where = f"{path}:{line}"
        item = str(row.get("item") or "")
        if item in seen:
            raise DataError(f"{where}: item: {item!r} labelled twice")
        seen.add(item)
        task, _, sid = item.partition("/")
        if task not in known or sid not in known[task]:
            raise DataError(f"{where}: item: {item!r} is not a generated sample of {run_dir}")
        if key is None:
            if "rating" not in row:
                raise DataError(f"{where}: rating: column missing (pairwise files need --key)")
            scale = _scale(row.get("scale"), where)
            if scales.setdefault(task, scale) != scale:  # one scale per task: a mean over mixed scales means nothing
                raise DataError(f"{where}: scale: {scale[0]}-{scale[1]} differs from the file's {scales[task][0]}-"
                                f"{scales[task][1]} for task {task}")
            value = _rating(row.get("rating"), scale, where)
            if value is None:
                blank += 1
                continue
            labels.append({"kind": "rating", "task": task, "id": sid, "rating": value, "scale": list(scale)})
            continue
        if item not in key["items"]:
            raise DataError(f"{where}: item: {item!r} is not in the key file")
        pref = str(row.get("preference") or "").strip()
        if not pref:
            blank += 1
            continue
        if pref.lower() not in PREFERENCES:
            raise DataError(f"{where}: preference: expected A, B or tie, got {pref!r}")
        pref = PREFERENCES[pref.lower()]
        winner = None if pref == "tie" else key["items"][item][pref]
        outcome = "tie" if winner is None else ("win" if winner == me else "loss")
        other = key["runs"][1 - (me or 0)]
        labels.append({"kind": "preference", "task": task, "id": sid, "outcome": outcome,
                       "against": other["model"], "against_path": other["path"]})
    return labels, blank


def _mean_ci(values: list[float], scale: tuple[float, float], seed: int = 0) -> dict[str, Any]:
    """The mean with an interval that stays inside the scale (a win rate in 0-1, a rating in its
    range), as the metrics' own bounded intervals do."""
    from evalharness.metrics.base import MeanMetric
    from evalharness.stats.bootstrap import bootstrap

    metric = MeanMetric()
    metric.kind, metric.scale = "bounded", (float(scale[0]), float(scale[1]))
    res = bootstrap(metric, np.array(values, dtype=float)[:, None], n_resamples=1000, seed=seed)
    return {"n": res.n, "mean": res.value, "ci_low": res.ci_low, "ci_high": res.ci_high}


def _judge_values(run_dir: Path, results: dict[str, Any], task: str, metric: str) -> dict[str, float]:
    out = {}
    for sid, rec in _samples(run_dir, results, task).items():
        detail = (rec.get("score_details") or {}).get(metric) or {}
        v = (rec.get("scores") or {}).get(metric)
        if isinstance(detail, dict) and detail.get("status", "parsed") != "parsed":
            continue
        if isinstance(v, (int, float)) and math.isfinite(v):
            out[sid] = float(v)
    return out


def agreement(human: list[float], judge: list[float], same_scale: bool) -> dict[str, Any]:
    """Judge-human agreement on paired labels: percent agreement and Cohen's kappa (same scale), Spearman."""
    from evalharness.judging.agreement import cohen_kappa

    out: dict[str, Any] = {"n": len(human)}
    if same_scale and human:
        out["percent_agreement"] = sum(a == b for a, b in zip(human, judge, strict=True)) / len(human)
        out["cohen_kappa"] = _finite(cohen_kappa(human, judge))
    if len(human) >= 2 and len(set(human)) > 1 and len(set(judge)) > 1:
        from scipy.stats import spearmanr

        out["spearman"] = _finite(float(spearmanr(human, judge).statistic))
    else:
        out["spearman"] = None  # undefined when either side is constant
    return out


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


Summary = tuple[dict[str, Any], dict[str, Any]]  # (the kind's summary, agreement per judge metric)


def _rating_summary(run_dir: Path, results: dict[str, Any], task: str, ratings: list[dict[str, Any]]) -> Summary:
    lo, hi = ratings[0]["scale"]
    summary = {**_mean_ci([r["rating"] for r in ratings], (lo, hi)), "scale": ratings[0]["scale"]}
    agree = {}
    for m in judge_metrics(results["tasks"][task]):
        jv = _judge_values(run_dir, results, task, m)
        pairs = [(float(r["rating"]), float(round(jv[r["id"]]))) for r in ratings if r["id"] in jv]
        same = judge_scale(m) == tuple(ratings[0]["scale"])
        agree[m] = agreement([h for h, _ in pairs], [j for _, j in pairs], same)
    return summary, agree


def _pairwise_summary(run_dir: Path, results: dict[str, Any], task: str, prefs: list[dict[str, Any]]) -> Summary:
    code = {"loss": 0.0, "tie": 0.5, "win": 1.0}
    stats = _mean_ci([code[p["outcome"]] for p in prefs], (0.0, 1.0))
    summary = {"n": stats["n"], "wins": sum(p["outcome"] == "win" for p in prefs), "losses": sum(p["outcome"] == "loss" for p in prefs),
               "ties": sum(p["outcome"] == "tie" for p in prefs), "win_rate": stats["mean"], "ci_low": stats["ci_low"],
               "ci_high": stats["ci_high"], "against": prefs[0]["against"]}
    agree: dict[str, Any] = {}
    other_dir = Path(prefs[0]["against_path"])
    if not (other_dir / "results.json").is_file():
        return summary, agree
    other = load_results(other_dir)
    for m in judge_metrics(results["tasks"][task]):
        if task not in other.get("tasks", {}) or m not in judge_metrics(other["tasks"][task]):
            continue
        mine, theirs = _judge_values(run_dir, results, task, m), _judge_values(other_dir, other, task, m)
        pairs = [(p["outcome"], _outcome(mine[p["id"]], theirs[p["id"]])) for p in prefs if p["id"] in mine and p["id"] in theirs]
        agree[f"{m} (pairwise)"] = agreement([code[h] for h, _ in pairs], [code[j] for _, j in pairs], True)
    return summary, agree


def summarize(run_dir: Path, results: dict[str, Any], labels: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """results.json `tasks.<task>.human` for every task with labels."""
    out: dict[str, dict[str, Any]] = {}
    for task in dict.fromkeys(lab["task"] for lab in labels):
        entry: dict[str, Any] = {}
        agree: dict[str, Any] = {}
        for kind, name, fn in (("rating", "ratings", _rating_summary), ("preference", "pairwise", _pairwise_summary)):
            mine = [lab for lab in labels if lab["task"] == task and lab["kind"] == kind]
            if mine:
                entry[name], found = fn(run_dir, results, task, mine)
                agree.update(found)
        if agree:
            entry["agreement"] = agree
        out[task] = entry
    return out


def _outcome(mine: float, theirs: float) -> str:
    return "win" if mine > theirs else "loss" if mine < theirs else "tie"


def _check_key(key: Any, path: Path) -> None:
    """A pairwise key file as `annotate export` writes it; anything else (forged or edited) is one
    line naming the field, before any label is written."""
    what = f"{path}: not a key file written by `evalharness annotate export` (pairwise)"
    if not isinstance(key, dict) or key.get("kind") != "pairwise":
        raise DataError(f"{what}: kind")
    runs = key.get("runs")
    if not (isinstance(runs, list) and len(runs) == 2
            and all(isinstance(r, dict) and isinstance(r.get("path"), str) and isinstance(r.get("model"), str) for r in runs)):
        raise DataError(f"{what}: runs: expected the two runs, each with a path and a model")
    items = key.get("items")
    if not isinstance(items, dict) or not all(isinstance(v, dict) and v in ({"A": 0, "B": 1}, {"A": 1, "B": 0})
                                              for v in items.values()):
        raise DataError(f"{what}: items: expected item -> {{A: 0|1, B: 1|0}}")


def import_labels(path: Path, run_dir: Path, key_path: Path | None = None) -> dict[str, Any]:
    """Validate and store labels for a run; update its results.json; returns the `human` summaries."""
    results = load_results(run_dir)
    key = None
    if key_path is not None:
        try:
            key = json.loads(key_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(f"{key_path}: key file not found") from None
        except json.JSONDecodeError as exc:
            raise DataError(f"{key_path}: not valid JSON: {exc.msg}") from None
        _check_key(key, key_path)
    labels, blank = parse_labels(path, run_dir, key)
    store = run_dir / "human" / "labels.jsonl"
    kinds = {lab["kind"] for lab in labels} or {"preference" if key else "rating"}
    tasks = {lab["task"] for lab in labels}
    kept = [r for r in read_jsonl_tolerant(store) if not (r.get("kind") in kinds and r.get("task") in tasks)]
    every = kept + labels  # a re-import replaces earlier labels of the same kind and task
    write_jsonl(store, every)
    summaries = summarize(run_dir, results, every)
    for task, entry in summaries.items():
        results["tasks"][task]["human"] = entry
    write_json(run_dir / "results.json", results)
    return {"labels": len(labels), "blank": blank, "tasks": summaries, "stored": str(store)}
