"""Finding task files: built-in names (the repo's tasks/ folder) or paths to YAML files."""

from __future__ import annotations

import os
from pathlib import Path

from evalharness.assets import builtin_dir
from evalharness.errors import RegistryError
from evalharness.spec.loader import find_yaml, is_path, yaml_files
from evalharness.spec.task import LoadedTask, load_task_file


def task_dirs() -> list[Path]:
    """Where built-in and user task files live: $EVALHARNESS_TASKS (os.pathsep list), then tasks/."""
    dirs = [Path(p) for p in os.environ.get("EVALHARNESS_TASKS", "").split(os.pathsep) if p]
    dirs.append(builtin_dir("tasks"))
    return [d for d in dirs if d.is_dir()]


def builtin_task_paths() -> dict[str, Path]:
    return yaml_files(task_dirs())


def find_task(name_or_path: str) -> LoadedTask:
    """A task by built-in name or by path to a YAML file."""
    if is_path(name_or_path):
        return load_task_file(Path(name_or_path))
    return load_task_file(find_yaml(name_or_path, builtin_task_paths(), "task"))


def parse_task_list(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise RegistryError("--tasks: give at least one task name or path")
    return names
