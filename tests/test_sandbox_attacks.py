"""The attack corpus (issue 17): programs that try to escape the sandbox, forge a pass, exhaust
resources, read the user's files, reach the network, ignore signals or kill the harness.

Every attack is the completion of a problem whose tests it fails (`add` returns a * b), so a
contained attack scores 0; each test also checks that nothing appeared on the host and that the
harness finished in time. Read attacks use a correct function (the score does not matter there)
and check that the secret never reached the program's output.
"""

from __future__ import annotations

import os
import socket
import textwrap
import time
from pathlib import Path

import pytest

from evalharness.metrics.sandbox import Limits, isolation, run_program
from evalharness.metrics.sandbox.isolation import _ro_mounts

pytestmark = pytest.mark.skipif(isolation() != "bwrap", reason="bubblewrap cannot build a sandbox on this host")

WRONG = "def add(a, b):\n    return a * b\n"
RIGHT = "def add(a, b):\n    return a + b\n"
TESTS = "def check(candidate):\n    assert abs(candidate(2, 3) - 5) < 1e-9\n    assert abs(candidate(1, 1) - 2) < 1e-9\n\ncheck(add)\n"
# attacks aimed at another kind of check bring their own tests
OWN_TESTS = {
    "patch_sys_modules_math": "import math\nassert math.isclose(add(2, 3), 5)\n",
    "int_subclass_equal": "assert add(2, 3) == 5\n",
}
LIMITS = Limits(timeout=3.0, memory_mb=512)

