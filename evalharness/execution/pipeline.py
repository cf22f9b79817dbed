"""`evaluate()`: task files -> samples -> requests -> responses -> scores -> results, top to bottom.

One screen per job: `evaluate` runs every task on one model and writes results.json;
`evaluate_task` prepares a task (prepare.py), runs its requests through the runner while the
per-sample log is written as samples complete, scores the outputs (score.py) and returns the
task's results entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evalharness.backends.base import BACKENDS, Backend, load_backend
from evalharness.data.full import data_entry
from evalharness.errors import EvalHarnessError, UsageError
from evalharness.execution.cache import NullCache, ResponseCache, default_home, request_key
from evalharness.execution.config import RunConfig
from evalharness.execution.launcher import Launch, ShardedExecutor, detect, launch_from_env, local_device
from evalharness.execution.prepare import Prepared, describe_output, known_responses, metrics_for, prepare, record
from evalharness.execution.runner import Executor, LocalExecutor, compute_requests, run_requests
from evalharness.execution.score import score_outputs
from evalharness.prompting.requests import to_output
from evalharness.results.schema import CONFIDENCE, TaskResult, new_results
from evalharness.results.store import (
    SampleLog,
    output_lock,
    read_jsonl_tolerant,
    redact,
    samples_path,
    write_json,
    write_jsonl,
)
from evalharness.results.usage import judge_entry, run_usage, usage_json
from evalharness.spec.task import LoadedTask
from evalharness.stats.bootstrap import check_resamples
from evalharness.types import Response, RunStats


def run_identity(model: str, model_args: Mapping[str, Any]) -> dict[str, Any]:
    """What makes two runs the same model configuration (secrets redacted, the backend's
    `runtime_args` speed knobs dropped)."""
    runtime = BACKENDS.get(model).runtime_args if model in BACKENDS else Backend.runtime_args
    return {"backend": model, "args": redact({k: v for k, v in model_args.items() if k not in runtime})}


def default_output(model: str, model_args: Mapping[str, Any]) -> Path:
    """runs/<model>-<short hash of the configuration>: two configurations never share a folder."""
    digest = hashlib.sha256(json.dumps(run_identity(model, model_args), sort_keys=True, default=str).encode()).hexdigest()
    return Path("runs") / f"{model}-{digest[:8]}"


def open_cache(cfg: RunConfig) -> ResponseCache | NullCache:
    if not cfg.use_cache:
        return NullCache()
    directory = cfg.cache_dir or default_home() / "cache"
    return ResponseCache(Path(directory) / "responses.sqlite")


def evaluate(cfg: RunConfig) -> dict[str, Any]:
    """Evaluate every task on one model and write `results.json` into `cfg.output`."""
    started = time.time()
    check_resamples(cfg.bootstrap_resamples)  # refused before any model work, not after it
    launch, model_args = _launch(cfg)
    embedding = [t.spec.name for t in cfg.tasks if t.spec.kind in ("retrieval", "sts")]
    if embedding and (launch is not None or cfg.executor == "ray"):  # every rank refuses alike, before any work
        raise UsageError(f"embedding task(s) {', '.join(embedding)} run in one process; run them without a launcher or Ray")
    backend = load_backend(cfg.model, model_args)
    with contextlib.ExitStack() as held:
        held.callback(backend.close)
        check_output(cfg)
        cache = open_cache(cfg)
        held.callback(cache.close)
        if launch is None or launch.rank == 0:  # the one writer of OUTPUT (other ranks write shard files only)
            held.enter_context(output_lock(cfg.output))
            check_output(cfg)  # again: a run that held the folder until now may have written another configuration
        cfg.output.mkdir(parents=True, exist_ok=True)
        executor = _executor(cfg, launch, model_args)
        held.callback(executor.close)
        if not executor.is_main:
            return _run_rank(cfg, backend, cache, executor)
        return _evaluate_main(cfg, backend, cache, executor, started)
    raise AssertionError("unreachable")  # pragma: no cover - ExitStack does not swallow exceptions


def _evaluate_main(cfg: RunConfig, backend: Backend, cache: ResponseCache | NullCache, executor: Executor,
                   started: float) -> dict[str, Any]:
    """The writer's part of `evaluate`: every task, then results.json (kept tasks and groups merged in)."""
    results = new_results(
        model={"backend": cfg.model, "args": redact(cfg.model_args), "identity": backend.identity(),
               **({"name": cfg.name} if cfg.name else {})},
        config={"limit": cfg.limit, "limits": cfg.limits, "num_fewshot": cfg.num_fewshot, "seed": cfg.seed,
                "bootstrap_resamples": cfg.bootstrap_resamples, "confidence": CONFIDENCE,
                "cache": str(cache.path) if isinstance(cache, ResponseCache) else "None"},
    )
    for task in cfg.tasks:
        executor.begin_task(task.spec.name)
        results["tasks"][task.spec.name] = evaluate_task(task, backend, cache, cfg, executor)
    described = executor.describe()
    if described is not None:
        results["executor"] = described
    executor.finish()  # a launcher's rank 0: merged, the shard files go
    results["usage"] = run_usage(dict(results["tasks"]))  # this invocation's totals: model under test and judge apart
    earlier = _earlier_results(cfg, set(results["tasks"]))
    results["tasks"].update(earlier.get("tasks") or {})
    if cfg.groups or earlier.get("groups"):
        from evalharness.stats.groups import compute_groups

        groups = dict(earlier.get("groups") or {})
        if cfg.groups:
            groups.update(compute_groups(cfg.groups, dict(results), cfg.output, cfg.seed, cfg.bootstrap_resamples))
        results["groups"] = groups
    results["duration_s"] = round(time.time() - started, 3)
    write_json(cfg.output / "results.json", results)
    return dict(results)


