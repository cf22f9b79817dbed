"""What the sandbox runs under: limits, the result type, whether bubblewrap works here, its arguments."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from typing import Literal

from evalharness.errors import UsageError

Status = Literal["passed", "failed", "timeout"]
Isolation = Literal["bwrap", "unsafe"]
UNSAFE_ENV = "EVALHARNESS_ALLOW_UNSAFE_CODE"


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed run."""

    timeout: float = 3.0  # wall-clock seconds, including interpreter start-up (~20 ms)
    memory_mb: int = 1024  # address space; Python itself maps ~30 MB at start
    file_size_mb: int = 16  # largest file (stdout/stderr included) the program may write
    output_bytes: int = 8192  # how much of stdout/stderr is kept in the result
    disk_mb: int = 32  # size of the private writable tmpfs (isolated runs)
    processes: int = 16  # RLIMIT_NPROC inside the sandbox's user namespace (isolated runs)


@dataclass(frozen=True)
class RunResult:
    """How one program ended. `passed` means its tests ran to their end in the judge (see `judge.py`)."""

    status: Status
    returncode: int | None
    stdout: str
    stderr: str
    duration_s: float

    @property
    def passed(self) -> bool:
        return self.status == "passed"


class IsolationUnavailable(UsageError):
    """No OS-level sandbox on this machine and no explicit opt-in to run generated code without one."""


def unsafe_allowed() -> bool:
    """True when the user opted in to running generated code without OS-level isolation."""
    return os.environ.get(UNSAFE_ENV, "").strip().lower() in {"1", "true", "yes"}


def _bwrap_path() -> str | None:
    name = os.environ.get("EVALHARNESS_BWRAP", "bwrap")  # "" or a missing path: as if not installed
    return shutil.which(name) if name else None


@functools.lru_cache(maxsize=4)
def _probe(bwrap: str) -> str:
    """'' if bwrap can build the sandbox here, else why not (one line)."""
    try:
        proc = subprocess.run([bwrap, *_bwrap_args(Limits()), _python(), "-I", "-S", "-c", "pass"],
                              capture_output=True, timeout=30, env={})
    except (OSError, subprocess.SubprocessError) as exc:
        return str(exc)
    return "" if proc.returncode == 0 else (proc.stderr.decode(errors="replace").strip().splitlines() or ["failed"])[-1]


def isolation() -> str | None:
    """'bwrap' when programs can run isolated on this machine, else None."""
    if not sys.platform.startswith("linux"):
        return None
    bwrap = _bwrap_path()
    return "bwrap" if bwrap and not _probe(bwrap) else None


def require_isolation() -> Isolation:
    """The isolation runs will get: 'bwrap', or 'unsafe' if opted in; else IsolationUnavailable (one line)."""
    if isolation() == "bwrap":
        return "bwrap"
    if unsafe_allowed():
        return "unsafe"
    bwrap = _bwrap_path()
    why = ("this OS has no Linux namespaces" if not sys.platform.startswith("linux")
           else "bubblewrap (bwrap) is not installed" if not bwrap else f"bwrap cannot create a sandbox here ({_probe(bwrap)})")
    raise IsolationUnavailable(
        f"pass@k runs model-written code and {why}: install bubblewrap (apt-get install bubblewrap; user namespaces "
        f"must be enabled), or accept the risk with --allow-unsafe-code-execution or {UNSAFE_ENV}=1")


def _python() -> str:
    return os.path.realpath(sys.executable)


def _site_dirs() -> list[str]:
    paths = sysconfig.get_paths()
    seen: list[str] = []
    for key in ("purelib", "platlib"):
        p = os.path.realpath(paths[key])
        if os.path.isdir(p) and p not in seen:
            seen.append(p)
    return seen


@functools.lru_cache(maxsize=1)
def _ro_mounts() -> tuple[str, ...]:
    """The read-only view: /usr (with the /bin, /lib, /lib64 links), the interpreter, its site-packages."""
    args: list[str] = ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/lib", "/lib64", "/sbin"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    prefix = os.path.realpath(sys.base_prefix)
    exe = _python()
    roots = [] if prefix.startswith("/usr/") or prefix == "/usr" else [prefix]
    if not exe.startswith(tuple(r + "/" for r in ["/usr", *roots])):
        roots.append(exe)
    roots += [p for p in _site_dirs() if not p.startswith(tuple(r + "/" for r in ["/usr", *roots]))]
    for r in roots:
        args += ["--ro-bind", r, r]
    return tuple(args)


def _bwrap_args(limits: Limits) -> list[str]:
    return [
        "--unshare-all", "--unshare-user", "--uid", "65534", "--gid", "65534", "--disable-userns",
        "--die-with-parent", "--new-session", "--cap-drop", "ALL",
        *_ro_mounts(), "--proc", "/proc", "--dev", "/dev",
        "--size", str(limits.disk_mb * 1024 * 1024), "--tmpfs", "/tmp", "--chdir", "/tmp",
        "--clearenv", "--setenv", "HOME", "/tmp", "--setenv", "TMPDIR", "/tmp", "--setenv", "LANG", "C.UTF-8",
        "--setenv", "PATH", "/usr/bin:/bin", "--",
    ]


# The isolated run, inside bwrap (python -I -S -B -c _JUDGE). The process that starts is the
# judge: trusted code that never runs the program. Before reading the tests it makes itself
# non-dumpable (so nothing of the same uid can ptrace it, read its memory or open its
# /proc/PID/fd), reads the program and forks the worker. The worker closes every descriptor but
# its two pipes to the judge and stdout/stderr, takes its limits and a seccomp filter (no new
# processes, no ptrace), runs the program, then serves calls: the judge runs the tests in its
# own interpreter, where the program's functions are handles whose calls go to the worker and
# come back as plain data (JSON with type tags: None, bool, int, float, str, bytes, complex,
# list, tuple, set, frozenset, dict; anything else stays in the worker as a handle). Only the
# judge holds the verdict pipe and the run's nonce; it writes "pass NONCE" when the tests ran to
# their end. argv: site-packages (os.pathsep list), program fd, tests fd, verdict fd, judge log
# fd, address space, file size, cpu s, processes.