# category -> name -> program (after WRONG); HOST is a folder on the host the program must not touch
ATTACKS: dict[str, dict[str, str]] = {
    "escape": {
        "guard_off_then_os_system": """
            import sys, os
            main = sys.modules['__main__']
            for k in list(vars(main)):
                if k.startswith('_') and not k.startswith('__'):
                    setattr(main, k, None)
            os.system(f"id > {HOST}/pwned")
        """,
        "subprocess": "import subprocess; subprocess.run(['sh', '-c', f'echo x > {HOST}/pwned'])",
        "ctypes_system": "import ctypes; ctypes.CDLL(None).system(f'echo x > {HOST}/pwned'.encode())",
        "dir_fd_write": """
            import os
            d = os.open(HOST, os.O_RDONLY)
            os.close(os.open('pwned', os.O_WRONLY | os.O_CREAT, dir_fd=d))
        """,
        "plain_write": "open(f'{HOST}/pwned', 'w').write('x')",
        "forked_setsid_survivor": """
            import os, time
            if os.fork() == 0:
                os.setsid()
                time.sleep(1.5)
                open(f'{HOST}/pwned', 'w').write('survived')
                os._exit(0)
        """,
        "thread_outlives_exit": """
            import threading, time, os
            def late():
                time.sleep(1.5)
                open(f'{HOST}/pwned', 'w').write('x')
            threading.Thread(target=late).start()
        """,
    },
    "forgery": {
        "write_marker_to_every_fd": """
            import os, sys
            for fd in range(3, 1024):
                try:
                    os.fstat(fd)
                    os.write(fd, b'done')
                except OSError:
                    pass
            os._exit(0)
        """,
        "os_exit_0_early": "import os; os._exit(0)",
        "sys_exit_0_early": "import sys; sys.exit(0)",
        "fake_verdict_on_stdout": "import sys; print('pass 0123456789abcdef'); sys.stderr.write('done\\n')",
        "patch_builtins_abs": "import builtins; builtins.abs = lambda x: 0",
        "shadow_abs_global": "def abs(x):\n    return 0",
        "patch_sys_modules_math": """
            import sys, math
            fake = type(sys)('math')
            fake.isclose = lambda *a, **k: True
            sys.modules['math'] = fake
        """,
        "always_equal_object": """
            class AlwaysEqual:
                def __eq__(self, other): return True
                def __ne__(self, other): return False
                def __sub__(self, other): return 0
                def __lt__(self, other): return True
            def add(a, b):
                return AlwaysEqual()
        """,
        "int_subclass_equal": """
            class S(int):
                def __eq__(self, other): return True
                __hash__ = int.__hash__
            def add(a, b):
                return S(a * b)
        """,
        "frame_walk_forges_the_marker": """
            import sys, os
            def add(a, b):
                f = sys._getframe(1)
                while f is not None:  # the runner's frames: its done-marker descriptor, its nonce
                    g = f.f_globals
                    if 'done_fd' in g:
                        os.write(g['done_fd'], b'done')
                        os._exit(0)
                    f = f.f_back
                return a * b
        """,
        "exit_0_during_the_tests": """
            import os
            def add(a, b):
                os._exit(0)
        """,
        "proc_fd_of_other_processes": """
            import os
            assert os.getpid() < 1000  # only ever inside a PID namespace: never write to the host's processes
            for pid in os.listdir('/proc'):
                if pid.isdigit() and int(pid) != os.getpid():
                    for fd in range(0, 64):
                        try:
                            w = os.open(f'/proc/{pid}/fd/{fd}', os.O_WRONLY)
                            os.write(w, b'pass 00000000000000000000000000000000\\n')
                        except OSError:
                            pass
        """,
        "ptrace_the_judge": """
            import ctypes, os
            libc = ctypes.CDLL(None, use_errno=True)
            print('ptrace', libc.ptrace(16, os.getppid(), 0, 0), ctypes.get_errno())  # PTRACE_ATTACH
        """,
    },
    "resource": {
        "fork_bomb": """
            import os
            for _ in range(500):
                try:
                    if os.fork() == 0:
                        import time; time.sleep(5); os._exit(0)
                except OSError:
                    break
        """,
        "memory_bomb": "chunks = []\nwhile True:\n    chunks.append(bytearray(64 << 20))",
        "disk_fill_300mb": """
            block = b'x' * (1 << 20)
            for i in range(300):
                try:
                    with open(f'/tmp/fill{i % 40}', 'ab') as fh:
                        fh.write(block)
                except OSError:
                    break
        """,
        "infinite_loop": "while True:\n    pass",
        "cpu_in_threads": """
            import threading
            def spin():
                while True: pass
            for _ in range(4): threading.Thread(target=spin, daemon=True).start()
            spin()
        """,
    },
    "network": {
        "tcp_to_host_listener": "import socket; socket.create_connection(('127.0.0.1', PORT), timeout=1); open(f'{HOST}/pwned', 'w')",
        "abstract_unix_socket": "import socket; s = socket.socket(socket.AF_UNIX); s.connect(ABSTRACT); s.send(b'hi')",
        "dns_and_internet": "import socket; socket.create_connection(('pypi.org', 443), timeout=1)",
    },
    "signal": {
        "ignore_every_signal": """
            import signal
            for s in range(1, 65):
                try: signal.signal(s, signal.SIG_IGN)
                except (OSError, ValueError, RuntimeError): pass
            while True: pass
        """,
    },
    "kill_the_parent": {
        "kill_ppid": "import os; os.kill(os.getppid(), 9)",
        "kill_pid_1": "import os; os.kill(1, 9)",
        "kill_everything_visible": "import os\nif os.getpid() < 1000:  # only ever inside a PID namespace\n    os.kill(-1, 9)",
    },
}
CASES = [(cat, name) for cat, group in ATTACKS.items() for name in group]


def test_corpus_covers_every_category_with_25_or_more_programs() -> None:
    assert len(CASES) >= 25
    assert {c for c, _ in CASES} >= {"escape", "forgery", "resource", "network", "signal", "kill_the_parent"}


@pytest.fixture
def listener():  # type: ignore[no-untyped-def]
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(8)
    unix = socket.socket(socket.AF_UNIX)
    name = f"\0evalharness-attack-{os.getpid()}"
    unix.bind(name)
    unix.listen(8)
    yield tcp.getsockname()[1], name
    tcp.close()
    unix.close()


@pytest.mark.parametrize(("category", "name"), CASES)
def test_attack_is_contained(tmp_path: Path, listener: tuple[int, str], category: str, name: str) -> None:
    port, abstract = listener
    attack = textwrap.dedent(ATTACKS[category][name])
    header = f"HOST = {str(tmp_path)!r}\nPORT = {port}\nABSTRACT = {abstract!r}\n"
    (tmp_path / "keep.txt").write_text("original")
    started = time.perf_counter()
    res = run_program(WRONG + header + attack, LIMITS, tests=OWN_TESTS.get(name, TESTS))
    elapsed = time.perf_counter() - started
    assert not res.passed, res  # the right score: 0
    assert elapsed < LIMITS.timeout + 2  # the harness finished, on time
    if name in {"forked_setsid_survivor", "thread_outlives_exit"}:
        time.sleep(2)  # long enough for a survivor to act
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]  # no trace on the host
    assert (tmp_path / "keep.txt").read_text() == "original"


