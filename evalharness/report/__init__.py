"""Report: HTML, Markdown and CSV views of run directories, from results files only (never a model).

Imports the core and `results`.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    # `evalharness.report.results_frame` (documented) without importing the renderer eagerly.
    if name == "results_frame":
        from evalharness.report.html import results_frame

        return results_frame
    raise AttributeError(name)
