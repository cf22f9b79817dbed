"""An STS task (kind: sts): embed both texts of each pair, score the pair by cosine, correlate.

Every distinct text becomes one `embed` request through the same runner and response cache as
every other request (a rerun embeds nothing). Each pair's cosine goes into its sample's
`similarity` (the vectors are L2-normalised here, whatever the backend returns) beside its
`gold_score`; the task's `spearman` / `pearson` metrics (metrics/sts.py) correlate the two over
all pairs, with a bootstrap CI. The per-sample log records each pair's texts, gold and cosine.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from evalharness.backends.base import Backend
from evalharness.data.samples import load_samples
from evalharness.errors import BackendError, DataError
from evalharness.execution.cache import NullCache, ResponseCache
from evalharness.execution.prepare import _hash, metrics_for
from evalharness.execution.runner import Executor, run_requests
from evalharness.execution.score import score_outputs
from evalharness.metrics.sts import GOLD, SIMILARITY
from evalharness.results.schema import Fingerprint, TaskResult
from evalharness.results.store import samples_path, write_jsonl
from evalharness.results.usage import usage_json
from evalharness.spec.task import LoadedTask, StsSpec
from evalharness.types import Output, Request, Response, Sample
from evalharness.version import __version__

if TYPE_CHECKING:
    from evalharness.execution.config import RunConfig


def _pair(sample: Sample, spec: StsSpec, where: str) -> tuple[str, str, float]:
    texts = []
    for field in (spec.sentence1, spec.sentence2):
        value = sample.fields.get(field)
        if not isinstance(value, str):
            raise DataError(f"{where}: sample {sample.id!r}: field {field!r} must be text (sts.sentence1/sentence2)")
        texts.append(value)
    gold: Any = sample.fields.get(spec.score)
    try:
        number = float(gold)
    except (TypeError, ValueError):
        raise DataError(f"{where}: sample {sample.id!r}: field {spec.score!r} must be a number (sts.score), "
                        f"got {gold!r}") from None
    if not np.isfinite(number):
        raise DataError(f"{where}: sample {sample.id!r}: field {spec.score!r} must be a finite number (sts.score)")
    return texts[0], texts[1], number


def _unit(response: Response, where: str) -> np.ndarray:
    if response.embedding is None:
        raise BackendError(f"{where}: the backend returned a response without an embedding")
    vec = np.asarray(response.embedding, dtype=np.float64)
    norm = np.linalg.norm(vec)
    return vec / norm if norm else vec


def evaluate_sts(task: LoadedTask, backend: Backend, cache: ResponseCache | NullCache, cfg: RunConfig,
                 executor: Executor | None = None) -> TaskResult:
    """Run one STS task and write its per-sample log; returns its results.json entry."""
    started = time.time()
    spec: StsSpec = task.spec.sts  # type: ignore[assignment]  # validated for kind: sts
    name = task.spec.name
    if "embed" not in backend.supports:
        raise BackendError(f"{task.path}: an sts task needs a backend that embeds text (e.g. sentence-transformers); "
                           f"{backend.name!r} cannot")
    metrics = metrics_for(task)
    samples = load_samples(task, cfg.limits.get(name, cfg.limit))
    pairs = [_pair(s, spec, str(task.path)) for s in samples]
    texts = list(dict.fromkeys(t for a, b, _ in pairs for t in (a, b)))
    responses, _keys, stats = run_requests(backend, [Request(kind="embed", prompt=t) for t in texts], cache,
                                           desc=name, progress=cfg.progress, executor=executor)
    failed = [r.error for r in responses if r.error]
    if failed:
        raise BackendError(f"{name}: {len(failed)} embed request(s) failed: {failed[0]}")
    vectors = {t: _unit(r, name) for t, r in zip(texts, responses, strict=True)}
    scored, records = [], []
    for sample, (a, b, gold) in zip(samples, pairs, strict=True):
        if vectors[a].shape != vectors[b].shape:
            raise BackendError(f"{name}: sample {sample.id!r}: the two embeddings differ in size")
        cosine = float(vectors[a] @ vectors[b])
        scored.append(Sample(id=sample.id, fields={**sample.fields, SIMILARITY: cosine, GOLD: gold}))
        records.append({"id": sample.id, "sentence1": a, "sentence2": b, "gold": gold, "cosine": cosine})
    metric_json = score_outputs(metrics, scored, [Output() for _ in scored], records, seed=cfg.seed,
                                resamples=cfg.bootstrap_resamples)
    fingerprint: Fingerprint = {"task_file_hash": task.file_hash, "model_identity_hash": _hash(backend.identity()),
                                "harness_version": __version__, "seed": cfg.seed,
                                "sample_ids_hash": _hash([s.id for s in samples])}
    log_path = samples_path(cfg.output, name)
    write_jsonl(log_path, records)
    return {
        "kind": task.spec.kind,
        "n_samples": len(samples),
        "n_failed": 0,
        "metrics": metric_json,
        "fingerprint": fingerprint,
        "samples_file": str(log_path.relative_to(cfg.output)),
        "source": task.spec.source.model_dump(exclude_none=True),
        "usage": usage_json(stats, backend),
        "duration_s": round(time.time() - started, 3),
    }
