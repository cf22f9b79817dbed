"""Command line: thin commands over the library. Bad input -> one line on stderr, exit 2.

Each command is a module of this package exposing `COMMAND` (name, help, arguments, handler);
handlers import what they need lazily so `evalharness --help` stays fast and never imports torch.
This module only assembles the parser and maps errors to exit codes.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from evalharness.cli import annotate, arena, completion, gate, listing, report, run, score
from evalharness.cli.args import Command, Parser
from evalharness.errors import EvalHarnessError, printable
from evalharness.version import __version__

COMMANDS: dict[str, Command] = {c.COMMAND.name: c.COMMAND
                                for c in (run, listing, report, gate, score, arena, annotate, completion)}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="evalharness", description="Evaluate language models from declarative task files.")
    parser.add_argument("--version", action="version", version=f"evalharness {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name, cmd in COMMANDS.items():
        p = sub.add_parser(name, help=cmd.help, description=cmd.help)
        cmd.add_arguments(p)
        if cmd.wants_parser:
            p.set_defaults(root_parser=parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("EVALHARNESS_DEBUG") == "1"
    if "--debug" in argv:  # accepted in any position, not only before the command
        argv = [a for a in argv if a != "--debug"]
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        if getattr(args, "allow_unsafe_code_execution", False):
            os.environ["EVALHARNESS_ALLOW_UNSAFE_CODE"] = "1"  # read by the sandbox (and Ray workers)
        return COMMANDS[args.command].handler(args)
    except EvalHarnessError as exc:
        if debug:
            raise
        print(printable(f"error: {exc}"), file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # an unwritable --output or --cache-dir, a full disk: one line, not a traceback
        if debug:
            raise
        print(printable(f"error: {exc.filename or ''}{': ' if exc.filename else ''}{exc.strerror or exc}"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished work is saved, rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
