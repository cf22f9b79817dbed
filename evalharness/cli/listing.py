"""`evalharness list`: built-in tasks (by kind), metrics and backends."""

from __future__ import annotations

import argparse

from evalharness.cli.args import Command
from evalharness.errors import EvalHarnessError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", nargs="?", choices=["tasks", "metrics", "judges", "backends", "all"], default="all")


def handle(args: argparse.Namespace) -> int:
    from evalharness.spec.library import builtin_task_paths

    if args.what in {"tasks", "all"}:
        from evalharness.data.samples import read_rows, resolve_path
        from evalharness.spec.task import load_task_file

        # one row per task: name, canonical source, rows available offline, license, metrics
        by_kind: dict[str, list[tuple[str, ...]]] = {}
        invalid: list[str] = []
        for name, path in builtin_task_paths().items():
            try:
                task = load_task_file(path)
                spec = task.spec
                offline = "hub only"
                if spec.dataset.path is not None:
                    try:
                        offline = f"{len(read_rows(resolve_path(task, spec.dataset.path, 'dataset.path'), spec.dataset.format)):,}"
                    except EvalHarnessError:
                        offline = "missing"
                metrics = ",".join(m.name for m in spec.metrics)
                row = (name, spec.source.hub or "local", offline, spec.source.license or "?", metrics)
                by_kind.setdefault(spec.kind, []).append(row)
            except EvalHarnessError as exc:
                invalid.append(f"    {name}: {exc}")
        header = ("name", "source", "rows", "license", "metrics")
        widths = [max(len(r[i]) for r in [header, *(r for rows in by_kind.values() for r in rows)]) for i in range(4)]

        def line(r: tuple[str, ...]) -> str:
            cells = [c.rjust(w) if i == 2 else c.ljust(w) for i, (c, w) in enumerate(zip(r[:4], widths, strict=True))]
            return "    " + "  ".join([*cells, r[4]])

        print("tasks:")
        print(line(header))
        for kind in sorted(by_kind):
            print(f"  {kind}:")
            print("\n".join(line(r) for r in by_kind[kind]))
        if invalid:
            print("  invalid:\n" + "\n".join(invalid))
    if args.what in {"metrics", "all"}:
        from evalharness.metrics.base import METRICS

        print("metrics:\n  " + ", ".join(METRICS.names()))
    if args.what in {"judges", "all"}:
        from evalharness.spec.judge import builtin_judge_paths, load_judge_file

        described = []
        for name, path in sorted(builtin_judge_paths().items()):
            judge = load_judge_file(path).spec
            described.append(f"{name} ({judge.mode}{', per context' if judge.per == 'context' else ''})")
        print("judges:\n  " + ", ".join(described))
    if args.what in {"backends", "all"}:
        from evalharness.backends import BACKENDS

        print("backends:\n  " + ", ".join(BACKENDS.names()))
    return 0


COMMAND = Command("list", "list tasks, metrics, judges and backends", add_arguments, handle)
