"""Samples -> Requests (rendering prompts and few-shot context), and Responses -> Output."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from evalharness.data.samples import draw_fewshot
from evalharness.errors import TemplateError
from evalharness.prompting.extract import extract
from evalharness.prompting.render import render
from evalharness.spec.task import LoadedTask, PromptSpec
from evalharness.types import GenParams, Message, Output, Request, Response, Sample


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt: plain text and, when chat is on, the chat messages.

    `per_choice` holds one prompt per choice for multiple choice whose choices are contexts.
    """

    text: str
    messages: tuple[Message, ...] | None
    per_choice: tuple[Prompt, ...] = ()


def _target(prompt: PromptSpec, example: Sample, where: str, row: str) -> str:
    if prompt.target is not None:
        return render(prompt.target, example.fields, f"{where}: prompt.target: {row}")
    if example.choices and example.gold is not None:
        return example.choices[example.gold]
    if example.references:
        return example.references[0]
    raise TemplateError(f"{where}: prompt.target is needed to show few-shot answers for this task")


def _choice_contexts(task: LoadedTask, sample: Sample) -> bool:
    mc = task.spec.multiple_choice
    return task.spec.kind == "multiple_choice" and mc is not None and mc.continuation is not None


def _shot_fields(task: LoadedTask, sample: Sample) -> dict[str, object]:
    """A sample's fields; a few-shot example of a choices-as-contexts task shows its gold choice."""
    if _choice_contexts(task, sample) and sample.gold is not None:
        return {**sample.fields, "choice": sample.choices[sample.gold]}
    return sample.fields


def _shot_target(task: LoadedTask, example: Sample, where: str, row: str) -> str:
    """A few-shot example's answer: the shared continuation when choices are contexts."""
    mc = task.spec.multiple_choice
    assert task.spec.prompt is not None
    if _choice_contexts(task, example) and mc is not None and mc.continuation is not None:
        return render(mc.continuation, example.fields, f"{where}: multiple_choice.continuation: {row}")
    return _target(task.spec.prompt, example, where, row)


def render_prompt(
    task: LoadedTask, sample: Sample, index: int, pool: Sequence[Sample], num_fewshot: int | None, chat: bool
) -> Prompt:
    """The prompt for one sample, lm-evaluation-harness style: shots joined by the separator."""
    spec = task.spec
    assert spec.prompt is not None
    p = spec.prompt
    where = str(task.path or spec.name)
    k = p.fewshot.k if num_fewshot is None else num_fewshot
    same_source = p.fewshot.path is None and p.fewshot.split in (None, spec.dataset.split)
    exclude = sample.id if same_source else None
    shots = draw_fewshot(pool, k, p.fewshot.seed, exclude, index, p.fewshot.sampler) if k else []
    # Errors name the field and the row: `<task file>: prompt.template: row <id>: <what, and the limit>`.
    row = f"row {sample.id}"
    shot_pairs = [
        (render(p.template, _shot_fields(task, s), f"{where}: prompt.template: {row}, few-shot row {s.id}"),
         _shot_target(task, s, where, f"{row}, few-shot row {s.id}")) for s in shots
    ]
    system = render(p.system, sample.fields, f"{where}: prompt.system: {row}") if p.system else None
    if _choice_contexts(task, sample):
        per_choice = tuple(
            _assemble(p, render(p.template, {**sample.fields, "choice": c}, f"{where}: prompt.template: {row}"),
                      shot_pairs, system, chat)
            for c in sample.choices
        )
        return Prompt(text=per_choice[0].text, messages=per_choice[0].messages, per_choice=per_choice)
    question = render(p.template, sample.fields, f"{where}: prompt.template: {row}")
    return _assemble(p, question, shot_pairs, system, chat)


def _assemble(p: PromptSpec, question: str, shot_pairs: list[tuple[str, str]], system: str | None, chat: bool) -> Prompt:
    """Few-shot pairs, then the question: chat messages or one text joined by the separator."""
    if chat:
        msgs: list[Message] = [Message("system", system)] if system else []
        for q, a in shot_pairs:
            msgs += [Message("user", q), Message("assistant", a)]
        msgs.append(Message("user", question))
        return Prompt(text=question, messages=tuple(msgs))
    parts = [q + p.target_delimiter + a for q, a in shot_pairs]
    text = p.fewshot.separator.join([*parts, question])
    if system:
        text = system + p.fewshot.separator + text
    return Prompt(text=text, messages=None)


def _request(prompt: Prompt, continuation: str) -> Request:
    if prompt.messages:
        return Request(kind="loglikelihood", messages=prompt.messages, continuation=continuation)
    return Request(kind="loglikelihood", prompt=prompt.text, continuation=continuation)


def requests_for(task: LoadedTask, sample: Sample, prompt: Prompt | None) -> list[Request]:
    """The model calls one sample needs, in a fixed order that `to_output` relies on."""
    spec = task.spec
    if spec.kind == "perplexity":
        return [Request(kind="loglikelihood_rolling", prompt=sample.document or "")]
    assert prompt is not None and spec.prompt is not None
    ctx = {"prompt": None, "messages": prompt.messages} if prompt.messages else {"prompt": prompt.text, "messages": None}
    if spec.kind == "multiple_choice":
        delim = spec.prompt.target_delimiter
        mc = spec.multiple_choice
        if prompt.per_choice and mc is not None and mc.continuation is not None:
            cont = delim + render(mc.continuation, sample.fields,
                                  f"{task.path or spec.name}: multiple_choice.continuation: row {sample.id}")
            return [_request(pc, cont) for pc in prompt.per_choice]
        return [_request(prompt, delim + c) for c in sample.choices]
    g = spec.generate
    assert g is not None
    params = GenParams(max_tokens=g.max_tokens, temperature=g.temperature, top_p=g.top_p, stop=tuple(g.stop), seed=g.seed)
    return [Request(kind="generate", gen=params, repeat=r, **ctx) for r in range(g.n)]


def to_output(task: LoadedTask, responses: Sequence[Response]) -> Output:
    """Fold one sample's responses into what metrics score."""
    spec = task.spec
    if spec.kind == "perplexity":
        r = responses[0]
        return Output(logprobs=(float(r.logprob or 0.0),), n_tokens=int(r.n_tokens or 0))
    if spec.kind == "multiple_choice":
        return Output(
            logprobs=tuple(float(r.logprob or 0.0) for r in responses),
            is_greedy=tuple(bool(r.is_greedy) for r in responses),
        )
    gens = tuple(r.text or "" for r in responses)
    return Output(generations=gens, extracted=tuple(extract(g, spec.extract) for g in gens))
