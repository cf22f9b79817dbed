"""`evaluate()`: task files -> samples -> requests -> responses -> scores -> results, top to bottom."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from evalharness import __version__
from evalharness.backends.base import Backend, load_backend
from evalharness.build import Prompt, render_prompt, requests_for, to_output
from evalharness.cache import NullCache, ResponseCache, default_home
from evalharness.data import fewshot_pool, load_samples
from evalharness.distributed import Launch, ShardedExecutor, detect, launch_from_env, local_device
from evalharness.errors import BackendError, EvalHarnessError, SpecError, UsageError
from evalharness.group_specs import ResolvedGroup
from evalharness.metrics.base import Metric, build_metric, score_all
from evalharness.prompts import check_template, template_hash
from evalharness.results import SampleLog, read_jsonl_tolerant, redact, samples_path, write_json, write_jsonl
from evalharness.runner import Executor, RunStats, compute_requests, run_requests
from evalharness.specs import LoadedTask
from evalharness.stats import bootstrap, check_resamples
from evalharness.types import Output, Request, Response, Sample
from evalharness.usage import judge_entry, run_usage, usage_json


@dataclass
class RunConfig:
    """Everything `evalharness run` takes."""

    tasks: Sequence[LoadedTask]
    model: str = "smollm2"
    model_args: dict[str, Any] = field(default_factory=dict)
    output: Path = Path("runs/latest")
    limit: int | None = None
    limits: dict[str, int] = field(default_factory=dict)
    num_fewshot: int | None = None
    chat_template: bool | None = None
    cache_dir: Path | None = None
    use_cache: bool = True
    seed: int = 0
    bootstrap_resamples: int = 1000
    progress: bool = True
    judge_model: str | None = None
    judge_model_args: dict[str, Any] = field(default_factory=dict)
    groups: Sequence[ResolvedGroup] = ()  # task groups whose micro/macro scores results.json gets
    name: str | None = None  # the model's display name (suites), recorded as results.json model.name
    executor: str = "local"  # local (a launcher's ranks are detected by themselves) or ray
    ray_address: str | None = None  # ray: an existing cluster (ray://HOST:PORT or HOST:PORT); None starts one
    ray_workers: int | None = None  # ray: model replicas (default: one per GPU, else one per node)


def _hash(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _use_chat(task: LoadedTask, backend: Backend, override: bool | None) -> bool:
    p = task.spec.prompt
    want = override if override is not None else (p.chat_template if p is not None else False)
    has_chat = bool(getattr(backend, "is_chat", False))
    if want is None:
        return task.spec.kind == "generate" and has_chat
    if want and not has_chat:
        raise BackendError(f"{task.spec.name}: chat template requested but backend {backend.name!r} has none")
    return bool(want)


def _metrics_for(task: LoadedTask) -> list[Metric]:
    metrics = []
    for i, m in enumerate(task.spec.metrics):
        try:
            metric = build_metric(m.name, m.params)
        except EvalHarnessError as exc:  # name the task file and field, not just the metric
            raise type(exc)(f"{task.path}: metrics.{i}: {exc}") from None
        if task.spec.kind not in metric.kinds:
            raise SpecError(f"{task.path}: metrics.{i}: {m.name!r} does not apply to {task.spec.kind} tasks")
        metrics.append(metric)
    return metrics


def _prompts(task: LoadedTask, samples: list[Sample], cfg: RunConfig, chat: bool) -> list[Prompt | None]:
    p = task.spec.prompt
    if p is None:
        return [None] * len(samples)
    where = str(task.path)
    mc = task.spec.multiple_choice
    for name, src in (("prompt.template", p.template), ("prompt.system", p.system), ("prompt.target", p.target),
                      ("multiple_choice.continuation", mc.continuation if mc else None)):
        if src:
            check_template(src, f"{where}: {name}")
    k = p.fewshot.k if cfg.num_fewshot is None else cfg.num_fewshot
    pool = fewshot_pool(task, k)
    return [render_prompt(task, s, i, pool, k, chat) for i, s in enumerate(samples)]


def _record(sample: Sample, prompt: Prompt | None, keys: list[str], responses: list[Response], fp: str) -> dict[str, Any]:
    rec: dict[str, Any] = {"id": sample.id, "fp": fp}
    if prompt is not None:
        rec["prompt"] = prompt.text if prompt.messages is None else [[m.role, m.content] for m in prompt.messages]
        if prompt.per_choice:
            rec["choice_prompts"] = [pc.text for pc in prompt.per_choice]
    if sample.choices:
        rec["choices"], rec["gold"] = list(sample.choices), sample.gold
    if sample.references:
        rec["references"] = list(sample.references)
    rec["keys"] = keys
    rec["responses"] = [r.to_json() for r in responses]
    errors = [r.error for r in responses if r.error]
    if errors:
        rec["error"] = errors[0]
    return rec


@dataclass
class _Prepared:
    """A task's samples, prompts and requests, built the same way on every rank and worker."""

    samples: list[Sample]
    prompts: list[Prompt | None]
    per_sample: list[list[Request]]
    fingerprint: dict[str, Any]
    fp: str

    @property
    def flat(self) -> list[Request]:
        return [r for reqs in self.per_sample for r in reqs]


