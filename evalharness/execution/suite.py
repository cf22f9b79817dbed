"""`evalharness run --suite FILE --output DIR`: every model of a suite on every task, then the report.

Each model gets its own run directory `DIR/<model name>` (results.json + samples/), written by
the ordinary `pipeline.evaluate`; all models share one response cache, so a request that two
configurations send alike (the same prompt to the same model) is computed once. The
leaderboard is `evalharness report` over those run directories, written to `DIR/report.html`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from evalharness.errors import printable
from evalharness.execution.config import RunConfig
from evalharness.execution.pipeline import evaluate
from evalharness.spec.group import ResolvedGroup, expand_task_list
from evalharness.spec.suite import LoadedSuite
from evalharness.spec.task import LoadedTask


def suite_tasks(suite: LoadedSuite) -> tuple[list[LoadedTask], list[ResolvedGroup], dict[str, int]]:
    """The suite's tasks (groups expanded), its groups, and per-task limits."""
    tasks: dict[str, LoadedTask] = {}
    groups: list[ResolvedGroup] = []
    limits: dict[str, int] = {}
    for entry in suite.spec.tasks:
        found, found_groups = expand_task_list([suite.task_ref(entry)])
        for t in found:
            tasks.setdefault(t.spec.name, t)
            if entry.limit is not None:
                limits[t.spec.name] = entry.limit
        groups += [g for g in found_groups if g.name not in {x.name for x in groups}]
    return list(tasks.values()), groups, limits


def run_suite(suite: LoadedSuite, output: Path, *, cache_dir: Path | None = None, use_cache: bool = True,
              progress: bool = True, cap: int | None = None, batch_size: str | None = None,
              executor: str = "local", ray_address: str | None = None, ray_workers: int | None = None) -> list[Path]:
    """Evaluate every model on every task; returns the run directories (one per model). Under a
    launcher (accelerate launch, torchrun, mpirun) only rank 0 returns them; other ranks return []."""
    from evalharness.backends import BACKENDS

    spec = suite.spec
    for m in spec.models:  # fail on a typo before any model loads
        BACKENDS.get(m.backend)
    if spec.judge is not None:
        BACKENDS.get(spec.judge.backend)
    tasks, groups, limits = suite_tasks(suite)
    if cap is not None:
        limits = {t.spec.name: min(limits.get(t.spec.name, spec.limit if spec.limit is not None else cap), cap) for t in tasks}
    run_dirs = []
    for m in spec.models:
        model_args: dict[str, Any] = dict(m.args)
        if batch_size is not None:
            model_args["batch_size"] = batch_size
        cfg = RunConfig(
            tasks=tasks, model=m.backend, model_args=model_args, output=output / m.slug, limit=spec.limit, limits=limits,
            num_fewshot=m.num_fewshot, chat_template=m.chat_template, cache_dir=cache_dir, use_cache=use_cache,
            seed=spec.seed, bootstrap_resamples=spec.bootstrap, progress=progress,
            judge_model=spec.judge.backend if spec.judge else None,
            judge_model_args=dict(spec.judge.args) if spec.judge else {}, groups=groups, name=m.name,
            executor=executor, ray_address=ray_address, ray_workers=ray_workers,
        )
        if progress:
            print(printable(f"== {m.name} ({m.backend}) -> {cfg.output}"), file=sys.stderr)
        if "shard" in evaluate(cfg):
            continue  # a launcher rank other than 0: rank 0 writes the runs and the report
        run_dirs.append(cfg.output)
    return run_dirs
