"""A retrieval task (kind: retrieval): embed queries and corpus, rank by cosine, score the rankings.

Every query and every corpus text becomes an `embed` request that goes through the same runner and
response cache as every other request (a rerun embeds nothing). Each query's corpus is ranked by
cosine similarity (the vectors are L2-normalised here, whatever the backend returns), ties broken
as trec_eval breaks them (by id, descending); its top `retrieval.depth` ids and their scores become
the sample's `retrieved_ids` / `retrieved_scores` (metrics/retrieval.py), which the task's
retrieval metrics score with their CIs like any other metric.
"""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from evalharness.backends.base import Backend
from evalharness.data.samples import load_samples, read_rows, resolve_path
from evalharness.errors import BackendError, DataError
from evalharness.execution.cache import NullCache, ResponseCache
from evalharness.execution.prepare import _hash, metrics_for
from evalharness.execution.runner import Executor, run_requests
from evalharness.execution.score import score_outputs
from evalharness.results.schema import Fingerprint, TaskResult
from evalharness.results.store import samples_path, write_jsonl
from evalharness.results.usage import usage_json
from evalharness.spec.task import LoadedTask, RetrievalSpec
from evalharness.types import Output, Request, Sample
from evalharness.version import __version__

if TYPE_CHECKING:
    from evalharness.execution.config import RunConfig


def passage_id(text: str) -> str:
    """A passage's id when the corpus is built from the rows' own passages: a hash of its text."""
    return "p" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _text(sample: Sample, field: str, where: str) -> str:
    value = sample.fields.get(field)
    if not isinstance(value, str):
        raise DataError(f"{where}: sample {sample.id!r}: field {field!r} must be text (retrieval.{field})")
    return value


def corpus_and_relevance(task: LoadedTask, samples: list[Sample]) -> tuple[list[str], list[str], list[Any]]:
    """The corpus (ids, texts, in a stable order) and each sample's relevance judgements."""
    spec: RetrievalSpec = task.spec.retrieval  # type: ignore[assignment]  # validated for kind: retrieval
    where = str(task.path)
    if spec.passage is not None:
        # the corpus is every row's passage, not only the limited queries' (a limit must not shrink it)
        distinct = list(dict.fromkeys(_text(s, spec.passage, where) for s in load_samples(task, None)))
        return [passage_id(t) for t in distinct], distinct, [[passage_id(_text(s, spec.passage, where))] for s in samples]
    assert spec.corpus is not None and spec.relevant is not None
    rows = read_rows(resolve_path(task, spec.corpus, "retrieval.corpus"))
    ids: list[str] = []
    texts: list[str] = []
    for i, row in enumerate(rows):
        if spec.corpus_id not in row or not isinstance(row.get(spec.corpus_text), str):
            raise DataError(f"{spec.corpus}: row {i + 1}: needs {spec.corpus_id!r} and a text {spec.corpus_text!r}")
        ids.append(str(row[spec.corpus_id]))
        texts.append(row[spec.corpus_text])
    if len(set(ids)) != len(ids):
        raise DataError(f"{spec.corpus}: duplicate corpus ids")
    return ids, texts, [s.fields.get(spec.relevant) for s in samples]


def _matrix(responses: list[Any], where: str) -> np.ndarray:
    if any(r.embedding is None for r in responses):
        raise BackendError(f"{where}: the backend returned a response without an embedding")
    sizes = sorted({len(r.embedding) for r in responses})
    if len(sizes) > 1:  # a cache written by another encoder under the same name, or a server that changed
        raise DataError(f"{where}: embeddings of different sizes ({', '.join(map(str, sizes))}); rerun with --no-cache "
                        "or another --cache-dir")
    m = np.asarray([r.embedding for r in responses], dtype=np.float64)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return m / np.where(norms == 0, 1.0, norms)


def _top(scores: np.ndarray, ids: list[str], depth: int) -> list[int]:
    """The `depth` best corpus indices in trec_eval's order: score descending, ties by id descending."""
    cut = scores[np.argpartition(-scores, depth - 1)[depth - 1]]
    candidates = np.nonzero(scores >= cut)[0]  # every text tied at the cut competes for its places
    return sorted(candidates.tolist(), key=lambda j: (scores[j], ids[j]), reverse=True)[:depth]


def evaluate_retrieval(task: LoadedTask, backend: Backend, cache: ResponseCache | NullCache, cfg: RunConfig,
                       executor: Executor | None = None) -> TaskResult:
    """Run one retrieval task and write its per-sample log; returns its results.json entry."""
    started = time.time()
    spec: RetrievalSpec = task.spec.retrieval  # type: ignore[assignment]
    if "embed" not in backend.supports:
        raise BackendError(f"{task.path}: a retrieval task needs a backend that embeds text (e.g. sentence-transformers); "
                           f"{backend.name!r} cannot")
    metrics = metrics_for(task)
    samples = load_samples(task, cfg.limits.get(task.spec.name, cfg.limit))
    corpus_ids, corpus_texts, relevant = corpus_and_relevance(task, samples)
    queries = [_text(s, spec.query, str(task.path)) for s in samples]
    requests = [Request(kind="embed", prompt=t) for t in [*queries, *corpus_texts]]
    responses, _keys, stats = run_requests(backend, requests, cache, desc=task.spec.name, progress=cfg.progress,
                                           executor=executor)
    failed = [r.error for r in responses if r.error]
    if failed:
        raise BackendError(f"{task.spec.name}: {len(failed)} embed request(s) failed: {failed[0]}")
    q = _matrix(responses[: len(queries)], task.spec.name)
    c = _matrix(responses[len(queries) :], task.spec.name)
    sims = q @ c.T
    depth = min(spec.depth, len(corpus_ids))
    scored, records = [], []
    for i, sample in enumerate(samples):
        top = _top(sims[i], corpus_ids, depth)
        ids = [corpus_ids[j] for j in top]
        scores = [float(sims[i, j]) for j in top]
        fields = {**sample.fields, "retrieved_ids": ids, "retrieved_scores": scores, "relevant_ids": relevant[i]}
        scored.append(Sample(id=sample.id, fields=fields))
        records.append({"id": sample.id, "query": queries[i], "retrieved_ids": ids[:10],
                        "retrieved_scores": [round(s, 6) for s in scores[:10]], "relevant_ids": relevant[i]})
    metric_json = score_outputs(metrics, scored, [Output() for _ in scored], records, seed=cfg.seed,
                                resamples=cfg.bootstrap_resamples)
    fingerprint: Fingerprint = {"task_file_hash": task.file_hash, "model_identity_hash": _hash(backend.identity()),
                                "harness_version": __version__, "seed": cfg.seed,
                                "sample_ids_hash": _hash([s.id for s in samples])}
    log_path = samples_path(cfg.output, task.spec.name)
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
        "corpus_size": len(corpus_ids),
        "duration_s": round(time.time() - started, 3),
    }
