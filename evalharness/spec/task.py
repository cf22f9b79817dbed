"""Pydantic models of task files; the only place task YAML is parsed.

Unknown keys are rejected (`extra="forbid"`) and every error names the file and the field.
Nothing in a task file can run Python: templates render in a jinja2 sandbox (prompts.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from evalharness.spec.loader import Strict, load_text, parse_yaml, read_text  # noqa: F401  (parse_yaml, read_text: re-exported)

TaskKind = Literal["generate", "multiple_choice", "perplexity", "retrieval", "sts"]


class SourceSpec(Strict):
    """Where the data canonically comes from, and its license (shown in `evalharness list`)."""

    hub: str | None = None
    config: str | None = None
    split: str | None = None
    license: str | None = None
    attribution: str | None = None
    url: str | None = None
    notes: str | None = None
    rows: int | None = Field(default=None, ge=0, description="rows in the full source split (a vendored sample holds fewer)")


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


class RetrievalSpec(Strict):
    """A retrieval task (kind: retrieval): each row is a query; the model embeds queries and corpus
    (`embed` requests) and the corpus is ranked by cosine similarity (execution/retrieval.py).

    The corpus is either `passage` (each row's own passage field: the corpus is the distinct
    passages, and a query's one relevant passage is its own) or a `corpus` file (columns
    `corpus_id`, `corpus_text`) with `relevant` naming each row's relevant ids (a list, or an
    object id -> grade).
    """

    query: str = "question"
    passage: str | None = None
    corpus: str | None = None
    corpus_id: str = "id"
    corpus_text: str = "text"
    relevant: str | None = None
    depth: int = Field(default=100, ge=1, description="how many ranked ids each query keeps")

    @model_validator(mode="after")
    def _one_corpus(self) -> RetrievalSpec:
        if (self.passage is None) == (self.corpus is None):
            raise ValueError("give exactly one of `passage` (each row's own passage) or `corpus` (a corpus file)")
        if self.corpus is not None and self.relevant is None:
            raise ValueError("relevant: required with `corpus` (the field of each row holding its relevant ids)")
        return self


class StsSpec(Strict):
    """A semantic textual similarity task (kind: sts): each row is a pair of texts with a gold
    similarity; the model embeds both (`embed` requests) and the pair's cosine is compared with
    the gold scores by rank correlation (execution/sts.py, metric `spearman`)."""

    sentence1: str = "sentence1"
    sentence2: str = "sentence2"
    score: str = "score"


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
    retrieval: RetrievalSpec | None = None
    sts: StsSpec | None = None
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
        if (self.kind == "retrieval") != (self.retrieval is not None):
            raise ValueError("retrieval: required for retrieval tasks, and only for them")
        if self.kind == "sts" and self.sts is None:
            object.__setattr__(self, "sts", StsSpec())
        if self.kind != "sts" and self.sts is not None:
            raise ValueError("sts: only for sts tasks (kind: sts)")
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


def task_from_text(text: str, source: str = "<task>", path: Path | None = None) -> LoadedTask:
    spec, digest = load_text(TaskSpec, text, source, "task")
    return LoadedTask(spec=spec, path=path, file_hash=digest)


def load_task_file(path: str | Path) -> LoadedTask:
    """Read and validate one task file."""
    p = Path(path)
    return task_from_text(read_text(p), source=str(p), path=p.resolve())
