"""Distributed runs (issue 11): launcher ranks (torchrun, accelerate launch + mpirun) and the Ray
executor give the same results files as one process, on the embedded model and with fresh
computations (--no-cache); a Ray worker killed mid-run has its shard redone elsewhere."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from evalharness.backends.fake import FakeBackend
from evalharness.errors import BackendError, EvalHarnessError
from evalharness.execution.cache import NullCache
from evalharness.execution.launcher import Launch, ShardedExecutor, detect, launch_from_env
from evalharness.execution.runner import compute_requests, run_requests
from evalharness.types import GenParams, Request

BIN = Path(sys.executable).parent
TASKS = "arc_easy,squad,lambada_ppl"
LIMITS = "arc_easy=16,squad=3,lambada_ppl=8"


# ---- which rank am I -------------------------------------------------------------------------
def test_detect_reads_each_launchers_variables() -> None:
    assert detect({}) is None
    assert detect({"RANK": "0", "WORLD_SIZE": "1"}) is None  # one process: nothing to shard
    assert detect({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == (1, 4, 1)
    assert detect({"OMPI_COMM_WORLD_RANK": "2", "OMPI_COMM_WORLD_SIZE": "3", "OMPI_COMM_WORLD_LOCAL_RANK": "0"}) == (2, 3, 0)
    assert detect({"PMI_RANK": "1", "PMI_SIZE": "2"}) == (1, 2, 1)
    with pytest.raises(EvalHarnessError, match="outside"):
        detect({"RANK": "5", "WORLD_SIZE": "2"})
    with pytest.raises(EvalHarnessError, match="whole numbers"):
        detect({"RANK": "x", "WORLD_SIZE": "2"})


def test_launch_id_comes_from_the_mpi_job_or_fails_clearly() -> None:
    env = {"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2", "PMIX_NAMESPACE": "job/7@1"}
    launch = launch_from_env(env)
    assert launch == Launch(1, 2, 1, "mpi-job_7_1")
    with pytest.raises(EvalHarnessError, match="MASTER_ADDR"):
        launch_from_env({"RANK": "0", "WORLD_SIZE": "2"})


# ---- the shard protocol, two ranks as threads of one process ----------------------------------
def _requests(n: int) -> list[Request]:
    return [Request(kind="generate", prompt=f"question {i} " + "x" * (i % 7), gen=GenParams(max_tokens=4)) for i in range(n)]


def _rank(rank: int, out: Path, backend: FakeBackend, reqs: list[Request], box: dict[int, Any], launch_id: str = "t") -> None:
    ex = ShardedExecutor(Launch(rank, 2, rank, launch_id), out, timeout_s=20, poll_s=0.01)
    ex.begin_task("task")
    try:
        if rank == 0:
            box[rank] = run_requests(backend, reqs, NullCache(), progress=False, executor=ex)
        else:
            box[rank] = compute_requests(backend, reqs, NullCache(), progress=False, executor=ex)
    except BaseException as exc:  # noqa: BLE001 - the test reads it
        ex.fail(f"{type(exc).__name__}: {exc}")
        box[rank] = exc
    finally:
        ex.close()


def test_two_ranks_split_the_batches_and_rank0_gets_every_response(tmp_path: Path) -> None:
    reqs = _requests(37)
    local, _, _ = run_requests(FakeBackend(batch_size=4), reqs, NullCache(), progress=False)
    traced = [FakeBackend(batch_size=4, trace=str(tmp_path / f"trace{r}.jsonl")) for r in (0, 1)]
    box: dict[int, Any] = {}
    threads = [threading.Thread(target=_rank, args=(r, tmp_path, traced[r], reqs, box)) for r in (1, 0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    responses, _, stats = box[0]
    assert [r.text for r in responses] == [r.text for r in local]
    own = {r: sum(1 for _ in (tmp_path / f"trace{r}.jsonl").open()) for r in (0, 1)}
    assert own[0] > 0 and own[1] > 0  # both ranks computed, neither computed it all
    done1, _, _ = box[1]
    assert 0 < len(done1) < len(reqs)
    assert stats.computed == len(reqs)


def test_a_failed_rank_stops_rank0_with_its_error(tmp_path: Path) -> None:
    reqs = _requests(20)
    box: dict[int, Any] = {}
    threads = [threading.Thread(target=_rank, args=(1, tmp_path, FakeBackend(batch_size=4, fail=True), reqs, box)),
               threading.Thread(target=_rank, args=(0, tmp_path, FakeBackend(batch_size=4), reqs, box))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert isinstance(box[0], BackendError) and "rank 1 failed" in str(box[0])


def test_a_silent_rank_times_out_and_a_stale_launch_is_never_read(tmp_path: Path) -> None:
    reqs = _requests(12)
    # A finished shard of another launch lies there: rank 0 of this launch must not take it.
    old: dict[int, Any] = {}
    _rank(1, tmp_path, FakeBackend(batch_size=4), reqs, old, launch_id="old")
    ex = ShardedExecutor(Launch(0, 2, 0, "new"), tmp_path, timeout_s=0.3, poll_s=0.01)
    ex.begin_task("task")
    with pytest.raises(BackendError, match=r"rank\(s\) \[1\] wrote nothing"):
        run_requests(FakeBackend(batch_size=4), reqs, NullCache(), progress=False, executor=ex)


# ---- real launches on the embedded model -------------------------------------------------------
def _env() -> dict[str, str]:
    # One torch thread in every process: launcher ranks and 1-CPU Ray workers run so by default, and
    # float32 sums on the CPU depend on how many threads split them (the last bits of a
    # log-likelihood move, ~1e-7 relative), which is torch's doing, not the sharding's.
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", PYTHONUNBUFFERED="1",
               OMP_NUM_THREADS="1")
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return env


def _run_args(out: Path, *extra: str) -> list[str]:
    return ["run", "--tasks", TASKS, "--limits", LIMITS, "--batch-size", "2", "--output", str(out),
            "--no-progress", *extra]


def _check(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _comparable(run_dir: Path) -> dict[str, Any]:
    """What must not depend on how the work was spread: metrics and every per-sample record."""
    res = json.loads((run_dir / "results.json").read_text())
    out: dict[str, Any] = {}
    for name, task in res["tasks"].items():
        usage = task["usage"]
        out[name] = {"metrics": task["metrics"], "n": task["n_samples"], "failed": task["n_failed"],
                     "computed_tokens": (usage.get("computed_prompt_tokens"), usage.get("computed_completion_tokens")),
                     "samples": [json.loads(line) for line in (run_dir / task["samples_file"]).read_text().splitlines()]}
    return out


@pytest.fixture(scope="module")
def one_process(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("one") / "run"
    _check(subprocess.run([str(BIN / "evalharness"), *_run_args(out, "--no-cache")], env=_env(),
                          capture_output=True, text=True, timeout=900))
    return _comparable(out)


def test_torchrun_two_ranks_equal_one_process(tmp_path: Path, one_process: dict[str, Any]) -> None:
    out = tmp_path / "run"
    proc = subprocess.run([str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", str(BIN / "evalharness"),
                           *_run_args(out, "--no-cache")], env=_env(), capture_output=True, text=True, timeout=900)
    _check(proc)
    assert "rank 1/2: computed" in proc.stdout
    assert _comparable(out) == one_process
    res = json.loads((out / "results.json").read_text())
    assert res["executor"]["name"] == "launcher" and res["executor"]["world_size"] == 2
    assert not (out / "shards").exists()  # merged, then removed


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="accelerate's multi-CPU launch needs mpirun (apt install openmpi-bin)")
def test_accelerate_launch_two_cpu_processes_equal_one_process(tmp_path: Path, one_process: dict[str, Any]) -> None:
    # accelerate runs N CPU processes through mpirun and a hostfile; without one it starts one process.
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("localhost slots=2\n")
    out = tmp_path / "run"
    proc = subprocess.run([str(BIN / "accelerate"), "launch", "--num_processes", "2", "--cpu", "--num_machines", "1",
                           "--mixed_precision", "no", "--dynamo_backend", "no", "--mpirun_hostfile", str(hostfile),
                           str(BIN / "evalharness"), *_run_args(out, "--no-cache")],
                          env=_env(), capture_output=True, text=True, timeout=900)
    _check(proc)
    assert "rank 1/2: computed" in proc.stdout
    assert _comparable(out) == one_process
    assert json.loads((out / "results.json").read_text())["executor"]["launch_id"].startswith("mpi-")


# ---- Ray: a local cluster, head and two worker nodes on loopback ------------------------------
@pytest.fixture(scope="module")
def ray_cluster() -> Any:
    pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        yield cluster.address
    finally:
        cluster.shutdown()


def test_ray_cluster_run_equals_local_and_a_rerun_is_free(tmp_path: Path, ray_cluster: str, one_process: dict[str, Any]) -> None:
    out, cache = tmp_path / "run", tmp_path / "cache"
    proc = subprocess.run([str(BIN / "evalharness"), *_run_args(out, "--executor", "ray", "--ray-address", ray_cluster,
                                                              "--cache-dir", str(cache))],
                          env=_env(), capture_output=True, text=True, timeout=900)
    _check(proc)
    assert _comparable(out) == one_process
    res = json.loads((out / "results.json").read_text())
    assert res["executor"]["name"] == "ray" and res["executor"]["workers"] == 2  # one per worker node
    # The workers' answers were merged into the driver's cache: the rerun computes nothing.
    again = tmp_path / "again"
    _check(subprocess.run([str(BIN / "evalharness"), *_run_args(again, "--executor", "ray", "--ray-address", ray_cluster,
                                                                "--cache-dir", str(cache))],
                          env=_env(), capture_output=True, text=True, timeout=600))
    res2 = json.loads((again / "results.json").read_text())
    assert all(t["usage"]["computed_prompt_tokens"] == 0 for t in res2["tasks"].values())
    assert "executor" in res2 and res2["executor"]["workers"] == 0  # no replica was even started


def test_ray_worker_killed_mid_run_has_its_shard_redone(tmp_path: Path, ray_cluster: str, one_process: dict[str, Any]) -> None:
    out = tmp_path / "run"
    events = out / "executor.jsonl"
    log = out / "samples" / "arc_easy.jsonl"
    cmd = [str(BIN / "evalharness"), *_run_args(out, "--executor", "ray", "--ray-address", ray_cluster, "--no-cache")]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim = None
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        started = [json.loads(x) for x in events.read_text().splitlines()] if events.exists() else []
        pids = [e["pid"] for e in started if e["event"] == "worker_started"]
        if len(pids) == 2 and log.exists() and log.read_text().count("\n") >= 1:
            victim = pids[0]
            os.kill(victim, signal.SIGKILL)  # mid-run: one shard has streamed back, more are to come
            break
        time.sleep(0.05)
    stdout, stderr = proc.communicate(timeout=900)
    assert victim is not None, "the run ended before a worker could be killed"
    assert proc.returncode == 0, stdout[-2000:] + stderr[-2000:]
    recorded = [json.loads(x) for x in events.read_text().splitlines()]
    assert any(e["event"] == "worker_lost" for e in recorded)
    res = json.loads((out / "results.json").read_text())
    assert res["executor"]["retried_shards"] >= 1 and res["executor"]["lost_workers"] >= 1
    # Nothing lost (every sample scored, same metrics) and nothing duplicated (same tokens computed).
    assert _comparable(out) == one_process
    ids = [json.loads(line)["id"] for line in log.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 16
