"""Pydantic models of judge rubric files (`judges/*.yaml`); unknown keys are rejected.

A judge file names a mode, the prompt (a sandboxed jinja2 template, see prompts.py), the
scale and the verdict format. What the template sees:

    question   the sample's question (field named by `inputs.question`; "" when absent)
    answer     the answer being judged (single, reference, rubric modes)
    answer_a, answer_b   the two answers, in the order of this request (pairwise)
    answers    list of {label, text} (ranking); labels are A, B, C, ...
    reference  the reference answer (`inputs.reference`; required in reference mode)
    context    the grounding context (`inputs.context`); under `per: context`, one retrieved context
    claim      under `per: claim`, the one claim (a sentence of `answer`, judging/claims.py) being judged;
               `answer` is still the whole answer, so the judge can tell what "it" refers to
    criteria   list of {name, description, min, max} (rubric)
    scale_min, scale_max   the judge's scale

How the verdict is read (`verdict`, or `verdict.method`):

    generate     (default) the judge writes a reply; the verdict is parsed from its end, with one
                 format retry (judging/verdicts.py)
    likelihood   no text is generated: every verdict the parser would accept ("[[A]]", "[[B]]",
                 "[[C]]"; "[[1]]".."[[10]]"; a ranking; the rubric's JSON) is scored as the
                 continuation of the same rendered prompt with loglikelihood requests, and the
                 verdict is the most likely one (judging/likelihood.py). Needs a judge backend
                 that scores log-likelihoods. `verdict: likelihood` is short for
                 `verdict: {method: likelihood}`.

Every answer, reference and context is passed through `neutralize` first (judging/verdicts.py),
so text under judgment can neither forge a verdict token nor close its own delimiters.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from evalharness.assets import builtin_dir
from evalharness.spec.loader import Strict, find_yaml, is_path, load_text, read_text, yaml_files

JudgeMode = Literal["single", "reference", "rubric", "pairwise", "ranking"]
VerdictFormat = Literal["bracket_rating", "bracket_choice", "json_criteria", "bracket_ranking"]
VerdictMethod = Literal["generate", "likelihood"]
VERDICT_METHODS: tuple[str, ...] = ("generate", "likelihood")
DEFAULT_MAX_CLAIMS = 32  # per: claim judges; see judging/claims.py

# The one verdict format each mode is parsed with (documented in judging/verdicts.py).
FORMAT_OF_MODE: dict[str, VerdictFormat] = {
    "single": "bracket_rating",
    "reference": "bracket_rating",
    "rubric": "json_criteria",
    "pairwise": "bracket_choice",
    "ranking": "bracket_ranking",
}


class _Strict(Strict):
    """extra="forbid", frozen; a subclass of specs.Strict so typo hints know judge keys."""


class ScaleSpec(_Strict):
    """A rating scale with integer ends, both included. Verdicts may be decimals inside it
    (`[[7.5]]`) unless `integer: true`, which makes whole numbers the only verdicts (a yes/no
    judge on 0-1 must not accept `[[0.5]]`)."""

    min: int = 1
    max: int = 10
    integer: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> ScaleSpec:
        if self.max <= self.min:
            raise ValueError(f"scale: max ({self.max}) must be greater than min ({self.min})")
        return self


class CriterionSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    description: str = ""
    scale: ScaleSpec = Field(default_factory=ScaleSpec)


class InputsSpec(_Strict):
    """Which sample fields feed the template. `reference: references` reads the sample's references."""

    question: str | None = "prompt"
    reference: str | None = None
    context: str | None = None
    # `per: context` judges: the column holding the list of retrieved context texts, one verdict each
    contexts: str = "contexts"
    # pairwise judging in `score`: the column holding the answer the prediction is compared with
    baseline: str = "baseline"
    # ranking judging in `score`: the column holding a list of alternative answers
    alternatives: str = "alternatives"
    # a column of human verdicts on the judge's scale (or A/B/C): agreement is reported when present
    human: str = "human_label"


class VerdictSpec(_Strict):
    format: VerdictFormat | None = None  # default: the mode's format
    reminder: str | None = None  # the retry message; default: the format's own reminder
    # generate: parse the judge's reply; likelihood: score every allowed verdict (see the docstring)
    method: VerdictMethod = "generate"


class GenerationSpec(_Strict):
    max_tokens: int = Field(default=512, ge=1)
    temperature: float = Field(default=0.0, ge=0.0)
    # k verdicts per item (sampled repeats are cached apart); agreement and `flaky` items reported
    samples: int = Field(default=1, ge=1)


class PairwiseSpec(_Strict):
    """Position-bias control: judge both orders; a flipped verdict is `inconsistent`."""

    swap: bool = True
    inconsistent_as: Literal["tie", "exclude"] = "tie"


class JudgeSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str | None = None
    mode: JudgeMode
    system: str | None = None
    template: str
    scale: ScaleSpec = Field(default_factory=ScaleSpec)
    criteria: list[CriterionSpec] = Field(default_factory=list)
    verdict: VerdictSpec = Field(default_factory=VerdictSpec)
    inputs: InputsSpec = Field(default_factory=InputsSpec)
    generation: GenerationSpec = Field(default_factory=GenerationSpec)
    pairwise: PairwiseSpec = Field(default_factory=PairwiseSpec)
    # sample: one verdict per sample; context: one verdict per retrieved context (the `inputs.contexts`
    # list, each shown alone as `context`); claim: one verdict per claim of the answer (its sentences,
    # judging/claims.py, each shown as `claim`). Per-unit verdicts are averaged over the parsed ones
    # into the sample's value.
    per: Literal["sample", "context", "claim"] = "sample"
    # per: claim: the most claims judged per answer (default DEFAULT_MAX_CLAIMS); sentences past the
    # last are merged into it. None when unset, so other judges' dumps (and fingerprints) do not change.
    max_claims: int | None = Field(default=None, ge=1)
    biases: str | None = Field(default=None, description="known biases and what the harness does about them")
    source: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _verdict_shorthand(cls, data: Any) -> Any:
        """`verdict: likelihood` (or `generate`) is short for `verdict: {method: ...}`."""
        if isinstance(data, dict) and isinstance(data.get("verdict"), str):
            method = data["verdict"]
            if method not in VERDICT_METHODS:
                raise ValueError(f"verdict: must be 'generate' or 'likelihood' (or a mapping with format, reminder, "
                                 f"method), not {method!r}")
            data = {**data, "verdict": {"method": method}}
        return data

    @model_validator(mode="after")
    def _mode_fields(self) -> JudgeSpec:
        fmt = self.verdict.format or FORMAT_OF_MODE[self.mode]
        if fmt != FORMAT_OF_MODE[self.mode]:
            raise ValueError(f"verdict.format: mode {self.mode!r} is parsed as {FORMAT_OF_MODE[self.mode]!r}, not {fmt!r}")
        if self.mode == "rubric" and not self.criteria:
            raise ValueError("criteria: a rubric judge needs at least one criterion")
        if self.mode != "rubric" and self.criteria:
            raise ValueError(f"criteria: only rubric judges have criteria (mode is {self.mode!r})")
        if self.mode == "reference" and not self.inputs.reference:
            raise ValueError("inputs.reference: required in reference mode (e.g. `references`)")
        if self.per != "sample" and self.mode != "single":
            raise ValueError(f"per: {self.per} judging needs mode single (mode is {self.mode!r})")
        if self.max_claims is not None and self.per != "claim":
            raise ValueError(f"max_claims: only per: claim judges split answers into claims (per is {self.per!r})")
        names = [c.name for c in self.criteria]
        if len(set(names)) != len(names):
            raise ValueError("criteria: names must be unique")
        if self.verdict.method == "likelihood":
            if self.generation.samples != 1:
                raise ValueError("generation.samples: likelihood verdicts are deterministic; use 1 "
                                 "(repeats need verdict: generate)")
            if self.verdict.reminder is not None:
                raise ValueError("verdict.reminder: likelihood verdicts are never retried; remove it")
        return self

    @property
    def likelihood(self) -> bool:
        """Whether verdicts are read from log-likelihoods instead of generated text."""
        return self.verdict.method == "likelihood"

    @property
    def claim_limit(self) -> int:
        """The most claims a `per: claim` judge judges per answer."""
        return self.max_claims or DEFAULT_MAX_CLAIMS

    @property
    def format(self) -> VerdictFormat:
        return FORMAT_OF_MODE[self.mode]

    @property
    def value_range(self) -> tuple[float, float]:
        """The range of the judge's metric value: the scale, or 0-1 for win rates."""
        if self.mode in {"pairwise", "ranking"}:
            return (0.0, 1.0)
        return (float(self.scale.min), float(self.scale.max))


class LoadedJudge(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    spec: JudgeSpec
    path: Path | None
    file_hash: str


def judge_from_text(text: str, source: str = "<judge>", path: Path | None = None) -> LoadedJudge:
    spec, digest = load_text(JudgeSpec, text, source, "judge")
    from evalharness.prompting.render import check_template

    check_template(spec.template, f"{source}: template")
    if spec.system:
        check_template(spec.system, f"{source}: system")
    return LoadedJudge(spec=spec, path=path, file_hash=digest)


def load_judge_file(path: str | Path) -> LoadedJudge:
    p = Path(path)
    return judge_from_text(read_text(p), source=str(p), path=p.resolve())


def judge_dirs() -> list[Path]:
    """$EVALHARNESS_JUDGES (os.pathsep list), then the repo's judges/ folder."""
    dirs = [Path(p) for p in os.environ.get("EVALHARNESS_JUDGES", "").split(os.pathsep) if p]
    dirs.append(builtin_dir("judges"))
    return [d for d in dirs if d.is_dir()]


def builtin_judge_paths() -> dict[str, Path]:
    return yaml_files(judge_dirs())


def find_judge(name_or_path: str) -> LoadedJudge:
    """A judge by built-in name or by path to a YAML file."""
    if is_path(name_or_path):
        return load_judge_file(Path(name_or_path))
    return load_judge_file(find_yaml(name_or_path, builtin_judge_paths(), "judge"))
