"""Shared pieces of the command modules: the Command record, the parser class, argument types.

A leaf: it imports nothing from evalharness but the error tree, so every command module can use it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from evalharness.errors import UsageError

Handler = Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class Command:
    """One subcommand: its name, help line, argument definitions and handler."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    handler: Handler
    # The handler reads the whole command line's parser as `args.root_parser` (shell completion does).
    wants_parser: bool = False


class Parser(argparse.ArgumentParser):
    """argparse that raises UsageError (one line, exit 2) instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def count(text: str) -> int:
    """--limit: a whole number >= 1 (0 would evaluate nothing)."""
    value = positive_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def resample_count(text: str) -> int:
    """--bootstrap: 0 (no bootstrap CI, recorded as null) or at least 100 resamples."""
    from evalharness.stats.bootstrap import MIN_RESAMPLES

    value = positive_int(text)
    if 0 < value < MIN_RESAMPLES:
        raise argparse.ArgumentTypeError(f"expected 0 (no bootstrap CI) or at least {MIN_RESAMPLES} resamples, got {value}")
    return value


def batch_size(text: str) -> str:
    """--batch-size: a whole number >= 1, or auto."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1 or auto, got {text!r}")
    return text


def add_model_args(p: argparse.ArgumentParser, prefix: str = "") -> None:
    dest = prefix.replace("-", "_")
    p.add_argument(f"--{prefix}model", dest=f"{dest}model", default="smollm2" if not prefix else None,
                   help="backend name (default: the embedded smollm2)" if not prefix else "judge backend name")
    p.add_argument(f"--{prefix}model-args", f"--{dest}model_args", dest=f"{dest}model_args", default="",
                   help="backend arguments as k=v,k2=v2 (e.g. pretrained=PATH,dtype=float32)")


def add_unsafe_code_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-unsafe-code-execution", action="store_true",
                   help="let pass@k run model-written code without OS isolation where bubblewrap is unavailable "
                        "(same as EVALHARNESS_ALLOW_UNSAFE_CODE=1; see SECURITY.md)")
