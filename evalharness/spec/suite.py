"""Suite files (`suites/*.yaml`): models x tasks (x a judge model), with limits and a seed.

    name: demo
    description: ...
    models:                        # each one run directory under --output
      - name: smollm2                  # display name in the report (and the run dir's name)
        backend: smollm2               # any registered backend (default smollm2)
        args: {batch_size: 8}          # --model-args
        chat_template: null            # null: each task's own setting; true / false: forced
    tasks:                         # built-in task or group names, or task/group file paths
      - arc_easy                       #   (paths relative to the suite file)
      - {task: squad, limit: 24}       # a per-task limit; on a group it limits every member
    limit: null                    # the limit of tasks without their own
    judge: {backend: smollm2, args: {}}   # optional: the judge model for tasks with judge metrics
    seed: 0
    bootstrap: 1000
    output: runs/demo              # default of --output

Validated like task files (pydantic, `extra="forbid"`); errors name the file and the field.
Credentials never belong in a suite file: API backends read them from the environment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from evalharness.errors import SpecError
from evalharness.spec.loader import Strict, load_file

ArgValue = str | int | float | bool | None


class SuiteModel(Strict):
    name: str = Field(min_length=1, max_length=100)
    backend: str = "smollm2"
    args: dict[str, ArgValue] = Field(default_factory=dict)
    chat_template: bool | None = None
    num_fewshot: int | None = Field(default=None, ge=0)

    @property
    def slug(self) -> str:
        """The run directory's name: the display name with anything but [A-Za-z0-9_.-] as '-'."""
        return re.sub(r"[^A-Za-z0-9_.\-]+", "-", self.name).strip("-.") or "model"


class SuiteTask(Strict):
    task: str = Field(min_length=1)
    limit: int | None = Field(default=None, ge=0)


class SuiteJudge(Strict):
    backend: str
    args: dict[str, ArgValue] = Field(default_factory=dict)


class SuiteSpec(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str | None = None
    models: list[SuiteModel] = Field(min_length=1)
    tasks: list[SuiteTask] = Field(min_length=1)
    limit: int | None = Field(default=None, ge=0)
    judge: SuiteJudge | None = None
    seed: int = 0
    bootstrap: int = Field(default=1000, ge=0)
    output: str | None = None

    @field_validator("tasks", mode="before")
    @classmethod
    def _task_shorthand(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"task": v} if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _unique(self) -> SuiteSpec:
        for what, names in (("models", [m.name for m in self.models]), ("models", [m.slug for m in self.models]),
                            ("tasks", [t.task for t in self.tasks])):
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"{what}: {', '.join(dup)} listed twice (names and run directory names must be unique)")
        return self


@dataclass(frozen=True)
class LoadedSuite:
    spec: SuiteSpec
    path: Path
    file_hash: str

    def task_ref(self, entry: SuiteTask) -> str:
        """A task entry as `--tasks` takes it: file paths are relative to the suite file."""
        p = Path(entry.task)
        if p.suffix in {".yaml", ".yml"} and not p.is_absolute() and (self.path.parent / p).is_file():
            return str(self.path.parent / p)
        return entry.task


def find_suite(name_or_path: str | Path) -> LoadedSuite:
    """A suite file by path, or a built-in suite by name (`demo`: the wheel carries them, so this
    works from any folder); neither is one line naming the built-in ones."""
    from evalharness.assets import builtin_dir

    p = Path(name_or_path)
    if p.exists() or p.suffix in {".yaml", ".yml"} or len(p.parts) > 1:
        builtin = builtin_dir("suites") / p.name
        if not p.exists() and len(p.parts) == 2 and p.parts[0] == "suites" and builtin.is_file():
            return load_suite_file(builtin)  # `suites/demo.yaml` as the README names it, outside a checkout
        return load_suite_file(p)
    builtin = builtin_dir("suites") / f"{p.name}.yaml"
    if builtin.is_file():
        return load_suite_file(builtin)
    known = sorted(f.stem for f in builtin_dir("suites").glob("*.yaml"))
    raise SpecError(f"--suite {name_or_path}: no such file, and no built-in suite of that name (built-in: {', '.join(known) or 'none'})")


def load_suite_file(path: str | Path) -> LoadedSuite:
    """Read and validate one suite file."""
    p = Path(path)
    spec, digest = load_file(SuiteSpec, p, "suite")
    return LoadedSuite(spec, p.resolve(), digest)