def _earlier_results(cfg: RunConfig, now: set[str]) -> dict[str, Any]:
    """What an earlier run of the same configuration into this folder (check_output has made sure
    it is the same) left that this run did not redo: its other tasks, with their logs, and its
    groups none of whose members were rerun. Kept in results.json, marked `earlier_run`, so adding
    a task to a folder does not drop the ones already there."""
    from evalharness.results.rundir import RunDir

    if not (cfg.output / "results.json").is_file():
        return {}
    try:
        old = RunDir.open(cfg.output)
        created = str(old.results.get("created", "?"))
        tasks = {name: {**{k: v for k, v in entry.items() if k != "replaced_samples"},  # that run's news, not this one's
                        "earlier_run": entry.get("earlier_run", created)}
                 for name, entry in old.tasks.items() if name not in now and old.samples_log(name).is_file()}
    except EvalHarnessError:
        return {}  # an unreadable results.json is rewritten, as before
    groups = {name: g for name, g in old.groups.items()
              if isinstance(g, dict) and set(g.get("members") or []) and set(g.get("members") or []) <= set(tasks)}
    return {"tasks": tasks, "groups": groups}


def check_output(cfg: RunConfig) -> None:
    """Refuse an output folder that holds results of another model configuration (no silent overwrite);
    the same configuration resumes there."""
    from evalharness.results.store import load_results

    if not (cfg.output / "results.json").is_file():
        return
    try:
        old = load_results(cfg.output).get("model", {})
    except EvalHarnessError:
        return  # an unreadable results.json is rewritten, as before
    if not isinstance(old, dict):
        return
    before = run_identity(str(old.get("backend")), old.get("args") or {})
    now = run_identity(cfg.model, cfg.model_args)
    if before != now or old.get("name") != cfg.name:
        raise UsageError(f"--output {cfg.output}: it holds results of another model configuration "
                         f"({before['backend']} {before['args'] or ''}); give another --output (or omit it) or delete that folder")


