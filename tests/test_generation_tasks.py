"""The generation tasks xsum, flores_en_ms and mbpp: lm-evaluation-harness's prompts, character for
character, and their metrics wired to the vendored data.

Expected prompts were checked against lm-eval 0.4.13's own task classes run on the vendored files
(mbpp.yaml; the unitxt xsum task; catalan_bench_flores_en-ca with Malay): every one of the 1,812
samples matched (bench/check_generation_prompts.py repeats that where lm-eval is installed).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from evalharness.data.samples import fewshot_pool, load_samples
from evalharness.metrics.base import build_metric, score_all
from evalharness.metrics.passk import PassAtK
from evalharness.prompting.requests import render_prompt, requests_for
from evalharness.spec.task import LoadedTask, load_task_file
from evalharness.types import Output, Sample

ROOT = Path(__file__).resolve().parent.parent
TASKS = ROOT / "tasks"


def _first_prompt(name: str) -> tuple[LoadedTask, Sample, str]:
    task = load_task_file(TASKS / f"{name}.yaml")
    assert task.spec.prompt is not None
    samples = load_samples(task)
    pool = fewshot_pool(task, task.spec.prompt.fewshot.k)
    prompt = render_prompt(task, samples[0], 0, pool, None, chat=False)
    assert prompt.messages is None
    (req,) = requests_for(task, samples[0], prompt)
    assert req.prompt == prompt.text and req.gen is not None and req.gen.temperature == 0.0
    return task, samples[0], prompt.text


# --- MBPP -------------------------------------------------------------------------------------

MBPP_SHOTS = (
    "You are an expert Python programmer, and here is your task: Write a function to find the similar elements from "
    "the given two tuple lists. Your code should pass these tests:\n\n"
    "assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)\n"
    "assert similar_elements((1, 2, 3, 4),(5, 4, 3, 7)) == (3, 4)\n"
    "assert similar_elements((11, 12, 14, 13),(17, 15, 14, 13)) == (13, 14)\n[BEGIN]\n"
    "def similar_elements(test_tup1, test_tup2):\r\n  res = tuple(set(test_tup1) & set(test_tup2))\r\n  return (res) \n[DONE]\n\n"
    "You are an expert Python programmer, and here is your task: Write a python function to identify non-prime numbers. "
    "Your code should pass these tests:\n\n"
    "assert is_not_prime(2) == False\nassert is_not_prime(10) == True\nassert is_not_prime(35) == True\n[BEGIN]\n"
    "import math\r\ndef is_not_prime(n):\r\n    result = False\r\n    for i in range(2,int(math.sqrt(n)) + 1):\r\n"
    "        if n % i == 0:\r\n            result = True\r\n    return result\n[DONE]\n\n"
    "You are an expert Python programmer, and here is your task: Write a function to find the largest integers from a "
    "given list of numbers using heap queue algorithm. Your code should pass these tests:\n\n"
    "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],3)==[85, 75, 65] \n"
    "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],2)==[85, 75] \n"
    "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],5)==[85, 75, 65, 58, 35]\n[BEGIN]\n"
    "import heapq as hq\r\ndef heap_queue_largest(nums,n):\r\n  largest_nums = hq.nlargest(n, nums)\r\n  return largest_nums\n[DONE]\n\n"
)


def test_mbpp_prompt_is_lm_eval_3_shot_format() -> None:
    task, sample, text = _first_prompt("mbpp")
    assert text == MBPP_SHOTS + (
        "You are an expert Python programmer, and here is your task: Write a python function to remove first and last "
        "occurrence of a given character from the string. Your code should pass these tests:\n\n"
        'assert remove_Occ("hello","l") == "heo"\nassert remove_Occ("abcda","a") == "bcd"\nassert remove_Occ("PHP","P") == "H"\n'
        "[BEGIN]\n"
    )
    assert sample.id == "11"
    assert task.spec.lm_eval_compatible == "mbpp"
    assert task.spec.generate is not None and task.spec.generate.stop == ["[DONE]"] and task.spec.generate.n == 1
    # every problem's prompt carries the same three exemplars (lm-eval's first_n sampler)
    samples = load_samples(task)
    pool = fewshot_pool(task, 3)
    assert render_prompt(task, samples[-1], len(samples) - 1, pool, None, chat=False).text.startswith(MBPP_SHOTS)


def _mbpp_metric() -> PassAtK:
    task = load_task_file(TASKS / "mbpp.yaml")
    (spec,) = task.spec.metrics
    metric = build_metric(spec.name, spec.params)
    assert isinstance(metric, PassAtK)
    return metric


def test_mbpp_program_is_generation_then_the_three_asserts() -> None:
    # lm-eval's pass_at_1 (HF code_eval) runs candidate + "\n" + the test_list joined by newlines
    sample = load_samples(load_task_file(TASKS / "mbpp.yaml"), 1)[0]
    program = _mbpp_metric().program(sample, "def remove_Occ(s, ch):\n    return s\n")
    assert program == "def remove_Occ(s, ch):\n    return s\n\n" + "\n".join(sample.fields["test_list"]) + "\n"


def test_mbpp_reference_solutions_pass_in_the_sandbox() -> None:
    """All 500 reference solutions pass, but problem 367, whose test_setup_code lm-eval does not run either.

    Problem 123's reference takes about 2.5 s of the 3 s limit (lm-eval's code_eval timeout) on this
    machine's CPU, so it may time out when the cores are busy; that one is not held against the data.
    """
    task = load_task_file(TASKS / "mbpp.yaml")
    samples = load_samples(task)
    metric = _mbpp_metric()
    started = time.perf_counter()
    scores = score_all(metric, samples, [Output(generations=(s.fields["code"],)) for s in samples])
    failed = {s.id: sc.extra for s, sc in zip(samples, scores, strict=True) if sc.value != 1.0}
    assert "NameError" in failed.pop("367")["first_failure"]
    assert set(failed) <= {"123"} and all(x["status"] == ["timeout"] for x in failed.values()), failed
    assert time.perf_counter() - started < 240
    # and a stub fails: the asserts really run
    assert all(sc.value == 0.0 for sc in score_all(metric, samples[:5], [Output(generations=("def f():\n    pass\n",))] * 5))


def test_mbpp_end_to_end_with_fake_model(tmp_path: Path) -> None:
    from evalharness.execution.pipeline import RunConfig, evaluate

    task = load_task_file(TASKS / "mbpp.yaml")
    samples = load_samples(task, 4)
    pool = fewshot_pool(task, 3)
    prompts = [render_prompt(task, s, i, pool, None, chat=False).text for i, s in enumerate(samples)]
    # the fake model answers with the reference solution, except on problem 13 (wrong)
    script = {p: (s.fields["code"] if s.id != "13" else "def f():\n    return None\n") for p, s in zip(prompts, samples, strict=True)}
    cfg = RunConfig(tasks=[task], model="fake", model_args={"script": script}, output=tmp_path, limit=4,
                    use_cache=False, progress=False, bootstrap_resamples=100)
    m = evaluate(cfg)["tasks"]["mbpp"]["metrics"]["pass@1"]
    assert m["value"] == pytest.approx(0.75) and m["n"] == 4


# --- XSum -------------------------------------------------------------------------------------


def test_xsum_prompt_is_lm_eval_unitxt_format() -> None:
    task, sample, text = _first_prompt("xsum")
    # unitxt's templates.summarization.abstractive.full in its default system format: a final "\n"
    assert text == f"Summarize the following document: {sample.fields['document']}.\n"
    assert text.startswith("Summarize the following document: The ex-Reading defender denied fraudulent trading")
    assert text.endswith("They were all released on bail..\n")
    assert sample.id == "38295789"
    assert sample.references == (
        "Former Premier League footballer Sam Sodje has appeared in court alongside three brothers accused of charity fraud.",
    )
    assert task.spec.lm_eval_compatible == "xsum"
    assert task.spec.generate is not None and task.spec.generate.stop == ["\n"]
    assert [m.name for m in task.spec.metrics] == ["rouge1", "rouge2", "rougeL", "rougeLsum", "bertscore_f1"]
    assert all(not m.params for m in task.spec.metrics)  # rouge-score defaults (no stemming), as unitxt's metrics.rouge


def test_xsum_rouge_scores_a_summary() -> None:
    sample = load_samples(load_task_file(TASKS / "xsum.yaml"), 1)[0]
    ref = sample.references[0]
    r1, r2 = build_metric("rouge1"), build_metric("rouge2")
    assert r1.score(sample, Output(generations=(ref,), extracted=(ref,))).value == 1.0
    guess = "Sam Sodje has appeared in court."
    assert 0.0 < r2.score(sample, Output(generations=(guess,), extracted=(guess,))).value < 1.0


# --- FLORES+ en-ms ----------------------------------------------------------------------------


def test_flores_prompt_is_lm_eval_flores_format() -> None:
    task, sample, text = _first_prompt("flores_en_ms")
    assert text == (
        'English sentence: "We now have 4-month-old mice that are non-diabetic that used to be diabetic," he added.\n'
        "Malay sentence:"
    )
    assert sample.id == "1"
    assert sample.references == (
        "\u201cKami kini mempunyai seekor anak tikus yang berusia 4 bulan yang sudah tidak menghidap diabetes,\u201d beliau menambah.",
    )
    assert task.spec.generate is not None and task.spec.generate.stop == ["\n"]
    assert [m.name for m in task.spec.metrics] == ["bleu", "chrf", "ter"]
    assert task.spec.metrics[0].params == {"tokenize": "13a"}  # offline; sacrebleu's flores tokenizers download


def test_flores_end_to_end_with_fake_model(tmp_path: Path) -> None:
    import sacrebleu

    from evalharness.execution.pipeline import RunConfig, evaluate

    task = load_task_file(TASKS / "flores_en_ms.yaml")
    samples = load_samples(task, 6)
    prompts = [render_prompt(task, s, i, [], None, chat=False).text for i, s in enumerate(samples)]
    # perfect translations but for two samples answered with their English source
    hyps = [s.fields["sentence_eng_Latn"] if i in (1, 4) else s.references[0] for i, s in enumerate(samples)]
    cfg = RunConfig(tasks=[task], model="fake", model_args={"script": {p: " " + h for p, h in zip(prompts, hyps, strict=True)}},
                    output=tmp_path, limit=6, use_cache=False, progress=False, bootstrap_resamples=100)
    m = evaluate(cfg)["tasks"]["flores_en_ms"]["metrics"]
    refs = [[s.references[0] for s in samples]]
    assert m["bleu"]["value"] == pytest.approx(sacrebleu.corpus_bleu(hyps, refs).score)  # lm-eval's bleu
    assert m["chrf"]["value"] == pytest.approx(sacrebleu.corpus_chrf(hyps, refs).score)
    assert m["ter"]["value"] == pytest.approx(sacrebleu.corpus_ter(hyps, refs).score)
    assert 0 < m["bleu"]["value"] < 100 and m["bleu"]["n"] == 6
