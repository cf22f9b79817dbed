"""What a report shows, computed from run directories only: runs, leaderboard, diffs, sample rows.

Everything here reads `results.json` and `samples/<task>.jsonl`; nothing loads a model. The
HTML, Markdown and CSV renderers in `report.py` only format what these functions return.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalharness.data.full import group_data, sample_size
from evalharness.errors import DataError, UsageError
from evalharness.results.rundir import RunDir

# Model arguments that do not change which model answers, left out of a run's display name.
_QUIET_ARGS = {"batch_size", "device", "max_batch_size", "concurrency", "timeout", "max_retries", "retry_budget",
               "backoff_base"}
_UNPARSEABLE = {"unparseable", "unparsable", "invalid"}


Run = RunDir  # a report's run: the run directory, labelled


def model_name(results: dict[str, Any]) -> str:
    """A short human name for the model of a run: `name`, else backend plus identifying args."""
    model = results.get("model") or {}
    if model.get("name"):
        return str(model["name"])
    args = model.get("args") or {}
    parts = []
    for key, value in args.items():
        if key in _QUIET_ARGS or value in (None, "", "<redacted>") or isinstance(value, (dict, list)):
            continue
        text = str(value)
        if key in {"pretrained", "model", "path"} and ("/" in text or "\\" in text):
            text = text.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1]
        parts.append(text if key in {"pretrained", "model"} else f"{key}={text}")
    backend = str(model.get("backend") or "model")
    return f"{backend} {' '.join(parts)}".strip()


def load_runs(run_dirs: list[str | Path]) -> list[Run]:
    """Read and check every run directory; labels are made unique with the directory name."""
    if not run_dirs:
        raise UsageError("report: give at least one run directory")
    runs: list[Run] = []
    seen: set[Path] = set()
    for d in run_dirs:
        run = RunDir.open(d)
        if run.path.resolve() in seen:
            raise UsageError(f"{run.path}: run directory given twice")
        seen.add(run.path.resolve())
        run.label = model_name(run.results)
        runs.append(run)
    counts: dict[str, int] = {}
    for r in runs:
        counts[r.label] = counts.get(r.label, 0) + 1
    for r in runs:
        if counts[r.label] > 1:
            r.label = f"{r.label} ({r.path.name})"
    if len({r.label for r in runs}) < len(runs):  # same model and same folder name: fall back to the path
        for r in runs:
            r.label = f"{model_name(r.results)} ({r.path})"
    return runs


def finite(x: Any) -> float | None:
    """x as a float, or None for missing, NaN and infinities (JSON and charts cannot hold them)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


# ---------------------------------------------------------------------------------------- leaderboard


@dataclass
class Column:
    task: str  # a task, or a group (`is_group`)
    metric: str
    higher_is_better: bool
    primary: bool  # the task's first metric: the one the mean rank uses
    is_group: bool = False


@dataclass
class Cell:
    value: float | None
    ci_low: float | None
    ci_high: float | None
    n: int
    best: bool = False
    rank: float | None = None
    sample: str | None = None  # `1,000 of 10,042 rows` when the score is on a vendored sample, not the benchmark


@dataclass
class Row:
    run: Run
    cells: list[Cell | None]
    mean_rank: float | None = None


@dataclass
class Leaderboard:
    columns: list[Column]
    rows: list[Row] = field(default_factory=list)

    def tasks(self) -> list[tuple[str, int]]:
        """(task, number of metric columns) in column order, for a grouped header."""
        out: list[tuple[str, int]] = []
        for c in self.columns:
            if out and out[-1][0] == c.task:
                out[-1] = (c.task, out[-1][1] + 1)
            else:
                out.append((c.task, 1))
        return out

    def sample_notes(self) -> list[tuple[str, str, str]]:
        """(entry, run label, `1,000 of 10,042 rows`) for every score on a sample, once per entry and run."""
        seen: dict[tuple[str, str], str] = {}
        for row in self.rows:
            for c, cell in zip(self.columns, row.cells, strict=True):
                if cell is not None and cell.sample:
                    seen.setdefault((f"{c.task} (group)" if c.is_group else c.task, row.run.label), cell.sample)
        return [(task, run, size) for (task, run), size in seen.items()]


def _ranks(values: list[float | None], higher_is_better: bool) -> list[float | None]:
    """1 = best; ties share their average rank; missing values get no rank."""
    present = sorted((v if higher_is_better else -v, i) for i, v in enumerate(values) if v is not None)
    present.reverse()
    ranks: list[float | None] = [None] * len(values)
    pos = 0
    while pos < len(present):
        end = pos
        while end + 1 < len(present) and present[end + 1][0] == present[pos][0]:
            end += 1
        for k in range(pos, end + 1):
            ranks[present[k][1]] = (pos + end) / 2 + 1
        pos = end + 1
    return ranks


