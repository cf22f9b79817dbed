"""`RunConfig`: everything one `evalharness run` takes, shared by the pipeline and the task kinds it runs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalharness.errors import UsageError
from evalharness.spec.group import ResolvedGroup, resolve_items, spread
from evalharness.spec.task import LoadedTask


@dataclass
class RunConfig:
    """Everything `evalharness run` takes. `tasks` may hold names, group names or YAML paths (read
    here, each task once, groups added to `groups`); `output` and `cache_dir` may be strings.
    Built by hand, `output` defaults to `runs/latest` (one folder for every configuration, so a
    second model there is refused); `evaluate()` and the CLI pick `runs/<model>-<identity hash>`
    instead, or keep everything in memory (`evaluate(output=None)`)."""

    tasks: Sequence[LoadedTask]
    model: str = "smollm2"
    model_args: dict[str, Any] = field(default_factory=dict)
    output: Path = Path("runs/latest")
    limit: int | None = None
    limits: dict[str, int] = field(default_factory=dict)
    num_fewshot: int | None = None
    chat_template: bool | None = None
    cache_dir: Path | None = None
    use_cache: bool = True
    seed: int = 0
    bootstrap_resamples: int = 1000
    progress: bool = True
    judge_model: str | None = None
    judge_model_args: dict[str, Any] = field(default_factory=dict)
    groups: Sequence[ResolvedGroup] = ()  # task groups whose micro/macro scores results.json gets
    name: str | None = None  # the model's display name (suites), recorded as results.json model.name
    executor: str = "local"  # local (a launcher's ranks are detected by themselves) or ray
    ray_address: str | None = None  # ray: an existing cluster (ray://HOST:PORT or HOST:PORT); None starts one
    ray_workers: int | None = None  # ray: model replicas (default: one per GPU, else one per node)

    def __post_init__(self) -> None:
        self.output = Path(self.output)
        self.cache_dir = None if self.cache_dir is None else Path(self.cache_dir)
        _check_numbers(self)
        items: list[Any] = list(self.tasks)
        if any(isinstance(item, (str, Path)) for item in items):
            tasks, groups = resolve_items(items)
            self.tasks, self.groups = tasks, [*self.groups, *groups]
        self.limits = _check_limits(self.limits, self.tasks, self.groups)


def whole(value: Any, what: str, least: int) -> int:
    """`value` as a count: an int (not a bool, not 2.5, not "5") of at least `least`; else one line."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise UsageError(f"{what}: expected a whole number >= {least}, got {value!r}")
    return value


def _check_numbers(cfg: RunConfig) -> None:
    """The counts a run takes, checked the way the CLI checks its flags (the Python API has no argparse)."""
    if cfg.limit is not None:
        whole(cfg.limit, "limit", 1)
    if cfg.num_fewshot is not None:
        whole(cfg.num_fewshot, "num_fewshot", 0)
    whole(cfg.seed, "seed", 0)
    if isinstance(cfg.bootstrap_resamples, bool) or not isinstance(cfg.bootstrap_resamples, int):
        raise UsageError(f"bootstrap_resamples: expected a whole number, got {cfg.bootstrap_resamples!r}")
    if not isinstance(cfg.model, str) or not cfg.model:
        raise UsageError(f"model: expected a backend name, got {cfg.model!r}")


def _check_limits(limits: Any, tasks: Sequence[LoadedTask], groups: Sequence[ResolvedGroup]) -> dict[str, int]:
    """Per-task limits: task or group names of this run (a group sets each member's) -> counts >= 1."""
    if not isinstance(limits, Mapping):
        raise UsageError(f"limits: expected a mapping of task name -> count, got {limits!r}")
    names = {t.spec.name for t in tasks}
    members = {g.name: list(g.member_names) for g in groups}
    out: dict[str, int] = {}
    for name, value in limits.items():
        out.update(spread(name, whole(value, f"limits: {name}", 1), names, members, "limits", "the tasks"))
    return out
