"""Honest arena and resample settings: a one-order pairwise judge is flagged in the console, the
results and the report; the arena records how it counted ties and inconsistent pairs; the bootstrap
resamples questions; resample counts below 100 are refused with one line (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import evalharness.cli.arena  # noqa: F401  (registers the command)
from evalharness.cli import main

ROOT = Path(__file__).resolve().parent.parent


def _run_dir(tmp_path: Path, name: str, answers: list[str]) -> Path:
    preds = tmp_path / f"{name}.jsonl"
    preds.write_text("".join(json.dumps({"id": str(i), "prompt": f"q{i}", "prediction": a, "references": ["x"]}) + "\n"
                             for i, a in enumerate(answers)))
    out = tmp_path / name
    assert main(["score", "--predictions", str(preds), "--metrics", "exact_match", "--output", str(out), "--bootstrap", "0"]) == 0
    return out


def _arena(tmp_path: Path, judge: str, capsys: pytest.CaptureFixture[str]) -> tuple[dict, str]:
    runs = [str(_run_dir(tmp_path, name, ["a", "b", "c"])) for name in ("x", "y", "z")]
    capsys.readouterr()
    out = tmp_path / "ar"
    assert main(["arena", *runs, "--judge", judge, "--judge-model", "fake", "--judge-model-args", "output=[[A]]",
                 "--no-cache", "--output", str(out), "--bootstrap", "100"]) == 0
    return json.loads((out / "results.json").read_text()), capsys.readouterr().err


def test_one_order_pairwise_judge_is_flagged_everywhere(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (ROOT / "judges" / "mt_bench_pairwise.yaml").read_text().replace("swap: true", "swap: false")
    judge = tmp_path / "one_order.yaml"
    judge.write_text(text.replace("name: mt_bench_pairwise", "name: one_order"))
    results, err = _arena(tmp_path, str(judge), capsys)
    assert "warning: judge 'one_order' has pairwise.swap: false" in err
    a = results["arena"]
    assert a["handling"]["position_swap"] is False and "not detectable" in a["handling"]["position_inconsistent"]
    assert a["warnings"] and "position A" in a["warnings"][0]
    # a judge that always says A, seeing each pair in one order: the first-listed model wins everything
    assert a["models"][0] == "x" and a["ratings"]["x"]["rating"] > a["ratings"]["z"]["rating"]
    assert a["position_consistency"] is None  # unknown, and strict JSON (no NaN)
    report = tmp_path / "r.html"
    assert main(["report", str(tmp_path / "ar"), "--output", str(report)]) == 0
    assert "pairwise.swap: false" in report.read_text()


def test_arena_records_its_handling_and_resamples_questions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results, err = _arena(tmp_path, "mt_bench_pairwise", capsys)
    assert "warning" not in err
    a, bt = results["arena"], results["bradley_terry"]
    assert a["handling"] == {"ties": "half a win each", "resampled": "questions", "position_swap": True,
                             "position_inconsistent": "counted as a tie"}
    assert bt["resampled"] == "questions" and bt["n_questions"] == 3 and a["n_questions"] == 3
    assert "warnings" not in a


@pytest.mark.parametrize("command", ["run", "score", "arena"])
@pytest.mark.parametrize("value", ["1", "99", "-1"])
def test_bootstrap_is_zero_or_at_least_100(command: str, value: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--bootstrap", value]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--bootstrap" in err


def test_bootstrap_zero_records_null_corpus_cis(tmp_path: Path) -> None:
    preds = tmp_path / "p.jsonl"
    preds.write_text("".join(json.dumps({"id": str(i), "prediction": f"a cat {i}", "references": [f"a cat {i % 3}"]}) + "\n"
                             for i in range(12)))
    out = tmp_path / "o"
    assert main(["score", "--predictions", str(preds), "--metrics", "bleu,exact_match", "--output", str(out), "--bootstrap", "0"]) == 0
    text = (out / "results.json").read_text()
    m = json.loads(text)["tasks"]["p"]["metrics"]
    assert m["bleu"]["ci_low"] is None and m["bleu"]["ci_reason"] == "no resamples (--bootstrap 0)"
    assert m["exact_match"]["ci_method"] == "wilson" and m["exact_match"]["ci_high"] > m["exact_match"]["value"]
    assert "NaN" not in text
