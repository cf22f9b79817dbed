"""The results.json schema: every field named once, and the one constructor of a results file.

`run`, `score` and `arena` all build their results with `new_results`, so the header fields
(schema version, harness, creation time, model, config) are written by one function; readers
(`report`, `gate`, `Results.load`) type what they read against these TypedDicts.

    results.json
      schema_version  SCHEMA_VERSION (readers refuse a newer one)
      harness         {name, version}
      created         ISO 8601, UTC, seconds
      model           {backend, args (redacted), identity, name?}
      config          seed, bootstrap_resamples, confidence, ... (what produced the numbers)
      tasks           {<task>: TaskResult}
      groups?         {<group>: {metrics, members, data?, ...}}: data sums the members' rows and full sizes
      usage?          {model, judge}: token and cost totals
      duration_s      wall-clock seconds of the whole run
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, TypedDict

from evalharness.version import __version__

SCHEMA_VERSION = 1
CONFIDENCE = 0.95  # the level of every confidence interval we report


class MetricJSON(TypedDict, total=False):
    """One metric of one task: the corpus value with its CI (and judge summaries where they apply)."""

    name: str
    value: float
    ci_low: float
    ci_high: float
    stderr: float
    n: int
    higher_is_better: bool
    ci_method: str
    resamples: int


class Fingerprint(TypedDict, total=False):
    """What produced a task's numbers: a change in any field makes runs not comparable."""

    task_file_hash: str
    prompt_template_hash: str
    model_identity_hash: str
    harness_version: str
    seed: int
    num_fewshot: int
    chat_template: bool
    sample_ids_hash: str


class TaskResult(TypedDict, total=False):
    """`tasks.<name>`: one task's metrics, counts, fingerprint and usage."""

    kind: str
    n_samples: int
    n_failed: int
    metrics: dict[str, MetricJSON]
    fingerprint: Fingerprint
    samples_file: str
    source: dict[str, Any]
    data: dict[str, Any]  # {source: sample|full|local, rows: N, of: M or null, used: rows evaluated}: a sample is marked as one
    # (a vendored copy that holds the whole split, `of` rows, is `full`)
    usage: dict[str, Any]
    judge_usage: dict[str, Any]
    corpus_size: int  # retrieval tasks: the number of corpus texts ranked per query
    replaced_samples: int  # samples an earlier run logged here that this run (a smaller --limit) left out
    earlier_run: str  # set on a task kept from an earlier run into the same folder: that run's `created`
    duration_s: float


class HarnessInfo(TypedDict):
    name: str
    version: str


class ResultsFile(TypedDict, total=False):
    """The whole results.json."""

    schema_version: int
    kind: str  # "arena" for arena runs; absent for run and score
    harness: HarnessInfo
    created: str
    model: dict[str, Any]
    config: dict[str, Any]
    tasks: dict[str, TaskResult]
    groups: dict[str, Any]
    usage: dict[str, Any]
    executor: dict[str, Any]
    arena: dict[str, Any]
    bradley_terry: dict[str, Any]
    samples_file: str
    duration_s: float


def new_results(model: dict[str, Any], config: dict[str, Any], **extra: Any) -> ResultsFile:
    """A results file's header (schema version, harness, creation time, model, config) and empty tasks.

    `extra` adds top-level fields after the header, in order (e.g. `kind` for an arena).
    """
    results: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
    if "kind" in extra:
        results["kind"] = extra.pop("kind")
    results.update({
        "harness": {"name": "evalharness", "version": __version__},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": model,
        "config": config,
    })
    results.update(extra)
    results.setdefault("tasks", {})
    return results  # type: ignore[return-value]
