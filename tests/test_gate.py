"""The CI gate: fails on real regressions, passes noise, refuses apples-to-oranges comparisons.

Runs are constructed with the real schema (results.json + samples/<task>.jsonl, values computed
by the metrics' own aggregates) or produced by the pipeline on the fake backend.
"""

from __future__ import annotations

import json
import math
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import binomtest
from scipy.stats import bootstrap as scipy_bootstrap

from evalharness.cli import main
from evalharness.errors import DataError
from evalharness.gate.check import run_gate
from evalharness.metrics.base import build_metric
from evalharness.spec.gate import GateConfig, Rule
from evalharness.stats.paired import as_rows, bootstrap_p_value, mcnemar_exact, paired_bootstrap

FINGERPRINT = {
    "task_file_hash": "f" * 16, "prompt_template_hash": "p" * 16, "model_identity_hash": "m" * 16,
    "harness_version": "0.1.0", "seed": 0, "num_fewshot": 0, "chat_template": False, "sample_ids_hash": "s" * 16,
}


def write_run(run: Path, scores: dict[str, Any], task: str = "toy", ids: list[str] | None = None,
              fingerprint: dict[str, Any] | None = None, prompt: str = "Question {id}?") -> Path:
    """A run directory as `evalharness run` writes it; `scores` maps metric -> per-sample rows."""
    rows = {name: as_rows(np.asarray(v, dtype=float)) for name, v in scores.items()}
    n = len(next(iter(rows.values())))
    ids = ids or [f"s{i:03d}" for i in range(n)]
    records: list[dict[str, Any]] = [{"id": i, "fp": "x", "prompt": prompt.format(id=i), "keys": []} for i in ids]
    metrics = {}
    for name, arr in rows.items():
        metric = build_metric(name)
        for rec, row in zip(records, arr, strict=True):
            rec.setdefault("scores", {})[name] = metric.aggregate(row[None, :])
            if arr.shape[1] > 1:
                rec.setdefault("score_stats", {})[name] = [float(x) for x in row]
        value = metric.aggregate(arr)
        metrics[name] = {"name": name, "value": value, "ci_low": value, "ci_high": value, "stderr": 0.0, "n": n,
                         "higher_is_better": metric.higher_is_better}
    results = {
        "schema_version": 1,
        "tasks": {task: {"kind": "multiple_choice", "n_samples": n, "n_failed": 0, "metrics": metrics,
                         "fingerprint": {**FINGERPRINT, **(fingerprint or {})}, "samples_file": f"samples/{task}.jsonl"}},
    }
    (run / "samples").mkdir(parents=True)
    (run / "results.json").write_text(json.dumps(results))
    (run / "samples" / f"{task}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return run


def acc_pair(n: int = 500, base_acc: float = 0.6, worse: int = 0, better: int = 0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Paired 0/1 scores: `worse` right answers turned wrong and `better` wrong ones turned right."""
    rng = np.random.default_rng(seed)
    base = np.zeros(n)
    base[rng.permutation(n)[: round(base_acc * n)]] = 1.0
    cur = base.copy()
    cur[rng.choice(np.flatnonzero(base == 1), worse, replace=False)] = 0.0
    cur[rng.choice(np.flatnonzero(base == 0), better, replace=False)] = 1.0
    return base, cur


def gate(tmp_path: Path, base: dict[str, Any], cur: dict[str, Any], *extra: str, **kw: Any) -> tuple[int, str, str]:
    import contextlib
    import io

    b = write_run(tmp_path / "base", base, **kw.get("base_kw", {}))
    c = write_run(tmp_path / "cur", cur, **kw.get("cur_kw", {}))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["gate", str(c), "--baseline", str(b), *extra])
    return code, out.getvalue(), err.getvalue()


# --- the paired statistics, against scipy and closed forms -------------------------------------


def test_mcnemar_matches_the_binomial_closed_form() -> None:
    base, cur = acc_pair(worse=30, better=18)
    result = mcnemar_exact(base, cur)
    n, k = 48, 18
    closed = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)
    assert (result.lost, result.gained) == (30, 18)
    assert result.p_value == pytest.approx(closed, rel=1e-9)
    assert result.p_value == pytest.approx(binomtest(18, 48).pvalue)
    one_sided = sum(math.comb(n, i) for i in range(k + 1)) / 2**n  # P(gained <= 18): current has fewer ones
    assert mcnemar_exact(base, cur, "less").p_value == pytest.approx(one_sided, rel=1e-9)
    assert mcnemar_exact(base, cur, "greater").p_value > 0.9
    assert mcnemar_exact(base, base, "less").p_value == 1.0


def test_paired_bootstrap_of_a_mean_matches_scipy_percentile_interval() -> None:
    rng = np.random.default_rng(1)
    base = rng.random(400)
    cur = base - 0.03 + rng.normal(0, 0.1, 400)
    ours = paired_bootstrap(base, cur, build_metric("acc").aggregate, n_resamples=4000, seed=3)
    ref = scipy_bootstrap((cur - base,), np.mean, method="percentile", n_resamples=4000, random_state=4).confidence_interval
    assert ours.diff == pytest.approx(np.mean(cur - base))
    assert ours.ci_low == pytest.approx(ref.low, abs=0.003)
    assert ours.ci_high == pytest.approx(ref.high, abs=0.003)
    assert ours.p_value < 0.001  # a 3-point shift with sd 0.1 over 400 samples is unmistakable


def test_bootstrap_p_value_tails_and_identical_runs() -> None:
    draws = np.array([-3.0, -2.0, -1.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    assert bootstrap_p_value(draws, alternative="greater") == pytest.approx((3 + 1) / 10)
    assert bootstrap_p_value(draws, alternative="less") == pytest.approx((6 + 1) / 10)
    assert bootstrap_p_value(draws) == pytest.approx(2 * (3 + 1) / 10)
    assert bootstrap_p_value(draws, null=4.5, alternative="less") == pytest.approx((2 + 1) / 10)
    assert bootstrap_p_value(np.zeros(100), alternative="less") == 1.0
    base = np.ones((50, 2))
    assert paired_bootstrap(base, base, build_metric("word_perplexity").aggregate, alternative="greater").p_value == 1.0


def test_corpus_bleu_difference_is_sacrebleu_corpus_difference() -> None:
    import sacrebleu

    rng = np.random.default_rng(2)
    words = "the a cat dog sat on mat ran far away quickly slowly red blue house".split()
    refs = [" ".join(rng.choice(words, 8)) for _ in range(60)]
    base_hyp = [" ".join(r.split()[:7]) for r in refs]
    cur_hyp = [" ".join(r.split()[:4] + ["zzz"] * 3) for r in refs]
    bleu = build_metric("bleu")
    stats_b = np.array([bleu.segment_stats(h, (r,)) for h, r in zip(base_hyp, refs, strict=True)])  # type: ignore[attr-defined]
    stats_c = np.array([bleu.segment_stats(h, (r,)) for h, r in zip(cur_hyp, refs, strict=True)])  # type: ignore[attr-defined]
    result = paired_bootstrap(stats_b, stats_c, bleu.aggregate, n_resamples=300)
    expected = sacrebleu.corpus_bleu(cur_hyp, [refs]).score - sacrebleu.corpus_bleu(base_hyp, [refs]).score
    assert result.diff == pytest.approx(expected)
    assert result.ci_high < 0 and result.p_value < 0.05


# --- verdicts on constructed runs ---------------------------------------------------------------


def test_ten_point_drop_on_500_samples_fails(tmp_path: Path) -> None:
    base, cur = acc_pair(worse=60, better=10)  # 0.60 -> 0.50
    code, out, _ = gate(tmp_path, {"acc": base}, {"acc": cur})
    assert code == 1
    assert "FAIL toy.acc: drop of 0.1 is significant" in out
    row = next(line for line in out.splitlines() if line.startswith("toy") and "acc" in line)
    assert "-0.1" in row and "<0.001" in row and "mcnemar" in row and "FAIL" in row


def test_one_point_wobble_passes(tmp_path: Path) -> None:
    base, cur = acc_pair(worse=15, better=10)  # 0.60 -> 0.59; one-sided McNemar p = 0.212
    code, out, _ = gate(tmp_path, {"acc": base}, {"acc": cur})
    assert code == 0, out
    assert "ok (noise)" in out and "0.212" in out and out.rstrip().endswith("PASS (paired tests at alpha=0.05)")


def test_exact_match_on_the_0_100_scale_uses_mcnemar(tmp_path: Path) -> None:
    base, cur = acc_pair(worse=60, better=10)
    b, c = write_run(tmp_path / "b", {"exact_match": 100 * base}), write_run(tmp_path / "c", {"exact_match": 100 * cur})
    check = run_gate(c, b).checks[0]
    assert check.test == "mcnemar" and check.diff == pytest.approx(-10.0) and not check.passed
    assert check.p_value == pytest.approx(binomtest(10, 70, alternative="less").pvalue)


def test_no_stats_fails_the_same_wobble(tmp_path: Path) -> None:
    base, cur = acc_pair(worse=15, better=10)
    code, out, _ = gate(tmp_path, {"acc": base}, {"acc": cur}, "--no-stats")
    assert code == 1 and "threshold" in out


def test_alpha_decides(tmp_path: Path) -> None:
    base, cur = acc_pair(worse=30, better=15)  # one-sided McNemar p = 0.018
    assert gate(tmp_path / "a", {"acc": base}, {"acc": cur})[0] == 1
    assert gate(tmp_path / "b", {"acc": base}, {"acc": cur}, "--alpha", "0.01")[0] == 0


def _ppl_rows(n: int = 200, scale: float = 1.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    words = rng.integers(20, 80, n).astype(float)
    ll = -words * rng.uniform(2.0, 4.0, n)
    return np.c_[ll * scale, words]


def test_perplexity_rise_is_a_regression_and_fall_is_not(tmp_path: Path) -> None:
    base = _ppl_rows()
    code, out, _ = gate(tmp_path / "worse", {"word_perplexity": base}, {"word_perplexity": _ppl_rows(scale=1.03)})
    assert code == 1, out
    assert "word_perplexity ↓" in out and "FAIL toy.word_perplexity" in out
    code, out, _ = gate(tmp_path / "better", {"word_perplexity": base}, {"word_perplexity": _ppl_rows(scale=0.97)})
    assert code == 0, out


def test_perplexity_uses_the_length_weighted_corpus_aggregate(tmp_path: Path) -> None:
    base, cur = _ppl_rows(), _ppl_rows(scale=1.03)
    b, c = write_run(tmp_path / "b", {"word_perplexity": base}), write_run(tmp_path / "c", {"word_perplexity": cur})
    check = run_gate(c, b).checks[0]
    metric = build_metric("word_perplexity")
    assert check.diff == pytest.approx(metric.aggregate(cur) - metric.aggregate(base))
    assert check.diff > 0 and check.worse_by > 0 and check.ci_low > 0
    assert check.test == "bootstrap" and not check.higher_is_better


@pytest.mark.parametrize("scale", [0.99, 1.0, 1.002, 1.004, 1.006, 1.01, 1.03])
def test_bootstrap_verdict_agrees_with_its_interval(tmp_path: Path, scale: float) -> None:
    """A rise in perplexity past the allowance fails exactly when the 90% CI lies wholly past it."""
    rng = np.random.default_rng(5)
    base = _ppl_rows()
    cur = base * np.c_[scale * (1 + rng.normal(0, 0.01, len(base))), np.ones(len(base))]
    b, c = write_run(tmp_path / "b", {"word_perplexity": base}), write_run(tmp_path / "c", {"word_perplexity": cur})
    cfg = GateConfig(tasks={"toy": {"word_perplexity": Rule(max_drop=0.05)}})
    check = run_gate(c, b, cfg).checks[0]
    assert check.passed == (check.ci_low <= 0.05)


def test_max_drop_allowance_and_min_value(tmp_path: Path) -> None:
    base, cur = acc_pair(worse=60, better=10)  # a 10-point drop
    cfg = tmp_path / "gate.yaml"
    cfg.write_text("tasks:\n  toy:\n    acc: {max_drop: 0.15}\n")
    code, out, _ = gate(tmp_path / "a", {"acc": base}, {"acc": cur}, "--config", str(cfg))
    assert code == 0, out
    assert "drop<=0.15" in out and "bootstrap" in out  # McNemar tests no change, not a margin
    cfg.write_text("tasks:\n  toy:\n    acc: {max_drop: 0.15, min_value: 0.55}\n")
    code, out, _ = gate(tmp_path / "b", {"acc": base}, {"acc": cur}, "--config", str(cfg))
    assert code == 1 and "value 0.5 is below the minimum 0.55" in out


@pytest.mark.parametrize(("rule", "message"), [
    ("{max_drop: .inf}", "tasks.toy.acc.max_drop: Input should be a finite number"),
    ("{min_value: -.inf}", "tasks.toy.acc.min_value: Input should be a finite number"),
    ("{max_unparseable_rate: 0.1}", "tasks.toy.acc.max_unparseable_rate: acc is not a judge metric"),
])
def test_rules_that_cannot_mean_anything_are_refused(tmp_path: Path, rule: str, message: str) -> None:
    base, cur = acc_pair()
    cfg = tmp_path / "gate.yaml"
    cfg.write_text(f"tasks:\n  toy:\n    acc: {rule}\n")
    code, _out, err = gate(tmp_path / "a", {"acc": base}, {"acc": cur}, "--config", str(cfg))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_a_report_path_that_is_a_folder_is_refused_before_the_checks(tmp_path: Path) -> None:
    base, cur = acc_pair()
    code, out, err = gate(tmp_path / "a", {"acc": base}, {"acc": cur}, "--markdown", str(tmp_path))
    assert code == 2 and "is a folder; give a file name" in err and out == ""  # no PASS table printed first


def test_only_listed_and_skip() -> None:
    cfg = GateConfig(only_listed=True, tasks={"t": {"acc": Rule(max_drop=0.1), "f1": Rule(skip=True)}})
    assert cfg.rule("t", "acc") == Rule(max_drop=0.1)
    assert cfg.rule("t", "f1") is None and cfg.rule("t", "acc_norm") is None
    assert GateConfig().rule("t", "acc_norm") == Rule()


# --- apples and oranges ---------------------------------------------------------------------


def test_missing_samples_are_an_error_listing_them(tmp_path: Path) -> None:
    base, cur = acc_pair(worse=5, better=5)
    ids = [f"s{i:03d}" for i in range(500)]
    code, _, err = gate(tmp_path / "a", {"acc": base}, {"acc": cur[:490]}, cur_kw={"ids": ids[:490]})
    assert code == 2
    assert "toy: 10 sample(s) missing from the current run (s490, s491, s492, ...)" in err
    assert "--allow-mismatch" in err


def test_allow_mismatch_compares_shared_samples_with_a_warning(tmp_path: Path) -> None:
    base, cur = acc_pair(worse=5, better=5)
    ids = [f"s{i:03d}" for i in range(500)]
    code, out, _ = gate(tmp_path, {"acc": base}, {"acc": cur[:490]}, "--allow-mismatch", cur_kw={"ids": ids[:490]})
    assert code == 0
    assert "warning: toy: 10 sample(s) missing from the current run" in out
    assert " 490 " in next(line for line in out.splitlines() if line.startswith("toy"))


def test_unscored_samples_are_reported(tmp_path: Path) -> None:
    base, cur = acc_pair(worse=5, better=5)
    b, c = write_run(tmp_path / "b", {"acc": base}), write_run(tmp_path / "c", {"acc": cur})
    log = c / "samples" / "toy.jsonl"
    recs = [json.loads(x) for x in log.read_text().splitlines()]
    for r in recs[:3]:
        del r["scores"]
        r["error"] = "timeout"
    log.write_text("".join(json.dumps(r) + "\n" for r in recs))
    results = json.loads((c / "results.json").read_text())
    results["tasks"]["toy"]["metrics"]["acc"]["value"] = float(np.mean(cur[3:]))  # what the run would have recorded
    (c / "results.json").write_text(json.dumps(results))
    report = run_gate(c, b)
    assert report.checks[0].n == 497
    assert any("3 sample(s) unscored (failed) in the current run" in n for n in report.notes)


def test_a_sample_log_that_disagrees_with_results_json_is_refused(tmp_path: Path) -> None:
    base, cur = acc_pair(worse=5, better=5)
    b, c = write_run(tmp_path / "b", {"acc": base}), write_run(tmp_path / "c", {"acc": cur})
    log = c / "samples" / "toy.jsonl"
    recs = [json.loads(x) for x in log.read_text().splitlines()]
    for r in recs[:40]:
        r["scores"]["acc"] = 1.0  # an edited log: results.json no longer follows from it
    log.write_text("".join(json.dumps(r) + "\n" for r in recs))
    code, _, _ = gate(tmp_path / "g", {"acc": base}, {"acc": cur})  # sanity: the unedited pair is comparable
    assert code == 0
    with pytest.raises(DataError, match=r"sample log gives .* but its results.json says .*disagree"):
        run_gate(c, b)


@pytest.mark.parametrize(
    ("fingerprint", "expected"),
    [
        ({"prompt_template_hash": "q" * 16}, "prompt_template_hash differs"),
        ({"num_fewshot": 5}, "num_fewshot differs: baseline 0, current 5"),
        ({"chat_template": True}, "chat_template differs"),
        ({"task_file_hash": "e" * 16}, "task_file_hash differs"),
    ],
)
def test_fingerprint_differences_are_errors(tmp_path: Path, fingerprint: dict[str, Any], expected: str) -> None:
    base, _ = acc_pair()
    code, _, err = gate(tmp_path, {"acc": base}, {"acc": base}, cur_kw={"fingerprint": fingerprint})
    assert code == 2 and expected in err


def test_model_and_harness_version_may_differ(tmp_path: Path) -> None:
    base, _ = acc_pair()
    code, out, _ = gate(tmp_path, {"acc": base}, {"acc": base},
                        cur_kw={"fingerprint": {"model_identity_hash": "n" * 16, "harness_version": "0.2.0"}})
    assert code == 0 and "note: toy: harness_version differs" in out


def test_changed_prompt_is_caught_end_to_end(fixtures: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two real runs on the fake backend; the second with an edited prompt template."""
    original = (fixtures / "mc.yaml").read_text()
    edited = original.replace('"Question: {{question}}\\nAnswer:"', '"Q: {{question}}\\nA:"')
    assert edited != original
    for side, text in (("base", original), ("cur", edited)):
        (tmp_path / side).mkdir()
        shutil.copy(fixtures / "mc.jsonl", tmp_path / side / "mc.jsonl")
        (tmp_path / side / "mc.yaml").write_text(text)
        assert main(["run", "--model", "fake", "--tasks", str(tmp_path / side / "mc.yaml"), "--output", str(tmp_path / side / "run"),
                     "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--bootstrap", "100"]) == 0
    capsys.readouterr()
    argv = ["gate", str(tmp_path / "cur" / "run"), "--baseline", str(tmp_path / "base" / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "prompt_template_hash differs" in err and "task_file_hash differs" in err
    assert "toy_mc: prompt differs on 4 of 4 shared sample(s) (q1, q2, q3, ...)" in err
    assert main([*argv, "--allow-mismatch"]) in (0, 1)
    assert "warning: toy_mc: prompt differs" in capsys.readouterr().out


def test_identical_pipeline_runs_pass_with_zero_difference(fixtures: Path, tmp_path: Path) -> None:
    for side in ("a", "b"):
        assert main(["run", "--model", "fake", "--tasks", f"{fixtures / 'mc.yaml'},{fixtures / 'ppl.yaml'}",
                     "--output", str(tmp_path / side), "--no-cache", "--no-progress", "--bootstrap", "100"]) == 0
    report = run_gate(tmp_path / "b", tmp_path / "a")
    assert report.exit_code == 0 and not report.notes and not report.mismatches
    assert {(c.task, c.metric) for c in report.checks} >= {("toy_mc", "acc"), ("toy_ppl", "word_perplexity")}
    assert all(c.diff == 0.0 and c.p_value == 1.0 for c in report.checks)


# --- exit codes and input errors -------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "argv", "pattern"),
    [
        ("tasks:\n  toy:\n    acc: {max_dorp: 0.1}\n", [], "gate.yaml: tasks.toy.acc.max_dorp: unknown key (did you mean 'max_drop'?)"),
        ("tasks:\n  toy:\n    acc: {max_drop: -1}\n", [], "tasks.toy.acc.max_drop: Input should be greater than or equal to 0"),
        ("tasks:\n  toy:\n    accuracy: {}\n", [], "tasks.toy.accuracy: not a metric of both runs (shared: acc)"),
        ("tasks:\n  arc:\n    acc: {}\n", [], "tasks.arc: not a task of both runs (shared: toy)"),
        ("alpha: [\n", [], "invalid YAML"),
        (None, ["--alpha", "0.5"], "expected a number between 0 and 0.5"),
    ],
)
def test_bad_input_exits_2(tmp_path: Path, config: str | None, argv: list[str], pattern: str) -> None:
    base, cur = acc_pair()
    extra = list(argv)
    if config is not None:
        (tmp_path / "gate.yaml").write_text(config)
        extra += ["--config", str(tmp_path / "gate.yaml")]
    code, out, err = gate(tmp_path, {"acc": base}, {"acc": cur}, *extra)
    assert code == 2, out
    assert pattern in err and "Traceback" not in err


def test_missing_run_directory_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_run(tmp_path / "b", {"acc": acc_pair()[0]})
    assert main(["gate", str(tmp_path / "nope"), "--baseline", str(tmp_path / "b")]) == 2
    assert "no such run directory" in capsys.readouterr().err
    assert main(["gate", str(tmp_path / "b")]) == 2
    assert "--baseline" in capsys.readouterr().err


# --- outputs --------------------------------------------------------------------------------


def test_junit_and_markdown_outputs(tmp_path: Path) -> None:
    base, cur = acc_pair(worse=60, better=10)
    ppl = _ppl_rows(n=500)
    junit, md = tmp_path / "out" / "gate.xml", tmp_path / "out" / "gate.md"
    code, _, _ = gate(tmp_path, {"acc": base, "word_perplexity": ppl}, {"acc": cur, "word_perplexity": ppl},
                      "--junit", str(junit), "--markdown", str(md))
    assert code == 1
    root = ET.parse(junit).getroot()
    suite = root.find("testsuite")
    assert suite is not None and suite.get("tests") == "2" and suite.get("failures") == "1"
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert set(cases) == {"acc", "word_perplexity"}
    assert cases["acc"].get("classname") == "gate.toy"
    failure = cases["acc"].find("failure")
    assert failure is not None and "significant" in (failure.get("message") or "")
    assert cases["word_perplexity"].find("failure") is None
    text = md.read_text()
    assert text.startswith("### ❌ evalharness gate: FAIL: 1 of 2 check(s) failed")
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert len(table) == 4 and all(line.count("|") == table[0].count("|") for line in table)
    assert "| **FAIL** |" in table[2] and "90% CI" in table[0]  # 1 - 2 alpha: its worse end is the one-sided bound


# --- the simulation behind the documented false-alarm rate and power -------------------------


def simulate(trials: int, drop: float, n: int = 500, graded: bool = False, alpha: float = 0.05, seed: int = 0) -> float:
    """Fraction of trials the gate fails: two runs of one model with sampling noise (`drop`=0), or
    a current run whose per-item success probabilities are lower by `drop` on average.

    Item difficulty p_i ~ Beta(1.2, 0.8) (mean 0.6) is fixed per trial; each run draws a fresh
    Bernoulli(p_i) per item (0/1: McNemar), or the mean of 4 draws per item (graded: bootstrap).
    """
    from evalharness.gate.check import compare

    rng = np.random.default_rng(seed)
    metric = build_metric("acc")
    fails = 0
    for _ in range(trials):
        p = rng.beta(1.2, 0.8, n)
        q = np.clip(p - drop * p / p.mean(), 0.0, 1.0)
        draws = 4 if graded else 1
        base = (rng.random((n, draws)) < p[:, None]).mean(axis=1)
        cur = (rng.random((n, draws)) < q[:, None]).mean(axis=1)
        check = compare("t", "acc", True, as_rows(base), as_rows(cur), metric.aggregate, Rule(),
                        GateConfig(alpha=alpha, seed=int(rng.integers(1 << 30))), alpha, True, float(cur.mean()))
        fails += not check.passed
    return fails / trials


def test_false_alarm_rate_small_simulation() -> None:
    assert simulate(100, 0.0) <= 0.08  # 1,000 trials in the slow lane; this one guards the plumbing
    assert simulate(60, 0.10) >= 0.9


@pytest.mark.slow
@pytest.mark.parametrize("graded", [False, True])
def test_false_alarm_rate_and_power(graded: bool) -> None:
    false_alarm = simulate(1000, 0.0, graded=graded, seed=11)
    power = simulate(1000, 0.05, graded=graded, seed=12)
    print(f"\n{'graded (bootstrap)' if graded else '0/1 (McNemar)'}: false alarms {false_alarm:.3f}, power at 5 points {power:.3f}")
    # 0.05 plus three binomial standard errors over 1,000 trials
    assert false_alarm <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 1000)


# --- many checks: the family-wise false-alarm rate (docs/gate.md) -------------------------------


def test_holm_and_bonferroni_adjusted_p_values() -> None:
    from evalharness.gate.check import adjusted_p_values

    p = np.array([0.01, 0.04, 0.03, 0.5])
    assert adjusted_p_values(p, "none").tolist() == p.tolist()
    assert adjusted_p_values(p, "bonferroni") == pytest.approx([0.04, 0.16, 0.12, 1.0])
    # Holm: sorted 0.01*4, 0.03*3, 0.04*2, 0.5*1, made non-decreasing in that order
    assert adjusted_p_values(p, "holm") == pytest.approx([0.04, 0.09, 0.09, 0.5])
    rows = np.array([p, p[::-1]])
    assert adjusted_p_values(rows, "holm")[1] == pytest.approx(adjusted_p_values(p[::-1], "holm"))  # vectorised per row


def test_one_raw_significant_drop_among_four_checks_passes_after_holm(tmp_path: Path) -> None:
    base, cur = acc_pair(worse=20, better=8)  # one-sided McNemar p = 0.0178 < 0.05, but 4 checks: Holm p = 0.071
    same, _ = acc_pair(seed=1)
    b_scores = {"acc": base, "acc_norm": same, "acc_bytes": same, "exact_match": 100 * same}
    c_scores = {"acc": cur, "acc_norm": same, "acc_bytes": same, "exact_match": 100 * same}
    code, out, _ = gate(tmp_path, b_scores, c_scores, "--markdown", str(tmp_path / "g.md"), "--junit", str(tmp_path / "g.xml"))
    assert code == 0, out
    header = out.splitlines()[0].split()
    assert header[header.index("p") + 1 : header.index("p") + 3] == ["p", "adj"]
    row = next(line for line in out.splitlines() if line.startswith("toy") and "acc ↑" in line)
    assert "0.018" in row and "0.071" in row and "ok (noise)" in row
    assert "holm-adjusted over 4 checks" in out
    assert "| p | p adj |" in (tmp_path / "g.md").read_text()
    assert "p adj=0.071" in (tmp_path / "g.xml").read_text()
    code, out, _ = gate(tmp_path / "raw", b_scores, c_scores, "--correction", "none")
    assert code == 1 and "FAIL toy.acc: drop of 0.024 is significant (p=0.0178 < 0.05)" in out


def test_correction_in_the_config_and_bad_values(tmp_path: Path) -> None:
    base, cur = acc_pair(worse=20, better=8)
    same, _ = acc_pair(seed=1)
    cfg = tmp_path / "g.yaml"
    cfg.write_text("correction: bonferroni\n")
    b = write_run(tmp_path / "b", {"acc": base, "acc_norm": same})
    c = write_run(tmp_path / "c", {"acc": cur, "acc_norm": same})
    from evalharness.spec.gate import load_gate_config

    report = run_gate(c, b, load_gate_config(cfg))
    acc = report.checks[0]
    assert report.correction == "bonferroni" and acc.p_adjusted == pytest.approx(2 * acc.p_value)
    assert not report.passed  # 2 x 0.0178 = 0.036: still significant over two checks
    assert run_gate(c, b, load_gate_config(cfg), correction="none").checks[0].p_adjusted == acc.p_value
    cfg.write_text("correction: sidak\n")
    assert main(["gate", str(c), "--baseline", str(b), "--config", str(cfg)]) == 2


def simulate_family(trials: int, n: int = 300, tasks: int = 5, alpha: float = 0.05, seed: int = 0) -> dict[str, float]:
    """Share of gate runs an unchanged model fails, over `tasks` x {acc, acc_norm} McNemar checks.

    Vectorised over trials. Per task, item difficulty p_i ~ Beta(1.2, 0.8); acc_norm's difficulty
    is p_i moved by N(0, 0.1) and its answer reuses acc's random draw on 70% of items (the two
    metrics score the same answers, so their checks are correlated). Each run draws afresh.
    """
    from scipy.stats import binom

    from evalharness.gate.check import adjusted_p_values

    rng = np.random.default_rng(seed)
    p = rng.beta(1.2, 0.8, (trials, tasks, 1, n))
    p = np.concatenate([p, np.clip(p + rng.normal(0, 0.1, p.shape), 0, 1)], axis=2)

    def answers() -> np.ndarray:
        u = rng.random((trials, tasks, 1, n))
        u = np.concatenate([u, np.where(rng.random(u.shape) < 0.7, u, rng.random(u.shape))], axis=2)
        return u < p

    base, cur = answers(), answers()
    lost, gained = (base & ~cur).sum(axis=-1), (~base & cur).sum(axis=-1)
    pvals = binom.cdf(gained, lost + gained, 0.5).reshape(trials, -1)  # McNemar exact, one-sided "worse"
    return {method: float(np.mean((adjusted_p_values(pvals, method) < alpha).any(axis=-1)))  # type: ignore[arg-type]
            for method in ("none", "holm", "bonferroni")}


def test_family_simulation_matches_the_gates_mcnemar() -> None:
    rng = np.random.default_rng(4)
    b, c = rng.random(200) < 0.6, rng.random(200) < 0.6
    from scipy.stats import binom

    lost, gained = int((b & ~c).sum()), int((~b & c).sum())
    assert binom.cdf(gained, lost + gained, 0.5) == pytest.approx(mcnemar_exact(b.astype(float), c.astype(float), "less").p_value)
    rates = simulate_family(400, seed=1)
    assert rates["holm"] <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 400) and rates["none"] > rates["holm"]


@pytest.mark.slow
def test_family_false_alarm_rate_over_ten_checks() -> None:
    rates = simulate_family(4000, seed=21)
    print(f"\n5 tasks x 2 metrics, unchanged model, 4,000 trials: gate fails {rates['none']:.3f} uncorrected, "
          f"{rates['holm']:.3f} Holm, {rates['bonferroni']:.3f} Bonferroni")
    assert rates["holm"] <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 4000)
    assert rates["none"] > 0.1