def test_the_control_passes() -> None:
    # the same harness, a right answer: the corpus fails for the attacks, not for the set-up
    assert run_program(RIGHT, LIMITS, tests=TESTS).passed
    assert all(run_program(RIGHT, LIMITS, tests=t).passed for t in OWN_TESTS.values())


# Forgeries that pass on the old, in-process path (the opt-in unsafe path, audit hook off): the
# corpus rows above are real attacks, and the judge is what stops them. Only attacks that touch
# nothing outside their own process are replayed there.
FORGED_BEFORE = ["write_marker_to_every_fd", "patch_builtins_abs", "shadow_abs_global", "patch_sys_modules_math",
                 "always_equal_object", "int_subclass_equal", "frame_walk_forges_the_marker"]


@pytest.mark.parametrize("name", FORGED_BEFORE)
def test_forgery_passed_on_the_unsafe_path_and_fails_in_the_judge(name: str) -> None:
    program = WRONG + textwrap.dedent(ATTACKS["forgery"][name])
    tests = OWN_TESTS.get(name, TESTS)
    assert run_program(program, LIMITS, tests=tests, isolation="unsafe", guard=False).passed
    assert not run_program(program, LIMITS, tests=tests).passed


@pytest.mark.parametrize("path", ["/etc/passwd", "/root", "/home", "README", "/work", "/proc/1/environ"])
def test_read_attacks_find_nothing(path: str) -> None:
    here = Path(__file__).resolve()
    secret_file = here.parent.parent / "README.md" if path == "README" else Path(path)
    code = RIGHT + textwrap.dedent(f"""
        import os
        p = {str(secret_file)!r}
        try:
            print(sorted(os.listdir(p)) if os.path.isdir(p) else open(p, 'rb').read()[:200])
        except OSError as e:
            print('blocked', type(e).__name__)
    """)
    res = run_program(code, LIMITS, tests=TESTS)
    assert res.passed, res
    if path == "/proc/1/environ":  # pid 1 is the sandbox's own init: no harness environment in it
        assert "PATH=" not in res.stdout or "/work" not in res.stdout
    elif res.stdout.startswith("["):
        # a folder on the way to a read-only bind (the interpreter under /root/.pyenv, the venv's
        # site-packages under /work/...): it lists only that next component, nothing of the user's
        mounts = [m for m in _ro_mounts() if m.startswith("/")]
        allowed = {m[len(path) + 1:].split("/")[0] for m in mounts if m.startswith(path + "/")}
        assert set(eval(res.stdout)) <= allowed, res.stdout
    else:
        assert res.stdout.startswith("blocked"), res.stdout


def test_only_the_sandbox_processes_are_visible() -> None:
    res = run_program(RIGHT + "import os\nprint(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))", LIMITS, tests=TESTS)
    assert res.passed and max(eval(res.stdout)) < 10
    assert str(os.getpid()) not in res.stdout.split(", ")


def test_file_size_and_disk_are_capped() -> None:
    code = RIGHT + textwrap.dedent("""
        import os
        n = 0
        try:
            with open('/tmp/big', 'wb') as fh:
                for _ in range(300):
                    fh.write(b'x' * (1 << 20)); fh.flush(); n += 1
        except OSError as e:
            print('stopped', n, type(e).__name__)
    """)
    res = run_program(code, Limits(file_size_mb=16, disk_mb=32), tests=TESTS)
    assert res.passed and res.stdout.startswith("stopped") and int(res.stdout.split()[1]) <= 32


def test_builtin_shadow_is_allowed_for_the_function_under_test() -> None:
    # MBPP 126 names its function `sum`: the tests take it from the program when it is under test
    prog = "def sum(a, b):\n    return a + b\n"
    assert run_program(prog, tests="assert sum(2, 3) == 5\n", under_test=("sum",)).passed
    assert not run_program(prog, tests="assert sum(2, 3) == 5\n").passed  # otherwise the real builtin
