"""`evalharness score`: a predictions file -> Samples + Outputs -> the scoring step -> a run directory.

Input rows (JSONL, JSON, CSV, Parquet, Arrow): `id`, `prediction` and `references`, plus any
other columns (e.g. `prompt`, `context`, or `test`/`entry_point` for pass@k), which become the
sample's fields. `prediction` may be a list (several generations, for pass@k); `references` a
string or a list (in CSV, a cell holding a JSON list is read as a list).

RAG rows (a row with `answer` and no `prediction`): `question`, `contexts` (the retrieved texts in
rank order: strings, or objects {id, text}), `answer`, optional `reference` (a string or a list),
`relevant_ids` (a list of ids, or an object id -> grade) and `retrieved_ids` (the ranked ids; by
default the contexts' ids). `id` is optional (default: the row number). They map onto the same
Sample: `answer` is the prediction, `reference` the references, `question` the `prompt` field the
judges read, `contexts` a list of texts (judged one by one by `context_relevance`) and `context`
their numbered concatenation (what `faithfulness` checks the answer against); the retrieval
metrics (metrics/retrieval.py) read `retrieved_ids` and `relevant_ids`.

Output: the run directory `evalharness run` writes (`results.json`, schema version 1, and
`samples/<task>.jsonl`), so `report` and `gate` read it unchanged. The task is named after the
file. In the fingerprint, `model_identity_hash` is the predictions' hash (the "model" of a
scoring run is its predictions) and `task_file_hash` the hash of the metric set-up.

Metrics are a list of objects built by name; anything implementing the Metric protocol
(an LLM judge included: a metric whose `score_batch` calls a backend) plugs in through
`build_metrics` or by passing its own list to `score_samples`.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evalharness.data.samples import as_id, as_text, as_texts, read_rows
from evalharness.errors import DataError, EvalHarnessError, SpecError, UsageError
from evalharness.execution.score import score_outputs
from evalharness.metrics.base import Metric, build_metric
from evalharness.results.schema import CONFIDENCE, new_results
from evalharness.results.store import TASK_NAME, output_lock, samples_path, write_json, write_jsonl
from evalharness.results.usage import judge_entry, run_usage
from evalharness.stats.bootstrap import check_resamples
from evalharness.types import Output, Sample
from evalharness.version import __version__

CI_METHOD = "per-metric"  # each metric entry names its own (evalharness.stats)


@dataclass
class ScoreConfig:
    """Everything `evalharness score` takes."""

    predictions: Path
    metrics: Sequence[str]
    output: Path
    metric_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    task_name: str | None = None
    seed: int = 0
    bootstrap_resamples: int = 1000
    # LLM judges (judges/ names or paths), each a metric named after the judge; see judging/metric.py
    judges: Sequence[str] = ()
    judge_model: str | None = None
    judge_model_args: dict[str, Any] = field(default_factory=dict)
    cache_dir: Path | None = None
    use_cache: bool = True


def _hash_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _hash(data: Any) -> str:
    return _hash_bytes(json.dumps(data, sort_keys=True, default=str).encode())


def _texts(value: Any, csv: bool, where: str, name: str) -> tuple[str, ...]:
    """A text column: a string or a list of strings (a CSV cell may hold a JSON list)."""
    if csv and isinstance(value, str) and value.lstrip().startswith("["):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return (value,)
        if isinstance(parsed, list):
            return as_texts(parsed, where, name)
    return as_texts(value, where, name)


def _rag_row(row: dict[str, Any], where: str, index: int) -> dict[str, Any]:
    """A RAG row in the plain shape: id, prediction, references and the fields judges and metrics read."""
    missing = [k for k in ("question", "answer") if k not in row]
    if missing:
        raise DataError(f"{where}: missing column(s) {', '.join(missing)} (a RAG row has question, contexts, answer)")
    raw = row.get("contexts")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.lstrip().startswith("[") else [raw]
        except json.JSONDecodeError:
            raw = [raw]
    if isinstance(raw, np.ndarray):  # a list column read from Parquet through pandas
        raw = raw.tolist()
    if raw is None:
        raw = []
    if not isinstance(raw, (list, tuple)):
        raise DataError(f"{where}: contexts must be a list of texts or of {{id, text}} objects")
    texts: list[str] = []
    ids: list[str] = []
    for j, ctx in enumerate(raw):
        if isinstance(ctx, dict):
            if "text" not in ctx:
                raise DataError(f"{where}: contexts[{j}] has no 'text'")
            texts.append(str(ctx["text"]))
            if ctx.get("id") is not None:
                ids.append(str(ctx["id"]))
        else:
            texts.append("" if ctx is None else str(ctx))
    as_texts(row["answer"], where, "answer")  # a null answer is named as the RAG row names it, not "prediction"
    out = {k: v for k, v in row.items() if k not in {"answer", "reference", "contexts"}}
    out.setdefault("id", index + 1)
    out["prediction"] = row["answer"]
    refs = row.get("reference", row.get("references"))
    if refs is not None:  # optional in a RAG row; an absent one is not a null reference
        out["references"] = refs
    out["prompt"] = row["question"]
    out["contexts"] = texts
    out["context"] = "\n\n".join(f"[{j + 1}] {t}" for j, t in enumerate(texts))
    if "retrieved_ids" not in out and ids:
        if len(ids) != len(texts):
            raise DataError(f"{where}: some contexts have an id and some do not")
        out["retrieved_ids"] = ids
    return out


def read_predictions(path: Path) -> tuple[list[Sample], list[Output]]:
    """Samples (id, fields, references) and Outputs (the predictions) of a predictions file."""
    if path.is_dir():
        raise DataError(f"{path}: is a folder; give the predictions file (JSONL, CSV or Parquet)")
    if not path.is_file():
        raise DataError(f"{path}: predictions file not found")
    rows = read_rows(path)
    if not rows:
        raise DataError(f"{path}: no rows")
    csv = path.suffix.lower() == ".csv"
    samples, outputs, seen = [], [], set()
    for i, row in enumerate(rows):
        where = f"{path}: row {i + 1}"
        if "answer" in row and "prediction" not in row:
            row = _rag_row(row, where, i)
        missing = [k for k in ("id", "prediction") if k not in row]
        if missing:
            raise DataError(f"{where}: missing column(s) {', '.join(missing)} (expected id, prediction, references)")
        sid = as_id(row["id"], where)
        if sid in seen:
            raise DataError(f"{where}: duplicate id {sid!r}")
        seen.add(sid)
        preds = _texts(row["prediction"], False, where, "prediction")
        if not preds:
            raise DataError(f"{where}: prediction is empty (an empty list)")
        refs = _texts(row["references"], csv, where, "references") if "references" in row else ()
        for key in ("prompt", "question"):  # text, or a chat prompt (a list of turns)
            if key in row and not isinstance(row[key], list):
                as_text(row[key], where, key)
        fields = {k: v for k, v in row.items() if k != "prediction"}
        samples.append(Sample(id=sid, fields=fields, references=refs))
        outputs.append(Output(generations=preds, extracted=preds))
    return samples, outputs


def build_metrics(names: Sequence[str], params: dict[str, dict[str, Any]] | None = None) -> list[Metric]:
    """Metric objects by registered name, with per-name params; each must apply to generations."""
    params = params or {}
    unknown = set(params) - set(names)
    if unknown:
        raise SpecError(f"metric params given for {', '.join(sorted(unknown))}, which is not among the metrics ({', '.join(names)})")
    metrics: list[Metric] = []
    for name in names:
        metric = build_metric(name, params.get(name))
        if "generate" not in metric.kinds:
            raise SpecError(f"metric {name!r} does not score text predictions (it applies to {', '.join(sorted(metric.kinds))} tasks)")
        metrics.append(metric)
    names_out = [m.name for m in metrics]
    if len(set(names_out)) != len(names_out):
        raise SpecError(f"metrics: the same metric is listed twice ({', '.join(names_out)})")
    return metrics


def score_samples(
    metrics: Sequence[Metric], samples: Sequence[Sample], outputs: Sequence[Output], seed: int, resamples: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Each metric's corpus value with its CI (evalharness.stats), and the per-sample records."""
    records: list[dict[str, Any]] = []
    for s, o in zip(samples, outputs, strict=True):
        rec: dict[str, Any] = {"id": s.id}
        for key in ("prompt", "context", "retrieved_ids", "relevant_ids"):
            if key in s.fields:
                rec[key] = s.fields[key]
        if s.references:
            rec["references"] = list(s.references)
        rec["generations"] = list(o.generations)
        records.append(rec)
    return score_outputs(metrics, samples, outputs, records, seed=seed, resamples=resamples), records


