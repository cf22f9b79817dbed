"""Arena: judge several models' answers to the same questions against each other, then rate them.

Input: run directories (from `run` or `score`), one per model, named after the directory. Items
are the sample ids every run has (of the one task they share, or `task`). Comparisons:

  pairwise judge   every pair of models on every item, both orders (position swap); a flipped
                   verdict is a tie or excluded, per the judge's `pairwise.inconsistent_as`
  ranking judge    one ranking of all models per item, answer order rotated item by item;
                   each pair of models is a comparison (higher rank wins)
  rating judges    every answer rated; each pair compared by rating (equal = tie)

Output: a run directory whose results.json holds `arena` (`position_consistency` 0-1,
`ratings.<model>` with `rating`, `ci_low`, `ci_high`, `win_rate`, counts, `verdict_method`
(generate or likelihood), `parse_rate`, `handling` (how ties and position-inconsistent pairs were
counted, whether positions were swapped, what the bootstrap resampled: questions, each with all
its comparisons) and `warnings` (e.g. a pairwise judge with `swap: false`)) and `bradley_terry`
(see bradley_terry.py), and
samples/arena.jsonl with every comparison and its raw verdicts (likelihood judges: the
distribution over the allowed verdicts per order, and `expected_share`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

from evalharness.backends.base import Backend
from evalharness.errors import DataError
from evalharness.execution.cache import NullCache, ResponseCache
from evalharness.judging.bradley_terry import rate
from evalharness.judging.calls import JudgeItem
from evalharness.judging.engine import judge_items
from evalharness.judging.metric import _text
from evalharness.results.schema import new_results
from evalharness.results.store import read_jsonl_tolerant, task_samples_log, write_json, write_jsonl
from evalharness.spec.judge import JudgeSpec


def load_run(run_dir: Path, task: str | None = None) -> tuple[str, dict[str, dict[str, Any]]]:
    """(model name, {sample id: record}) of one run directory's task."""
    import json

    path = run_dir / "results.json"
    if not path.is_file():
        raise DataError(f"{run_dir}: not a run directory (no results.json)")
    results = json.loads(path.read_text(encoding="utf-8"))
    tasks = results.get("tasks", {})
    if task is None:
        if len(tasks) != 1:
            raise DataError(f"{run_dir}: holds {len(tasks)} tasks ({', '.join(tasks)}); name one with --task")
        task = next(iter(tasks))
    if task not in tasks:
        raise DataError(f"{run_dir}: no task {task!r} (has {', '.join(tasks)})")
    records = read_jsonl_tolerant(task_samples_log(run_dir, task, tasks[task]))
    by_id = {str(r["id"]): r for r in records if r.get("generations") and "error" not in r}
    return run_dir.resolve().name, by_id


def _item(rec: dict[str, Any], answers: tuple[str, ...], item_id: str) -> JudgeItem:
    refs = rec.get("references") or []
    return JudgeItem(id=item_id, answers=answers, question=_text(rec.get("prompt")),
                     reference=str(refs[0]) if refs else None, context=_text(rec["context"]) if "context" in rec else None)


def compare(spec: JudgeSpec, runs: dict[str, dict[str, dict[str, Any]]], backend: Backend,
            cache: ResponseCache | NullCache, progress: bool = False
            ) -> tuple[list[tuple[str, str, float]], list[dict[str, Any]], list[str]]:
    """Pairwise outcomes (model a, model b, score of a), one log record per judged item, and the
    question (sample id) of each outcome, which the bootstrap resamples as one unit."""
    models = list(runs)
    ids = [i for i in runs[models[0]] if all(i in runs[m] for m in models)]
    if not ids:
        raise DataError(f"arena: the runs share no sample ids ({', '.join(models)})")
    ans = {m: {i: str(runs[m][i]["generations"][0]) for i in ids} for m in models}
    comps: list[tuple[str, str, float]] = []
    questions: list[str] = []
    log: list[dict[str, Any]] = []
    if spec.mode == "pairwise":
        pairs = [(i, a, b) for i in ids for a, b in combinations(models, 2)]
        items = [_item(runs[a][i], (ans[a][i], ans[b][i]), f"{i}|{a}|{b}") for i, a, b in pairs]
        for (i, a, b), j in zip(pairs, judge_items(spec, items, backend, cache, progress), strict=True):
            if j.value is not None:
                comps.append((a, b, j.value))
                questions.append(i)
            log.append({"id": i, "models": [a, b], "score": j.value, **j.details()})
    elif spec.mode == "ranking":
        items = [_item(runs[models[0]][i], tuple(ans[m][i] for m in models), i) for i in ids]
        for i, j in zip(ids, judge_items(spec, items, backend, cache, progress, rotate=True), strict=True):
            if j.ranking is not None:
                pos = {models[k]: r for r, k in enumerate(j.ranking)}
                pairs_i = [(a, b, 1.0 if pos[a] < pos[b] else 0.0) for a, b in combinations(models, 2)]
                comps.extend(pairs_i)
                questions.extend([i] * len(pairs_i))
            log.append({"id": i, "models": models, **j.details()})
    else:
        items = [_item(runs[m][i], (ans[m][i],), f"{i}|{m}") for i in ids for m in models]
        judged = judge_items(spec, items, backend, cache, progress)
        value = {(it.id): j.value for it, j in zip(items, judged, strict=True)}
        for i in ids:
            for a, b in combinations(models, 2):
                va, vb = value[f"{i}|{a}"], value[f"{i}|{b}"]
                if va is not None and vb is not None:
                    comps.append((a, b, 1.0 if va > vb else 0.0 if va < vb else 0.5))
                    questions.append(i)
        log.extend({"id": it.id, "value": j.value, **j.details()} for it, j in zip(items, judged, strict=True))
    return comps, log, questions


