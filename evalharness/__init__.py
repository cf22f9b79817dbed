"""evalharness: declarative LLM evaluation with trustworthy numbers.

Library use (the same code path as the CLI; see the README's "From Python"):
    import evalharness
    res = evalharness.evaluate(["arc_easy"], model="fake", limit=5)
    res.to_pandas(); res.samples("arc_easy"); res.to_dict()
    evalharness.score(["Paris"], [["Paris"]], metrics=["exact_match"])
    evalharness.Results.load("runs/fake-1a2b3c4d")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from evalharness.version import __version__

if TYPE_CHECKING:
    from evalharness.execution.api import evaluate, score
    from evalharness.execution.config import RunConfig
    from evalharness.results.frame import Results
    from evalharness.spec.library import find_task

__all__ = ["Results", "RunConfig", "__version__", "evaluate", "find_task", "score"]


def __getattr__(name: str) -> Any:
    # Lazy: `import evalharness` stays cheap (the CLI's --help must not import heavy modules).
    if name in {"evaluate", "score"}:
        from evalharness.execution import api

        return getattr(api, name)
    if name == "RunConfig":
        from evalharness.execution.config import RunConfig

        return RunConfig
    if name == "Results":
        from evalharness.results.frame import Results

        return Results
    if name == "find_task":
        from evalharness.spec.library import find_task

        return find_task
    raise AttributeError(name)
