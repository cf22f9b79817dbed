"""`evalharness gate CURRENT --baseline BASELINE`: exit 0 on pass, 1 on a regression, 2 on bad input."""

from __future__ import annotations

import argparse
from pathlib import Path

from evalharness.cli.args import Command
from evalharness.errors import UsageError, printable


def _alpha(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 0.5, got {text!r}") from None
    if not 0.0 < value < 0.5:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 0.5, got {value}")
    return value


def _add_gate(p: argparse.ArgumentParser) -> None:
    p.add_argument("current", type=Path, help="run directory to check (written by `evalharness run`)")
    p.add_argument("--baseline", type=Path, required=True, help="run directory to compare against")
    p.add_argument("--config", type=Path, default=None, help="gate rules (YAML); default: every shared metric, no drop beyond noise")
    p.add_argument("--alpha", type=_alpha, default=None,
                   help="significance level of the one-sided paired tests (default: the config's, else 0.05)")
    p.add_argument("--correction", choices=("none", "holm", "bonferroni"), default=None,
                   help="multiplicity correction over the checks (default: the config's, else holm)")
    p.add_argument("--no-stats", action="store_true", help="plain threshold check: any drop past the allowance fails")
    p.add_argument("--allow-mismatch", action="store_true",
                   help="compare the shared samples of runs whose tasks, prompts or sample sets differ (a warning, not an error)")
    p.add_argument("--markdown", type=Path, default=None, help="also write a Markdown summary here")
    p.add_argument("--junit", type=Path, default=None, help="also write JUnit XML here (one testcase per task/metric)")


def cmd_gate(args: argparse.Namespace) -> int:
    from evalharness.gate.check import run_gate
    from evalharness.gate.render import console, junit, markdown
    from evalharness.results.store import atomic_write_text
    from evalharness.spec.gate import load_gate_config

    config = load_gate_config(args.config)
    for path in (args.markdown, args.junit):  # before the checks run, not after the table is printed
        if path is not None and path.is_dir():
            raise UsageError(f"{path}: is a folder; give a file name to write")
    report = run_gate(args.current, args.baseline, config, alpha=args.alpha, use_stats=not args.no_stats,
                      allow_mismatch=args.allow_mismatch, correction=args.correction)
    print(printable(console(report)))
    for path, render in ((args.markdown, markdown), (args.junit, junit)):
        if path is not None:
            try:
                atomic_write_text(path, render(report))
            except OSError as exc:
                raise UsageError(f"{path}: cannot write: {exc.strerror}") from None
    return report.exit_code


COMMAND = Command("gate", "compare a run with a baseline run; exit 1 on a significant regression", _add_gate, cmd_gate)
