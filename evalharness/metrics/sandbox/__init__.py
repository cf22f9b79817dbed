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
| forged verdicts                | see `judge.py`: the tests run in a separate process (the judge) that never |
|                                | runs the program's code; the program's functions are called over a pipe  |
|                                | and answer plain data; only the judge holds the verdict pipe and nonce    |

Where bwrap is missing or cannot create namespaces, `run_programs` refuses (`IsolationUnavailable`)
unless the user opts in with `--allow-unsafe-code-execution` or `EVALHARNESS_ALLOW_UNSAFE_CODE=1`;
the program then runs as before this sandbox existed: a subprocess with rlimits, a network
namespace where `unshare` allows one, and a PEP 578 audit hook, which stop accidents, not an
attacker (SECURITY.md says what remains).
"""

from evalharness.metrics.sandbox.isolation import (
    UNSAFE_ENV,
    IsolationUnavailable,
    Limits,
    RunResult,
    isolation,
    require_isolation,
    unsafe_allowed,
)
from evalharness.metrics.sandbox.run import run_program, run_programs
from evalharness.metrics.sandbox.unsafe import network_isolation

__all__ = ["UNSAFE_ENV", "IsolationUnavailable", "Limits", "RunResult", "isolation", "network_isolation", "require_isolation",
           "run_program", "run_programs", "unsafe_allowed"]
