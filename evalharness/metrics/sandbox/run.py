"""Running programs: the bubblewrap path (judge + worker, verdict by nonce) or the opt-in unsafe path."""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from evalharness.metrics.sandbox.isolation import (
    Isolation,
    Limits,
    RunResult,
    Status,
    _bwrap_args,
    _bwrap_path,
    _python,
    _site_dirs,
    require_isolation,
)
from evalharness.metrics.sandbox.judge import _STUB, _judge_code
from evalharness.metrics.sandbox.unsafe import _run_unsafe, _wait_then_kill


def _memfd(name: str, data: bytes = b"") -> int:
    fd = os.memfd_create(f"evalharness-{name}")
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _read_fd(fd: int, limit: int) -> str:
    data = os.pread(fd, limit + 1, 0)
    text = data[:limit].decode("utf-8", errors="replace")
    return text + "\n[... truncated]" if len(data) > limit else text


def _run_isolated(program: str, tests: str, limits: Limits, under_test: Sequence[str] = ()) -> RunResult:
    bwrap = _bwrap_path()
    assert bwrap is not None
    nonce = secrets.token_hex(16)
    fds = [_memfd("judge-code", _judge_code()), _memfd("program", program.encode("utf-8", "surrogateescape")),
           _memfd("tests", f"{nonce}\n{','.join(under_test)}\n{tests}".encode("utf-8", "surrogateescape")),
           _memfd("stdout"), _memfd("stderr"), _memfd("judge")]
    code_fd, prog_fd, tests_fd, out_fd, err_fd, log_fd = fds
    verdict_r, verdict_w = os.pipe()
    argv = [
        bwrap, *_bwrap_args(limits), _python(), "-I", "-S", "-B", "-c", _STUB, str(code_fd), os.pathsep.join(_site_dirs()),
        str(prog_fd), str(tests_fd), str(verdict_w), str(log_fd), str(limits.memory_mb * 1024 * 1024),
        str(limits.file_size_mb * 1024 * 1024), str(int(limits.timeout) + 2), str(limits.processes),
    ]
    started = time.perf_counter()
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out_fd, stderr=err_fd, env={},
                                pass_fds=(code_fd, prog_fd, tests_fd, verdict_w, log_fd), start_new_session=True)
        os.close(verdict_w)
        verdict_w = -1
        timed_out = _wait_then_kill(proc, limits.timeout)  # bwrap's session; --die-with-parent takes the namespace along
        duration = time.perf_counter() - started
        os.set_blocking(verdict_r, False)
        try:
            verdict = os.read(verdict_r, 64)
        except BlockingIOError:
            verdict = b""
        stdout = _read_fd(out_fd, limits.output_bytes)
        stderr = _read_fd(err_fd, limits.output_bytes) + _read_fd(log_fd, limits.output_bytes)
    finally:
        for fd in (*fds, verdict_r, verdict_w):
            if fd >= 0:
                os.close(fd)
    rc = proc.returncode
    if timed_out:
        status: Status = "timeout"
    elif rc == 0 and verdict == f"pass {nonce}\n".encode():
        status = "passed"
    else:
        status = "failed"
    return RunResult(status, None if timed_out else rc, stdout, stderr, round(duration, 4))


def run_program(code: str, limits: Limits = Limits(), *, tests: str | None = None, under_test: Sequence[str] = (),
                isolation: Isolation | None = None, guard: bool = True, netns: bool | None = None) -> RunResult:
    """Run Python source under `limits`; never raises for the program's faults.

    With `tests`, the program is the untrusted part and the tests are judged apart from it (the
    verdict cannot be forged on the bwrap path: see `judge.py`). Without, the whole source is the
    program and `passed` means it ran to its end, which a program can fake about itself. The tests
    see the real builtins even where the program defines a name like `abs` or `sum`, except the
    names in `under_test` (the function under test, when it is called `sum`).
    `isolation=None` uses bwrap when available, else the unsafe path if the user opted in, else
    raises `IsolationUnavailable`. `guard` and `netns` tune the unsafe path only (tests that show
    each of its protections on its own).
    """
    mode = isolation or require_isolation()
    if mode == "bwrap":
        return _run_isolated(code, tests or "", limits, under_test)
    return _run_unsafe(code if tests is None else code + "\n" + tests, limits, guard, netns)


def run_programs(codes: Sequence[str], limits: Limits = Limits(), workers: int | None = None, *,
                 tests: Sequence[str] | None = None, under_test: Sequence[Sequence[str]] | None = None) -> list[RunResult]:
    """Run many programs, `workers` at a time (default: one per CPU core), results in input order.

    `tests[i]`, when given, is judged apart from `codes[i]`, with `under_test[i]` (see `run_program`).
    """
    if not codes:
        return []
    if tests is not None and len(tests) != len(codes):
        raise ValueError(f"run_programs: {len(codes)} programs but {len(tests)} tests")
    mode = require_isolation()
    names = under_test if under_test is not None else [()] * len(codes)
    jobs = list(zip(codes, tests if tests is not None else [None] * len(codes), names, strict=True))

    def one(job: tuple[str, str | None, Sequence[str]]) -> RunResult:
        return run_program(job[0], limits, tests=job[1], under_test=job[2], isolation=mode)

    workers = max(1, workers or os.cpu_count() or 1)
    if workers == 1 or len(codes) == 1:
        return [one(j) for j in jobs]
    with ThreadPoolExecutor(max_workers=min(workers, len(codes))) as pool:
        return list(pool.map(one, jobs))
