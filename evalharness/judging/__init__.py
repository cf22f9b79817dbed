"""Judging: LLM judges as metrics, arenas and human labels.

Rubric files (spec/judge.py) -> judge requests through the shared runner and cache (engine.py,
calls.py; likelihood verdicts in likelihood.py) -> strict verdicts (verdicts.py) -> a metric
(metric.py) or an arena of models (arena.py, rated with bradley_terry.py); agreement statistics
in agreement.py; human labels exported and imported in human.py.

May import the core, spec, prompting, backends, metrics (the base class), the runner and cache
of execution, and results; execution imports it only to bind judge metrics.
"""

from evalharness.judging.calls import JudgeItem, Judgment
from evalharness.judging.engine import judge_items
from evalharness.judging.metric import JudgeMetric, bind_judges, judge_metric, needs_judge

__all__ = ["JudgeItem", "JudgeMetric", "Judgment", "bind_judges", "judge_items", "judge_metric", "needs_judge"]
