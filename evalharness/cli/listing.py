"""`evalharness list`: built-in tasks (by kind), task groups, judges, metrics and backends."""

from __future__ import annotations

import argparse
from typing import get_args

from evalharness.cli.args import Command
from evalharness.errors import EvalHarnessError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", nargs="?", choices=["tasks", "groups", "judges", "metrics", "backends", "all"], default="all")


def handle(args: argparse.Namespace) -> int:
    from evalharness.spec.library import builtin_task_paths

    if args.what in {"tasks", "all"}:
        from evalharness.data.samples import read_rows, resolve_path
        from evalharness.spec.task import TaskKind, load_task_file

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
        for kind in sorted(set(get_args(TaskKind)) - set(by_kind)):  # kinds a task file of your own can use
            print(f"  {kind}:\n    (no built-in task; write a task file with kind: {kind}, see the README)")
        if invalid:
            print("  invalid:\n" + "\n".join(invalid))
    if args.what in {"groups", "all"}:
        print(_table("groups:", ("name", "tasks", "metrics", "aggregates", "members"), _group_rows()))
    if args.what in {"judges", "all"}:
        print(_table("judges:", ("name", "mode", "scale", "verdict", "needs"), _judge_rows()))
    if args.what == "metrics":
        print(_table("metrics:", ("name", "kind", "scale", "direction", "tasks", "parameters"), _metric_rows()))
    elif args.what == "all":
        from evalharness.metrics.base import METRICS

        print("metrics (`evalharness list metrics` for scale, direction, parameters):\n  " + ", ".join(METRICS.names()))
    if args.what in {"backends", "all"}:
        from evalharness.backends import BACKENDS

        print("backends:\n  " + ", ".join(BACKENDS.names()))
    return 0


def _table(title: str, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = ["    " + "  ".join([*(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)), r[-1]]).rstrip()
             for r in [header, *rows]]
    return "\n".join([title, *lines])


def _group_rows() -> list[tuple[str, ...]]:
    from evalharness.spec.group import builtin_group_paths, find_group

    rows: list[tuple[str, ...]] = []
    for name in builtin_group_paths():
        try:
            g = find_group(name)
        except EvalHarnessError as exc:
            rows.append((name, "-", "-", "-", f"invalid: {exc}"))
            continue
        if g is None:
            continue
        members = g.member_names
        shown = ", ".join(members[:4]) + (f", ... ({len(members) - 4} more)" if len(members) > 4 else "")
        rows.append((name, str(len(members)), ",".join(g.metrics), ",".join(map(str, g.aggregates)), shown))
    return rows


def _judge_rows() -> list[tuple[str, ...]]:
    from evalharness.spec.judge import builtin_judge_paths, load_judge_file

    rows: list[tuple[str, ...]] = []
    for name, path in builtin_judge_paths().items():
        try:
            spec = load_judge_file(path).spec
        except EvalHarnessError as exc:
            rows.append((name, "-", "-", "-", f"invalid: {exc}"))
            continue
        needs = ["a judge model (--judge-model)"]
        needs += [f"{what} (field {field})" for what, field in (("question", spec.inputs.question),
                                                               ("reference", spec.inputs.reference),
                                                               ("context", spec.inputs.context)) if field]
        if spec.per == "context":
            needs.append(f"retrieved contexts (list column {spec.inputs.contexts})")
        if spec.mode == "pairwise":
            needs.append(f"a baseline answer (column {spec.inputs.baseline})")
        scale = f"{spec.scale.min}-{spec.scale.max}" if spec.mode in {"single", "reference"} else "-"
        scale += " (whole)" if spec.scale.integer and scale != "-" else ""
        mode = f"{spec.mode}, per {spec.per}" if spec.per != "sample" else str(spec.mode)
        rows.append((name, mode, scale, spec.verdict.method, ", ".join(needs)))
    return rows


def _metric_rows() -> list[tuple[str, ...]]:
    import inspect

    from evalharness.metrics.base import METRICS, Metric, build_metric

    rows: list[tuple[str, ...]] = []
    for name in METRICS.names():
        example = name.replace("@k", "@10") if name.endswith("@k") else name  # a family (recall@k) by one member
        factory = METRICS.get(example)
        try:
            params = [p for p in inspect.signature(factory).parameters.values() if p.kind is p.KEYWORD_ONLY or
                      p.kind is p.POSITIONAL_OR_KEYWORD]
        except (TypeError, ValueError):
            params = []
        shown = ", ".join("k from the name (@10)" if example != name and p.name == "k" else
                          p.name if p.default is p.empty else f"{p.name}={p.default!r}" for p in params) or "-"
        try:
            metric: Metric | None = build_metric(example)
        except EvalHarnessError:
            metric = None  # needs parameters (e.g. judge): described by its parameters alone
        if metric is None:
            rows.append((name, "-", "-", "-", "-", shown))
            continue
        scale = "-" if metric.scale is None else f"{metric.scale[0]:g}..{metric.scale[1]:g}"
        rows.append((name, metric.kind, scale, "higher is better" if metric.higher_is_better else "lower is better",
                     ",".join(sorted(metric.kinds)), shown))
    return rows


COMMAND = Command("list", "list tasks, groups, judges, metrics and backends", add_arguments, handle)
