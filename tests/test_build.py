"""Requests built from samples: lm-eval's multiple choice, including choices-as-contexts."""

from __future__ import annotations

import json
from pathlib import Path

from evalharness.data.samples import fewshot_pool, load_samples
from evalharness.prompting.requests import render_prompt, requests_for
from evalharness.spec.task import task_from_text

WINO = """
name: wino_like
kind: multiple_choice
dataset: {path: wino.jsonl, split: train, id_field: id}
prompt:
  template: "{{ sentence[:sentence.index('_')] }}{{ choice }}"
  target_delimiter: " "
  fewshot: {k: 1, seed: 3}
multiple_choice:
  choices: options
  answer: answer
  labels: labels
  continuation: "{{ sentence[sentence.index('_') + 1:] | trim }}"
metrics: [acc]
"""

ROWS = [
    {"id": "a", "sentence": "The trophy does not fit in the suitcase because the _ is too big.",
     "options": ["trophy", "suitcase"], "labels": ["1", "2"], "answer": "1"},
    {"id": "b", "sentence": "Ann thanked Mary because _ had helped her.",
     "options": ["Ann", "Mary"], "labels": ["1", "2"], "answer": "2"},
]


def _task(tmp_path: Path):  # type: ignore[no-untyped-def]
    (tmp_path / "wino.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    path = tmp_path / "wino.yaml"
    path.write_text(WINO)
    return task_from_text(WINO, str(path), path)


def test_choices_as_contexts_share_one_continuation(tmp_path: Path) -> None:
    task = _task(tmp_path)
    samples = load_samples(task)
    prompt = render_prompt(task, samples[0], 0, [], 0, chat=False)
    reqs = requests_for(task, samples[0], prompt)
    # lm-eval winogrande: context = sentence up to the blank + option; continuation = the rest.
    assert [r.prompt for r in reqs] == ["The trophy does not fit in the suitcase because the trophy",
                                        "The trophy does not fit in the suitcase because the suitcase"]
    assert {r.continuation for r in reqs} == {" is too big."}


def test_choices_as_contexts_fewshot_shows_gold_context_and_continuation(tmp_path: Path) -> None:
    task = _task(tmp_path)
    samples = load_samples(task)
    pool = fewshot_pool(task, 1)
    prompt = render_prompt(task, samples[0], 0, pool, None, chat=False)
    shot = "Ann thanked Mary because Mary had helped her."  # sample b, its gold option, its continuation
    assert [p.text for p in prompt.per_choice] == [
        shot + "\n\nThe trophy does not fit in the suitcase because the trophy",
        shot + "\n\nThe trophy does not fit in the suitcase because the suitcase",
    ]


def test_plain_multiple_choice_scores_each_choice_after_one_prompt(fixtures: Path) -> None:
    from evalharness.spec.task import load_task_file

    task = load_task_file(fixtures / "mc.yaml")
    sample = load_samples(task)[0]
    reqs = requests_for(task, sample, render_prompt(task, sample, 0, [], 0, chat=False))
    assert len({r.prompt for r in reqs}) == 1
    assert [r.continuation for r in reqs] == [" " + c for c in sample.choices]
