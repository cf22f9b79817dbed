"""Pydantic models of task files; the only place task YAML is parsed.

Unknown keys are rejected (`extra="forbid"`) and every error names the file and the field.
Nothing in a task file can run Python: templates render in a jinja2 sandbox (prompts.py).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from evalharness.errors import SpecError

TaskKind = Literal["generate", "multiple_choice", "perplexity"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSpec(Strict):
    """Where the data canonically comes from, and its license (shown in `evalharness list`)."""

    hub: str | None = None
    config: str | None = None
    split: str | None = None
    license: str | None = None
    attribution: str | None = None
    url: str | None = None
    notes: str | None = None


class DatasetSpec(Strict):
    """A local file (JSONL, CSV, Parquet, Arrow) or a `datasets` hub name with config and split.

    `fields` maps the names templates use to (dotted) column paths in the rows.
    """

    path: str | None = None
    format: Literal["jsonl", "json", "csv", "parquet", "arrow"] | None = None
    hub: str | None = None
    config: str | None = None
    split: str = "test"
    fields: dict[str, str] = Field(default_factory=dict)
    id_field: str | None = None
    limit: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _one_source(self) -> DatasetSpec:
        if (self.path is None) == (self.hub is None):
            raise ValueError("give exactly one of `path` (a local file) or `hub` (a datasets hub name)")
        return self


class FewShotSpec(Strict):
    """Few-shot examples drawn reproducibly (seed) from a named split or file."""

    k: int = Field(default=0, ge=0)
    split: str | None = None
    path: str | None = None
    seed: int = 1234
    separator: str = "\n\n"
    # "random": k drawn per sample with the seed; "first_n": the pool's first k, in order.
    sampler: Literal["random", "first_n"] = "random"


class PromptSpec(Strict):
    template: str
    system: str | None = None
    # None: apply the model's chat template for generate tasks on backends that have one.
    chat_template: bool | None = None
    target: str | None = Field(default=None, description="template of a worked answer (few-shot)")
    target_delimiter: str = " "
    fewshot: FewShotSpec = Field(default_factory=FewShotSpec)


class GenerateSpec(Strict):
    max_tokens: int = Field(default=256, ge=1)
    temperature: float = Field(default=0.0, ge=0.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    stop: list[str] = Field(default_factory=list)
    n: int = Field(default=1, ge=1)
    seed: int = 0


class ChoiceSpec(Strict):
    """Multiple choice: field paths of the choices list and the answer (index or label).

    By default each choice is a continuation scored after the one prompt. With `continuation`
    set (lm-eval's "partial evaluation", e.g. Winogrande), each choice is a context instead:
    the prompt template is rendered once per choice with the choice bound to `choice`, and
    the shared continuation template (after `target_delimiter`) is what gets scored.
    """

    choices: str = "choices"
    answer: str = "answer"
    labels: str | None = None
    continuation: str | None = None


class ExtractSpec(Strict):
    """Answer extraction before scoring: regex (first or last match), strip, lowercase."""

    regex: str | None = None
    group: int = 1
    match: Literal["first", "last"] = "first"
    fallback: Literal["raw", "empty"] = "raw"
    strip: bool = True
    lowercase: bool = False
    remove: list[str] = Field(default_factory=list)

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        import re

        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from exc
        return value


class MetricSpec(Strict):
    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    display: str | None = None


class TaskSpec(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str | None = None
    kind: TaskKind
    source: SourceSpec = Field(default_factory=SourceSpec)
    dataset: DatasetSpec
    prompt: PromptSpec | None = None
    references: str | None = Field(default=None, description="field path of the reference(s)")
    document: str | None = Field(default=None, description="field path of the document (perplexity)")
    multiple_choice: ChoiceSpec | None = None
    generate: GenerateSpec | None = None
    extract: ExtractSpec = Field(default_factory=ExtractSpec)
    metrics: list[MetricSpec]
    tags: list[str] = Field(default_factory=list)
    lm_eval_compatible: str | None = Field(default=None, description="which lm-eval task it matches")

    @field_validator("metrics", mode="before")
    @classmethod
    def _metric_shorthand(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _kind_fields(self) -> TaskSpec:
        if not self.metrics:
            raise ValueError("metrics: at least one metric is required")
        if self.kind == "multiple_choice":
            if self.prompt is None:
                raise ValueError("prompt: required for multiple_choice tasks")
            if self.multiple_choice is None:
                object.__setattr__(self, "multiple_choice", ChoiceSpec())
        if self.kind == "generate":
            if self.prompt is None:
                raise ValueError("prompt: required for generate tasks")
            if self.generate is None:
                object.__setattr__(self, "generate", GenerateSpec())
        if self.kind == "perplexity" and self.document is None:
            raise ValueError("document: required for perplexity tasks (the field holding the text)")
        return self


class LoadedTask(BaseModel):
    """A validated task with where it came from and its content hash."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    spec: TaskSpec
    path: Path | None
    file_hash: str

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path is not None else Path.cwd()


def _known_keys() -> set[str]:
    keys: set[str] = set()
    stack: list[type[BaseModel]] = [Strict]
    while stack:
        cls = stack.pop()
        keys.update(cls.model_fields)
        stack.extend(cls.__subclasses__())
    return keys


def _format_validation_error(source: str, exc: ValidationError) -> str:
    import difflib

    parts = []
    # Unknown keys first: a typo also makes the intended key "missing"; the typo is the news.
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    for err in errors[:3]:
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(err["loc"][-1]), _known_keys(), n=1)
            msg = "unknown key" + (f" (did you mean {close[0]!r}?)" if close else "")
        elif err["type"] == "missing":
            msg = "required field missing"
        elif err["type"] == "value_error":  # our validators' messages already name their field
            msg = msg.removeprefix("Value error, ").removeprefix(f"{err['loc'][-1]}: " if err["loc"] else "")
            if loc == "<root>" and ": " in msg:
                parts.append(msg)
                continue
        parts.append(f"{loc}: {msg}")
    more = f" (+{len(exc.errors()) - 3} more)" if len(exc.errors()) > 3 else ""
    return f"{source}: " + "; ".join(parts) + more