def _fingerprint(cfg: ScoreConfig, samples: Sequence[Sample], judge: dict[str, Any] | None) -> dict[str, Any]:
    """A scoring run's fingerprint: the metric set-up stands for the task file, the predictions for the model."""
    setup: dict[str, Any] = {"metrics": list(cfg.metrics), "params": cfg.metric_params}
    if judge is not None:
        setup["judge"] = judge
    return {
        "task_file_hash": _hash(setup),
        "model_identity_hash": _hash_bytes(cfg.predictions.read_bytes()),
        "harness_version": __version__,
        "seed": cfg.seed,
        "sample_ids_hash": _hash([s.id for s in samples]),
    }


def _task_name(cfg: ScoreConfig) -> str:
    """The scored task's name: `--task-name` (checked: it names the log file), else the predictions
    file's stem with any other character made `_`."""
    if cfg.task_name is not None:
        if not isinstance(cfg.task_name, str) or not TASK_NAME.fullmatch(cfg.task_name):
            raise UsageError(f"--task-name: {cfg.task_name!r}: letters, digits, '_', '.' and '-' only "
                             "(it names the per-sample log in the run directory)")
        return cfg.task_name
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", cfg.predictions.stem) or "predictions"


def _check_output(cfg: ScoreConfig, name: str) -> None:
    """Refuse an output folder that holds another run's results (a `run`, or scores of another
    predictions file): no silent overwrite. Scoring the same predictions again replaces its scores."""
    from evalharness.results.store import load_results

    if not (cfg.output / "results.json").is_file():
        return
    try:
        old = load_results(cfg.output)
    except EvalHarnessError:
        return  # an unreadable results.json is rewritten, as `run` does
    model: dict[str, Any] = m if isinstance(m := old.get("model"), dict) else {}
    tasks = sorted(old.get("tasks") or {}) if isinstance(old.get("tasks"), dict) else []
    if model.get("backend") == "predictions" and tasks in ([name], []):
        return
    what = (f"scores of {', '.join(tasks)}" if model.get("backend") == "predictions"
            else f"a {model.get('backend')} run of {', '.join(tasks) or 'no task'}")
    raise UsageError(f"--output {cfg.output}: it holds {what}; give another --output or delete that folder")


