"""Reports from results files only: a self-contained HTML page, a Markdown summary, CSV, a DataFrame.

Never loads a model: everything comes from each run directory's `results.json` and
`samples/<task>.jsonl`. The HTML goes through the jinja2 templates in the repository's
top-level `reports/` folder with autoescaping on, so model output is always shown as text;
sample data is embedded as JSON in `<script type="application/json">` blocks (with `<`, `>`
and `&` written as `\\u003c` ...) and paged client-side, so a 100,000-sample page opens fast.

Optional inputs the report renders when present:
    results.json `arena` or `tasks.<task>.bradley_terry`, a pairwise rating table:
        {"ratings": {"<model>": {"rating": 1032.5, "ci_low": 1010.2, "ci_high": 1051.0, "n": 160}},
         "position_consistency": 0.91,                                  # optional, 0-1
         "win_rate": {"<model a>": {"<model b>": 0.64}}}                # optional, a beats b
        (a bare number is accepted for a rating: {"ratings": {"m": 1032.5}})
    a judge metric (`tasks.<task>.metrics.<judge>`) with any of `n_unparseable`, `n_flaky`,
        `position_consistency` (0-1) or `agreement` ({"percent": 0.8, "cohen_kappa": 0.6}).
    per-sample `score_details.<judge>` with `verdict`, `rationale` (or `explanation`), `raw`,
        `status` ("unparseable" / "inconsistent"): shown in the drill-down.
    `tasks.<task>.usage.cost` (or `cost_usd`) and `usage.prompt_tokens` / `completion_tokens`.
"""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalharness.assets import builtin_dir
from evalharness.errors import DataError, UsageError
from evalharness.report.data import Run, bradley_terry_tables, group_boards, human_rows, judge_metrics, leaderboard, load_runs
from evalharness.report.samples import DEFAULT_MAX_TEXT, TaskSamples, declared_scale, diffs, task_samples
from evalharness.report.svg import bar_chart, color, fmt, heatmap, histogram
from evalharness.results.store import csv_cell, md_text
from evalharness.version import __version__

if TYPE_CHECKING:
    import pandas

FORMATS = ("html", "md", "csv")


def templates_dir() -> Path:
    """The `reports/` folder beside the package (a source checkout or an editable install)."""
    path = builtin_dir("reports")
    if not (path / "report.html.j2").is_file():
        raise DataError(f"{path}: report templates not found (reports/report.html.j2 ships with the source tree)")
    return path


