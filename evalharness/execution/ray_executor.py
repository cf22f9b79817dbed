"""`--executor ray`: a task's batches computed by model replicas on a Ray cluster.

The driver (the `evalharness run` process) builds every request, looks up the cache and sorts
what is left into the same batches a local run would make. It starts one Ray actor per worker,
each holding one replica of the model (its GPUs, `gpus_per_replica` of the backend or one, when the cluster has GPUs, else
`cpus_per_worker` CPUs, spread over the nodes), and hands each idle actor the next shard (a few
batches). Each finished shard comes straight back to the driver, which writes it into the
response cache and the per-sample log before anything else: a rerun is free, and a crash loses
only the shards in flight. When an actor dies (its process or node killed, out of memory) its
shard goes back to the queue for another worker, a replacement actor is started, and the run
goes on; a shard that kills `max_retries` workers in a row ends the run with its error. An error
the model itself raises (a bad request) is not retried: it ends the run at once, as locally.

Every worker checks that its model has the driver's identity (same weights fingerprint,
revision, dtype...), so the cache keys the driver computed stay true. Workers need evalharness
and the model on their node; the driver passes them its offline settings (HF_HUB_OFFLINE,
HF_DATASETS_OFFLINE, EVALHARNESS_HOME), never an API key. Events (workers started, shards
retried, workers lost) go to `executor.jsonl` in the run directory.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from evalharness.backends.base import Backend
from evalharness.errors import BackendError, EvalHarnessError
from evalharness.execution.cache import NullCache, ResponseCache
from evalharness.execution.runner import Executor, Piece
from evalharness.types import Request, RequestKind, Response

PASSED_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "EVALHARNESS_HOME", "TOKENIZERS_PARALLELISM", "HF_HOME")


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise EvalHarnessError("--executor ray needs Ray: pip install 'evalharness[distributed]'") from None
    return ray


class _Worker:
    """One model replica (the body of the Ray actor class)."""

    def __init__(self, model: str, model_args: dict[str, Any]) -> None:
        from evalharness.backends.base import load_backend

        self.backend = load_backend(model, model_args)

    def info(self) -> dict[str, Any]:
        import socket

        return {"pid": os.getpid(), "host": socket.gethostname(), "identity": self.backend.identity()}

    def compute(self, kind: RequestKind, batches: list[list[Request]]) -> list[list[Response]]:
        from evalharness.backends.base import run_kind

        return [run_kind(self.backend, kind, batch) for batch in batches]


class RayExecutor(Executor):
    """Shards batches over Ray actors; see the module docstring."""

    name = "ray"
    full_basis = False

    def __init__(
        self,
        model: str,
        model_args: dict[str, Any],
        *,
        address: str | None = None,
        workers: int | None = None,
        cpus_per_worker: float = 1.0,
        batches_per_shard: int = 1,
        max_retries: int = 3,
        log_path: Path | None = None,
    ) -> None:
        if workers is not None and workers < 1:
            raise EvalHarnessError(f"--ray-workers must be at least 1, got {workers}")
        self.model, self.model_args = model, dict(model_args)
        self.address, self.workers = address, workers
        self.cpus_per_worker, self.batches_per_shard = cpus_per_worker, max(1, batches_per_shard)
        self.max_retries = max_retries
        self.log_path = log_path
        self.identity: dict[str, Any] | None = None
        self._actors: list[Any] = []
        self._started_ray = False
        self._actor_cls: Any = None
        self._gpus = 0.0
        self.gpus_per_replica = 1
        self.stats = {"workers": 0, "shards": 0, "retried_shards": 0, "lost_workers": 0}

    # ---- cluster -------------------------------------------------------------------------------
    def _log(self, event: str, **fields: Any) -> None:
        if self.log_path is None:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"t": round(time.time(), 3), "event": event, **fields}) + "\n")

    def _connect(self) -> None:
        ray = _ray()
        if not ray.is_initialized():
            env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                         configure_logging=False, runtime_env={"env_vars": env})
            except (ConnectionError, ValueError, RuntimeError) as exc:
                where = self.address or "a new local cluster"
                raise EvalHarnessError(f"--executor ray: cannot connect to {where}: {exc}") from None
            self._started_ray = True
        resources = ray.cluster_resources()
        self._gpus = float(resources.get("GPU", 0.0))
        self._actor_cls = ray.remote(max_restarts=0, max_task_retries=0)(_Worker)

    def _default_workers(self) -> int:
        """One per GPU on a GPU cluster, else one per node with CPUs to spare."""
        ray = _ray()
        if self._gpus >= 1:
            return max(1, int(self._gpus // self.gpus_per_replica))
        nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) >= self.cpus_per_worker]
        return max(1, len(nodes))

    def _new_actor(self) -> Any:
        opts: dict[str, Any] = {"scheduling_strategy": "SPREAD"}
        if self._gpus >= 1:  # a replica may span GPUs (vllm with tensor/pipeline parallelism)
            opts.update(num_gpus=self.gpus_per_replica, num_cpus=self.cpus_per_worker)
        else:
            opts.update(num_cpus=self.cpus_per_worker)
        actor = self._actor_cls.options(**opts).remote(self.model, self.model_args)
        self.stats["workers"] += 1
        return actor

    def _check(self, actor: Any) -> None:
        ray = _ray()
        from ray.exceptions import RayActorError, RayTaskError

        try:
            info = ray.get(actor.info.remote())
        except (RayTaskError, RayActorError) as exc:
            cause = exc.as_instanceof_cause() if isinstance(exc, RayTaskError) else exc  # type: ignore[no-untyped-call]
            raise BackendError(f"ray worker could not load {self.model!r}: {type(cause).__name__}: {cause}") from None
        if self.identity is not None and info["identity"] != self.identity:
            raise BackendError(f"ray worker on {info['host']} has a different model than the driver: "
                               f"{info['identity']} vs {self.identity}")
        self._log("worker_started", pid=info["pid"], host=info["host"])

    def _ensure_actors(self, backend: Backend) -> None:
        if self._actors:
            return
        self.identity = backend.identity()
        self.gpus_per_replica = max(1, int(backend.gpus_per_replica or 1))
        self._connect()
        n = self.workers or self._default_workers()
        self._actors = [self._new_actor() for _ in range(n)]
        for actor in self._actors:
            self._check(actor)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, **self.stats}

    def close(self) -> None:
        if not self._actors and not self._started_ray:
            return
        ray = _ray()
        for actor in self._actors:
            try:
                ray.kill(actor)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self._actors = []
        if self._started_ray and ray.is_initialized():
            ray.shutdown()
            self._started_ray = False

    # ---- work ----------------------------------------------------------------------------------
    def run(
        self, backend: Backend, kind: RequestKind, chunks: list[list[str]], by_key: dict[str, Request],
        cache: ResponseCache | NullCache, done: dict[str, Response],
    ) -> Iterator[Piece]:
        ray = _ray()
        from ray.exceptions import RayActorError, RayTaskError, WorkerCrashedError

        self._ensure_actors(backend)
        per = self.batches_per_shard
        queue: deque[tuple[int, list[list[str]]]] = deque(
            (i, chunks[start : start + per]) for i, start in enumerate(range(0, len(chunks), per)))
        self.stats["shards"] += len(queue)
        failures: dict[int, int] = {}
        idle = list(self._actors)
        inflight: dict[Any, tuple[int, list[list[str]], Any]] = {}
        while queue or inflight:
            while queue and idle:
                actor = idle.pop()
                sid, shard = queue.popleft()
                ref = actor.compute.remote(kind, [[by_key[k] for k in chunk] for chunk in shard])
                inflight[ref] = (sid, shard, actor)
            ready, _ = ray.wait(list(inflight), num_returns=1)
            sid, shard, actor = inflight.pop(ready[0])
            try:
                out = ray.get(ready[0])
            except RayTaskError as exc:  # the model raised: not the worker's fault, so no retry
                cause = exc.as_instanceof_cause()  # type: ignore[no-untyped-call]
                raise BackendError(f"ray worker: {type(cause).__name__}: {cause}") from None
            except (RayActorError, WorkerCrashedError) as exc:
                failures[sid] = failures.get(sid, 0) + 1
                self.stats["lost_workers"] += 1
                self.stats["retried_shards"] += 1
                self._log("worker_lost", shard=sid, attempt=failures[sid], error=type(exc).__name__)
                if failures[sid] > self.max_retries:
                    raise BackendError(f"ray: shard {sid} lost {failures[sid]} workers in a row; giving up") from None
                self._actors = [a for a in self._actors if a is not actor]
                replacement = self._new_actor()
                self._actors.append(replacement)
                self._check(replacement)
                idle.append(replacement)
                queue.appendleft((sid, shard))
                continue
            idle.append(actor)
            for keys, responses in zip(shard, out, strict=True):
                yield Piece(keys, responses)
