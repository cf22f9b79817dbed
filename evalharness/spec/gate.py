"""The gate's YAML config (`evalharness gate --config gate.yaml`), validated by pydantic.

    alpha: 0.05                 # family-wise significance level of the one-sided paired tests
    correction: holm            # multiplicity correction over all checks: none | holm | bonferroni
    resamples: 1000             # paired bootstrap resamples
    seed: 0
    only_listed: false          # true: check only the metrics named under `tasks`
    default: {max_drop: 0}      # rule for every shared metric not named below
    tasks:
      arc_easy:
        acc: {min_value: 0.40, max_drop: 0.02}
      lambada_ppl:
        word_perplexity: {max_value: 80, max_drop: 1.5}
      mt_bench:
        mt_bench_single: {max_drop: 0.5, max_unparseable_rate: 0.05}

A drop is measured in the metric's own units and direction (`higher_is_better` from the
results file): for perplexity a drop is a rise. A judge metric is compared on its per-sample
verdicts; samples unparseable on either side are left out (and counted in the notes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from evalharness.spec.loader import parse_yaml, read_text, validate

Correction = Literal["none", "holm", "bonferroni"]


class Rule(BaseModel):
    """What one metric must satisfy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_value: float | None = Field(default=None, allow_inf_nan=False, description="the current value must be at least this")
    max_value: float | None = Field(default=None, allow_inf_nan=False, description="the current value must be at most this")
    max_drop: float = Field(default=0.0, ge=0.0, allow_inf_nan=False, description="tolerated worsening, in the metric's units")
    max_unparseable_rate: float | None = Field(
        default=None, ge=0.0, le=1.0, description="judges: the current run's share of unparseable verdicts must be at most this")
    skip: bool = Field(default=False, description="do not check this metric")


class GateConfig(BaseModel):
    """Rules per task and metric, and the test settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    alpha: float = Field(default=0.05, gt=0.0, lt=0.5)
    correction: Correction = "holm"
    resamples: int = Field(default=1000, ge=100)
    seed: int = 0
    only_listed: bool = False
    default: Rule = Rule()
    tasks: dict[str, dict[str, Rule]] = Field(default_factory=dict)

    def rule(self, task: str, metric: str) -> Rule | None:
        """The rule for a metric, or None when the config says not to check it."""
        listed = self.tasks.get(task, {}).get(metric)
        if listed is None and self.only_listed:
            return None
        rule = listed or self.default
        return None if rule.skip else rule


def load_gate_config(path: Path | None) -> GateConfig:
    """The config at `path` (the defaults when None); errors name the file and the field."""
    if path is None:
        return GateConfig()
    text = read_text(path)
    data = parse_yaml(text, str(path))
    return validate(GateConfig, {} if data is None else data, str(path), "gate config")
