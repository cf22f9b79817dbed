"""The Python API: `evaluate()` and `score()`, the path the `run` and `score` commands take too.

Friendly arguments (task names, a `k=v,...` string or a dict of model args, `output=None`)
become a RunConfig / ScoreConfig here; the pipeline does the work and the run comes back as a
`Results`. With `output=None` the run directory is a temporary folder that is read back into
memory and removed (the response cache still applies); with a path it stays, the same files
the CLI writes.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from evalharness.errors import UsageError
from evalharness.execution.config import RunConfig
from evalharness.execution.pipeline import default_output
from evalharness.results.frame import Results
from evalharness.spec.group import ResolvedGroup
from evalharness.spec.task import LoadedTask

__all__ = ["Results", "default_output", "evaluate", "model_args_dict", "resolve_tasks", "score"]

_GEN_NAMES = {"max_gen_toks": "max_tokens", "until": "stop"}  # lm-eval's spelling -> ours
_RUN_OPTIONS = frozenset({"limits", "chat_template", "cache_dir", "use_cache", "seed", "bootstrap_resamples", "progress",
                          "judge_model", "judge_model_args", "name", "executor", "ray_address", "ray_workers"})


def model_args_dict(model_args: Mapping[str, Any] | str | None) -> dict[str, Any]:
    """A dict, or lm-eval's `k=v,k2=v2` string."""
    from evalharness.backends.base import parse_model_args

    if model_args is None:
        return {}
    if isinstance(model_args, str):
        return dict(parse_model_args(model_args))
    if not isinstance(model_args, Mapping) or not all(isinstance(k, str) for k in model_args):
        raise UsageError(f"model_args: expected a dict or a 'k=v,k2=v2' string, got {model_args!r}")
    return dict(model_args)


def resolve_tasks(tasks: str | Sequence[str | LoadedTask | ResolvedGroup] | LoadedTask) -> tuple[list[LoadedTask], list[ResolvedGroup]]:
    """Task names, group names, YAML paths or loaded spec objects -> tasks (each once) and groups."""
    from evalharness.spec.group import resolve_items
    from evalharness.spec.library import parse_task_list

    if not isinstance(tasks, (str, Path, LoadedTask, ResolvedGroup, list, tuple)):
        raise UsageError(f"tasks: expected a name, a list of names, YAML paths or loaded tasks, got {tasks!r}")
    single = isinstance(tasks, (Path, LoadedTask, ResolvedGroup))
    items: list[Any] = parse_task_list(tasks) if isinstance(tasks, str) else [tasks] if single else list(tasks)
    if not items:
        raise UsageError("tasks: give at least one task name, group name or YAML path")
    return resolve_items(items)


