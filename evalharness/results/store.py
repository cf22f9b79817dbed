"""The versioned results schema: results.json and the per-sample logs, written atomically.

Layout of a run directory:
    results.json            schema_version, run metadata, per-task metrics with CIs, fingerprints
    samples/<task>.jsonl    one record per sample (prompt, outputs, extracted answer, scores)
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from evalharness.errors import DataError, UsageError
from evalharness.results.schema import SCHEMA_VERSION

SECRET_KEYS = re.compile(r"(api[_-]?key|token|secret|passw(or)?d|auth|bearer|credential|cookie|private[_-]?key)", re.IGNORECASE)
SECRET_VALUES = re.compile(r"\s*(bearer|basic)\s|\s*authorization\s*:", re.IGNORECASE)  # a header passed under any name


def redact(args: dict[str, Any]) -> dict[str, Any]:
    """Model args as recorded: anything that looks like a credential is dropped."""
    return {k: ("<redacted>" if SECRET_KEYS.search(k) or SECRET_VALUES.match(str(v)) else v) for k, v in args.items()}


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def strict(data: Any) -> Any:
    """`data` with every non-finite float (NaN, inf) as None: the files we write are strict JSON.

    An undefined number is null; its entry carries the reason where one is known (`ci_reason`,
    a judge's `status`)."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: strict(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [strict(v) for v in data]
    return data


def dumps(data: Any, **kw: Any) -> str:
    """Strict JSON text (json.dumps with allow_nan=False over `strict(data)`)."""
    return json.dumps(strict(data), ensure_ascii=False, default=str, allow_nan=False, **kw)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (a strict parser refuses it)")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"duplicate key {key!r} (which one counts is undefined)")
        seen[key] = value
    return seen


def loads_strict(text: str, unique_keys: bool = False) -> Any:
    """Parse strict JSON: NaN, Infinity and -Infinity are refused (ValueError), and with
    `unique_keys` a key given twice in one object (results.json; logs skip the cost)."""
    return json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_unique_keys if unique_keys else None)


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, dumps(data, indent=2) + "\n")


TASK_NAME = re.compile(r"[A-Za-z0-9_.\-]+")  # a task name: it names its log file


def samples_path(run_dir: Path, task: str) -> Path:
    """Where a task's per-sample log is written: `samples/<task>.jsonl`, never outside the run
    directory (a name with a path separator is refused, whoever chose it)."""
    if not TASK_NAME.fullmatch(task):
        raise DataError(f"task name {task!r}: letters, digits, '_', '.' and '-' only (it names a file in {run_dir / 'samples'})")
    return run_dir / "samples" / f"{task}.jsonl"


def task_samples_log(run_dir: Path, task: str, entry: Any) -> Path:
    """A task's per-sample log as results.json names it (`tasks.<task>.samples_file`, default
    `samples/<task>.jsonl`), confined to the run directory: results.json is input like any other,
    and a forged one must not make `report` or `gate` read (and show) a file elsewhere."""
    rel = entry.get("samples_file") if isinstance(entry, dict) else None
    if rel is None:
        rel = f"samples/{task}.jsonl"
    where = f"{run_dir / 'results.json'}: tasks.{task}.samples_file"
    if not isinstance(rel, str) or not rel:
        raise DataError(f"{where}: expected a relative path, got {rel!r}")
    path = run_dir / rel
    root = run_dir.resolve()
    if Path(rel).is_absolute() or ".." in Path(rel).parts or not path.resolve().is_relative_to(root):
        raise DataError(f"{where}: {rel!r} is outside the run directory; a run's logs live in it")
    return path


class SampleLog:
    """Append-only per-sample log; each line is flushed so a crash keeps what finished."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fh = path.open("a", encoding="utf-8")
        if self._fh.tell() > 0:
            with path.open("rb") as fh:
                fh.seek(-1, 2)
                torn = fh.read(1) != b"\n"
            if torn:  # a crash cut the last line: end it so the next record stands on its own line
                self._fh.write("\n")
                self._fh.flush()

    def append(self, record: dict[str, Any]) -> None:
        self._fh.write(dumps(record) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def read_jsonl_tolerant(path: Path) -> list[dict[str, Any]]:
    """Records of a per-sample log; a torn last line (crash mid-write) is ignored."""
    if not path.exists():
        return []
    records = []
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict):
                records.append(rec)
    return records


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(dumps(r) + "\n" for r in records))


def load_results(run_dir: Path | str) -> dict[str, Any]:
    """Read a run directory's results.json (or the file itself), checking the schema version."""
    p = Path(run_dir)
    path = p / "results.json" if p.is_dir() else p
    try:
        data = loads_strict(path.read_text(encoding="utf-8"), unique_keys=True)
    except FileNotFoundError:
        raise DataError(f"{path}: no results.json here (is this a run directory?)") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError, as are NaN/Infinity
        raise DataError(f"{path}: not a valid results file: {exc}") from None
    if not isinstance(data, dict) or "schema_version" not in data:
        raise DataError(f"{path}: schema_version: missing (not an evalharness results file)")
    version = data["schema_version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise DataError(f"{path}: schema_version: expected a positive integer, got {json.dumps(version)}")
    if version > SCHEMA_VERSION:
        raise DataError(f"{path}: schema_version {data['schema_version']} is newer than this evalharness reads")
    return data


def load_samples_log(run_dir: Path | str, task: str) -> list[dict[str, Any]]:
    return read_jsonl_tolerant(samples_path(Path(run_dir), task))


LOCK_NAME = ".evalharness.lock"


@contextmanager
def output_lock(run_dir: Path, flag: str = "--output") -> Iterator[None]:
    """Hold the run directory for one writer: a second run (or score) into the same folder while
    this one writes is refused in one line, rather than both passing the folder checks and
    leaving results of one next to samples of the other. An OS lock (flock), so a killed run
    never leaves it held. Where flock does not exist (Windows) nothing is locked."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on Linux/macOS
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(f"{flag} {run_dir}: another evalharness run is writing there now; wait for it to finish "
                             f"or give another {flag}") from None
        yield
    finally:
        os.close(fd)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text: a string starting with = + - @ (or tab/CR) gets a
    leading `'`, so a model output such as `=HYPERLINK(...)` is not a live formula (OWASP's CSV
    injection advice). Numbers and other strings are unchanged."""
    return "'" + value if isinstance(value, str) and value.startswith(_FORMULA_START) else value


def csv_uncell(value: Any) -> Any:
    """`csv_cell` undone for a file we wrote being read back (annotate import)."""
    if isinstance(value, str) and value.startswith("'") and value[1:].startswith(_FORMULA_START):
        return value[1:]
    return value


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|<>~])")


def md_text(text: Any) -> str:
    """Untrusted text (a model, task or sample name) as literal Markdown on one line: every
    character Markdown gives meaning to is backslash-escaped, `&` is an entity, and `@` cannot
    start a mention (a zero-width space follows it), so `[x](https://...)`, `![](...)` and
    `@maintainer` in a name stay text in a PR comment."""
    escaped = _MD_SPECIAL.sub(r"\\\1", str(text).replace("&", "&amp;")).replace("@", "@\u200b")
    return " ".join(escaped.split("\n"))
