"""`evalharness score`: predictions file in, run directory out, numbers as the libraries print them."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any

import pytest

from evalharness.cli import main
from evalharness.results.store import load_results, load_samples_log

WORDS = "the a cat dog sat ran on under mat house big small red quickly home went it was".split()


def _rows(n: int = 60, seed: int = 3) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        ref = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12)))
        pred = " ".join(w if rng.random() < 0.7 else rng.choice(WORDS) for w in ref.split())
        ref2 = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12)))
        rows.append({"id": f"s{i}", "prediction": pred if i % 7 else ref, "references": [ref, ref2], "prompt": f"q{i}"})
    return rows


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_results_match_the_libraries_and_carry_cis(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import sacrebleu
    from rouge_score import rouge_scorer

    from evalharness.metrics.squad import exact_match_score, token_f1_score

    rows = _rows()
    preds = _write_jsonl(tmp_path / "mysys.jsonl", rows)
    out = tmp_path / "run"
    metrics = "exact_match,f1,bleu,chrf,chrf++,ter,rouge1,rougeL"
    assert main(["score", "--predictions", str(preds), "--metrics", metrics, "--output", str(out)]) == 0
    assert "bleu" in capsys.readouterr().out

    res = load_results(out)
    assert res["schema_version"] == 1 and res["config"]["ci_method"] == "per-metric"
    task = res["tasks"]["mysys"]
    assert task["n_samples"] == len(rows) and task["samples_file"] == "samples/mysys.jsonl"
    m = task["metrics"]
    assert list(m) == metrics.split(",")
    for entry in m.values():
        assert set(entry) >= {"value", "ci_low", "ci_high", "stderr", "n", "ci_method", "resamples"}
    # corpus metrics are bootstrapped; means get their closed-form interval by kind (evalharness.stats.bootstrap)
    methods = {"exact_match": "wilson", "f1": "wilson-quasibinomial", "rouge1": "wilson-quasibinomial",
               "rougeL": "wilson-quasibinomial", "bleu": "bootstrap-percentile-expanded", "chrf": "bootstrap-percentile-expanded",
               "chrf++": "bootstrap-percentile-expanded", "ter": "bootstrap-percentile-expanded"}
    for name, entry in m.items():
        assert entry["n"] == len(rows) and entry["ci_method"] == methods[name], name
        assert entry["resamples"] == (1000 if methods[name].startswith("bootstrap") else 0)

    hyps = [r["prediction"] for r in rows]
    streams = [[r["references"][k] for r in rows] for k in range(2)]
    assert m["bleu"]["value"] == pytest.approx(sacrebleu.corpus_bleu(hyps, streams).score, abs=1e-9)
    assert m["chrf"]["value"] == pytest.approx(sacrebleu.corpus_chrf(hyps, streams).score, abs=1e-9)
    assert m["chrf++"]["value"] == pytest.approx(sacrebleu.corpus_chrf(hyps, streams, word_order=2).score, abs=1e-9)
    assert m["ter"]["value"] == pytest.approx(sacrebleu.corpus_ter(hyps, streams).score, abs=1e-9)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"])
    for key in ("rouge1", "rougeL"):
        want = sum(scorer.score_multi(r["references"], r["prediction"])[key].fmeasure for r in rows) / len(rows)
        assert m[key]["value"] == pytest.approx(want, abs=1e-12)
    em = 100 * sum(max(exact_match_score(r["prediction"], g) for g in r["references"]) for r in rows) / len(rows)
    f1 = 100 * sum(max(token_f1_score(r["prediction"], g) for g in r["references"]) for r in rows) / len(rows)
    assert m["exact_match"]["value"] == pytest.approx(em) and m["f1"]["value"] == pytest.approx(f1)

    # Corpus BLEU gets a real interval by resampling its sufficient statistics.
    bleu = m["bleu"]
    assert bleu["ci_low"] < bleu["value"] < bleu["ci_high"] and bleu["stderr"] > 0
    assert m["ter"]["higher_is_better"] is False

    log = load_samples_log(out, "mysys")
    assert [r["id"] for r in log] == [r["id"] for r in rows]
    first = log[0]
    assert first["prompt"] == "q0" and first["references"] == rows[0]["references"] and first["generations"] == [rows[0]["prediction"]]
    assert set(first["scores"]) == set(metrics.split(",")) and len(first["score_stats"]["bleu"]) == 10


def test_same_seed_same_ci_and_seed_changes_it(tmp_path: Path) -> None:
    preds = _write_jsonl(tmp_path / "p.jsonl", _rows(30))
    cis = []
    for seed, name in ((0, "a"), (0, "b"), (1, "c")):
        assert main(["score", "--predictions", str(preds), "--metrics", "bleu", "--output", str(tmp_path / name), "--seed", str(seed)]) == 0
        b = load_results(tmp_path / name)["tasks"]["p"]["metrics"]["bleu"]
        cis.append((b["ci_low"], b["ci_high"]))
    assert cis[0] == cis[1] and cis[0] != cis[2]


def test_csv_and_parquet_inputs(tmp_path: Path) -> None:
    rows = _rows(10)
    with (tmp_path / "c.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["id", "prediction", "references"])
        w.writeheader()
        for r in rows:
            refs = json.dumps(r["references"]) if int(r["id"][1:]) % 2 else r["references"][0]
            w.writerow({"id": r["id"], "prediction": r["prediction"], "references": refs})
    assert main(["score", "--predictions", str(tmp_path / "c.csv"), "--metrics", "rouge1", "--output", str(tmp_path / "rc")]) == 0
    log = load_samples_log(tmp_path / "rc", "c")
    assert log[0]["references"] == [rows[0]["references"][0]] and log[1]["references"] == rows[1]["references"]

    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "q.parquet")
    _write_jsonl(tmp_path / "q.jsonl", rows)
    for name in ("q.parquet", "q.jsonl"):
        out = tmp_path / name.replace(".", "_")
        assert main(["score", "--predictions", str(tmp_path / name), "--metrics", "bleu", "--output", str(out)]) == 0
    a = load_results(tmp_path / "q_parquet")["tasks"]["q"]["metrics"]["bleu"]
    b = load_results(tmp_path / "q_jsonl")["tasks"]["q"]["metrics"]["bleu"]
    assert a["value"] == b["value"] and a["ci_low"] == b["ci_low"]


def test_metric_args_reach_the_metric(tmp_path: Path) -> None:
    import sacrebleu

    rows = [
        {"id": "1", "prediction": "Hello, World!", "references": ["hello world"]},
        {"id": "2", "prediction": "A b", "references": ["a b c"]},
    ]
    preds = _write_jsonl(tmp_path / "p.jsonl", rows)
    out = tmp_path / "o"
    assert main(["score", "--predictions", str(preds), "--metrics", "bleu", "--metric-args", "bleu.lowercase=true",
                 "--metric-args", "bleu.tokenize=intl", "--output", str(out)]) == 0
    res = load_results(out)
    hyps, refs = [r["prediction"] for r in rows], [[r["references"][0] for r in rows]]
    want = sacrebleu.corpus_bleu(hyps, refs, lowercase=True, tokenize="intl").score
    assert res["tasks"]["p"]["metrics"]["bleu"]["value"] == pytest.approx(want)
    assert res["config"]["metric_params"] == {"bleu": {"lowercase": True, "tokenize": "intl"}}


def test_pass_at_k_from_predictions(tmp_path: Path) -> None:
    test = "def check(f):\n    assert f(2) == 4\n"
    rows = [
        {"id": "sq", "prompt": "def sq(x):\n", "test": test, "entry_point": "sq",
         "prediction": ["    return x * x\n", "    return x + x\n", "    return 0\n"], "references": "    return x * x\n"},
    ]
    preds = _write_jsonl(tmp_path / "code.jsonl", rows)
    assert main(["score", "--predictions", str(preds), "--metrics", "pass@1,pass_at_k", "--metric-args", "pass_at_k.k=2",
                 "--output", str(tmp_path / "o")]) == 0
    m = load_results(tmp_path / "o")["tasks"]["code"]["metrics"]
    assert m["pass@1"]["value"] == pytest.approx(2 / 3) and m["pass@2"]["value"] == pytest.approx(1.0)


ROW = {"id": "1", "prediction": "x", "references": ["x"]}


@pytest.mark.parametrize(("rows", "args", "message"), [
    ([{"id": "1", "references": ["x"]}], [], "row 1: missing column(s) prediction"),
    ([ROW, {"id": "1", "prediction": "y", "references": ["y"]}], [], "duplicate id '1'"),
    ([{"id": "1", "prediction": "x", "references": []}], ["--metrics", "bleu"], "has no references"),
    ([ROW], ["--metrics", "bleuu"], "bleu"),
    ([ROW], ["--metrics", "acc"], "does not score text predictions"),
    ([ROW], ["--metrics", "bleu", "--metric-args", "rouge1.use_stemmer=true"], "not among --metrics"),
    ([ROW], ["--metrics", "bleu", "--metric-args", "bleu.nonsense=1"], "bad parameters"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], rows: list[dict[str, Any]],
                                          args: list[str], message: str) -> None:
    preds = _write_jsonl(tmp_path / "bad.jsonl", rows)
    assert main(["score", "--predictions", str(preds), *args, "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o" / "results.json").exists()


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["score", "--predictions", str(tmp_path / "nope.jsonl"), "--output", str(tmp_path / "o")]) == 2
    assert "predictions file not found" in capsys.readouterr().err


def test_score_errors_name_the_file_the_folder_and_only_the_parameters_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    preds = tmp_path / "noref.jsonl"
    preds.write_text(json.dumps({"id": "a", "prediction": "x"}) + "\n")
    assert main(["score", "--predictions", str(preds), "--metrics", "bleu", "--output", str(tmp_path / "o")]) == 2
    assert f"error: {preds}: metric 'bleu': sample 'a' has no references" in capsys.readouterr().err
    assert main(["score", "--predictions", str(tmp_path), "--metrics", "bleu", "--output", str(tmp_path / "o")]) == 2
    assert "is a folder; give the predictions file" in capsys.readouterr().err
    ok = tmp_path / "ok.jsonl"
    ok.write_text(json.dumps({"id": "a", "prediction": "x", "references": ["x"]}) + "\n")
    assert main(["score", "--predictions", str(ok), "--metrics", "bleu", "--metric-args", "bleu.tokenize=bogus",
                 "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "sacrebleu refuses tokenize='bogus'" in err and "unknown value 'bogus'" in err and "smooth_method" not in err