def _prepare(task: LoadedTask, backend: Backend, cfg: RunConfig) -> _Prepared:
    spec = task.spec
    samples = load_samples(task, cfg.limits.get(spec.name, cfg.limit))
    chat = _use_chat(task, backend, cfg.chat_template)
    prompts = _prompts(task, samples, cfg, chat)
    p = spec.prompt
    fingerprint = {
        "task_file_hash": task.file_hash,
        "prompt_template_hash": template_hash(p.template, p.system, p.target) if p else template_hash(),
        "model_identity_hash": _hash(backend.identity()),
        "harness_version": __version__,
        "seed": cfg.seed,
        "num_fewshot": cfg.num_fewshot if cfg.num_fewshot is not None else (p.fewshot.k if p else 0),
        "chat_template": chat,
        "sample_ids_hash": _hash([s.id for s in samples]),
    }
    fp = _hash({k: v for k, v in fingerprint.items() if k != "sample_ids_hash"})
    per_sample = [requests_for(task, s, pr) for s, pr in zip(samples, prompts, strict=True)]
    return _Prepared(samples, prompts, per_sample, fingerprint, fp)


def _known(log_path: Path, fp: str) -> dict[str, Response]:
    """Resume: the responses a previous run of the same task and configuration finished."""
    known: dict[str, Response] = {}
    for rec in read_jsonl_tolerant(log_path):
        if rec.get("fp") == fp and "error" not in rec:
            known.update(zip(rec.get("keys", []), (Response.from_json(r) for r in rec.get("responses", [])), strict=False))
    return known


def compute_shard(task: LoadedTask, backend: Backend, cache: ResponseCache | NullCache, cfg: RunConfig,
                  executor: Executor) -> RunStats:
    """A launcher rank other than 0: compute this rank's batches of the task; rank 0 scores."""
    _metrics_for(task)  # a bad metric fails on every rank, before any work
    prep = _prepare(task, backend, cfg)
    _, _, stats = compute_requests(backend, prep.flat, cache, known=_known(samples_path(cfg.output, task.spec.name), prep.fp),
                                   desc=task.spec.name, progress=False, executor=executor)
    return stats


def evaluate_task(task: LoadedTask, backend: Backend, cache: ResponseCache | NullCache, cfg: RunConfig,
                  executor: Executor | None = None) -> dict[str, Any]:
    """Run one task and write its per-sample log; returns its results.json entry."""
    started = time.time()
    spec = task.spec
    metrics = _metrics_for(task)
    if any(m.name == "judge" for m in spec.metrics):
        from evalharness.judging.metric import bind_judges

        bind_judges(metrics, cfg.judge_model, cfg.judge_model_args, cache, cfg.progress)
    prep = _prepare(task, backend, cfg)
    samples, prompts, per_sample, fingerprint, fp = prep.samples, prep.prompts, prep.per_sample, prep.fingerprint, prep.fp
    flat = prep.flat

    log_path = samples_path(cfg.output, spec.name)
    known = _known(log_path, fp)  # resume: reuse what a previous run finished
    log = SampleLog(log_path)
    logged: set[int] = set()
    have: dict[str, Response] = {}
    offsets = [0]
    for reqs in per_sample:
        offsets.append(offsets[-1] + len(reqs))
    from evalharness.cache import request_key

    identity = backend.identity()
    flat_keys = [request_key(identity, r) for r in flat]

    def on_batch(fresh: dict[str, Response]) -> None:
        have.update(fresh)
        for i in range(len(samples)):
            if i in logged:
                continue
            ks = flat_keys[offsets[i] : offsets[i + 1]]
            if all(k in have for k in ks):
                logged.add(i)
                log.append(_record(samples[i], prompts[i], ks, [have[k] for k in ks], fp))

    try:
        responses, keys, stats = run_requests(
            backend, flat, cache, known=known, on_batch=on_batch, desc=spec.name, progress=cfg.progress,
            executor=executor,
        )
    finally:
        log.close()

    records, outputs, ok_idx = [], [], []
    for i, s in enumerate(samples):
        rs = responses[offsets[i] : offsets[i + 1]]
        rec = _record(s, prompts[i], keys[offsets[i] : offsets[i + 1]], rs, fp)
        if "error" not in rec:
            out = to_output(task, rs)
            outputs.append(out)
            ok_idx.append(i)
            _describe_output(rec, out)
        records.append(rec)
    ok_samples = [samples[i] for i in ok_idx]
    metric_json: dict[str, Any] = {}
    for metric in metrics:
        scores = score_all(metric, ok_samples, outputs) if ok_samples else []
        for j, sc in zip(ok_idx, scores, strict=True):
            records[j].setdefault("scores", {})[metric.name] = sc.value
            if sc.stats:  # corpus metrics: the sufficient statistics the aggregate sums
                records[j].setdefault("score_stats", {})[metric.name] = list(sc.stats)
            if sc.extra:
                records[j].setdefault("score_details", {})[metric.name] = sc.extra
        import numpy as np

        stat_rows = np.array([sc.agg_stats() for sc in scores], dtype=float) if scores else np.zeros((0, 1))
        result = bootstrap(metric, stat_rows, n_resamples=cfg.bootstrap_resamples, seed=cfg.seed)
        metric_json[metric.name] = result.to_json()
        summary = getattr(metric, "summary", None)
        if callable(summary):  # judges add parse rates, consistency and agreement
            metric_json[metric.name].update(summary(scores))
    write_jsonl(log_path, records)
    return {
        "kind": spec.kind,
        "n_samples": len(ok_samples),
        "n_failed": len(samples) - len(ok_samples),
        "metrics": metric_json,
        "fingerprint": fingerprint,
        "samples_file": str(log_path.relative_to(cfg.output)),
        "source": spec.source.model_dump(exclude_none=True),
        "usage": _usage(stats, backend),
        **judge_entry(metrics),  # the judge's tokens and cost, apart from the model's
        "duration_s": round(time.time() - started, 3),
    }


