"""`--data full`: a built-in task's canonical source (hub name, config, split) instead of its vendored sample.

A built-in task reads a small vendored sample for offline use and names its canonical dataset
under `source:`. Full data swaps the task's `dataset:` for that source, read through `datasets`
(the hub, or its local cache offline). `data_entry` is what results.json records, so a score
on a sample is never mistaken for the benchmark's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from evalharness.errors import DataError, UsageError
from evalharness.spec.group import spread
from evalharness.spec.task import DatasetSpec, LoadedTask

DATA_CHOICES = ("sample", "full")


def parse_data_choice(value: str | Mapping[str, str] | None, task_names: list[str],
                      groups: Mapping[str, list[str]]) -> dict[str, str]:
    """`full`, `sample`, or `task=full,group=sample,...` -> {task: choice}; a group sets its members."""
    if value is None:
        return {}
    if isinstance(value, str) and value.strip() in DATA_CHOICES:
        return dict.fromkeys(task_names, value.strip())
    pairs = value.items() if isinstance(value, Mapping) else (p.partition("=")[::2] for p in value.split(",") if p.strip())
    out: dict[str, str] = {}
    for name, choice in pairs:
        name, choice = name.strip(), str(choice).strip()
        if choice not in DATA_CHOICES:
            raise UsageError(f"--data: expected sample, full or task=sample|full,..., got {name}={choice!r}")
        out.update(spread(name, choice, task_names, groups, "--data"))
    return out


def full_task(task: LoadedTask) -> LoadedTask:
    """The task reading its canonical source through `datasets` (fields and ids mapped as before)."""
    spec, src = task.spec, task.spec.source
    if spec.dataset.hub is not None:
        return task  # already reads the hub
    if src.hub is None:
        raise UsageError(f"{task.path or spec.name}: --data full: the task names no source.hub to read full data from")
    ds = DatasetSpec(hub=src.hub, config=src.config, split=src.split or spec.dataset.split, fields=spec.dataset.fields,
                     id_field=spec.dataset.id_field)
    return task.model_copy(update={"spec": spec.model_copy(update={"dataset": ds}), "file_hash": f"{task.file_hash}+full"})


def load_full_rows(task: LoadedTask, sample_rows: int | None) -> list[dict[str, Any]]:
    """The full split's rows; offline without a datasets cache, one line naming the sample alternative."""
    from evalharness.data.samples import load_rows

    ds = task.spec.dataset
    try:
        return load_rows(task)
    except DataError as exc:
        offline = os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1"
        why = "offline (HF_DATASETS_OFFLINE/HF_HUB_OFFLINE) and not in the datasets cache" if offline else str(exc)
        sample = f" ({sample_rows:,} rows)" if sample_rows else ""
        raise DataError(f"{task.spec.name}: --data full: {ds.hub} ({ds.config or 'default'}, {ds.split}) could not be loaded: "
                        f"{why}; run without --data full to score the vendored sample{sample}") from None


def data_entry(task: LoadedTask, rows: int, used: int | None = None) -> dict[str, Any]:
    """results.json `tasks.<name>.data`: where the rows came from, how many, of how many, and how
    many of them the run evaluated (`used`, fewer than `rows` under `--limit`)."""
    src = task.spec.source
    used = rows if used is None else used
    if task.spec.dataset.hub is not None:
        return {"source": "full" if src.hub else "hub", "rows": rows, "of": rows, "used": used}
    if src.hub is None:
        return {"source": "local", "rows": rows, "of": rows, "used": used}
    if src.rows is not None and rows >= src.rows:  # the vendored copy holds the whole split (ARC, HumanEval, ...)
        return {"source": "full", "rows": rows, "of": src.rows, "used": used}
    return {"source": "sample", "rows": rows, "of": src.rows, "used": used}


def _limited(entry: Mapping[str, Any]) -> int | None:
    """The rows evaluated when `--limit` left some of the data out, else None (results without `used`: None)."""
    used, rows = entry.get("used"), entry.get("rows")
    return used if isinstance(used, int) and isinstance(rows, int) and used < rows else None


def sample_size(entry: Mapping[str, Any]) -> str | None:
    """`1,000 of 10,042 rows` for a results.json `data` entry on a sample, `20 of 2,376 rows (--limit)`
    for a limited run, else None (the whole of full or local data)."""
    rows, of, used = entry.get("rows"), entry.get("of"), _limited(entry)
    if not isinstance(rows, int):
        return None
    if used is not None:
        whole = of if isinstance(of, int) else rows
        where = f", from a {rows:,}-row sample" if entry.get("source") == "sample" else ""
        return f"{used:,} of {whole:,} rows (--limit{where})"
    if entry.get("source") != "sample":
        return None
    return f"{rows:,} of {of:,} rows" if isinstance(of, int) else f"{rows:,} rows (full size not recorded)"


def sample_note(name: str, entry: Mapping[str, Any], source: Mapping[str, Any] | None = None) -> str | None:
    """`hellaswag: scored on a sample of Rowan/hellaswag, 1,000 of 10,042 rows; ...` for a sample or
    limited score, else None."""
    size = sample_size(entry)
    if size is None:
        return None
    hub = f" of {source['hub']}" if source and source.get("hub") else ""
    if _limited(entry) is not None:
        return f"{name}: scored on part{hub}, {size}; not the benchmark's score"
    return f"{name}: scored on a sample{hub}, {size}; --data full scores the whole split"


def group_data(entries: list[Mapping[str, Any]]) -> dict[str, Any] | None:
    """A group's `data`: its members' rows and full sizes summed; `sample` when any member is one."""
    if not entries or any(not isinstance(e.get("rows"), int) for e in entries):
        return None
    of = [o for e in entries if isinstance(o := e.get("of"), int)]
    sources = {e.get("source") for e in entries}
    source = "sample" if "sample" in sources else "local" if sources == {"local"} else "full"
    used = [u if isinstance(u := e.get("used"), int) else int(e["rows"]) for e in entries]
    return {"source": source, "rows": sum(int(e["rows"]) for e in entries),
            "of": sum(of) if len(of) == len(entries) else None, "used": sum(used)}