def _json_for_script(data: Any) -> str:
    """JSON that cannot end its <script> element or open a comment: <, >, & as \\u escapes."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _warnings(runs: list[Run], samples: list[TaskSamples]) -> list[str]:
    out = []
    for ts in samples:
        if ts.missing:
            out.append(f"{ts.task}: no per-sample log for {', '.join(ts.missing)}; its drill-down is empty")
    tasks = dict.fromkeys(t for r in runs for t in r.tasks)
    for task in tasks:
        having = [r for r in runs if task in r.tasks]
        for key, what in (("task_file_hash", "task file"), ("prompt_template_hash", "prompt template"),
                          ("num_fewshot", "few-shot count"), ("sample_ids_hash", "sample set")):
            values = {str(r.tasks[task].get("fingerprint", {}).get(key)) for r in having}
            if len(values) > 1:
                out.append(f"{task}: the runs differ in {what}; their scores are not directly comparable")
    return out


def _cost(usage: dict[str, Any]) -> float | None:
    for key in ("cost", "cost_usd"):
        if isinstance(usage.get(key), (int, float)):
            return float(usage[key])
    return None


def _metadata(run: Run) -> dict[str, Any]:
    res = run.results
    tasks = []
    totals = {"prompt_tokens": 0, "completion_tokens": 0, "requests": 0, "cache_hits": 0}
    cost: float | None = None
    for name, t in run.tasks.items():
        usage = t.get("usage") or {}
        for k in totals:
            totals[k] += int(usage.get(k) or 0)
        c = _cost(usage)
        if c is not None:
            cost = (cost or 0.0) + c
        tasks.append({"name": name, "t": t, "usage": usage, "cost": c, "fingerprint": t.get("fingerprint") or {}})
    model = res.get("model") or {}
    return {
        "label": run.label, "path": str(run.path), "model": model,
        "identity": json.dumps(model.get("identity"), indent=1, sort_keys=True, default=str),
        "harness": (res.get("harness") or {}).get("version", "?"), "created": res.get("created", "?"),
        "duration": res.get("duration_s"), "config": res.get("config") or {}, "tasks": tasks, "totals": totals,
        "cost": cost if cost is not None else _cost(res.get("usage") or {}),
    }


def _charts(runs: list[Run], boards: list[Any], samples: list[TaskSamples]) -> list[dict[str, Any]]:
    index = {r.label: i for i, r in enumerate(runs)}
    by_task: dict[str, list[Any]] = {}
    done: set[tuple[str, str]] = set()
    out = []
    for board in boards:
        for j, col in enumerate(board.columns):
            if (col.task, col.metric) in done:
                continue
            done.add((col.task, col.metric))
            items = [(row.run.label, c.value, c.ci_low, c.ci_high, index[row.run.label])
                     for row in board.rows if (c := row.cells[j]) is not None]
            arrow = "higher is better" if col.higher_is_better else "lower is better"
            scale = declared_scale(runs, col.task, col.metric)
            by_task.setdefault(col.task, []).append(bar_chart(f"{col.task} · {col.metric}", items, f"{col.metric} ({arrow}), 95% CI",
                                                              scale=scale))
    for group in dict.fromkeys(g for r in runs for g in r.groups):  # groups: bars only (no samples of their own)
        out.append({"task": f"{group} (group)", "bars": by_task.get(group, []), "hist": None})
    for ts in samples:
        metric = ts.payload["metrics"][0] if ts.payload["metrics"] else "score"
        series = [(label, vals, index[label]) for label, vals in zip(ts.payload["runs"], ts.primary_scores, strict=True)]
        hist = histogram(f"{ts.task} · per-sample {metric}", series, f"per-sample {metric} (bar height: share of samples)")
        out.append({"task": ts.task, "bars": by_task.get(ts.task, []), "hist": hist})
    return out


def build_context(runs: list[Run], title: str | None = None, max_text: int = DEFAULT_MAX_TEXT) -> dict[str, Any]:
    """Everything the HTML template needs."""
    board = leaderboard(runs)
    groups = group_boards(runs)
    tasks = list(dict.fromkeys(t for r in runs for t in r.tasks))
    samples = [task_samples(t, runs, max_text) for t in tasks]
    bts = bradley_terry_tables(runs)
    bt_views = []
    for bt in bts:
        items = [(r.model, r.rating, r.ci_low, r.ci_high, -1) for r in bt.ratings]
        chart = bar_chart(f"Bradley-Terry rating · {bt.title}", items, "rating, 95% CI", zero=False, digits=1)
        names = [r.model for r in bt.ratings]
        hm = heatmap(f"Win rate (row beats column) · {bt.title}", names, bt.win_rate) if bt.win_rate else None
        bt_views.append({"bt": bt, "chart": chart, "heatmap": hm})
    diff_list = [d for ts in samples for d in diffs(ts, runs)]
    return {
        "title": title or ("Evaluation report: " + ", ".join(r.label for r in runs[:3]) + (" …" if len(runs) > 3 else "")),
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "version": __version__, "runs": runs, "colors": [color(i) for i in range(len(runs))],
        "run_colors": {r.label: color(i) for i, r in enumerate(runs)},
        "board": board, "fmt": fmt,
        "group_boards": groups, "group_names": {g.name for g in groups}, "bt_views": bt_views, "judges": judge_metrics(runs),
        "human": human_rows(runs),
        "charts": _charts(runs, [board, *(g.board for g in groups)], samples), "diffs": diff_list,
        "meta": [_metadata(r) for r in runs], "warnings": _warnings(runs, samples),
        "task_index": _json_for_script([{"task": ts.task, "n": len(ts.payload["samples"]), "runs": ts.payload["runs"]} for ts in samples]),
        "sample_blocks": [_json_for_script(ts.payload) for ts in samples],
        "n_samples": sum(len(ts.payload["samples"]) for ts in samples),
    }


def render_html(run_dirs: list[str | Path], title: str | None = None, max_text: int = DEFAULT_MAX_TEXT) -> str:
    """The self-contained HTML report of the given run directories."""
    import jinja2
    from markupsafe import Markup

    runs = load_runs(run_dirs)
    folder = templates_dir()
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(folder)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    ctx = build_context(runs, title, max_text)
    ctx["css"] = Markup((folder / "report.css").read_text(encoding="utf-8"))
    ctx["js"] = Markup((folder / "report.js").read_text(encoding="utf-8"))
    ctx["sample_blocks"] = [Markup(b) for b in ctx["sample_blocks"]]
    ctx["task_index"] = Markup(ctx["task_index"])
    return env.get_template("report.html.j2").render(ctx)


# ------------------------------------------------------------------------------------ tabular forms

ROW_FIELDS = ["run", "model", "task", "metric", "value", "ci_low", "ci_high", "stderr", "n", "higher_is_better",
              "n_samples", "n_failed", "harness_version", "created", "task_file_hash", "prompt_template_hash",
              "model_identity_hash", "prompt_tokens", "completion_tokens", "cost"]


def results_rows(run_dirs: list[str | Path]) -> list[dict[str, Any]]:
    """One flat row per (run, task, metric)."""
    rows = []
    for run in load_runs(run_dirs):
        for task, t in run.tasks.items():
            fp, usage = t.get("fingerprint") or {}, t.get("usage") or {}
            for metric, m in t["metrics"].items():
                rows.append({
                    "run": str(run.path), "model": run.label, "task": task, "metric": metric,
                    "value": m.get("value"), "ci_low": m.get("ci_low"), "ci_high": m.get("ci_high"),
                    "stderr": m.get("stderr"), "n": m.get("n"), "higher_is_better": m.get("higher_is_better", True),
                    "n_samples": t.get("n_samples"), "n_failed": t.get("n_failed"),
                    "harness_version": fp.get("harness_version") or (run.results.get("harness") or {}).get("version"),
                    "created": run.results.get("created"), "task_file_hash": fp.get("task_file_hash"),
                    "prompt_template_hash": fp.get("prompt_template_hash"), "model_identity_hash": fp.get("model_identity_hash"),
                    "prompt_tokens": usage.get("prompt_tokens"), "completion_tokens": usage.get("completion_tokens"),
                    "cost": _cost(usage),
                })
    return rows


def results_frame(run_dirs: list[str | Path]) -> pandas.DataFrame:
    """The results of the runs as a pandas DataFrame, one row per (run, task, metric)."""
    try:
        import pandas
    except ImportError:
        raise UsageError("results_frame needs pandas: pip install 'evalharness[data]'") from None
    return pandas.DataFrame(results_rows(run_dirs), columns=ROW_FIELDS)


def render_csv(run_dirs: list[str | Path]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=ROW_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in results_rows(run_dirs):
        writer.writerow({k: "" if v is None or (isinstance(v, float) and math.isnan(v)) else csv_cell(v) for k, v in row.items()})
    return buf.getvalue()


def _md(text: str) -> str:
    return md_text(text)


def render_markdown(run_dirs: list[str | Path]) -> str:
    """A Markdown summary for a PR comment: the leaderboard with CIs, diffs and warnings."""
    runs = load_runs(run_dirs)
    board = leaderboard(runs)
    head = ["model", "mean rank"] + [f"{c.task} {c.metric} {'↑' if c.higher_is_better else '↓'}" for c in board.columns]
    lines = ["## Evaluation results", "", "| " + " | ".join(_md(h) for h in head) + " |", "|" + "---|" * len(head)]
    for row in board.rows:
        cells = [_md(row.run.label), fmt(row.mean_rank, 2)]
        for cell in row.cells:
            if cell is None:
                cells.append("–")
                continue
            text = f"{fmt(cell.value)} [{fmt(cell.ci_low)}, {fmt(cell.ci_high)}]"
            cells.append(f"**{text}**" if cell.best and len(board.rows) > 1 else text)
        lines.append("| " + " | ".join(cells) + " |")
    n = {(r.run.label, c.task): cell.n for r in board.rows for c, cell in zip(board.columns, r.cells, strict=True) if cell}
    group_lines = []
    for gb in group_boards(runs):
        shown = ", ".join(gb.members[:8]) + (", …" if len(gb.members) > 8 else "")
        group_lines.append(f"- group **{_md(gb.name)}**: {len(gb.members)} tasks ({_md(shown)}); "
                           "`_micro`: every sample counts once, `_macro`: every task once")
    lines += ["", "95% confidence intervals in brackets (method per metric: `ci_method`; – where none is defined); "
              "**bold**: best per column; mean rank over each task's first metric.",
              "n per task: " + "; ".join(f"{_md(m)} {_md(t)} {v:,}" for (m, t), v in n.items())]
    if group_lines:
        lines += ["", *group_lines]
    tasks = list(dict.fromkeys(c.task for c in board.columns if not c.is_group))
    diff_list = [d for t in tasks for d in diffs(task_samples(t, runs, 1), runs)]
    if diff_list:
        lines += ["", "### Run-to-run changes", "", "| task | metric | baseline | run | common | changed | improved | regressed |",
                  "|---|---|---|---|---|---|---|---|"]
        for d in diff_list:
            note = "" if d.comparable else " (different task file or prompt)"
            lines.append(f"| {_md(d.task)}{note} | {_md(d.metric)} | {_md(d.run_a)} | {_md(d.run_b)} | {d.common:,} | {d.changed:,} | "
                         f"{d.improved:,} | {d.regressed:,} |")
    warnings = _warnings(runs, [])
    if warnings:
        lines += [""] + [f"> warning: {_md(w)}" for w in warnings]
    return "\n".join(lines) + "\n"


def write_report(run_dirs: list[str | Path], output: Path | None, fmt_name: str = "html", title: str | None = None,
                 max_text: int = DEFAULT_MAX_TEXT) -> str:
    """Render and write the report (or return it when output is None); returns the text."""
    if fmt_name not in FORMATS:
        raise UsageError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt_name!r}")
    if fmt_name == "html":
        text = render_html(run_dirs, title, max_text)
    elif fmt_name == "md":
        text = render_markdown(run_dirs)
    else:
        text = render_csv(run_dirs)
    if output is not None:
        from evalharness.results.store import atomic_write_text

        if output.is_dir():
            raise UsageError(f"--output: {output} is a directory; give a file name such as {output / ('report.' + fmt_name)}")
        atomic_write_text(output, text)
    return text
