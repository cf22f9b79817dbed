"""Data parallel runs under an existing launcher: `accelerate launch`, `torchrun` or `mpirun`.

Every rank runs the same `evalharness run` command, builds the same samples and requests, and
splits the same sorted list of batches: rank r computes batches r, r+N, r+2N, ... of each task
(whole batches, so each has the composition it has in a one-process run: the results are the
same whatever N). A rank appends its responses to its shard file as each batch finishes

    OUTPUT/shards/<launch id>/<task>/rank<r>.jsonl    {"k": key, "r": response, "c": cached}
                                                       {"end": kind} after each request kind
                                                       {"failed": message} if the rank broke

and writes them into the response cache. Rank 0 tails the other ranks' files while it works,
merges their responses into its own (and into its cache, so a rerun is free), then scores and
writes results.json and the per-sample logs; the other ranks write nothing else. The shard
files live under a per-launch id (an MPI job id, or a token rank 0 broadcasts over
torch.distributed's gloo), so a stale file from an earlier launch is never read; rank 0 removes
them once the run has finished.

Ranks talk through files: OUTPUT must be on a file system every rank sees (one machine, or a
shared mount across nodes).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from evalharness.backends.base import Backend, run_kind
from evalharness.errors import BackendError, EvalHarnessError
from evalharness.execution.cache import NullCache, ResponseCache
from evalharness.execution.runner import Executor, Piece
from evalharness.types import Request, RequestKind, Response

# (rank, world size, local rank) as each launcher names them; accelerate reads the same ones.
_RANK_VARS = (("RANK", "WORLD_SIZE", "LOCAL_RANK"),
              ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"),
              ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"),
              ("MV2_COMM_WORLD_RANK", "MV2_COMM_WORLD_SIZE", "MV2_COMM_WORLD_LOCAL_RANK"))
_MPI_JOB_VARS = ("PMIX_NAMESPACE", "OMPI_MCA_ess_base_jobid", "PMI_KVSNAME", "MPI_JOBID")
DEFAULT_TIMEOUT_S = 3600.0  # how long rank 0 waits for a rank that writes nothing


@dataclass(frozen=True)
class Launch:
    rank: int
    world: int
    local_rank: int
    launch_id: str


def detect(env: Mapping[str, str] | None = None) -> tuple[int, int, int] | None:
    """(rank, world size, local rank) when a launcher started more than one process, else None."""
    env = os.environ if env is None else env
    for rank_var, size_var, local_var in _RANK_VARS:
        if rank_var in env and size_var in env:
            try:
                rank, world = int(env[rank_var]), int(env[size_var])
                local = int(env.get(local_var, rank))
            except ValueError:
                raise EvalHarnessError(f"launcher environment: {rank_var}/{size_var} are not whole numbers") from None
            if world <= 1:
                return None
            if not 0 <= rank < world:
                raise EvalHarnessError(f"launcher environment: {rank_var}={rank} outside 0..{world - 1}")
            return rank, world, local
    return None


def launch_from_env(env: Mapping[str, str] | None = None) -> Launch | None:
    """The launch this process belongs to, with an id shared by its ranks and no other launch."""
    env = os.environ if env is None else env
    found = detect(env)
    if found is None:
        return None
    rank, world, local = found
    for var in _MPI_JOB_VARS:  # an MPI job id is unique per launch and known to every rank
        if env.get(var):
            return Launch(rank, world, local, "mpi-" + re.sub(r"[^A-Za-z0-9_.-]", "_", env[var]))
    if env.get("MASTER_ADDR") and env.get("MASTER_PORT"):
        return Launch(rank, world, local, _broadcast_token(rank, world))
    raise EvalHarnessError(
        "launcher environment: WORLD_SIZE > 1 but neither MASTER_ADDR/MASTER_PORT (torchrun, accelerate) "
        "nor an MPI job id is set, so the ranks cannot agree on a run; start evalharness with accelerate "
        "launch, torchrun or mpirun")


def _broadcast_token(rank: int, world: int) -> str:
    """Rank 0 draws a token and sends it to every rank over torch.distributed (gloo, TCP)."""
    from datetime import timedelta

    try:
        import torch.distributed as dist
    except ImportError:
        raise EvalHarnessError("a torchrun/accelerate launch needs torch (pip install 'evalharness[hf]')") from None
    created = not dist.is_initialized()
    if created:
        dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(minutes=10))
    try:
        box = [secrets.token_hex(8) if rank == 0 else ""]
        dist.broadcast_object_list(box, src=0)
        return "run-" + str(box[0])
    finally:
        if created:
            dist.destroy_process_group()


def local_device(model_args: dict[str, Any], launch: Launch) -> dict[str, Any]:
    """`device=cuda` (or auto on a GPU machine) becomes this rank's own GPU, cuda:LOCAL_RANK."""
    device = str(model_args.get("device", "")).lower()
    if device == "cuda" or (device == "auto" and _has_cuda()):
        return {**model_args, "device": f"cuda:{launch.local_rank}"}
    return model_args


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


