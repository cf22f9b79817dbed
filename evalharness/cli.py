"""Command line: thin commands over the library. Bad input -> one line on stderr, exit 2.

Commands register themselves in COMMANDS as (add_arguments, handler) pairs; handlers import
what they need lazily so `evalharness --help` stays fast and never imports torch.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from evalharness import __version__
from evalharness.errors import EvalHarnessError, UsageError

Handler = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Handler]] = {}


def command(name: str, help_text: str, add: Callable[[argparse.ArgumentParser], None]) -> Callable[[Handler], Handler]:
    def wrap(fn: Handler) -> Handler:
        COMMANDS[name] = (help_text, add, fn)
        return fn

    return wrap


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def resample_count(text: str) -> int:
    """--bootstrap: 0 (no bootstrap CI, recorded as null) or at least 100 resamples."""
    from evalharness.stats import MIN_RESAMPLES

    value = _positive_int(text)
    if 0 < value < MIN_RESAMPLES:
        raise argparse.ArgumentTypeError(f"expected 0 (no bootstrap CI) or at least {MIN_RESAMPLES} resamples, got {value}")
    return value


def _batch_size(text: str) -> str:
    if text != "auto":
        _positive_int(text)
    return text


def add_model_args(p: argparse.ArgumentParser, prefix: str = "") -> None:
    dest = prefix.replace("-", "_")
    p.add_argument(f"--{prefix}model", dest=f"{dest}model", default="smollm2" if not prefix else None,
                   help="backend name (default: the embedded smollm2)" if not prefix else "judge backend name")
    p.add_argument(f"--{prefix}model-args", dest=f"{dest}model_args", default="",
                   help="backend arguments as k=v,k2=v2 (e.g. pretrained=PATH,dtype=float32)")


def _add_run(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    add_model_args(p, "judge-")
    p.add_argument("--tasks", default=None, help="comma-separated built-in task or group names (e.g. mmlu), or YAML paths")
    p.add_argument("--suite", type=Path, default=None,
                   help="a suite file (suites/*.yaml): every model on every task, one run dir each under --output, then report.html")
    p.add_argument("--limit", type=_positive_int, default=None, help="evaluate only the first N samples")
    p.add_argument("--limits", default="", help="per-task limits, e.g. arc_easy=100,gsm8k=10 (override --limit)")
    p.add_argument("--num-fewshot", type=_positive_int, default=None, help="override the task's few-shot count")
    p.add_argument("--batch-size", type=_batch_size, default=None, help="N or auto (GPU)")
    p.add_argument("--max-concurrency", type=_positive_int, default=None,
                   help="API backends: most requests in flight at once (default 8; lowered on 429s)")
    p.add_argument("--output", type=Path, default=None, help="run directory (default: runs/<model>)")
    p.add_argument("--cache-dir", type=Path, default=None, help="response cache folder (default: ~/.cache/evalharness/cache)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the response cache")
    chat = p.add_mutually_exclusive_group()
    chat.add_argument("--chat-template", dest="chat_template", action="store_true", default=None,
                      help="apply the model's chat template to every task")
    chat.add_argument("--no-chat-template", dest="chat_template", action="store_false",
                      help="never apply a chat template")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and sampling (default 0)")
    p.add_argument("--bootstrap", type=resample_count, default=1000,
                   help="bootstrap resamples for corpus-metric and group CIs: 0 (none, CI null) or >= 100 (default 1000)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="who computes the batches: this process (default; under accelerate launch / torchrun / "
                        "mpirun each rank takes its share) or model replicas on a Ray cluster")
    p.add_argument("--ray-address", default=None,
                   help="--executor ray: the cluster to join (HOST:PORT or auto); default: start a local one")
    p.add_argument("--ray-workers", type=_positive_int, default=None,
                   help="--executor ray: model replicas (default: one per GPU, else one per node)")


@command("run", "evaluate a model on tasks", _add_run)
def cmd_run(args: argparse.Namespace) -> int:
    from evalharness.backends import BACKENDS
    from evalharness.backends.base import parse_model_args
    from evalharness.group_specs import expand_task_list
    from evalharness.pipeline import RunConfig, evaluate
    from evalharness.tasks import parse_task_list

    if args.suite is not None:
        from evalharness.suites import cmd_run_suite

        return cmd_run_suite(args)
    if not args.tasks:
        raise UsageError("evalharness run: the following arguments are required: --tasks (or --suite FILE)")
    # Cheap argument checks first, so a typo fails before any task or data is read.
    BACKENDS.get(args.model)
    model_args: dict[str, Any] = parse_model_args(args.model_args)
    tasks, groups = expand_task_list(parse_task_list(args.tasks))
    limits = _parse_limits(args.limits, {t.spec.name for t in tasks}, {g.name: g.member_names for g in groups})
    if args.batch_size is not None:
        model_args["batch_size"] = args.batch_size
    if getattr(args, "max_concurrency", None):
        model_args["max_concurrency"] = args.max_concurrency
    output = args.output or Path("runs") / args.model
    cfg = RunConfig(
        tasks=tasks, model=args.model, model_args=model_args, output=output, limit=args.limit, limits=limits,
        num_fewshot=args.num_fewshot, chat_template=args.chat_template, cache_dir=args.cache_dir,
        use_cache=not args.no_cache, seed=args.seed, bootstrap_resamples=args.bootstrap,
        progress=not args.no_progress, judge_model=args.judge_model,
        judge_model_args=parse_model_args(args.judge_model_args), groups=groups,
        executor=args.executor, ray_address=args.ray_address, ray_workers=args.ray_workers or None,
    )
    results = evaluate(cfg)
    if "shard" in results:  # a launcher rank other than 0: rank 0 prints and writes the results
        sh = results["shard"]
        print(f"rank {sh['rank']}/{sh['world_size']}: computed {sh['computed']} request(s); rank 0 writes the results")
        return 0
    print(summary_table(results))
    from evalharness.usage import usage_line

    print(f"\n{usage_line(results)}")  # tokens and cost: model under test and judge apart
    print(f"results: {output / 'results.json'}")
    failed = sum(t.get("n_failed", 0) for t in results["tasks"].values())
    if failed:
        print(f"{failed} sample(s) failed; rerun the same command to retry them", file=sys.stderr)
        return 1
    return 0


def _parse_limits(text: str, task_names: set[str], groups: dict[str, list[str]] | None = None) -> dict[str, int]:
    """`task=N,...`; a group name sets the limit of each of its members (a task named later wins)."""
    limits: dict[str, int] = {}
    groups = groups or {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or not value.strip().isdigit():
            raise UsageError(f"--limits: expected task=N, got {part!r}")
        if name in groups and name not in task_names:
            limits.update(dict.fromkeys(groups[name], int(value)))
            continue
        if name not in task_names:
            raise UsageError(f"--limits: {name!r} is not among --tasks ({', '.join(sorted(task_names))})")
        limits[name] = int(value)
    return limits


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def _ci(m: dict[str, Any]) -> str:
    """`[low, high]`, or `- (why)` where no interval is defined."""
    if m.get("ci_low") is None or m.get("ci_high") is None:
        return f"- ({m['ci_reason']})" if m.get("ci_reason") else "-"
    return f"[{m['ci_low']:.4f}, {m['ci_high']:.4f}]"


def summary_table(results: dict[str, Any]) -> str:
    """A plain-text table of every task's metrics with CIs."""
    rows = [("task", "metric", "value", "95% CI", "n")]
    for name, task in results["tasks"].items():
        for metric, m in task["metrics"].items():
            arrow = "↑" if m.get("higher_is_better", True) else "↓"
            rows.append((name, f"{metric} {arrow}", _fmt(m["value"]), _ci(m), str(m["n"])))
    for name, group in (results.get("groups") or {}).items():
        for metric, m in group["metrics"].items():
            rows.append((f"{name} (group)", metric, _fmt(m["value"]), _ci(m), str(m["n"])))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _add_list(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", nargs="?", choices=["tasks", "metrics", "backends", "all"], default="all")


@command("list", "list tasks, metrics and backends", _add_list)
def cmd_list(args: argparse.Namespace) -> int:
    from evalharness.tasks import builtin_task_paths

    if args.what in {"tasks", "all"}:
        from evalharness.data import read_rows, resolve_path
        from evalharness.specs import load_task_file

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
    if args.what in {"backends", "all"}:
        from evalharness.backends import BACKENDS

        print("backends:\n  " + ", ".join(BACKENDS.names()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    _load_command_modules()
    parser = _Parser(prog="evalharness", description="Evaluate language models from declarative task files.")
    parser.add_argument("--version", action="version", version=f"evalharness {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (help_text, add, _) in COMMANDS.items():
        add(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def _load_command_modules() -> None:
    """Commands that live beside the features they drive (report, gate, score, ...)."""
    import importlib

    for module in ("evalharness.report_cli", "evalharness.gate_cli", "evalharness.score_cli", "evalharness.arena_cli",
                   "evalharness.annotate_cli"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("EVALHARNESS_DEBUG") == "1"
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        return COMMANDS[args.command][2](args)
    except EvalHarnessError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # an unwritable --output or --cache-dir, a full disk: one line, not a traceback
        if debug:
            raise
        print(f"error: {exc.filename or ''}{': ' if exc.filename else ''}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished work is saved, rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
