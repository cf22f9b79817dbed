"""Exceptions users can act on.

    EvalHarnessError            base; the CLI prints `error: <message>` and exits 2
    ├── SpecError               a task / judge / suite file is malformed (names file and field)
    ├── DataError               a data file or row is unreadable or lacks a field
    ├── TemplateError           a prompt template failed to render or was refused by the sandbox
    ├── RegistryError           an unknown metric / backend / task name (with "did you mean")
    ├── BackendError            a backend cannot serve a request kind, or failed to load
    └── UsageError              bad CLI arguments or option values
"""

from __future__ import annotations

import re


class EvalHarnessError(Exception):
    """Base of every error a user can fix; one line, no traceback needed."""

    exit_code = 2


class SpecError(EvalHarnessError):
    pass


class DataError(EvalHarnessError):
    pass


class TemplateError(EvalHarnessError):
    pass


class RegistryError(EvalHarnessError):
    pass


class BackendError(EvalHarnessError):
    pass


class UsageError(EvalHarnessError):
    pass


_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """`text` safe for a terminal: control characters (ESC sequences that set the title or clear
    the screen, carriage returns that overwrite a line, bidi overrides) shown escaped, as `\\x1b`.
    Task names, sample ids, model names and server replies are untrusted and reach the console
    through errors, tables and notes. Newlines and tabs are kept."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}", text)