@dataclass
class _Tail:
    """Reads whole lines a rank has appended to its shard file since the last read."""

    path: Path
    offset: int = 0
    ended: set[str] = field(default_factory=set)
    last_seen: float = field(default_factory=time.monotonic)

    def read(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        self.last_seen = time.monotonic()
        return [json.loads(line) for line in data[: end + 1].splitlines() if line.strip()]


class ShardedExecutor(Executor):
    """The launcher executor: this rank's batches here, the other ranks' through their files."""

    name = "launcher"
    full_basis = True

    def __init__(self, launch: Launch, output: Path, *, timeout_s: float | None = None, poll_s: float = 0.1) -> None:
        self.launch = launch
        self.root = Path(output) / "shards" / launch.launch_id
        self.timeout_s = float(os.environ.get("EVALHARNESS_SHARD_TIMEOUT", timeout_s or DEFAULT_TIMEOUT_S))
        self.poll_s = poll_s
        self.task = "requests"
        self.counter = 0  # batches seen so far in this task, across request kinds
        self._fh: IO[str] | None = None
        self._tails: dict[int, _Tail] = {}
        self.computed_here = 0

    @property
    def is_main(self) -> bool:
        return self.launch.rank == 0

    def begin_task(self, task: str) -> None:
        self.close()
        self.task, self.counter = task, 0
        folder = self.root / _safe(task)
        folder.mkdir(parents=True, exist_ok=True)
        mine = folder / f"rank{self.launch.rank}.jsonl"
        self._fh = mine.open("w", encoding="utf-8")
        self._tails = {r: _Tail(folder / f"rank{r}.jsonl") for r in range(1, self.launch.world)} if self.is_main else {}

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def fail(self, message: str) -> None:
        """Tell rank 0 this rank broke, so it stops waiting and says why."""
        if self._fh is not None:
            self._write({"failed": message})

    def finish(self) -> None:
        """Rank 0, after a successful run: the shard files have been merged."""
        self.close()
        if self.is_main:
            shutil.rmtree(self.root, ignore_errors=True)
            try:
                self.root.parent.rmdir()
            except OSError:
                pass

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "world_size": self.launch.world, "launch_id": self.launch.launch_id}

    def _write(self, rec: dict[str, Any]) -> None:
        assert self._fh is not None, "begin_task() first"
        self._fh.write(json.dumps(rec) + "\n")
        self._fh.flush()

    def run(
        self, backend: Backend, kind: RequestKind, chunks: list[list[str]], by_key: dict[str, Request],
        cache: ResponseCache | NullCache, done: dict[str, Response],
    ) -> Iterator[Piece]:
        first, self.counter = self.counter, self.counter + len(chunks)
        for i, chunk in enumerate(chunks):
            if (first + i) % self.launch.world != self.launch.rank:
                continue
            yield from self._compute(backend, kind, chunk, by_key, cache, done)
            yield from self._gather()
        self._write({"end": kind})
        if self.is_main:
            yield from self._wait_for(kind)

    def _compute(
        self, backend: Backend, kind: RequestKind, chunk: list[str], by_key: dict[str, Request],
        cache: ResponseCache | NullCache, done: dict[str, Response],
    ) -> Iterator[Piece]:
        known = {k: done[k] for k in chunk if k in done}
        known.update(cache.get_many([k for k in chunk if k not in known]))
        if known:
            ks = list(known)
            self._write_responses(ks, [known[k] for k in ks], cached=True)
            yield Piece(ks, [known[k] for k in ks], cached=True)
        todo = [k for k in chunk if k not in known]
        if todo:  # a batch with cached members runs smaller; uncached runs keep a 1-process shape
            responses = run_kind(backend, kind, [by_key[k] for k in todo])
            self._write_responses(todo, responses, cached=False)
            self.computed_here += len(todo)
            yield Piece(todo, responses)

    def _write_responses(self, keys: list[str], responses: list[Response], cached: bool) -> None:
        assert self._fh is not None, "begin_task() first"
        self._fh.write("".join(json.dumps({"k": k, "r": r.to_json(), "c": cached}) + "\n"
                               for k, r in zip(keys, responses, strict=True)))
        self._fh.flush()

    def _gather(self) -> Iterator[Piece]:
        """Rank 0: the responses other ranks have written since the last look."""
        for rank, tail in self._tails.items():
            fresh: dict[bool, list[tuple[str, Response]]] = {True: [], False: []}
            for rec in tail.read():
                if "failed" in rec:
                    raise BackendError(f"rank {rank} failed: {rec['failed']}")
                if "end" in rec:
                    tail.ended.add(str(rec["end"]))
                    continue
                fresh[bool(rec.get("c"))].append((str(rec["k"]), Response.from_json(rec["r"])))
            for cached, items in fresh.items():
                if items:
                    yield Piece([k for k, _ in items], [r for _, r in items], cached=cached)

    def _wait_for(self, kind: str) -> Iterator[Piece]:
        """Rank 0: every other rank's responses of this kind, as they land."""
        while True:
            yield from self._gather()
            waiting = [r for r, t in self._tails.items() if kind not in t.ended]
            if not waiting:
                return
            stale = [r for r in waiting if time.monotonic() - self._tails[r].last_seen > self.timeout_s]
            if stale:
                raise BackendError(f"rank(s) {stale} wrote nothing for {self.timeout_s:.0f} s "
                                   f"({self.task}, {kind}); a rank died? (EVALHARNESS_SHARD_TIMEOUT sets the wait)")
            time.sleep(self.poll_s)