def _describe_output(rec: dict[str, Any], out: Output) -> None:
    if out.generations:
        rec["generations"], rec["extracted"] = list(out.generations), list(out.extracted)
    elif out.n_tokens:
        rec["logprob"], rec["n_tokens"] = out.logprobs[0], out.n_tokens
    elif out.logprobs:
        rec["logprobs"] = list(out.logprobs)
        rec["predicted"] = int(max(range(len(out.logprobs)), key=lambda i: out.logprobs[i]))


def _usage(stats: RunStats, backend: Backend | None = None) -> dict[str, Any]:
    return usage_json(stats, backend)  # tokens used vs computed now, and cost: see usage.py


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
    backend = load_backend(cfg.model, model_args)
    cache = open_cache(cfg)
    cfg.output.mkdir(parents=True, exist_ok=True)
    executor = _executor(cfg, launch, model_args)
    if isinstance(executor, ShardedExecutor) and not executor.is_main:
        return _run_rank(cfg, backend, cache, executor)
    results: dict[str, Any] = {
        "schema_version": 1,
        "harness": {"name": "evalharness", "version": __version__},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {"backend": cfg.model, "args": redact(cfg.model_args), "identity": backend.identity(),
                  **({"name": cfg.name} if cfg.name else {})},
        "config": {
            "limit": cfg.limit,
            "limits": cfg.limits,
            "num_fewshot": cfg.num_fewshot,
            "seed": cfg.seed,
            "bootstrap_resamples": cfg.bootstrap_resamples,
            "confidence": 0.95,
            "cache": str(getattr(cache, "path", None)),
        },
        "tasks": {},
    }
    try:
        for task in cfg.tasks:
            if isinstance(executor, ShardedExecutor):
                executor.begin_task(task.spec.name)
            results["tasks"][task.spec.name] = evaluate_task(task, backend, cache, cfg, executor)
        if executor is not None:
            results["executor"] = _executor_json(executor)
            if isinstance(executor, ShardedExecutor):
                executor.finish()  # merged: the shard files go
    finally:
        if executor is not None:
            executor.close()
        cache.close()
        _close(backend)
    if cfg.groups:
        from evalharness.groups import compute_groups

        results["groups"] = compute_groups(cfg.groups, results, cfg.output, cfg.seed, cfg.bootstrap_resamples)
    results["usage"] = run_usage(results["tasks"])  # totals: model under test and judge apart
    results["duration_s"] = round(time.time() - started, 3)
    write_json(cfg.output / "results.json", results)
    return results


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


def _executor(cfg: RunConfig, launch: Launch | None, model_args: dict[str, Any]) -> Executor | None:
    if launch is not None:
        return ShardedExecutor(launch, cfg.output)
    if cfg.executor == "ray":
        from evalharness.ray_executor import RayExecutor

        return RayExecutor(cfg.model, model_args, address=cfg.ray_address, workers=cfg.ray_workers,
                           log_path=cfg.output / "executor.jsonl")
    return None


def _executor_json(executor: Executor) -> dict[str, Any]:
    if isinstance(executor, ShardedExecutor):
        return {"name": executor.name, "world_size": executor.launch.world, "launch_id": executor.launch.launch_id}
    return {"name": executor.name, **getattr(executor, "stats", {})}


def _run_rank(cfg: RunConfig, backend: Backend, cache: ResponseCache | NullCache, executor: ShardedExecutor) -> dict[str, Any]:
    """A launcher rank other than 0: its share of every task's batches; rank 0 writes the results."""
    computed = 0
    try:
        for task in cfg.tasks:
            executor.begin_task(task.spec.name)
            computed += compute_shard(task, backend, cache, cfg, executor).computed
    except BaseException as exc:
        executor.fail(f"{type(exc).__name__}: {exc}")
        raise
    finally:
        executor.close()
        cache.close()
        _close(backend)
    return {"shard": {"rank": executor.launch.rank, "world_size": executor.launch.world, "computed": computed}}


def _close(backend: Backend) -> None:
    """Stop what a backend started (vLLM engine processes, API connection loops)."""
    close = getattr(backend, "close", None)
    if callable(close):
        close()
