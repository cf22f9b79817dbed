"""Reading a run directory: results.json (schema-checked) and its per-sample logs.

The one reader behind `report`, `gate` and the Python API, so a broken file is refused the
same way everywhere: one line naming the file and the field, exit code 2.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalharness.errors import DataError, UsageError
from evalharness.results.store import load_results, loads_strict, task_samples_log


@dataclass
class RunDir:
    """One run directory: its results.json and a display label (reports make it unique)."""

    path: Path
    results: dict[str, Any]
    label: str = ""

    @classmethod
    def open(cls, path: Path | str, what: str | None = None) -> RunDir:
        """Read `path` (a run directory or its results.json); `what` names it in errors ("baseline")."""
        path = Path(path)
        if not path.exists():
            raise UsageError(f"{what + ' ' if what else ''}{path}: no such run directory")
        if path.is_file():  # results.json named directly
            path = path.parent
        data = load_results(path)
        _check_schema(path, data)
        return cls(path, data)

    @property
    def tasks(self) -> dict[str, Any]:
        tasks: dict[str, Any] = self.results["tasks"]
        return tasks

    @property
    def groups(self) -> dict[str, Any]:
        """Task groups (results.json `groups`): name -> {members, metrics, subgroups, ...}."""
        groups = self.results.get("groups")
        return groups if isinstance(groups, dict) else {}

    def samples_log(self, task: str) -> Path:
        return task_samples_log(self.path, task, self.tasks.get(task))

    def samples(self, task: str) -> list[dict[str, Any]]:
        """The task's per-sample records in log order (a missing log reads as none); bad scores are refused."""
        return read_samples_log(self.samples_log(task))

    def records(self, task: str) -> dict[str, dict[str, Any]]:
        """The task's per-sample records by id (the last record wins, as after a resume); the log must exist."""
        log = self.samples_log(task)
        if not log.exists():
            raise DataError(f"{log}: per-sample log missing; samples are paired by id and it is needed")
        return {str(r["id"]): r for r in read_samples_log(log) if "id" in r}


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def read_samples_log(path: Path) -> list[dict[str, Any]]:
    """A per-sample log's records, checked: strict JSON, scores finite numbers or null (undefined,
    e.g. an unparseable verdict), statistics lists of finite numbers. A torn last line (a crash
    mid-write) is skipped; a bad line anywhere else (a finished run rewrites its log whole), NaN,
    Infinity or a mistyped score is refused naming the file and line."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    last = max((no for no, line in enumerate(lines, 1) if line.strip()), default=0)
    records = []
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = loads_strict(line)
        except json.JSONDecodeError as exc:
            if no == last:
                continue  # a line torn by a crash mid-write
            raise DataError(f"{path}:{no}: not JSON ({exc.msg}); only a log's last line may be torn by a crash: "
                            "rerun the task to rewrite its log") from None
        except ValueError as exc:  # NaN / Infinity
            raise DataError(f"{path}:{no}: not a valid sample record: {exc}") from None
        if not isinstance(rec, dict):
            raise DataError(f"{path}:{no}: expected a JSON object per line, got {type(rec).__name__}")
        _check_record(path, no, rec)
        records.append(rec)
    return records


def _check_record(path: Path, no: int, rec: dict[str, Any]) -> None:
    scores = rec.get("scores", {})
    if not isinstance(scores, dict):
        raise DataError(f"{path}:{no}: scores: expected an object of metric values, got {type(scores).__name__}")
    for metric, v in scores.items():
        if v is not None and not _is_number(v):
            raise DataError(f"{path}:{no}: scores.{metric}: expected a number or null, got {json.dumps(v)[:40]}")
    stats = rec.get("score_stats", {})
    if not isinstance(stats, dict):
        raise DataError(f"{path}:{no}: score_stats: expected an object, got {type(stats).__name__}")
    for metric, row in stats.items():
        if not isinstance(row, list) or not all(_is_number(x) for x in row):
            raise DataError(f"{path}:{no}: score_stats.{metric}: expected a list of finite numbers")


def _check_schema(path: Path, data: dict[str, Any]) -> None:
    where = path / "results.json"
    tasks = data.get("tasks")
    if not isinstance(tasks, dict):
        raise DataError(f"{where}: tasks: expected an object of task results, got {type(tasks).__name__}")
    for name, task in tasks.items():
        if not isinstance(task, dict) or not isinstance(task.get("metrics"), dict):
            raise DataError(f"{where}: tasks.{name}.metrics: expected an object of metric results")
        for metric, m in task["metrics"].items():
            _check_metric(where, f"tasks.{name}.metrics.{metric}", m)
    for name, group in (data.get("groups") or {}).items():
        if not isinstance(group, dict) or not isinstance(group.get("metrics", {}), dict):
            raise DataError(f"{where}: groups.{name}.metrics: expected an object of metric results")
        for metric, m in group.get("metrics", {}).items():
            _check_metric(where, f"groups.{name}.metrics.{metric}", m)


def _check_metric(where: Path, field: str, m: Any) -> None:
    """One metric entry: numbers are numbers or null (never strings or booleans), `n` an integer,
    `kind`/`scale` (the metric's declaration) well-formed where present."""
    if not isinstance(m, dict):
        raise DataError(f"{where}: {field}: expected an object")
    if not _is_number(m.get("value")) and m.get("value") is not None:
        raise DataError(f"{where}: {field}.value: expected a number, got {json.dumps(m.get('value'))[:40]}")
    for key in ("ci_low", "ci_high", "stderr"):
        if m.get(key) is not None and not _is_number(m[key]):
            raise DataError(f"{where}: {field}.{key}: expected a number or null, got {json.dumps(m[key])[:40]}")
    if "n" in m and (not isinstance(m["n"], int) or isinstance(m["n"], bool) or m["n"] < 0):
        raise DataError(f"{where}: {field}.n: expected a count, got {json.dumps(m['n'])[:40]}")
    if "higher_is_better" in m and not isinstance(m["higher_is_better"], bool):
        raise DataError(f"{where}: {field}.higher_is_better: expected true or false")
    scale = m.get("scale")
    if scale is not None and not (isinstance(scale, list) and len(scale) == 2 and all(_is_number(x) for x in scale)):
        raise DataError(f"{where}: {field}.scale: expected [low, high]")
