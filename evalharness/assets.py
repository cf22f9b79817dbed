"""Where the built-in tasks, judges, suites and report templates live.

A checkout (or an editable install) reads the top-level `tasks/`, `judges/`, `suites/` and
`reports/` folders, which are the source of truth.
"""

from __future__ import annotations

from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent


def builtin_dir(kind: str) -> Path:
    """The folder of built-in `kind` files: tasks, judges, suites or reports."""
    return _CHECKOUT / kind