# Task, judge, suite, group and gate files are a few KB; past these limits a file is refused,
# by its size before parsing, and by its nodes (aliases counted at their expanded size) and
# nesting while it is parsed, so neither a huge file nor an alias bomb costs more than a moment.
MAX_YAML_BYTES = 2**20
MAX_YAML_NODES = 100_000
MAX_YAML_DEPTH = 100


class _YamlTooBig(Exception):
    def __init__(self, message: str, mark: Any) -> None:
        super().__init__(message)
        self.problem_mark = mark


try:  # libyaml scans and parses about ten times faster; events and errors (with lines) are the same
    from yaml._yaml import CParser as _Parser
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    class _Parser(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser):  # type: ignore[no-redef]
        def __init__(self, stream: str) -> None:
            yaml.reader.Reader.__init__(self, stream)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)


class _BoundedLoader(yaml.composer.Composer, _Parser, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
    """yaml.SafeLoader's parts (Python tags are still an error), with a composer that counts nodes
    as it builds the node graph, before any Python object is constructed."""

    def __init__(self, stream: str) -> None:
        _Parser.__init__(self, stream)
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)
        self._nodes = 0
        self._depth = 0
        self._expanded: dict[int, int] = {}  # id(node) -> nodes it stands for, aliases expanded

    def _count(self, n: int) -> None:
        self._nodes += n
        if self._nodes > MAX_YAML_NODES:
            event: Any = self.peek_event()
            raise _YamlTooBig(f"YAML expands to more than {MAX_YAML_NODES:,} nodes (anchors/aliases nested too deep?)",
                              event.start_mark)

    def compose_node(self, parent: Any, index: Any) -> Any:
        event: Any = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            target = self.anchors.get(event.anchor)
            if target is not None:
                if id(target) not in self._expanded:
                    raise _YamlTooBig(f"alias *{event.anchor} refers to a node that contains it", event.start_mark)
                self._count(self._expanded[id(target)])
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            raise _YamlTooBig(f"YAML nested deeper than {MAX_YAML_DEPTH} levels", event.start_mark)
        before = self._nodes
        self._count(1)
        node = super().compose_node(parent, index)
        self._depth -= 1
        self._expanded[id(node)] = self._nodes - before
        return node


def _too_big(source: str, size: int) -> SpecError:
    return SpecError(f"{source}: {size:,} bytes, over the {MAX_YAML_BYTES // 2**20} MiB limit for a YAML file")


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML safely (no Python tags) and boundedly, with a one-line error naming the file and line."""
    if len(text) > MAX_YAML_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_YAML_BYTES:
        raise _too_big(source, len(text.encode("utf-8", "surrogatepass")))
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    except (yaml.YAMLError, _YamlTooBig) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        if isinstance(exc, _YamlTooBig):
            raise SpecError(f"{source}{where}: {exc}") from None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{source}{where}: invalid YAML: {problem}") from None
    except (ValueError, TypeError, AttributeError, OverflowError, RecursionError) as exc:  # bad explicit tags (`!!float x`)
        raise SpecError(f"{source}: invalid YAML: {type(exc).__name__}: {exc}") from None
    finally:
        loader.dispose()


def read_text(path: Path) -> str:
    """A YAML file's text; one over MAX_YAML_BYTES is refused before it is read."""
    try:
        size = path.stat().st_size
        if size > MAX_YAML_BYTES and path.is_file():
            raise _too_big(str(path), size)
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not valid UTF-8 (byte {exc.start})") from None
    except OSError as exc:
        raise SpecError(f"{path}: cannot read: {exc.strerror}") from None


def task_from_text(text: str, source: str = "<task>", path: Path | None = None) -> LoadedTask:
    data = parse_yaml(text, source)
    if not isinstance(data, dict):
        raise SpecError(f"{source}: expected a mapping of task fields at the top level")
    try:
        spec = TaskSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_format_validation_error(source, exc)) from None
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return LoadedTask(spec=spec, path=path, file_hash=digest)


def load_task_file(path: str | Path) -> LoadedTask:
    """Read and validate one task file."""
    p = Path(path)
    return task_from_text(read_text(p), source=str(p), path=p.resolve())