def handling(spec: JudgeSpec) -> dict[str, Any]:
    """How this arena turned verdicts into comparisons: ratings from different settings differ in
    meaning (ties pull ratings together; excluding inconsistent pairs keeps only confident ones)."""
    out: dict[str, Any] = {"ties": "half a win each", "resampled": "questions"}
    if spec.mode == "pairwise":
        out["position_swap"] = spec.pairwise.swap
        out["position_inconsistent"] = (
            ("counted as a tie" if spec.pairwise.inconsistent_as == "tie" else "excluded") if spec.pairwise.swap
            else "not detectable: each pair judged in one order only")
    elif spec.mode == "ranking":
        out["position_swap"] = "answer order rotated item by item"
    else:
        out["ties"] = "equal ratings: half a win each"
    return out


def swap_warning(spec: JudgeSpec) -> str | None:
    """The warning for a pairwise judge that sees each pair in one order only."""
    if spec.mode != "pairwise" or spec.pairwise.swap:
        return None
    return (f"judge {spec.name!r} has pairwise.swap: false: the first-listed model always sits in position A, so a "
            "judge's position bias moves the ratings (and can reverse them); set swap: true to judge both orders")


def arena(spec: JudgeSpec, run_dirs: Sequence[Path], backend: Backend, cache: ResponseCache | NullCache, output: Path,
          task: str | None = None, seed: int = 0, resamples: int = 1000, judge_info: dict[str, Any] | None = None,
          progress: bool = False, source: str | None = None) -> dict[str, Any]:
    """Judge the runs against each other, rate them (Bradley-Terry) and write a run directory.

    `source` (the judge file) names the file in the error a likelihood judge gets on a backend
    that cannot score log-likelihoods; that check comes before any run is read.
    """
    from evalharness.judging.likelihood import check_backend

    started = time.time()
    check_backend(spec, backend, source)
    runs: dict[str, dict[str, dict[str, Any]]] = {}
    for d in run_dirs:
        name, recs = load_run(Path(d), task)
        if name in runs:
            raise DataError(f"arena: two runs are named {name!r}; models are named after their run directories")
        runs[name] = recs
    if len(runs) < 2:
        raise DataError("arena: give at least two run directories")
    comps, log, questions = compare(spec, runs, backend, cache, progress)
    bt = rate(comps, models=list(runs), n_resamples=resamples, seed=seed, questions=questions)
    warnings = [w for w in (swap_warning(spec),) if w]
    consistent = [r["consistent"] for r in log if "consistent" in r]
    statuses = [r.get("status") for r in log]
    n_judged = len(statuses) - statuses.count("error")
    summary = {
        "models": bt["models"],
        "judge": spec.name,
        "mode": spec.mode,
        "n_items": len(log),
        "n_comparisons": len(comps),
        "n_questions": bt["n_questions"],
        "handling": handling(spec),
        **({"warnings": warnings} if warnings else {}),
        "n_unparseable": statuses.count("unparseable"),
        "n_errors": statuses.count("error"),
        # generate: verdicts parsed from the judge's text; likelihood: argmax over the allowed
        # verdicts' log-likelihoods (every verdict parses: parse_rate 1 by construction)
        "verdict_method": spec.verdict.method,
        "parse_rate": (n_judged - statuses.count("unparseable")) / n_judged if n_judged else math.nan,
        "n_inconsistent": sum(not c for c in consistent),
        "position_consistency": sum(consistent) / len(consistent) if consistent else None,
        "ratings": {m: {k: r[k] for k in ("rating", "ci_low", "ci_high", "wins", "n")} for m, r in bt["ratings"].items()},
        "win_rate": bt["win_rate"],
    }
    write_jsonl(output / "samples" / "arena.jsonl", log)
    results = new_results(
        kind="arena",
        model={"backend": "arena", "name": output.name, "runs": [str(Path(d)) for d in run_dirs]},
        config={"seed": seed, "bootstrap_resamples": resamples, "confidence": bt["confidence"], "task": task,
                "judge": judge_info or {"judges": {spec.name: {"mode": spec.mode}}}},
        arena=summary,
        bradley_terry=bt,
        tasks={},
        samples_file="samples/arena.jsonl",
        duration_s=round(time.time() - started, 3),
    )
    write_json(output / "results.json", results)
    return dict(results)
