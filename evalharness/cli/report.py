"""`evalharness report RUN_DIR [RUN_DIR ...]`: HTML, Markdown or CSV from results files only."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from evalharness.cli.args import Command, positive_int


def _add_report(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="run directories (each holds results.json); the first is the diff baseline")
    p.add_argument("--output", "-o", type=Path, default=None,
                   help="file to write (default: report.html in the first run directory for html, stdout for md/csv)")
    p.add_argument("--format", dest="fmt", choices=["html", "md", "csv"], default=None,
                   help="html (self-contained page), md (summary for a PR comment) or csv; default: from --output's suffix, else html")
    p.add_argument("--title", default=None, help="page title of the HTML report")
    p.add_argument("--max-text", type=positive_int, default=4000,
                   help="characters of each prompt / output kept in the HTML (0: all; default 4000)")


def cmd_report(args: argparse.Namespace) -> int:
    from evalharness.report.html import write_report

    fmt = args.fmt
    if fmt is None:
        suffix = args.output.suffix.lower().lstrip(".") if args.output else ""
        fmt = {"md": "md", "markdown": "md", "csv": "csv"}.get(suffix, "html")
    output = args.output
    if output is None and fmt == "html":
        output = Path(args.run_dirs[0]) / "report.html"
    text = write_report(args.run_dirs, output, fmt, title=args.title, max_text=args.max_text)
    if output is None:
        sys.stdout.write(text)
    else:
        print(f"report: {output}")
    return 0


COMMAND = Command("report", "render a report (html, md, csv) from run directories; never runs a model", _add_report, cmd_report)
