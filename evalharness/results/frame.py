"""`Results`: what `evalharness.evaluate()` and `evalharness.score()` return, for notebooks.

It holds the results.json content and every task's per-sample records in memory (a run
directory, when there is one, is read once through `RunDir`), and turns them into tables:
`to_pandas()` one row per task x metric, `samples(task)` one row per sample. pandas is the
optional `data` extra, imported only by those two methods.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalharness.errors import DataError, UsageError
from evalharness.results.rundir import RunDir

if TYPE_CHECKING:
    import pandas

METRIC_COLUMNS = ("task", "metric", "value", "ci_low", "ci_high", "stderr", "n", "higher_is_better", "ci_method")


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise UsageError("pandas is not installed: pip install 'evalharness[data]' (or pip install pandas)") from None
    return pandas


class Results:
    """One run's numbers and per-sample records, in memory."""

    def __init__(self, results: dict[str, Any], records: dict[str, list[dict[str, Any]]], path: Path | None = None) -> None:
        self.results = results
        self.records = records
        self.path = path  # the run directory, or None for a run kept in memory

    @classmethod
    def load(cls, run_dir: Path | str) -> Results:
        """Read a run directory written by `evalharness run`/`score` or `evaluate(output=...)`."""
        rd = RunDir.open(run_dir)
        return cls(rd.results, {name: rd.samples(name) for name in rd.tasks}, rd.path)

    def to_dict(self) -> dict[str, Any]:
        """The results.json content."""
        return self.results

    @property
    def tasks(self) -> list[str]:
        return list(self.results.get("tasks", {}))

    def metric_rows(self) -> list[dict[str, Any]]:
        """One dict per task x metric (groups too, their task named `<group> (group)`)."""
        rows = []
        sections = [(name, t) for name, t in self.results.get("tasks", {}).items()]
        sections += [(f"{name} (group)", g) for name, g in (self.results.get("groups") or {}).items()]
        for name, entry in sections:
            for metric, m in entry.get("metrics", {}).items():
                rows.append({"task": name, "metric": metric, **{k: m.get(k) for k in METRIC_COLUMNS[2:]}})
        return rows

    def to_pandas(self) -> pandas.DataFrame:
        """A DataFrame, one row per task x metric: task, metric, value, ci_low, ci_high, stderr, n, higher_is_better."""
        return _pandas().DataFrame(self.metric_rows(), columns=list(METRIC_COLUMNS))

    def sample_rows(self, task: str) -> list[dict[str, Any]]:
        """The task's samples as flat dicts: id, prompt, references/target, output, extracted, a column per metric."""
        if task not in self.records:
            raise UsageError(f"samples: no task {task!r} in these results ({', '.join(self.tasks) or 'none'})")
        rows = []
        for rec in self.records[task]:
            row: dict[str, Any] = {"id": rec.get("id"), "prompt": rec.get("prompt")}
            if "choices" in rec:
                row["target"] = _choice(rec, "gold", task)
                row["output"] = _choice(rec, "predicted", task)
                row["extracted"] = rec.get("predicted")
            else:
                refs = rec.get("references")
                row["references"] = refs
                row["target"] = refs[0] if refs else None
                gens = rec.get("generations") or []
                row["output"] = gens[0] if gens else None
                extracted = rec.get("extracted") or gens  # scored predictions are taken as extracted
                row["extracted"] = extracted[0] if extracted else None
            if "error" in rec:
                row["error"] = rec["error"]
            row.update(rec.get("scores", {}))
            rows.append(row)
        return rows

    def samples(self, task: str) -> pandas.DataFrame:
        """A DataFrame, one row per sample of `task`."""
        return _pandas().DataFrame(self.sample_rows(task))

    def __repr__(self) -> str:
        where = str(self.path) if self.path else "in memory"
        return f"Results({', '.join(self.tasks)}; {where})"


def _choice(rec: dict[str, Any], key: str, task: str) -> Any:
    """The text of a record's `gold` / `predicted` choice; an index outside its choices is a corrupt
    log, refused in one line (never an IndexError)."""
    index, choices = rec.get(key), rec.get("choices")
    if not isinstance(index, int) or isinstance(index, bool):
        return index if key == "gold" else None
    if not isinstance(choices, list) or not 0 <= index < len(choices):
        n = len(choices) if isinstance(choices, list) else 0
        raise DataError(f"samples log of task {task}: sample {rec.get('id')!r}: {key} {index} is not an index into its "
                        f"{n} choices (a corrupt log)")
    return choices[index]
