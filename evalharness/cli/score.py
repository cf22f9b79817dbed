"""`evalharness score`: apply metrics to a predictions file, no model involved (logic in scoring.py)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from evalharness.cli.args import Command, add_unsafe_code_flag, resample_count
from evalharness.cli.console import print_warnings, summary_table
from evalharness.errors import UsageError, printable

DEFAULT_METRICS = "exact_match,f1,bleu,chrf,rougeL"


def _add_score(p: argparse.ArgumentParser) -> None:
    p.add_argument("--predictions", type=Path, required=True,
                   help="JSONL/CSV/Parquet with columns id, prediction, references (str or list); other columns are kept as fields. "
                        "RAG rows: question, contexts, answer, reference, relevant_ids, retrieved_ids (see README)")
    p.add_argument("--metrics", default=None,
                   help=f"comma-separated metric names (default: {DEFAULT_METRICS}, none with --judge); see `evalharness list metrics`")
    p.add_argument("--metric-args", action="append", default=[], metavar="METRIC.KEY=VALUE",
                   help="a metric parameter, e.g. bleu.tokenize=intl or bertscore_f1.num_layers=5 (repeatable; values read as YAML)")
    p.add_argument("--output", type=Path, default=None, help="run directory (default: runs/score-<predictions file name>)")
    p.add_argument("--task-name", default=None, help="task name in results.json (default: the predictions file name)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    p.add_argument("--bootstrap", type=resample_count, default=1000,
                   help="bootstrap resamples for CIs: 0 (none, CI null) or >= 100 (default 1000)")
    add_unsafe_code_flag(p)
    from evalharness.cli.judge_args import add_judge_args

    add_judge_args(p)


def parse_metric_args(items: list[str], metrics: list[str]) -> dict[str, dict[str, Any]]:
    """`bleu.tokenize=intl` -> {"bleu": {"tokenize": "intl"}}; values are parsed as YAML scalars."""
    import yaml

    params: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        name, dot, param = key.strip().rpartition(".")
        if not sep or not dot or not name or not param:
            raise UsageError(f"--metric-args: expected METRIC.KEY=VALUE, got {item!r}")
        if name not in metrics:
            raise UsageError(f"--metric-args: {name!r} is not among --metrics ({', '.join(metrics)})")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        params.setdefault(name, {})[param] = value
    return params


def cmd_score(args: argparse.Namespace) -> int:
    from evalharness.cli.judge_args import judge_options
    from evalharness.execution.predictions import ScoreConfig, score_predictions

    judge_opts = judge_options(args)
    metrics_text = args.metrics if args.metrics is not None else ("" if judge_opts["judges"] else DEFAULT_METRICS)
    metrics = [m.strip() for m in metrics_text.split(",") if m.strip()]
    if not metrics and not judge_opts["judges"]:
        raise UsageError("--metrics: give at least one metric name (or --judge)")
    output = args.output or Path("runs") / f"score-{args.predictions.stem}"
    cfg = ScoreConfig(
        predictions=args.predictions, metrics=metrics, output=output,
        metric_params=parse_metric_args(args.metric_args, metrics), task_name=args.task_name,
        seed=args.seed, bootstrap_resamples=args.bootstrap, **judge_opts,
    )
    results = score_predictions(cfg)
    print(printable(summary_table(results)))
    print_warnings(results, output)
    if results.get("usage"):
        from evalharness.results.usage import usage_line

        print(f"\n{usage_line(results)}")
    print(f"\nresults: {output / 'results.json'}")
    return 0


COMMAND = Command("score", "score a predictions file with metrics (no model)", _add_score, cmd_score)
