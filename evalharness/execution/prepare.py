"""Preparing a task for the runner: its metrics, samples, prompts, requests and fingerprint;
and the per-sample log records built from what comes back.

Everything here is deterministic, so every launcher rank and Ray worker prepares the same
requests in the same order.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from evalharness.backends.base import Backend
from evalharness.data.samples import fewshot_pool, load_rows, load_samples
from evalharness.errors import BackendError, EvalHarnessError, SpecError
from evalharness.metrics.base import Metric, build_metric
from evalharness.prompting.render import check_template, template_hash
from evalharness.prompting.requests import Prompt, render_prompt, requests_for
from evalharness.spec.task import LoadedTask
from evalharness.types import Output, Request, Response, Sample
from evalharness.version import __version__


def _hash(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _use_chat(task: LoadedTask, backend: Backend, override: bool | None) -> bool:
    p = task.spec.prompt
    want = override if override is not None else (p.chat_template if p is not None else False)
    has_chat = backend.is_chat
    if want is None:
        return task.spec.kind == "generate" and has_chat
    if want and not has_chat:
        raise BackendError(f"{task.spec.name}: chat template requested but backend {backend.name!r} has none")
    return bool(want)


def metrics_for(task: LoadedTask) -> list[Metric]:
    metrics = []
    for i, m in enumerate(task.spec.metrics):
        try:
            metric = build_metric(m.name, m.params)
        except EvalHarnessError as exc:  # name the task file and field, not just the metric
            raise type(exc)(f"{task.path}: metrics.{i}: {exc}") from None
        if task.spec.kind not in metric.kinds:
            raise SpecError(f"{task.path}: metrics.{i}: {m.name!r} does not apply to {task.spec.kind} tasks")
        metrics.append(metric)
    return metrics


def _prompts(task: LoadedTask, samples: list[Sample], num_fewshot: int | None, chat: bool) -> list[Prompt | None]:
    p = task.spec.prompt
    if p is None:
        return [None] * len(samples)
    where = str(task.path)
    mc = task.spec.multiple_choice
    for name, src in (("prompt.template", p.template), ("prompt.system", p.system), ("prompt.target", p.target),
                      ("multiple_choice.continuation", mc.continuation if mc else None)):
        if src:
            check_template(src, f"{where}: {name}")
    k = p.fewshot.k if num_fewshot is None else num_fewshot
    pool = fewshot_pool(task, k)
    return [render_prompt(task, s, i, pool, k, chat) for i, s in enumerate(samples)]


@dataclass
class Prepared:
    """A task's samples, prompts and requests, built the same way on every rank and worker."""

    samples: list[Sample]
    prompts: list[Prompt | None]
    per_sample: list[list[Request]]
    fingerprint: dict[str, Any]
    fp: str
    n_rows: int = 0  # rows in the dataset read (before any limit)

    @property
    def flat(self) -> list[Request]:
        return [r for reqs in self.per_sample for r in reqs]


def prepare(task: LoadedTask, backend: Backend, *, limit: int | None, num_fewshot: int | None,
            chat_template: bool | None, seed: int) -> Prepared:
    """A task's samples, prompts, requests and fingerprint for this backend."""
    spec = task.spec
    rows = load_rows(task)
    samples = load_samples(task, limit, rows)
    chat = _use_chat(task, backend, chat_template)
    prompts = _prompts(task, samples, num_fewshot, chat)
    p = spec.prompt
    fingerprint = {
        "task_file_hash": task.file_hash,
        "prompt_template_hash": template_hash(p.template, p.system, p.target) if p else template_hash(),
        "model_identity_hash": _hash(backend.identity()),
        "harness_version": __version__,
        "seed": seed,
        "num_fewshot": num_fewshot if num_fewshot is not None else (p.fewshot.k if p else 0),
        "chat_template": chat,
        "sample_ids_hash": _hash([s.id for s in samples]),
    }
    fp = _hash({k: v for k, v in fingerprint.items() if k != "sample_ids_hash"})
    per_sample = [requests_for(task, s, pr) for s, pr in zip(samples, prompts, strict=True)]
    return Prepared(samples, prompts, per_sample, fingerprint, fp, len(rows))


def known_responses(records: list[dict[str, Any]], fp: str) -> dict[str, Response]:
    """Resume: the responses a previous run of the same task and configuration finished, from its
    log's records (`read_jsonl_tolerant`)."""
    known: dict[str, Response] = {}
    for rec in records:
        if rec.get("fp") == fp and "error" not in rec:
            known.update(zip(rec.get("keys", []), (Response.from_json(r) for r in rec.get("responses", [])), strict=False))
    return known


def record(sample: Sample, prompt: Prompt | None, keys: list[str], responses: list[Response], fp: str) -> dict[str, Any]:
    rec: dict[str, Any] = {"id": sample.id, "fp": fp}
    if prompt is not None:
        rec["prompt"] = prompt.text if prompt.messages is None else [[m.role, m.content] for m in prompt.messages]
        if prompt.per_choice:
            rec["choice_prompts"] = [pc.text for pc in prompt.per_choice]
    if sample.choices:
        rec["choices"], rec["gold"] = list(sample.choices), sample.gold
    if sample.references:
        rec["references"] = list(sample.references)
    rec["keys"] = keys
    rec["responses"] = [r.to_json() for r in responses]
    errors = [r.error for r in responses if r.error]
    if errors:
        rec["error"] = errors[0]
    return rec


def describe_output(rec: dict[str, Any], out: Output) -> None:
    if out.generations:
        rec["generations"], rec["extracted"] = list(out.generations), list(out.extracted)
    elif out.n_tokens:
        rec["logprob"], rec["n_tokens"] = out.logprobs[0], out.n_tokens
    elif out.logprobs:
        rec["logprobs"] = list(out.logprobs)
        rec["predicted"] = int(max(range(len(out.logprobs)), key=lambda i: out.logprobs[i]))