def _entry(run: Run, name: str, is_group: bool) -> dict[str, Any]:
    entry = (run.groups if is_group else run.tasks).get(name)
    return entry if isinstance(entry, dict) and isinstance(entry.get("metrics"), dict) else {}


def _sample(run: Run, name: str, is_group: bool) -> str | None:
    """How much of the full split a task's (or group's) score covers, when it is a sample; None otherwise."""
    entry = _entry(run, name, is_group)
    data = entry.get("data")
    if is_group and not isinstance(data, dict):  # results written before groups carried `data`
        data = group_data([t.get("data") or {} for m in entry.get("members") or [] if isinstance(t := run.tasks.get(m), dict)])
    return sample_size(data) if isinstance(data, dict) else None


def top_level(runs: list[Run]) -> tuple[list[str], list[str]]:
    """(groups that are nobody's subgroup, tasks that are no group's member): the main board's entries."""
    groups = list(dict.fromkeys(g for r in runs for g in r.groups))
    subs = {s for r in runs for g in r.groups.values() if isinstance(g, dict) for s in g.get("subgroups") or []}
    members = {m for r in runs for g in r.groups.values() if isinstance(g, dict) for m in g.get("members") or []}
    tasks = [t for t in dict.fromkeys(t for r in runs for t in r.tasks) if t not in members]
    return [g for g in groups if g not in subs], tasks


def leaderboard(runs: list[Run], groups: list[str] | None = None, tasks: list[str] | None = None) -> Leaderboard:
    """Models x (task, metric) with CIs, the best per column marked and the mean rank over primary metrics.

    By default a task group is one entry (its micro/macro columns) and its member tasks are left
    to `group_boards`; pass `groups` and `tasks` to choose the entries.
    """
    if groups is None or tasks is None:
        top_groups, top_tasks = top_level(runs)
        groups = top_groups if groups is None else groups
        tasks = top_tasks if tasks is None else tasks
    columns: list[Column] = []
    for name, is_group in [*((g, True) for g in groups), *((t, False) for t in tasks)]:
        seen: set[str] = set()
        for run in runs:
            for metric, m in _entry(run, name, is_group).get("metrics", {}).items():
                if metric not in seen:
                    columns.append(Column(name, metric, bool(m.get("higher_is_better", True)), not seen, is_group))
                    seen.add(metric)
    rows = []
    for run in runs:
        cells: list[Cell | None] = []
        for c in columns:
            m = _entry(run, c.task, c.is_group).get("metrics", {}).get(c.metric)
            cells.append(None if m is None else
                         Cell(finite(m.get("value")), finite(m.get("ci_low")), finite(m.get("ci_high")), int(m.get("n") or 0),
                              sample=_sample(run, c.task, c.is_group)))
        rows.append(Row(run, cells))
    for j, c in enumerate(columns):
        col = [r.cells[j] for r in rows]
        ranks = _ranks([cell.value if cell is not None else None for cell in col], c.higher_is_better)
        best = min((x for x in ranks if x is not None), default=None)
        for cell, rank in zip(col, ranks, strict=True):
            if cell is not None and rank is not None:
                cell.rank, cell.best = rank, rank == best
    for r in rows:
        primary = [cell.rank for c, cell in zip(columns, r.cells, strict=True) if c.primary and cell is not None]
        present = [x for x in primary if x is not None]
        r.mean_rank = sum(present) / len(present) if present else None
    rows.sort(key=lambda r: (r.mean_rank is None, r.mean_rank or 0.0))
    return Leaderboard(columns, rows)


@dataclass
class GroupBoard:
    """A group's drill-down: its subgroups and member tasks as a leaderboard of their own."""

    name: str
    members: list[str]
    subgroups: list[str]
    board: Leaderboard
    notes: list[str] = field(default_factory=list)


def group_boards(runs: list[Run]) -> list[GroupBoard]:
    out = []
    for name in dict.fromkeys(g for r in runs for g in r.groups):
        entries = [g for r in runs if isinstance(g := r.groups.get(name), dict)]
        members = list(dict.fromkeys(m for g in entries for m in g.get("members") or []))
        subs = list(dict.fromkeys(s for g in entries for s in g.get("subgroups") or []))
        notes = list(dict.fromkeys(str(n) for g in entries for n in g.get("notes") or []))
        out.append(GroupBoard(name, members, subs, leaderboard(runs, groups=subs, tasks=members), notes))
    return out


# ------------------------------------------------------------------------------------ Bradley-Terry