def score_predictions(cfg: ScoreConfig) -> dict[str, Any]:
    """Score a predictions file and write a run directory; returns what results.json holds."""
    check_resamples(cfg.bootstrap_resamples)
    if not cfg.metrics and not cfg.judges:
        raise SpecError("score: give at least one metric or judge")
    name = _task_name(cfg)
    _check_output(cfg, name)
    with output_lock(cfg.output):  # one writer at a time
        _check_output(cfg, name)  # again: another score may have finished there meanwhile
        return _score(cfg, name)


def _score(cfg: ScoreConfig, name: str) -> dict[str, Any]:
    started = time.time()
    metrics = build_metrics(cfg.metrics, cfg.metric_params)  # bad names fail before the file is read
    from evalharness.judging.metric import JudgeSession

    judges = JudgeSession(cfg.judges, cfg.judge_model, cfg.judge_model_args, cfg.cache_dir, cfg.use_cache)
    metrics += judges.metrics
    samples, outputs = read_predictions(cfg.predictions)
    try:
        metric_json, records = score_samples(metrics, samples, outputs, cfg.seed, cfg.bootstrap_resamples)
    except DataError as exc:  # a row the metrics cannot score: name the file it came from
        raise DataError(f"{cfg.predictions}: {exc}") from None
    finally:
        judges.close()
    fingerprint = _fingerprint(cfg, samples, judges.describe() if cfg.judges else None)
    log_path = samples_path(cfg.output, name)
    for rec in records:
        rec["fp"] = fingerprint["task_file_hash"]
    write_jsonl(log_path, records)
    duration = round(time.time() - started, 3)
    results = new_results(
        model={"backend": "predictions", "name": name, "args": {"path": str(cfg.predictions)},
               "identity": {"predictions": str(cfg.predictions)}},
        config={
            "seed": cfg.seed,
            "bootstrap_resamples": cfg.bootstrap_resamples,
            "confidence": CONFIDENCE,
            "ci_method": CI_METHOD,
            "metrics": list(cfg.metrics),
            "metric_params": cfg.metric_params,
            **({"judge": judges.describe()} if cfg.judges else {}),
        },
        tasks={
            name: {
                "kind": "generate",
                "n_samples": len(samples),
                "n_failed": 0,
                "metrics": metric_json,
                "fingerprint": fingerprint,
                "samples_file": str(log_path.relative_to(cfg.output)),
                "source": {"predictions": str(cfg.predictions)},
                **judge_entry(judges.metrics),  # the judge's tokens and cost
                "duration_s": duration,
            }
        },
        duration_s=duration,
    )
    if cfg.judges:
        results["usage"] = run_usage(results["tasks"])
    write_json(cfg.output / "results.json", results)
    return dict(results)
