"""The opt-in path without OS isolation (`--allow-unsafe-code-execution`): a subprocess with rlimits,
a network namespace where `unshare` allows one, and a PEP 578 audit hook; it stops accidents, not attackers."""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from evalharness.metrics.sandbox.isolation import Limits, RunResult, Status

_UNSAFE_BOOTSTRAP = r"""
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


def _wait_then_kill(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait up to `timeout` s, then SIGKILL the child's whole session, on success as well; True if it timed out."""
    try:
        proc.wait(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        timed_out = True
    _kill_group(proc)
    return timed_out


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the child leads its session: this takes its descendants too
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _run_unsafe(code: str, limits: Limits, guard: bool, netns: bool | None) -> RunResult:
    """The opt-in path without OS isolation: a subprocess in a fresh temporary directory, rlimits, an audit hook."""
    use_netns = network_isolation() == "netns" if netns is None else netns
    root = Path(tempfile.mkdtemp(prefix="evalharness-sandbox-"))
    try:
        prog = root / "program.py"
        prog.write_text(code, encoding="utf-8")
        done_r, done_w = os.pipe()
        argv = [
            sys.executable, "-I", "-B", "-c", _UNSAFE_BOOTSTRAP, str(prog), str(root),
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
                timed_out = _wait_then_kill(proc, limits.timeout)
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
