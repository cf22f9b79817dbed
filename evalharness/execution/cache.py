"""Content-addressed response cache in SQLite (WAL), shared safely by concurrent runs.

Key = sha256(backend identity, request payload). Failed responses are never cached.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from evalharness.types import Request, Response


def default_home() -> Path:
    return Path(os.environ.get("EVALHARNESS_HOME", Path.home() / ".cache" / "evalharness"))


def request_key(identity: dict[str, Any], request: Request) -> str:
    blob = json.dumps({"backend": identity, "request": request.cache_payload()}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ResponseCache:
    """A key -> Response store; one SQLite file, one transaction per batch."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(self.path), timeout=60.0, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=60000")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL)"
        )

    def get_many(self, keys: Iterable[str]) -> dict[str, Response]:
        found: dict[str, Response] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(f"SELECT key, value FROM responses WHERE key IN ({marks})", chunk)
            for key, value in rows:
                try:
                    found[key] = Response.from_json(json.loads(value))
                except (ValueError, TypeError):
                    continue  # a corrupt row is a miss, recomputed and overwritten
        return found

    def put_many(self, items: Sequence[tuple[str, Response]]) -> None:
        rows = [(k, json.dumps(r.to_json()), time.time()) for k, r in items if r.error is None]
        if not rows:
            return
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.executemany("INSERT OR REPLACE INTO responses (key, value, created) VALUES (?, ?, ?)", rows)
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

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
