"""`evalharness annotate export|import`: human ratings and blinded pairwise preferences (see annotate.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from evalharness.cli.args import Command, positive_int
from evalharness.errors import UsageError


def _add_annotate(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=type(p))
    ex = sub.add_parser("export", help="write samples for annotation (one run: ratings; two runs: blinded pairwise)")
    ex.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="one run (Likert ratings) or two runs (pairwise preferences)")
    ex.add_argument("--output", "-o", type=Path, required=True, help="file to write: .csv or .jsonl")
    ex.add_argument("--key", type=Path, default=None,
                    help="pairwise: where the unblinding key goes (default: OUTPUT.key.json); keep it from annotators")
    ex.add_argument("--task", default=None, help="only this task (default: every task with generated answers)")
    ex.add_argument("--limit", type=positive_int, default=None, help="at most N samples per task")
    ex.add_argument("--scale", default=None, help="rating scale MIN-MAX (default: the task judge's scale, else 1-5)")
    ex.add_argument("--seed", type=int, default=0, help="seed of the A/B order (pairwise)")
    im = sub.add_parser("import", help="read labels back into a run; results.json gains human scores and judge agreement")
    im.add_argument("file", type=Path, metavar="FILE", help="the annotated .csv or .jsonl file")
    im.add_argument("--run", type=Path, required=True, dest="run_dir", help="the run directory the labels belong to")
    im.add_argument("--key", type=Path, default=None, help="pairwise: the key file written by export (default: FILE.key.json if present)")


def _key_path(path: Path) -> Path:
    return path.with_name(path.name + ".key.json")


def cmd_annotate(args: argparse.Namespace) -> int:
    from evalharness.judging.human import PAIR_FIELDS, RATING_FIELDS, export_pairwise, export_ratings, import_labels, write_rows
    from evalharness.results.store import write_json

    if args.action == "export":
        runs = [Path(d) for d in args.run_dirs]
        if len(runs) == 1:
            scale = None
            if args.scale is not None:
                lo, _, hi = args.scale.partition("-")
                if not (lo.isdigit() and hi.isdigit() and int(lo) < int(hi)):
                    raise UsageError(f"--scale: expected MIN-MAX such as 1-5, got {args.scale!r}")
                scale = (int(lo), int(hi))
            rows = export_ratings(runs[0], args.task, args.limit, scale)
            write_rows(args.output, rows, RATING_FIELDS)
            print(f"{len(rows)} item(s) to rate: {args.output}")
            return 0
        if len(runs) != 2:
            raise UsageError("annotate export: give one run (ratings) or two runs (pairwise)")
        pairs, unblind = export_pairwise(runs[0], runs[1], args.task, args.limit, args.seed)
        key_path = args.key or _key_path(args.output)
        write_rows(args.output, pairs, PAIR_FIELDS)
        write_json(key_path, unblind)
        print(f"{len(pairs)} pair(s) to judge: {args.output}\nkey (keep it away from annotators): {key_path}")
        return 0
    key = args.key
    if key is None and _key_path(args.file).is_file():
        key = _key_path(args.file)
    summary = import_labels(args.file, args.run_dir, key)
    print(f"{summary['labels']} label(s) imported ({summary['blank']} blank) -> {summary['stored']}")
    for task, entry in summary["tasks"].items():
        if "ratings" in entry:
            r = entry["ratings"]
            lo, hi = r["scale"]
            print(f"{task}: human rating {r['mean']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}] (n={r['n']}, scale {lo}-{hi})")
        if "pairwise" in entry:
            p = entry["pairwise"]
            print(f"{task}: win rate vs {p['against']} {p['win_rate']:.3f} [{p['ci_low']:.3f}, {p['ci_high']:.3f}] "
                  f"({p['wins']}-{p['losses']}-{p['ties']})")
        for judge, a in (entry.get("agreement") or {}).items():
            parts = [f"{k} {v:.3f}" for k, v in a.items() if k != "n" and isinstance(v, float)]
            print(f"{task}: agreement with {judge} (n={a['n']}): {', '.join(parts) or 'undefined'}")
    return 0


COMMAND = Command("annotate", "export samples for human annotation, or import labels (ratings, pairwise preferences)",
                  _add_annotate, cmd_annotate)
