"""evalharness: declarative LLM evaluation with trustworthy numbers.

Library use:
    from evalharness import evaluate, RunConfig, find_task
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from evalharness.version import __version__

if TYPE_CHECKING:
    from evalharness.execution.pipeline import RunConfig, evaluate
    from evalharness.spec.library import find_task

__all__ = ["RunConfig", "__version__", "evaluate", "find_task"]


def __getattr__(name: str) -> Any:
    # Lazy: `import evalharness` stays cheap (the CLI's --help must not import heavy modules).
    if name in {"RunConfig", "evaluate"}:
        from evalharness.execution import pipeline

        return getattr(pipeline, name)
    if name == "find_task":
        from evalharness.spec.library import find_task

        return find_task
    raise AttributeError(name)