def with_gen_kwargs(tasks: list[LoadedTask], gen_kwargs: Mapping[str, Any] | str | None) -> list[LoadedTask]:
    """Generation parameters (lm-eval's --gen_kwargs: temperature, top_p, max_gen_toks, until, seed)
    laid over every generate task's `generate:` block; the task hash changes with them."""
    import hashlib

    from pydantic import ValidationError

    from evalharness.spec.task import GenerateSpec

    extra = model_args_dict(gen_kwargs)
    if not extra:
        return tasks
    extra = {_GEN_NAMES.get(k, k): v for k, v in extra.items() if k != "do_sample"}
    if isinstance(extra.get("stop"), str):
        extra["stop"] = [extra["stop"]]

    def laid_over(base: dict[str, Any]) -> GenerateSpec:
        try:
            return GenerateSpec(**{**base, **extra})
        except ValidationError as exc:
            err = exc.errors()[0]
            raise UsageError(f"--gen_kwargs: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None

    laid_over({})  # checked even when no task generates: a typo is an error, not a silent no-op
    out = []
    for t in tasks:
        if t.spec.generate is None:
            out.append(t)
            continue
        gen = laid_over(t.spec.generate.model_dump())
        digest = hashlib.sha256(f"{t.file_hash}{json.dumps(gen.model_dump(), sort_keys=True)}".encode()).hexdigest()
        out.append(t.model_copy(update={"spec": t.spec.model_copy(update={"generate": gen}), "file_hash": digest}))
    return out


def with_data(tasks: list[LoadedTask], groups: list[ResolvedGroup], data: str | Mapping[str, str] | None) -> list[LoadedTask]:
    """--data full: the chosen tasks read their canonical source; checked before any model work."""
    from evalharness.data.full import full_task, load_full_rows, parse_data_choice
    from evalharness.data.samples import load_rows

    choice = parse_data_choice(data, [t.spec.name for t in tasks], {g.name: g.member_names for g in groups})
    out = []
    for t in tasks:
        if choice.get(t.spec.name) != "full":
            out.append(t)
            continue
        full = full_task(t)
        sample_rows = len(load_rows(t)) if t.spec.dataset.path is not None else None
        load_full_rows(full, sample_rows)  # offline without a cache: one line, before the model loads
        out.append(full)
    return out


@contextmanager
def _run_dir(output: Path | str | None) -> Iterator[Path]:
    if output is not None:
        yield Path(output)
        return
    tmp = Path(tempfile.mkdtemp(prefix="evalharness-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def evaluate(
    tasks: str | Sequence[str | LoadedTask | ResolvedGroup] | LoadedTask | RunConfig,
    model: str = "smollm2",
    model_args: Mapping[str, Any] | str | None = None,
    *,
    limit: int | None = None,
    num_fewshot: int | None = None,
    batch_size: int | str | None = None,
    output: Path | str | None = None,
    **options: Any,
) -> Results:
    """Evaluate `model` on `tasks` (names, group names such as "mmlu", YAML paths or loaded tasks).

    `model_args`: a dict or a "k=v,k2=v2" string. `output=None` keeps the run in memory; a path
    writes results.json and samples/ there, as `evalharness run --output` does. Other options
    are RunConfig fields: limits, chat_template, cache_dir, use_cache, seed,
    bootstrap_resamples, progress, judge_model, judge_model_args, name, executor, and
    gen_kwargs (a dict or "k=v,..." laid over generate tasks: temperature, top_p, max_gen_toks, until),
    data ("sample" (default), "full", or {task or group: "full"}: built-in tasks read their
    canonical source through `datasets` instead of the vendored sample).
    """
    from evalharness.backends import BACKENDS
    from evalharness.execution.pipeline import evaluate as run_pipeline

    if isinstance(tasks, RunConfig):  # a configuration built by hand: run as given, written to its output folder
        if options or any(v is not None for v in (model_args, limit, num_fewshot, batch_size, output)):
            raise UsageError("evaluate: a RunConfig carries every option; pass it alone")
        if "shard" in run_pipeline(tasks):
            return Results({}, {}, None)
        return Results.load(tasks.output)
    unknown = sorted(set(options) - _RUN_OPTIONS - {"gen_kwargs", "data"})
    if unknown:
        raise UsageError(f"evaluate: unknown option(s) {', '.join(unknown)} (known: {', '.join(sorted(_RUN_OPTIONS))})")
    if not isinstance(model, str) or not model:
        raise UsageError(f"evaluate: model: expected a backend name such as 'hf' or 'fake', got {model!r}")
    BACKENDS.get(model)  # a typo fails before any task or data is read
    args = model_args_dict(model_args)
    if batch_size is not None:
        as_int = int(batch_size) if isinstance(batch_size, str) and batch_size.isdigit() else batch_size  # "16" (the CLI's)
        if batch_size != "auto" and (isinstance(as_int, bool) or not isinstance(as_int, int) or as_int < 1):
            raise UsageError(f"evaluate: batch_size: expected a whole number >= 1 or 'auto', got {batch_size!r}")
        args["batch_size"] = batch_size
    found, groups = resolve_tasks(tasks)
    found = with_gen_kwargs(found, options.pop("gen_kwargs", None))
    found = with_data(found, groups, options.pop("data", None))
    if "judge_model_args" in options:
        options["judge_model_args"] = model_args_dict(options["judge_model_args"])
    options.setdefault("progress", output is not None)
    with _run_dir(output) as out:
        cfg = RunConfig(tasks=found, model=model, model_args=args, output=out, limit=limit, num_fewshot=num_fewshot,
                        groups=groups, **options)
        results = run_pipeline(cfg)
        if "shard" in results:  # a launcher rank other than 0: rank 0 holds the results
            return Results(results, {}, None)
        loaded = Results.load(out)
    return loaded if output is not None else Results(loaded.results, loaded.records, None)


def score(
    predictions: Sequence[str] | Sequence[Sequence[str]],
    references: Sequence[str | Sequence[str]] | None = None,
    *,
    metrics: Sequence[str] = (),
    judges: Sequence[str] = (),
    prompts: Sequence[str] | None = None,
    ids: Sequence[str] | None = None,
    output: Path | str | None = None,
    **options: Any,
) -> Results:
    """Score predictions (no model under test) with metrics and/or judges; returns a `Results`.

    `references`: one string or list of strings per prediction. `prompts` feed judges (the
    `input` field). Options are ScoreConfig fields: metric_params, task_name, seed,
    bootstrap_resamples, judge_model, judge_model_args, cache_dir, use_cache.
    """
    from evalharness.execution.predictions import ScoreConfig, score_predictions

    preds = _column(predictions, "predictions", _text_or_texts) or []
    n = len(preds)
    refs = _column(references, "references", _text_or_texts)
    asked = _column(prompts, "prompts", _text)
    names = _column(ids, "ids", _id)
    for name, column in (("references", refs), ("prompts", asked), ("ids", names)):
        if column is not None and len(column) != n:
            raise UsageError(f"score: {name} has {len(column)} entries, predictions has {n}")
    metrics, judges = _names(metrics, "metrics"), _names(judges, "judges")
    if not metrics and not judges:
        raise UsageError("score: give metrics=[...] or judges=[...]")
    known = {f.name for f in dataclasses.fields(ScoreConfig)} - {"predictions", "metrics", "output", "judges"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise UsageError(f"score: unknown option(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    if "judge_model_args" in options:
        options["judge_model_args"] = model_args_dict(options["judge_model_args"])
    options.setdefault("task_name", "predictions")
    rows = []
    for i, pred in enumerate(preds):
        row: dict[str, Any] = {"id": str(names[i]) if names is not None else str(i), "prediction": pred}
        if refs is not None:
            row["references"] = refs[i]
        if asked is not None:
            row["input"] = row["prompt"] = asked[i]
        rows.append(row)
    with _run_dir(output) as out, tempfile.TemporaryDirectory(prefix="evalharness-pred-") as tmp:
        path = (out if output is not None else Path(tmp)) / "predictions.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        score_predictions(ScoreConfig(predictions=path, metrics=list(metrics), output=out, judges=list(judges), **options))
        loaded = Results.load(out)
    return loaded if output is not None else Results(loaded.results, loaded.records, None)


def _text(value: Any) -> bool:
    return isinstance(value, str)


def _text_or_texts(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value))


def _id(value: Any) -> bool:
    return (isinstance(value, str) and value != "") or (isinstance(value, int) and not isinstance(value, bool))


def _column(value: Any, what: str, ok: Any) -> list[Any] | None:
    """One of score()'s columns as a list (a list, tuple, pandas Series, generator...), each entry
    checked: a null, a NaN or a number where text belongs is refused naming its index, never coerced."""
    if value is None:
        return None
    if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__iter__"):
        raise UsageError(f"score: {what}: expected a list with one entry per prediction, got {type(value).__name__} {value!r:.60}")
    column = list(value)
    for i, entry in enumerate(column):
        if not ok(entry):
            kind = "a non-empty string or an integer" if ok is _id else "a string" if ok is _text else "a string or a list of strings"
            raise UsageError(f"score: {what}[{i}]: expected {kind}, got {entry!r:.60}")
    return column


def _names(value: Any, what: str) -> list[str]:
    """Metric or judge names: a list of names, or one string (comma-separated, as on the command line)."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    names = list(value or ())
    bad = [v for v in names if not isinstance(v, str)]
    if bad:
        raise UsageError(f"score: {what}: names only (e.g. 'bleu'), got {bad[0]!r:.60}; give metric parameters as "
                         "metric_params={'bleu': {...}}")
    return names
