"""Command-line options of LLM judging, shared by `score` (and `run` / `arena`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from evalharness.cli.args import add_model_args
from evalharness.errors import UsageError


def add_judge_args(p: argparse.ArgumentParser, cache: bool = True) -> None:
    p.add_argument("--judge", default="", help="comma-separated judge names (judges/*.yaml) or YAML paths; each becomes a metric")
    add_model_args(p, "judge-")
    if cache:
        p.add_argument("--cache-dir", type=Path, default=None, help="response cache folder (default: ~/.cache/evalharness/cache)")
        p.add_argument("--no-cache", action="store_true", help="neither read nor write the response cache")


def judge_options(args: argparse.Namespace) -> dict[str, Any]:
    """ScoreConfig/RunConfig keyword arguments from the parsed judge options; names are checked early."""
    from evalharness.backends import BACKENDS
    from evalharness.backends.base import parse_model_args
    from evalharness.spec.judge import find_judge

    judges = [j.strip() for j in (args.judge or "").split(",") if j.strip()]
    for j in judges:
        find_judge(j)
    if judges and not args.judge_model:
        raise UsageError("--judge needs --judge-model (the backend that judges, e.g. smollm2 or openai-chat)")
    if args.judge_model:
        BACKENDS.get(args.judge_model)
    return {
        "judges": judges,
        "judge_model": args.judge_model,
        "judge_model_args": parse_model_args(args.judge_model_args),
        "cache_dir": getattr(args, "cache_dir", None),
        "use_cache": not getattr(args, "no_cache", False),
    }
