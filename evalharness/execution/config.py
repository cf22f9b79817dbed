"""`RunConfig`: everything one `evalharness run` takes, shared by the pipeline and the task kinds it runs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalharness.spec.group import ResolvedGroup, resolve_items
from evalharness.spec.task import LoadedTask


@dataclass
class RunConfig:
    """Everything `evalharness run` takes. `tasks` may hold names, group names or YAML paths (read
    here, each task once, groups added to `groups`); `output` and `cache_dir` may be strings."""

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
        items: list[Any] = list(self.tasks)
        if not any(isinstance(item, (str, Path)) for item in items):
            return
        tasks, groups = resolve_items(items)
        self.tasks, self.groups = tasks, [*self.groups, *groups]