def evaluate_task(task: LoadedTask, backend: Backend, cache: ResponseCache | NullCache, cfg: RunConfig,
                  executor: Executor | None = None) -> TaskResult:
    """Run one task and write its per-sample log; returns its results.json entry."""
    if task.spec.kind == "retrieval":  # embed queries and corpus, rank by cosine (execution/retrieval.py)
        from evalharness.execution.retrieval import evaluate_retrieval

        return evaluate_retrieval(task, backend, cache, cfg, executor)
    if task.spec.kind == "sts":  # embed both texts of each pair, cosine against the gold scores (execution/sts.py)
        from evalharness.execution.sts import evaluate_sts

        return evaluate_sts(task, backend, cache, cfg, executor)
    started = time.time()
    metrics = metrics_for(task)
    if any(m.name == "judge" for m in task.spec.metrics):
        from evalharness.judging.metric import bind_judges

        bind_judges(metrics, cfg.judge_model, cfg.judge_model_args, cache, cfg.progress)
    prep = _prepare(task, backend, cfg)
    log_path = samples_path(cfg.output, task.spec.name)
    logged = read_jsonl_tolerant(log_path)  # read once: resumed answers, and what a smaller --limit replaces
    known = known_responses(logged, prep.fp)  # resume: reuse what a previous run finished
    replaced = len({str(r.get("id")) for r in logged} - {s.id for s in prep.samples})
    recorder = _SampleRecorder(prep, [request_key(backend.identity(), r) for r in prep.flat], SampleLog(log_path))
    try:
        responses, keys, stats = run_requests(backend, prep.flat, cache, known=known, on_batch=recorder.on_batch,
                                              desc=task.spec.name, progress=cfg.progress, executor=executor)
    finally:
        recorder.log.close()
    records, ok = _records(task, prep, responses, keys)
    ok_samples = [prep.samples[i] for i in ok]
    metric_json = score_outputs(metrics, ok_samples, [out for _, out in ok.items()], [records[i] for i in ok],
                                seed=cfg.seed, resamples=cfg.bootstrap_resamples)
    write_jsonl(log_path, records)
    return {
        "kind": task.spec.kind,
        "n_samples": len(ok_samples),
        "n_failed": len(prep.samples) - len(ok_samples),
        "metrics": metric_json,
        "fingerprint": prep.fingerprint,
        "samples_file": str(log_path.relative_to(cfg.output)),
        "source": task.spec.source.model_dump(exclude_none=True),
        "data": data_entry(task, prep.n_rows, len(prep.samples)),  # a vendored sample is recorded as one, with its size
        "usage": usage_json(stats, backend),  # tokens used vs computed now, and cost: see results/usage.py
        **judge_entry(metrics),  # type: ignore[typeddict-item]  # the judge's tokens and cost, apart from the model's
        **({"replaced_samples": replaced} if replaced else {}),  # a smaller --limit than the log's run
        "duration_s": round(time.time() - started, 3),
    }


def _prepare(task: LoadedTask, backend: Backend, cfg: RunConfig) -> Prepared:
    return prepare(task, backend, limit=cfg.limits.get(task.spec.name, cfg.limit), num_fewshot=cfg.num_fewshot,
                   chat_template=cfg.chat_template, seed=cfg.seed)


