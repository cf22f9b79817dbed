"""Where the built-in tasks, judges, suites and report templates live.

A checkout (or an editable install) reads the top-level `tasks/`, `judges/`, `suites/` and
`reports/` folders, which are the source of truth. A wheel or sdist install carries copies of
them as package data under `evalharness/_builtin/` (setup.py puts them there at build time),
found through importlib.resources.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent


def builtin_dir(kind: str) -> Path:
    """The folder of built-in `kind` files: tasks, judges, suites or reports."""
    packaged = Path(str(resources.files("evalharness") / "_builtin" / kind))
    if packaged.is_dir():
        return packaged
    return _CHECKOUT / kind
