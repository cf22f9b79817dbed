"""Content-addressed response cache in SQLite (WAL), shared safely by concurrent runs.

Key = sha256(backend identity, request payload). Failed responses are never cached.

A cache can never poison a run: every row is validated on read (a row of the wrong shape is a
miss, recomputed and overwritten, never copied into a log); a database that SQLite cannot read
is moved aside (`<name>.corrupt-<time>`) and rebuilt, with a warning; one that cannot be written
is one error line naming the file and the way out.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from evalharness.errors import DataError
from evalharness.types import Request, Response


def default_home() -> Path:
    return Path(os.environ.get("EVALHARNESS_HOME", Path.home() / ".cache" / "evalharness"))


def request_key(identity: dict[str, Any], request: Request) -> str:
    blob = json.dumps({"backend": identity, "request": request.cache_payload()}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


_FIELDS: dict[str, tuple[type, ...]] = {
    "text": (str,), "logprob": (int, float), "is_greedy": (bool,), "n_tokens": (int,),
    "prompt_tokens": (int,), "completion_tokens": (int,), "embedding": (list,), "model_tokens": (int,),
}


def _corrupt(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "not a database" in text or "malformed" in text or "no such table" in text or "no such column" in text


# A log-probability is at most 0; float noise in a sum of per-token terms may leave it a hair above.
LOGPROB_SLACK = 1e-4


def parse_cached(value: Any) -> Response | None:
    """A cached row as a Response, or None when it is not one: JSON of the wrong shape, a field of
    the wrong type, a non-finite or positive log-probability (a probability above 1), a number too
    big for a float, a negative count, an error, or no answer at all."""
    try:
        data = json.loads(value) if isinstance(value, (str, bytes)) else None
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or not data or not set(data) <= set(_FIELDS):
        return None
    for key, v in data.items():
        if v is None:
            continue
        types = _FIELDS[key]
        if not isinstance(v, types) or (isinstance(v, bool) and bool not in types):
            return None
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) > 2**53:  # 400 digits: no count or log-prob
            return None
        if key == "logprob" and isinstance(v, (int, float)) and v > LOGPROB_SLACK:
            return None
        if isinstance(v, int) and not isinstance(v, bool) and key != "logprob" and v < 0:
            return None
    vector = data.get("embedding")
    if vector is not None and not (vector and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                  and abs(x) < 1e300 for x in vector)):
        return None
    if data.get("text") is None and data.get("logprob") is None and vector is None:
        return None
    return Response.from_json(data)


def answers(request: Request, response: Response) -> bool:
    """Whether a cached response holds what the request's kind needs (a row cached under the
    right key but of another shape is a miss, never an answer)."""
    if request.kind == "generate":
        return response.text is not None
    if request.kind == "loglikelihood":
        return response.logprob is not None and response.is_greedy is not None
    if request.kind == "embed":
        return response.embedding is not None
    return response.logprob is not None and response.n_tokens is not None


class ResponseCache:
    """A key -> Response store; one SQLite file, one transaction per batch."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._conn = self._open()
            except sqlite3.DatabaseError as exc:
                if isinstance(exc, sqlite3.OperationalError) and not _corrupt(exc):
                    raise
                self._move_aside(exc)
                self._conn = self._open()
        except (sqlite3.Error, OSError) as exc:
            raise DataError(f"{self.path}: response cache cannot be used ({exc}); pass --cache-dir with a writable "
                            "folder, or --no-cache") from None

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(str(self.path), timeout=60.0, isolation_level=None, check_same_thread=False)
        try:
            # Switching a new file to WAL while another process does the same can answer "database
            # is locked" at once (SQLite's busy handler does not cover that step): retry it.
            deadline = time.monotonic() + 60.0
            while True:
                try:
                    conn.execute("PRAGMA journal_mode=WAL")
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=60000")
            conn.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL)")
            columns = [row[1] for row in conn.execute("PRAGMA table_info(responses)")]
            if columns != ["key", "value", "created"]:  # another program's table, or one edited by hand
                raise sqlite3.DatabaseError(f"malformed responses table (columns {', '.join(columns)})")
        except BaseException:
            conn.close()
            raise
        return conn

    def _move_aside(self, exc: Exception) -> None:
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(f"{self.path}{suffix}")
            if src.exists():
                os.replace(src, f"{aside}{suffix}")
        print(f"warning: {self.path}: response cache unreadable ({exc}); moved aside to {aside.name} and rebuilt "
              "(answers will be recomputed)", file=sys.stderr)

    def get_many(self, keys: Iterable[str]) -> dict[str, Response]:
        found: dict[str, Response] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ",".join("?" * len(chunk))
            try:
                rows = self._conn.execute(f"SELECT key, value FROM responses WHERE key IN ({marks})", chunk).fetchall()
            except sqlite3.DatabaseError as exc:
                raise DataError(f"{self.path}: response cache unreadable ({exc}); move the file aside, or pass "
                                "--no-cache") from None
            for key, value in rows:
                response = parse_cached(value)
                if response is not None:  # a corrupt row is a miss, recomputed and overwritten
                    found[key] = response
        return found

    def put_many(self, items: Sequence[tuple[str, Response]]) -> None:
        rows = [(k, json.dumps(r.to_json(), allow_nan=False), time.time()) for k, r in items
                if r.error is None and parse_cached(json.dumps(r.to_json())) is not None]
        if not rows:
            return
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany("INSERT OR REPLACE INTO responses (key, value, created) VALUES (?, ?, ?)", rows)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise DataError(f"{self.path}: cannot write to the response cache ({exc}); pass --cache-dir with a writable "
                            "folder, or --no-cache") from None

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        self._conn.close()


class NullCache:
    """Used with --no-cache: stores nothing, finds nothing."""

    path = None

    def get_many(self, keys: Iterable[str]) -> dict[str, Response]:
        return {}

    def put_many(self, items: Sequence[tuple[str, Response]]) -> None:
        return None

    def close(self) -> None:
        return None