class _SampleRecorder:
    """Appends a sample's record to the log as soon as all its requests are answered.

    Each sample keeps a count of its unanswered keys and each key the samples waiting on it,
    so a finished piece costs time in its own size, not in the task's (linear in the run).
    """

    def __init__(self, prep: Prepared, flat_keys: list[str], log: SampleLog) -> None:
        self.prep, self.log = prep, log
        self.keys: list[list[str]] = []
        self.waiting: dict[str, list[int]] = {}
        self.missing: list[int] = []
        self.have: dict[str, Response] = {}
        start = 0
        for i, reqs in enumerate(prep.per_sample):
            ks = flat_keys[start : start + len(reqs)]
            start += len(reqs)
            self.keys.append(ks)
            unique = set(ks)
            self.missing.append(len(unique))
            for k in unique:
                self.waiting.setdefault(k, []).append(i)

    def on_batch(self, fresh: dict[str, Response]) -> None:
        ready = []
        for k, resp in fresh.items():
            if k in self.have:
                continue
            self.have[k] = resp
            for i in self.waiting.get(k, ()):
                self.missing[i] -= 1
                if self.missing[i] == 0:
                    ready.append(i)
        for i in sorted(ready):
            ks = self.keys[i]
            self.log.append(record(self.prep.samples[i], self.prep.prompts[i], ks, [self.have[k] for k in ks], self.prep.fp))


def _records(task: LoadedTask, prep: Prepared, responses: list[Response], keys: list[str]) -> tuple[list[dict[str, Any]], dict[int, Any]]:
    """Every sample's final log record, and the outputs of the samples whose requests all succeeded."""
    records, ok, start = [], {}, 0
    for i, (sample, reqs) in enumerate(zip(prep.samples, prep.per_sample, strict=True)):
        rs, ks = responses[start : start + len(reqs)], keys[start : start + len(reqs)]
        start += len(reqs)
        rec = record(sample, prep.prompts[i], ks, rs, prep.fp)
        if "error" not in rec:
            ok[i] = to_output(task, rs)
            describe_output(rec, ok[i])
        records.append(rec)
    return records, ok


def compute_shard(task: LoadedTask, backend: Backend, cache: ResponseCache | NullCache, cfg: RunConfig,
                  executor: Executor) -> RunStats:
    """A launcher rank other than 0: compute this rank's batches of the task; rank 0 scores."""
    metrics_for(task)  # a bad metric fails on every rank, before any work
    prep = _prepare(task, backend, cfg)
    known = known_responses(read_jsonl_tolerant(samples_path(cfg.output, task.spec.name)), prep.fp)
    _, _, stats = compute_requests(backend, prep.flat, cache, known=known, desc=task.spec.name, progress=False,
                                   executor=executor)
    return stats


def _run_rank(cfg: RunConfig, backend: Backend, cache: ResponseCache | NullCache, executor: Executor) -> dict[str, Any]:
    """A launcher rank other than 0: its share of every task's batches; rank 0 writes the results."""
    computed = 0
    try:
        for task in cfg.tasks:
            executor.begin_task(task.spec.name)
            computed += compute_shard(task, backend, cache, cfg, executor).computed
    except BaseException as exc:
        executor.fail(f"{type(exc).__name__}: {exc}")
        raise  # evaluate's ExitStack closes the executor, cache and backend
    assert isinstance(executor, ShardedExecutor)  # only launcher ranks are not the main process
    return {"shard": {"rank": executor.launch.rank, "world_size": executor.launch.world, "computed": computed}}


def _launch(cfg: RunConfig) -> tuple[Launch | None, dict[str, Any]]:
    """A launcher's rank (accelerate launch, torchrun, mpirun), and the model args of this rank."""
    if cfg.executor == "ray":
        if detect() is not None:
            raise UsageError("--executor ray runs in one driver process: do not start it under a launcher")
        return None, cfg.model_args
    if cfg.executor != "local":
        raise UsageError(f"--executor must be local or ray, got {cfg.executor!r}")
    launch = launch_from_env()
    return launch, (local_device(cfg.model_args, launch) if launch else cfg.model_args)


def _executor(cfg: RunConfig, launch: Launch | None, model_args: dict[str, Any]) -> Executor:
    if launch is not None:
        return ShardedExecutor(launch, cfg.output)
    if cfg.executor == "ray":
        from evalharness.execution.ray_executor import RayExecutor

        return RayExecutor(cfg.model, model_args, address=cfg.ray_address, workers=cfg.ray_workers,
                           log_path=cfg.output / "executor.jsonl")
    return LocalExecutor()
