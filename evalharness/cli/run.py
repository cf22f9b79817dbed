"""`evalharness run`: evaluate a model on tasks (or every model of a suite on every task)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from evalharness.cli.args import Command, add_model_args, add_unsafe_code_flag, batch_size, count, positive_int, resample_count
from evalharness.cli.console import print_warnings, summary_table
from evalharness.errors import UsageError, printable


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    add_model_args(p, "judge-")
    p.add_argument("--tasks", default=None, help="comma-separated built-in task or group names (e.g. mmlu), or YAML paths")
    p.add_argument("--suite", type=Path, default=None,
                   help="a suite file (suites/*.yaml) or a built-in suite's name (demo): every model on every task, "
                        "one run dir each under --output, then report.html")
    p.add_argument("--data-root", action="append", type=Path, default=[], metavar="DIR",
                   help="a folder task files may read data from besides their own (repeatable; "
                        "also $EVALHARNESS_DATA_ROOTS)")
    p.add_argument("--limit", type=count, default=None, help="evaluate only the first N samples")
    p.add_argument("--limits", default="", help="per-task limits, e.g. arc_easy=100,gsm8k=10 (override --limit)")
    p.add_argument("--num-fewshot", "--num_fewshot", type=positive_int, default=None, help="override the task's few-shot count")
    p.add_argument("--batch-size", "--batch_size", type=batch_size, default=None, help="N or auto (GPU)")
    p.add_argument("--max-concurrency", type=positive_int, default=None,
                   help="API backends: most requests in flight at once (default 8; lowered on 429s)")
    p.add_argument("--output", "--output_path", type=Path, default=None,
                   help="run directory (default: runs/<model>-<hash of the model configuration>); one holding another "
                        "configuration's results is refused")
    p.add_argument("--cache-dir", type=Path, default=None, help="response cache folder (default: ~/.cache/evalharness/cache)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the response cache")
    chat = p.add_mutually_exclusive_group()
    chat.add_argument("--chat-template", "--apply_chat_template", dest="chat_template", action="store_true", default=None,
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
    p.add_argument("--ray-workers", type=positive_int, default=None,
                   help="--executor ray: model replicas (default: one per GPU, else one per node)")
    p.add_argument("--data", default=None, metavar="sample|full|TASK=full,...",
                   help="built-in tasks: score the vendored sample (default) or the full source split through `datasets` "
                        "(per run, or per task/group)")
    p.add_argument("--device", default=None, help="the model's device (e.g. cuda:0, cpu); same as --model-args device=...")
    p.add_argument("--gen-kwargs", "--gen_kwargs", default=None,
                   help="generation parameters over every generate task, k=v,... (temperature, top_p, max_gen_toks, until, seed)")
    p.add_argument("--include-path", "--include_path", action="append", type=Path, default=[], metavar="DIR",
                   help="a folder of task YAMLs, found by name before the built-ins (repeatable)")
    p.add_argument("--log-samples", "--log_samples", action="store_true",
                   help="accepted for lm-eval users; samples are always logged (samples/<task>.jsonl)")
    add_unsafe_code_flag(p)


def handle(args: argparse.Namespace) -> int:
    from evalharness.data.samples import extra_data_roots

    for folder in args.data_root:
        if not folder.is_dir():
            raise UsageError(f"--data-root {folder}: not a folder")
    with extra_data_roots(args.data_root):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from evalharness.backends import BACKENDS
    from evalharness.execution.api import default_output, evaluate, model_args_dict
    from evalharness.spec.library import parse_task_list

    if args.suite is not None:
        return run_suite_command(args)
    if not args.tasks:
        raise UsageError("evalharness run: the following arguments are required: --tasks (or --suite FILE)")
    # Cheap argument checks first, so a typo fails before any task or data is read.
    BACKENDS.get(args.model)
    model_args: dict[str, Any] = model_args_dict(args.model_args)
    if args.device:
        model_args["device"] = args.device
    if getattr(args, "max_concurrency", None):
        model_args["max_concurrency"] = args.max_concurrency
    names = parse_task_list(args.tasks)
    output = args.output or default_output(args.model, model_args)
    with include_paths(args.include_path):
        limits = _limits(args.limits, names)
        res = evaluate(
            names, args.model, model_args, limit=args.limit, num_fewshot=args.num_fewshot, batch_size=args.batch_size,
            output=output, limits=limits, chat_template=args.chat_template, cache_dir=args.cache_dir,
            use_cache=not args.no_cache, seed=args.seed, bootstrap_resamples=args.bootstrap,
            progress=not args.no_progress, judge_model=args.judge_model,
            judge_model_args=model_args_dict(args.judge_model_args), gen_kwargs=args.gen_kwargs, data=args.data,
            executor=args.executor, ray_address=args.ray_address, ray_workers=args.ray_workers or None,
        )
    results = res.to_dict()
    if "shard" in results:  # a launcher rank other than 0: rank 0 prints and writes the results
        sh = results["shard"]
        print(f"rank {sh['rank']}/{sh['world_size']}: computed {sh['computed']} request(s); rank 0 writes the results")
        return 0
    print(printable(summary_table(results)))
    print_warnings(results, output)
    from evalharness.results.usage import usage_line

    print(f"\n{usage_line(results)}")  # tokens and cost: model under test and judge apart
    print(f"results: {output / 'results.json'}")
    failed = sum(t.get("n_failed", 0) for t in results["tasks"].values())
    if failed:
        print(f"{failed} sample(s) failed; rerun the same command to retry them", file=sys.stderr)
        return 1
    return 0


def _limits(text: str, names: list[str]) -> dict[str, int]:
    if not text:
        return {}
    from evalharness.spec.group import expand_task_list

    tasks, groups = expand_task_list(names)
    return parse_limits(text, {t.spec.name for t in tasks}, {g.name: g.member_names for g in groups})


@contextmanager
def include_paths(folders: list[Path]) -> Iterator[None]:
    """--include_path DIR (lm-eval's flag): task YAMLs in DIR are found by name, before the built-ins."""
    for folder in folders:
        if not folder.is_dir():
            raise UsageError(f"--include_path {folder}: not a folder")
    if not folders:
        yield
        return
    old = os.environ.get("EVALHARNESS_TASKS")
    os.environ["EVALHARNESS_TASKS"] = os.pathsep.join([*(str(f.resolve()) for f in folders), *([old] if old else [])])
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("EVALHARNESS_TASKS", None)
        else:
            os.environ["EVALHARNESS_TASKS"] = old


def parse_limits(text: str, task_names: set[str], groups: dict[str, list[str]] | None = None) -> dict[str, int]:
    """`task=N,...`; a group name sets the limit of each of its members (a task named later wins)."""
    from evalharness.spec.group import spread

    limits: dict[str, int] = {}
    groups = groups or {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or not value.strip().isdigit():
            raise UsageError(f"--limits: expected task=N, got {part!r}")
        limits.update(spread(name, int(value), task_names, groups, "--limits"))
    return limits



def run_suite_command(args: argparse.Namespace) -> int:
    """The `--suite` branch of `evalharness run`."""
    from evalharness.execution.suite import run_suite
    from evalharness.report.html import write_report
    from evalharness.results.store import load_results
    from evalharness.spec.suite import find_suite

    clash = [flag for flag, given in (("--tasks", args.tasks), ("--limits", args.limits), ("--model-args", args.model_args),
                                      ("--judge-model", args.judge_model), ("--num-fewshot", args.num_fewshot is not None),
                                      ("--chat-template/--no-chat-template", args.chat_template is not None)) if given]
    if args.model != "smollm2":
        clash.append("--model")
    if clash:
        raise UsageError(f"run --suite: {', '.join(clash)} cannot be combined with a suite (the suite file names models and tasks)")
    suite = find_suite(args.suite)
    output = args.output or Path(suite.spec.output or Path("runs") / suite.spec.name)
    run_dirs = run_suite(suite, output, cache_dir=args.cache_dir, use_cache=not args.no_cache, progress=not args.no_progress,
                         cap=args.limit, batch_size=args.batch_size, executor=args.executor,
                         ray_address=args.ray_address, ray_workers=args.ray_workers or None)
    if not run_dirs:
        return 0  # a launcher rank other than 0 (its shares are in rank 0's runs)
    failed = 0
    for d in run_dirs:
        results = load_results(d)
        failed += sum(t.get("n_failed", 0) for t in results["tasks"].values())
        print(printable(f"\n{results['model'].get('name')}  ({d})\n{summary_table(results)}"))
    report = output / "report.html"
    write_report([str(d) for d in run_dirs], report, "html", title=f"Suite {suite.spec.name}: leaderboard")
    print(f"\nreport: {report}")
    if failed:
        print(f"{failed} sample(s) failed; rerun the same command to retry them", file=sys.stderr)
        return 1
    return 0


COMMAND = Command("run", "evaluate a model on tasks", add_arguments, handle)