@dataclass
class Rating:
    model: str
    rating: float
    ci_low: float | None
    ci_high: float | None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class BradleyTerry:
    title: str
    source: str
    ratings: list[Rating]
    position_consistency: float | None = None
    win_rate: dict[str, dict[str, float | None]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # warnings (e.g. no position swap) and how ties were counted


def _bt_from(entry: Any, title: str, source: str) -> BradleyTerry | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("ratings"), dict):
        return None
    ratings = []
    for model, r in entry["ratings"].items():
        if isinstance(r, (int, float)):
            r = {"rating": r}
        if not isinstance(r, dict) or finite(r.get("rating")) is None:
            raise DataError(f"{source}: ratings.{model}.rating: expected a number")
        extra = {k: v for k, v in r.items() if k not in {"rating", "ci_low", "ci_high"} and isinstance(v, (int, float, str))}
        ratings.append(Rating(str(model), float(r["rating"]), finite(r.get("ci_low")), finite(r.get("ci_high")), extra))
    ratings.sort(key=lambda r: -r.rating)
    wr = entry.get("win_rate") or entry.get("win_rates") or {}
    win_rate = {str(a): {str(b): finite(v) for b, v in row.items()} for a, row in wr.items() if isinstance(row, dict)}
    notes = [f"warning: {w}" for w in entry.get("warnings") or [] if isinstance(w, str)]
    handled = entry.get("handling")
    if isinstance(handled, dict):
        notes.append("; ".join(f"{k.replace('_', ' ')}: {v}" for k, v in handled.items()))
    return BradleyTerry(title, source, ratings, finite(entry.get("position_consistency")), win_rate, notes)


def bradley_terry_tables(runs: list[Run]) -> list[BradleyTerry]:
    """Every pairwise rating table in the runs: top-level `arena` and any `tasks.<t>.bradley_terry`."""
    out = []
    for run in runs:
        where = str(run.path / "results.json")
        arena = _bt_from(run.results.get("arena"), f"arena ({run.label})", f"{where}: arena")
        if arena:
            out.append(arena)
        for task, t in run.tasks.items():
            bt = _bt_from(t.get("bradley_terry"), f"{task} ({run.label})", f"{where}: tasks.{task}.bradley_terry")
            if bt:
                out.append(bt)
    return out


def judge_metrics(runs: list[Run]) -> list[dict[str, Any]]:
    """Rows for the judge table: metrics that report unparseable verdicts, agreement or consistency."""
    rows = []
    for run in runs:
        for task, t in run.tasks.items():
            for metric, m in t["metrics"].items():
                keys = {"n_unparseable", "agreement", "position_consistency", "n_flaky"}
                if not keys & set(m):
                    continue
                n, bad = int(m.get("n") or 0), int(m.get("n_unparseable") or 0)
                agreement = m.get("agreement") if isinstance(m.get("agreement"), dict) else {}
                rows.append({
                    "run": run.label, "task": task, "metric": metric, "n": n, "n_unparseable": bad,
                    "unparseable_rate": bad / (n + bad) if n + bad else None,
                    "position_consistency": finite(m.get("position_consistency")),
                    "n_flaky": m.get("n_flaky"),
                    "agreement": {k: finite(v) for k, v in agreement.items() if finite(v) is not None},
                    "units": _units(m),
                })
    return rows


def _units(m: dict[str, Any]) -> str | None:
    """`40 claims: 38 parsed, 2 unparseable` for a per-claim / per-context judge, else None."""
    for key in ("claims", "contexts"):
        u = m.get(key)
        if isinstance(u, dict) and isinstance(u.get("n"), int):
            parts = [f"{u[k]:,} {label}" for k, label in (("n_parsed", "parsed"), ("n_unparseable", "unparseable"),
                                                           ("n_errors", "failed")) if isinstance(u.get(k), int) and u[k]]
            return f"{u['n']:,} {key}" + (f": {', '.join(parts)}" if parts else "")
    return None


def human_rows(runs: list[Run]) -> list[dict[str, Any]]:
    """Rows for the human-label table: human scores (`tasks.<t>.human`) beside each judge metric and agreement."""
    rows = []
    for run in runs:
        for task, t in run.tasks.items():
            human = t.get("human")
            if not isinstance(human, dict):
                continue
            ratings = human.get("ratings") if isinstance(human.get("ratings"), dict) else None
            pairwise = human.get("pairwise") if isinstance(human.get("pairwise"), dict) else None
            agreement: dict[str, Any] = human["agreement"] if isinstance(human.get("agreement"), dict) else {}
            judges = [m for m, v in t["metrics"].items() if isinstance(v, dict) and {"n_unparseable", "n_flaky"} & set(v)]
            for judge in judges or [None]:
                m = t["metrics"].get(judge) if judge else None
                agree: dict[str, float] = {}
                for key, kind in ((judge, "ratings"), (f"{judge} (pairwise)", "preferences")):
                    found = agreement.get(str(key)) if judge else None
                    for name, val in (found.items() if isinstance(found, dict) else []):
                        if name != "n" and (x := finite(val)) is not None:
                            agree[f"{kind} {name}"] = x
                rows.append({
                    "run": run.label, "task": task, "ratings": ratings, "pairwise": pairwise, "judge": judge,
                    "judge_value": finite(m.get("value")) if m else None, "judge_n": m.get("n") if m else None,
                    "judge_ci": (finite(m.get("ci_low")), finite(m.get("ci_high"))) if m else None, "agreement": agree,
                })
    return rows
