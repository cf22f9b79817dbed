"""Score precomputed predictions without a model: predictions file -> Samples + Outputs -> metrics -> run directory.

Input rows (JSONL, JSON, CSV, Parquet, Arrow): `id`, `prediction` and `references`, plus any
other columns (e.g. `prompt`, `context`, or `test`/`entry_point` for pass@k), which become the
sample's fields. `prediction` may be a list (several generations, for pass@k); `references` a
string or a list (in CSV, a cell holding a JSON list is read as a list).

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
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from evalharness import __version__
from evalharness.data import read_rows
from evalharness.errors import DataError, SpecError
from evalharness.metrics.base import Metric, build_metric, score_all
from evalharness.results import samples_path, write_json, write_jsonl
from evalharness.stats import CONFIDENCE, bootstrap_many, check_resamples
from evalharness.types import Output, Sample
from evalharness.usage import judge_entry, run_usage

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


def _texts(value: Any, csv: bool) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        if csv and value.lstrip().startswith("["):
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError:
                return (value,)
            if isinstance(parsed, list):
                return tuple(str(v) for v in parsed)
        return (value,)
    if isinstance(value, (list, tuple)):
        return tuple("" if v is None else str(v) for v in value)
    if isinstance(value, np.ndarray):
        return tuple(str(v) for v in value.tolist())
    return (str(value),)


def read_predictions(path: Path) -> tuple[list[Sample], list[Output]]:
    """Samples (id, fields, references) and Outputs (the predictions) of a predictions file."""
    if not path.is_file():
        raise DataError(f"{path}: predictions file not found")
    rows = read_rows(path)
    if not rows:
        raise DataError(f"{path}: no rows")
    csv = path.suffix.lower() == ".csv"
    samples, outputs, seen = [], [], set()
    for i, row in enumerate(rows):
        where = f"{path}: row {i + 1}"
        missing = [k for k in ("id", "prediction") if k not in row]
        if missing:
            raise DataError(f"{where}: missing column(s) {', '.join(missing)} (expected id, prediction, references)")
        sid = str(row["id"])
        if sid in seen:
            raise DataError(f"{where}: duplicate id {sid!r}")
        seen.add(sid)
        preds = _texts(row["prediction"], csv=False)
        if not preds:
            raise DataError(f"{where}: prediction is empty (null or an empty list)")
        refs = _texts(row.get("references"), csv)
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
        for key in ("prompt", "context"):
            if key in s.fields:
                rec[key] = s.fields[key]
        if s.references:
            rec["references"] = list(s.references)
        rec["generations"] = list(o.generations)
        records.append(rec)
    all_scores, all_rows = [], []
    for metric in metrics:
        scores = score_all(metric, samples, outputs)
        for rec, sc in zip(records, scores, strict=True):
            rec.setdefault("scores", {})[metric.name] = sc.value
            if sc.stats:
                rec.setdefault("score_stats", {})[metric.name] = list(sc.stats)
            if sc.extra:
                rec.setdefault("score_details", {})[metric.name] = sc.extra
        all_scores.append(scores)
        all_rows.append(np.array([sc.agg_stats() for sc in scores], dtype=float))
    # one bootstrap for all metrics, so each resample's rows are drawn once (same CIs as one call each)
    results = bootstrap_many(metrics, all_rows, n_resamples=resamples, seed=seed)
    metric_json: dict[str, Any] = {}
    for metric, scores, result in zip(metrics, all_scores, results, strict=True):
        metric_json[metric.name] = result.to_json()
        summary = getattr(metric, "summary", None)
        if callable(summary):  # e.g. a judge's n (parsed), n_unparseable, position consistency
            metric_json[metric.name].update(summary(scores))
    return metric_json, records


def score_predictions(cfg: ScoreConfig) -> dict[str, Any]:
    """Score a predictions file and write a run directory; returns what results.json holds."""
    started = time.time()
    check_resamples(cfg.bootstrap_resamples)
    if not cfg.metrics and not cfg.judges:
        raise SpecError("score: give at least one metric or judge")
    metrics = build_metrics(cfg.metrics, cfg.metric_params)  # bad names fail before the file is read
    from evalharness.judging.metric import JudgeSession

    judges = JudgeSession(cfg.judges, cfg.judge_model, cfg.judge_model_args, cfg.cache_dir, cfg.use_cache)
    metrics += judges.metrics
    samples, outputs = read_predictions(cfg.predictions)
    name = cfg.task_name or cfg.predictions.stem
    try:
        metric_json, records = score_samples(metrics, samples, outputs, cfg.seed, cfg.bootstrap_resamples)
    finally:
        judges.close()
    setup = {"metrics": list(cfg.metrics), "params": cfg.metric_params}
    if cfg.judges:
        setup["judge"] = judges.describe()
    fingerprint = {
        "task_file_hash": _hash(setup),
        "model_identity_hash": _hash_bytes(cfg.predictions.read_bytes()),
        "harness_version": __version__,
        "seed": cfg.seed,
        "sample_ids_hash": _hash([s.id for s in samples]),
    }
    log_path = samples_path(cfg.output, name)
    for rec in records:
        rec["fp"] = fingerprint["task_file_hash"]
    write_jsonl(log_path, records)
    duration = round(time.time() - started, 3)
    results: dict[str, Any] = {
        "schema_version": 1,
        "harness": {"name": "evalharness", "version": __version__},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {
            "backend": "predictions", "name": name, "args": {"path": str(cfg.predictions)},
            "identity": {"predictions": str(cfg.predictions)},
        },
        "config": {
            "seed": cfg.seed,
            "bootstrap_resamples": cfg.bootstrap_resamples,
            "confidence": CONFIDENCE,
            "ci_method": CI_METHOD,
            "metrics": list(cfg.metrics),
            "metric_params": cfg.metric_params,
            **({"judge": judges.describe()} if cfg.judges else {}),
        },
        "tasks": {
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
        "duration_s": duration,
    }
    if cfg.judges:
        results["usage"] = run_usage(results["tasks"])
    write_json(cfg.output / "results.json", results)
    return results
