"""Issue 18: judged runs end to end, and no silent wrong numbers.

Judged runs are produced by `evalharness score` with the fake judge (a fixed verdict text) or
constructed with the schema `score` writes (per-sample ratings, unparseable verdicts as null
with `status: unparseable`), then gated, reported and read back strictly.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from evalharness.cli import main
from evalharness.report.data import load_runs
from evalharness.report.samples import task_samples

JUDGE = "mt_bench_single"
FINGERPRINT = {"task_file_hash": "f" * 16, "prompt_template_hash": "p" * 16, "model_identity_hash": "m" * 16,
               "harness_version": "0.1.0", "seed": 0, "num_fewshot": 0, "chat_template": False}


def _strict(text: str) -> Any:
    def refuse(name: str) -> Any:
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def judged_run(run: Path, ratings: list[float | None], task: str = "mt", model: str = "m") -> Path:
    """A judged run as `score` writes it: None is an unparseable verdict."""
    records = []
    for i, r in enumerate(ratings):
        rec: dict[str, Any] = {"id": str(i), "prompt": f"Question {i}?", "generations": [f"answer {i}"]}
        rec["scores"] = {JUDGE: r}
        rec["score_stats"] = {JUDGE: [0.0, 0.0] if r is None else [r, 1.0]}
        rec["score_details"] = {JUDGE: {"status": "unparseable", "raw": ["no rating"], "reason": ["no [[rating]] found"]} if r is None else
                                {"status": "parsed", "verdicts": [r], "raw": [f"Good. [[{r:g}]]"]}}
        records.append(rec)
    parsed = [r for r in ratings if r is not None]
    entry = {"name": JUDGE, "value": float(np.mean(parsed)) if parsed else None, "ci_low": None, "ci_high": None,
             "stderr": None, "n": len(parsed), "higher_is_better": True, "kind": "bounded", "scale": [1.0, 10.0],
             "n_unparseable": len(ratings) - len(parsed), "n_errors": 0,
             "judge": {"name": JUDGE, "mode": "single", "scale": [1.0, 10.0], "verdict": "generate"}}
    results = {"schema_version": 1, "model": {"backend": "fake", "name": model},
               "tasks": {task: {"kind": "generate", "n_samples": len(ratings), "n_failed": 0, "metrics": {JUDGE: entry},
                                "fingerprint": FINGERPRINT, "samples_file": f"samples/{task}.jsonl"}}}
    (run / "samples").mkdir(parents=True)
    (run / "results.json").write_text(json.dumps(results))
    (run / "samples" / f"{task}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return run


def _ratings(n: int, centre: float, seed: int) -> list[float | None]:
    rng = np.random.default_rng(seed)
    return [float(x) for x in np.clip(np.round(rng.normal(centre, 1.5, n)), 1, 10)]


# --- judge metrics through the gate ---------------------------------------------------------------


def test_a_judged_drop_from_7_to_4_on_120_items_fails_the_gate(tmp_path: Path) -> None:
    base = judged_run(tmp_path / "base", _ratings(120, 7, 0))
    cur = judged_run(tmp_path / "cur", _ratings(120, 4, 1))
    code, out, err = cli("gate", str(cur), "--baseline", str(base))
    assert code == 1, err
    assert f"FAIL mt.{JUDGE}: drop of" in out and "significant" in out


def test_identical_judged_ratings_pass_the_gate(tmp_path: Path) -> None:
    ratings = _ratings(120, 7, 0)
    base, cur = judged_run(tmp_path / "base", ratings), judged_run(tmp_path / "cur", ratings)
    code, out, err = cli("gate", str(cur), "--baseline", str(base))
    assert code == 0, err
    row = next(line for line in out.splitlines() if line.startswith("mt "))
    assert " 120 " in row and "n/a" in row  # every paired difference is 0: no interval, not [+0, +0]
    code, _, _ = cli("gate", str(cur), "--baseline", str(base), "--no-stats")
    assert code == 0


def test_unparseable_verdicts_are_excluded_counted_and_can_fail_the_gate(tmp_path: Path) -> None:
    ratings = _ratings(120, 7, 0)
    worse = [None if i % 4 == 0 else r for i, r in enumerate(ratings)]  # 30 of 120 unparseable, the rest unchanged
    base, cur = judged_run(tmp_path / "base", ratings), judged_run(tmp_path / "cur", worse)
    code, out, _ = cli("gate", str(cur), "--baseline", str(base))
    assert code == 0  # the parsed verdicts did not move
    assert "unparseable verdicts excluded: 0 of 120 in the baseline, 30 of 120 in the current run" in out
    assert " 90 " in next(line for line in out.splitlines() if line.startswith("mt "))
    config = tmp_path / "gate.yaml"
    config.write_text(f"tasks:\n  mt:\n    {JUDGE}: {{max_unparseable_rate: 0.1}}\n")
    code, out, _ = cli("gate", str(cur), "--baseline", str(base), "--config", str(config))
    assert code == 1
    assert "30 of 120 verdicts unparseable (25.0%), above max_unparseable_rate 0.1" in out


def test_a_judge_that_never_parses_fails_the_gate(tmp_path: Path) -> None:
    base = judged_run(tmp_path / "base", _ratings(20, 7, 0))
    cur = judged_run(tmp_path / "cur", [None] * 20)
    code, out, _ = cli("gate", str(cur), "--baseline", str(base))
    assert code == 1 and "no verdict parsed in both runs" in out


def test_score_with_a_judge_that_never_parses_warns_and_writes_strict_json(tmp_path: Path) -> None:
    preds = tmp_path / "p.jsonl"
    preds.write_text("".join(json.dumps({"id": str(i), "prompt": f"q{i}", "prediction": f"a{i}"}) + "\n" for i in range(6)))
    code, out, err = cli("score", "--predictions", str(preds), "--judge", JUDGE, "--judge-model", "fake",
                         "--judge-model-args", "output=Seven out of ten", "--no-cache", "--output", str(tmp_path / "o"))
    assert code == 0
    assert f"warning: 6 of 6 verdicts unparseable ({JUDGE}, task p)" in err
    assert "nan" not in out.lower() and "n/a" in out
    results = _strict((tmp_path / "o" / "results.json").read_text())
    m = results["tasks"]["p"]["metrics"][JUDGE]
    assert m["value"] is None and m["n"] == 0 and m["n_unparseable"] == 6
    assert (m["kind"], m["scale"]) == ("bounded", [1.0, 10.0])
    for line in (tmp_path / "o" / "samples" / "p.jsonl").read_text().splitlines():
        assert _strict(line)["scores"][JUDGE] is None


def test_a_judged_score_run_gates_against_itself(tmp_path: Path) -> None:
    preds = tmp_path / "p.jsonl"
    preds.write_text("".join(json.dumps({"id": str(i), "prompt": f"q{i}", "prediction": f"a{i}"}) + "\n" for i in range(120)))
    for name, verdict in (("a", "[[7]]"), ("b", "[[7]]"), ("c", "[[4]]")):
        assert cli("score", "--predictions", str(preds), "--judge", JUDGE, "--judge-model", "fake", "--judge-model-args",
                   f"output={verdict}", "--no-cache", "--bootstrap", "100", "--output", str(tmp_path / name))[0] == 0
    assert cli("gate", str(tmp_path / "b"), "--baseline", str(tmp_path / "a"))[0] == 0
    # another judge output is another judge set-up (task_file_hash); compared anyway, the drop fails
    code, out, _ = cli("gate", str(tmp_path / "c"), "--baseline", str(tmp_path / "a"), "--allow-mismatch")
    assert code == 1 and "drop of 3" in out


# --- readers refuse broken files with one line ---------------------------------------------------


def _acc_run(run: Path, scores: list[Any], value: Any = 0.5, **entry: Any) -> Path:
    records = [{"id": str(i), "prompt": f"q{i}", "scores": {"acc": s}} for i, s in enumerate(scores)]
    metric = {"name": "acc", "value": value, "n": len(scores), "higher_is_better": True, **entry}
    results = {"schema_version": 1, "tasks": {"t": {"metrics": {"acc": metric}, "fingerprint": FINGERPRINT}}}
    (run / "samples").mkdir(parents=True)
    (run / "results.json").write_text(json.dumps(results))
    (run / "samples" / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return run


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        ([1.0, float("nan"), 0.0, 1.0], "t.jsonl:2: not a valid sample record: NaN is not JSON"),
        ([1.0, float("inf"), 0.0, 1.0], "t.jsonl:2: not a valid sample record: Infinity is not JSON"),
        ([1.0, "1", 0.0, 1.0], 't.jsonl:2: scores.acc: expected a number or null, got "1"'),
        ([1.0, True, 0.0, 1.0], "t.jsonl:2: scores.acc: expected a number or null, got true"),
    ],
)
def test_gate_refuses_nan_inf_and_mistyped_per_sample_scores(tmp_path: Path, scores: list[Any], expected: str) -> None:
    base = _acc_run(tmp_path / "base", [1.0, 0.0, 0.0, 1.0])
    cur = _acc_run(tmp_path / "cur", scores)
    code, out, err = cli("gate", str(cur), "--baseline", str(base))
    assert code == 2 and out == ""
    assert expected in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda r: r.update(schema_version="1"), 'schema_version: expected a positive integer, got "1"'),
        (lambda r: r.update(schema_version=None), "schema_version: expected a positive integer, got null"),
        (lambda r: r["tasks"]["t"]["metrics"]["acc"].update(value="0.5"), "tasks.t.metrics.acc.value: expected a number"),
        (lambda r: r["tasks"]["t"]["metrics"]["acc"].update(ci_low="low"), "tasks.t.metrics.acc.ci_low: expected a number or null"),
        (lambda r: r["tasks"]["t"]["metrics"]["acc"].update(n="4"), "tasks.t.metrics.acc.n: expected a count"),
        (lambda r: r["tasks"]["t"]["metrics"]["acc"].update(higher_is_better="yes"), "higher_is_better: expected true or false"),
    ],
)
def test_gate_and_report_refuse_mistyped_results_files(tmp_path: Path, edit: Any, expected: str) -> None:
    base = _acc_run(tmp_path / "base", [1.0, 0.0, 0.0, 1.0])
    cur = _acc_run(tmp_path / "cur", [1.0, 0.0, 0.0, 1.0])
    results = json.loads((cur / "results.json").read_text())
    edit(results)
    (cur / "results.json").write_text(json.dumps(results))
    for argv in (["gate", str(cur), "--baseline", str(base)], ["report", str(cur), "--output", str(tmp_path / "r.html")]):
        code, _, err = cli(*argv)
        assert code == 2 and expected in err and "Traceback" not in err


def test_bare_nan_in_results_json_is_refused(tmp_path: Path) -> None:
    base = _acc_run(tmp_path / "base", [1.0, 0.0, 0.0, 1.0])
    cur = _acc_run(tmp_path / "cur", [1.0, 0.0, 0.0, 1.0])
    (cur / "results.json").write_text((cur / "results.json").read_text().replace('"value": 0.5', '"value": NaN'))
    code, _, err = cli("gate", str(cur), "--baseline", str(base))
    assert code == 2 and "not a valid results file: NaN is not JSON" in err


def test_write_json_never_writes_nan(tmp_path: Path) -> None:
    from evalharness.results.store import SampleLog, write_json, write_jsonl

    data = {"a": math.nan, "b": [math.inf, -math.inf, 1.5], "c": {"d": (math.nan, 2)}}
    write_json(tmp_path / "x.json", data)
    write_jsonl(tmp_path / "x.jsonl", [data])
    log = SampleLog(tmp_path / "y.jsonl")
    log.append(data)
    log.close()
    expected = {"a": None, "b": [None, None, 1.5], "c": {"d": [None, 2]}}
    assert _strict((tmp_path / "x.json").read_text()) == expected
    assert _strict((tmp_path / "x.jsonl").read_text()) == expected
    assert _strict((tmp_path / "y.jsonl").read_text()) == expected


# --- the report reads the declaration --------------------------------------------------------------


def test_report_gives_judge_ratings_no_right_wrong_badge_and_uses_the_judge_scale(tmp_path: Path) -> None:
    a = judged_run(tmp_path / "a", [1.0] * 10, model="a")  # every rating 1/10: not a 0/1 metric
    b = judged_run(tmp_path / "b", [7.0] * 10, model="b")
    for runs in ([a], [a, b]):
        ts = task_samples("mt", load_runs(runs))
        assert ts.payload["correct"] is None
        assert {o["k"] for row in ts.payload["samples"] for o in row["o"]} == {""}
    code, _, err = cli("report", str(a), "--output", str(tmp_path / "r.html"))
    assert code == 0, err
    html = (tmp_path / "r.html").read_text()
    assert ">10</text>" in html  # the bar chart's axis runs to the judge scale's top, not 0-1


def test_report_marks_right_wrong_by_declared_binary_and_a_missing_metric_as_neither(tmp_path: Path) -> None:
    a = _acc_run(tmp_path / "a", [1.0, 0.0, 0.0, 1.0], kind="binary", scale=[0.0, 1.0])
    b = judged_run(tmp_path / "b", [7.0] * 4, task="t", model="b")  # the same task without acc
    ts = task_samples("t", load_runs([a, b]))
    assert ts.payload["correct"] == {"metric": "acc", "value": 1.0}
    marks = [[o["k"] for o in row["o"]] for row in ts.payload["samples"]]
    assert [m[0] for m in marks] == ["r", "w", "w", "r"]
    assert all(m[1] == "" for m in marks)  # run b lacks acc: n/a, never "wrong"


# --- the console ---------------------------------------------------------------------------------


def test_console_prints_na_for_no_bootstrap_and_zero_width_intervals() -> None:
    from evalharness.cli.console import summary_table

    results = {"tasks": {"t": {"metrics": {
        "bleu": {"value": 30.0, "ci_low": None, "ci_high": None, "ci_reason": "no resamples (--bootstrap 0)", "n": 5},
        "acc": {"value": 1.0, "ci_low": 1.0, "ci_high": 1.0, "n": 5},
        "judge": {"value": None, "ci_low": None, "ci_high": None, "n": 0},
    }}}}
    table = summary_table(results)
    assert "n/a (no resamples (--bootstrap 0))" in table
    assert "[1.0000, 1.0000]" not in table and "n/a (zero-width interval)" in table
    assert "nan" not in table.lower()


def test_report_shows_the_judge_explanation_as_text(tmp_path: Path) -> None:
    preds = tmp_path / "p.jsonl"
    preds.write_text("".join(json.dumps({"id": str(i), "prompt": f"q{i}", "prediction": f"a{i}"}) + "\n" for i in range(3)))
    code, _, err = cli("score", "--predictions", str(preds), "--judge", JUDGE, "--judge-model", "fake", "--judge-model-args",
                       "output=Clear and correct; a little terse. [[7]]", "--no-cache", "--output", str(tmp_path / "o"))
    assert code == 0, err
    ts = task_samples("p", load_runs([tmp_path / "o"]))
    d = ts.payload["samples"][0]["o"][0]["d"][JUDGE]
    assert d["verdict"] == "7" and d["status"] == "parsed"
    assert d["explanation"] == "Clear and correct; a little terse. [[7]]"  # prose, not a JSON list
    bad = judged_run(tmp_path / "bad", [None])
    d = task_samples("mt", load_runs([bad])).payload["samples"][0]["o"][0]["d"][JUDGE]
    assert d["raw"] == "no rating" and d["explanation"].startswith("unparseable")


def test_console_counts_failed_samples_out_of_all_samples(tmp_path: Path) -> None:
    from evalharness.cli.console import warnings

    (tmp_path / "samples").mkdir()
    rows = [{"id": "1", "error": "openai-chat: HTTP 503: busy"}, {"id": "2", "error": "openai-chat: HTTP 503: busy"},
            {"id": "3", "scores": {"exact_match": 1.0}}]
    (tmp_path / "samples" / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    results = {"tasks": {"t": {"n_samples": 1, "n_failed": 2, "metrics": {}}}}
    assert warnings(results, tmp_path) == ["warning: 2 of 3 sample(s) failed in task t", "  2 x openai-chat: HTTP 503: busy"]
