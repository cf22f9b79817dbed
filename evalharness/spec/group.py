"""Task groups: YAML files (`tasks/groups/*.yaml`) naming member tasks and how to aggregate them.

A group file:

    name: mmlu
    description: ...
    tag: mmlu                    # members: every built-in task with this tag, or
    # members: [task_a, task_b]  #   task names / task file paths, in order
    subgroups:                   # optional: groups of some members, each by `tag` or `members`
      - {name: mmlu_stem, tag: mmlu_stem}
    metrics: [acc]               # member metrics to aggregate (default: the first member's first metric)
    aggregates: [micro, macro]   # micro: every sample counts once; macro: every member counts once

Validated like task files (pydantic, `extra="forbid"`, errors name the file and the field).
`resolve_group` turns a file into a `ResolvedGroup` whose members are loaded task files.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, model_validator

from evalharness.errors import RegistryError, SpecError, UsageError
from evalharness.spec.loader import Strict, is_path, load_file, parse_yaml, read_text, yaml_files
from evalharness.spec.task import LoadedTask, load_task_file

T = TypeVar("T")

Aggregate = Literal["micro", "macro"]
AGGREGATES: tuple[Aggregate, ...] = ("micro", "macro")
NAME_PATTERN = r"^[A-Za-z0-9_.\-]+$"


class _Members(Strict):
    """Members by `tag` (built-in tasks carrying it) or by an explicit `members` list: exactly one."""

    tag: str | None = None
    members: list[str] | None = None

    @model_validator(mode="after")
    def _one_way(self) -> _Members:
        if (self.tag is None) == (self.members is None):
            raise ValueError("give exactly one of `tag` (every task with that tag) or `members` (task names)")
        if self.members is not None and not self.members:
            raise ValueError("members: at least one task")
        return self


class SubgroupSpec(_Members):
    name: str = Field(pattern=NAME_PATTERN)


class GroupSpec(_Members):
    name: str = Field(pattern=NAME_PATTERN)
    description: str | None = None
    subgroups: list[SubgroupSpec] = Field(default_factory=list)
    metrics: list[str] = Field(default_factory=list)
    aggregates: list[Aggregate] = Field(default_factory=lambda: list(AGGREGATES), min_length=1)


@dataclass(frozen=True)
class ResolvedGroup:
    """A group with its member tasks loaded; subgroups are groups over a subset of the members."""

    name: str
    members: tuple[LoadedTask, ...]
    metrics: tuple[str, ...]
    aggregates: tuple[Aggregate, ...]
    file_hash: str
    path: Path | None = None
    subgroups: tuple[ResolvedGroup, ...] = field(default=())

    @property
    def member_names(self) -> list[str]:
        return [t.spec.name for t in self.members]

    def all_groups(self) -> list[ResolvedGroup]:
        """This group and its subgroups (subgroups first, so a parent's entry comes last)."""
        return [*self.subgroups, self]


def group_dirs() -> list[Path]:
    """`groups/` inside each task folder ($EVALHARNESS_TASKS, then the repository's tasks/)."""
    from evalharness.spec.library import task_dirs

    return [d / "groups" for d in task_dirs() if (d / "groups").is_dir()]


def builtin_group_paths() -> dict[str, Path]:
    return yaml_files(group_dirs())


def load_group_file(path: str | Path) -> tuple[GroupSpec, str]:
    """Read and validate one group file; returns the spec and the file's content hash."""
    return load_file(GroupSpec, Path(path), "group")


def is_group_file(path: Path) -> bool:
    """A YAML file that is a group (it has `tag` or `members` and no task `kind`)."""
    try:
        data = parse_yaml(read_text(path), str(path))
    except SpecError:
        return False
    return isinstance(data, dict) and "kind" not in data and ("members" in data or "tag" in data)


def _tagged(tag: str, tasks: dict[str, LoadedTask]) -> list[LoadedTask]:
    return [t for t in tasks.values() if tag in t.spec.tags]


def _members(entry: _Members, where: str, base: Path | None, builtin: dict[str, LoadedTask] | None) -> list[LoadedTask]:
    from evalharness.spec.library import builtin_task_paths, find_task

    if entry.tag is not None:
        tasks = builtin if builtin is not None else {n: load_task_file(p) for n, p in builtin_task_paths().items()}
        found = _tagged(entry.tag, tasks)
        if not found:
            raise SpecError(f"{where}: tag: no built-in task is tagged {entry.tag!r}")
        return found
    out = []
    for i, name in enumerate(entry.members or []):
        rel = Path(name)
        if base is not None and rel.suffix in {".yaml", ".yml"} and not rel.is_absolute():
            name = str(base / rel)
        try:
            out.append(find_task(name))
        except (RegistryError, SpecError) as exc:
            raise SpecError(f"{where}: members.{i}: {exc}") from None
    return out


def resolve_group(path: str | Path) -> ResolvedGroup:
    """Load a group file and its member tasks (and its subgroups' members)."""
    from evalharness.spec.library import builtin_task_paths

    p = Path(path)
    spec, digest = load_group_file(p)
    where = str(p)
    needs_builtin = spec.tag is not None or any(s.tag is not None for s in spec.subgroups)
    builtin = {n: load_task_file(q) for n, q in builtin_task_paths().items()} if needs_builtin else None
    members = _members(spec, where, p.parent, builtin)
    names = [t.spec.name for t in members]
    if len(set(names)) < len(names):
        raise SpecError(f"{where}: members: a task is listed twice")
    metrics = tuple(spec.metrics) or (members[0].spec.metrics[0].name,)
    for t in members:
        have = {m.name for m in t.spec.metrics}
        for m in metrics:
            if m not in have:
                raise SpecError(f"{where}: metrics: member {t.spec.name!r} has no metric {m!r} (it has {', '.join(sorted(have))})")
    subgroups = []
    for j, sub in enumerate(spec.subgroups):
        sub_members = _members(sub, f"{where}: subgroups.{j}", p.parent, builtin)
        outside = [t.spec.name for t in sub_members if t.spec.name not in names]
        if outside:
            raise SpecError(f"{where}: subgroups.{j}: {', '.join(outside)} not among the group's members")
        subgroups.append(ResolvedGroup(sub.name, tuple(sub_members), metrics, tuple(spec.aggregates), digest, p.resolve()))
    return ResolvedGroup(spec.name, tuple(members), metrics, tuple(spec.aggregates), digest, p.resolve(), tuple(subgroups))


def find_group(name_or_path: str) -> ResolvedGroup | None:
    """A group by built-in name or group-file path; None when the name is not a group."""
    p = Path(name_or_path)
    if is_path(name_or_path):
        return resolve_group(p) if p.is_file() and is_group_file(p) else None
    known = builtin_group_paths()
    return resolve_group(known[name_or_path]) if name_or_path in known else None


def expand_task_list(names: list[str]) -> tuple[list[LoadedTask], list[ResolvedGroup]]:
    """`--tasks` entries to tasks and groups: a task name or file stays a task; a group name or
    file becomes its members (in order, each task once) and is returned among the groups."""
    from evalharness.spec.library import find_task

    tasks: dict[str, LoadedTask] = {}
    groups: list[ResolvedGroup] = []
    for name in names:
        p = Path(name)
        is_path = p.suffix in {".yaml", ".yml"} or os.sep in name
        group = find_group(name) if (is_path or name not in _builtin_task_names()) else None
        if group is None:
            add_task(tasks, find_task(name))
            continue
        groups.append(group)
        for t in group.members:
            add_task(tasks, t)
    return list(tasks.values()), groups


def _where(task: LoadedTask) -> Path | None:
    return task.path.resolve() if task.path is not None else None


def spread(name: str, value: T, tasks: Collection[str], groups: Mapping[str, Sequence[str]], what: str,
           among: str = "--tasks") -> dict[str, T]:
    """A per-task setting (--limits, --data) named by a task or a group of this run: a group sets each
    member's; a name that is neither is one line."""
    if name in groups and name not in tasks:
        return dict.fromkeys(groups[name], value)
    if name in tasks:
        return {name: value}
    raise UsageError(f"{what}: {name!r} is not among {among} ({', '.join(sorted(tasks))})")


def resolve_items(items: Sequence[Any]) -> tuple[list[LoadedTask], list[ResolvedGroup]]:
    """Task names, group names, YAML paths, loaded tasks or resolved groups -> tasks (each once;
    two files with one task name refused) and the groups named."""
    tasks: dict[str, LoadedTask] = {}
    groups: list[ResolvedGroup] = []
    for item in items:
        if isinstance(item, LoadedTask):
            members, found = [item], []
        elif isinstance(item, ResolvedGroup):
            members, found = list(item.members), [item]
        elif isinstance(item, (str, Path)):
            members, found = expand_task_list([str(item)])
        else:
            raise UsageError(f"tasks: expected names, YAML paths or loaded tasks, got {type(item).__name__}")
        groups += found
        for task in members:
            add_task(tasks, task)
    return list(tasks.values()), groups


def add_task(tasks: dict[str, LoadedTask], task: LoadedTask) -> None:
    """Add a task once; another file with the same task name is an error (its results would collide)."""
    name = task.spec.name
    known = tasks.get(name)
    if known is None:
        tasks[name] = task
    elif _where(known) != _where(task):  # even an identical file elsewhere may read other data (paths are relative)
        raise SpecError(f"{task.path or name}: name: task {name!r} is also defined by {known.path or 'a built-in task'}; "
                        "task names must be unique in a run")


def _builtin_task_names() -> set[str]:
    from evalharness.spec.library import builtin_task_paths

    return set(builtin_task_paths())
