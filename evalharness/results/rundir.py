"""Reading a run directory: results.json (schema-checked) and its per-sample logs.

The one reader behind `report`, `gate` and the Python API, so a broken file is refused the
same way everywhere: one line naming the file and the field, exit code 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalharness.errors import DataError, UsageError
from evalharness.results.store import load_results, read_jsonl_tolerant


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
        rel = self.tasks.get(task, {}).get("samples_file") or f"samples/{task}.jsonl"
        return self.path / rel

    def samples(self, task: str) -> list[dict[str, Any]]:
        """The task's per-sample records in log order (a missing log reads as none)."""
        return read_jsonl_tolerant(self.samples_log(task))

    def records(self, task: str) -> dict[str, dict[str, Any]]:
        """The task's per-sample records by id (the last record wins, as after a resume); the log must exist."""
        log = self.samples_log(task)
        if not log.exists():
            raise DataError(f"{log}: per-sample log missing; samples are paired by id and it is needed")
        return {str(r["id"]): r for r in read_jsonl_tolerant(log) if "id" in r}


def _check_schema(path: Path, data: dict[str, Any]) -> None:
    where = path / "results.json"
    tasks = data.get("tasks")
    if not isinstance(tasks, dict):
        raise DataError(f"{where}: tasks: expected an object of task results, got {type(tasks).__name__}")
    for name, task in tasks.items():
        if not isinstance(task, dict) or not isinstance(task.get("metrics"), dict):
            raise DataError(f"{where}: tasks.{name}.metrics: expected an object of metric results")
        for metric, m in task["metrics"].items():
            if not isinstance(m, dict) or not isinstance(m.get("value"), (int, float, type(None))):
                raise DataError(f"{where}: tasks.{name}.metrics.{metric}.value: expected a number")
