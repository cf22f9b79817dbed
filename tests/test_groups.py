"""Task groups: micro/macro aggregates equal hand computation, stratified CIs, `--tasks GROUP`, report drill-down."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from evalharness.cli import main
from evalharness.errors import SpecError
from evalharness.report.data import group_boards, leaderboard, load_runs
from evalharness.report.html import render_html
from evalharness.spec.group import expand_task_list, find_group, resolve_group
from evalharness.stats.groups import stratified_resamples

MC_TASK = """name: {name}
kind: multiple_choice
tags: [{tags}]
dataset: {{path: mc.jsonl, id_field: id}}
prompt: {{template: "{prefix} {{{{question}}}}\\nAnswer:"}}
multiple_choice: {{choices: choices.text, answer: answerKey, labels: choices.label}}
metrics: [acc, acc_norm]
"""


@pytest.fixture
def group_dir(tmp_path: Path, fixtures: Path) -> Path:
    """Three member tasks (different prompts, so different fake answers) and a group with one subgroup."""
    d = tmp_path / "tasks"
    d.mkdir()
    shutil.copy(fixtures / "mc.jsonl", d / "mc.jsonl")
    for name, tags, prefix in (("m1", "toy, toy_x", "Q1:"), ("m2", "toy, toy_x", "Q2:"), ("m3", "toy", "Third question:")):
        (d / f"{name}.yaml").write_text(MC_TASK.format(name=name, tags=tags, prefix=prefix))
    (d / "toy.yaml").write_text(
        "name: toy\nmembers: [m1.yaml, m2.yaml, m3.yaml]\n"
        "subgroups:\n  - {name: toy_x, members: [m1.yaml, m2.yaml]}\n"
        "metrics: [acc, acc_norm]\n"
    )
    return d


def _run(group_dir: Path, out: Path, *extra: str) -> dict:
    code = main(["run", "--model", "fake", "--tasks", str(group_dir / "toy.yaml"), "--output", str(out), "--no-cache",
                 "--no-progress", "--bootstrap", "300", *extra])
    assert code == 0
    return json.loads((out / "results.json").read_text())


def _scores(out: Path, task: str, metric: str) -> list[float]:
    return [json.loads(line)["scores"][metric] for line in (out / "samples" / f"{task}.jsonl").read_text().splitlines()]


def test_micro_and_macro_equal_hand_computation(group_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = _run(group_dir, out, "--limits", "m2=2")  # unequal member sizes, so micro and macro differ in weights
    assert set(res["tasks"]) == {"m1", "m2", "m3"}
    group = res["groups"]["toy"]
    assert group["members"] == ["m1", "m2", "m3"] and group["subgroups"] == ["toy_x"]
    for metric in ("acc", "acc_norm"):
        per_task = {t: _scores(out, t, metric) for t in ("m1", "m2", "m3")}
        pooled = [x for xs in per_task.values() for x in xs]
        micro, macro = group["metrics"][f"{metric}_micro"], group["metrics"][f"{metric}_macro"]
        assert micro["value"] == pytest.approx(sum(pooled) / len(pooled))
        assert macro["value"] == pytest.approx(np.mean([np.mean(xs) for xs in per_task.values()]))
        # macro is also the mean of the members' own results.json values
        assert macro["value"] == pytest.approx(np.mean([res["tasks"][t]["metrics"][metric]["value"] for t in per_task]))
        for m in (micro, macro):
            assert m["n"] == 10 and m["n_tasks"] == 3 and m["ci_low"] <= m["value"] <= m["ci_high"]
            assert m["ci_method"] == "bootstrap-percentile-stratified" and m["resamples"] == 300
    sub = res["groups"]["toy_x"]["metrics"]["acc_micro"]
    xs = _scores(out, "m1", "acc") + _scores(out, "m2", "acc")
    assert sub["value"] == pytest.approx(sum(xs) / len(xs)) and sub["n"] == 6


def test_bootstrap_resamples_within_each_member() -> None:
    """One member all right, one all wrong: a stratified resample keeps both sizes, so micro never moves."""
    micro, macro = stratified_resamples([np.ones(3), np.zeros(5)], 500, seed=1)
    assert np.all(micro == 3 / 8) and np.all(macro == 0.5)
    mixed, _ = stratified_resamples([np.array([0.0, 1.0, 1.0, 0.0]), np.zeros(5)], 500, seed=1)
    assert mixed.std() > 0 and set(np.round(mixed * 9).astype(int)) <= set(range(5))


def test_group_limit_and_builtin_mmlu_group(group_dir: Path, tmp_path: Path) -> None:
    res = _run(group_dir, tmp_path / "run", "--limits", "toy=1")
    assert [res["tasks"][t]["n_samples"] for t in ("m1", "m2", "m3")] == [1, 1, 1]
    mmlu = find_group("mmlu")
    assert mmlu is not None and len(mmlu.members) == 57
    assert sorted(len(s.members) for s in mmlu.subgroups) == [12, 13, 13, 19]
    assert {t.spec.name for s in mmlu.subgroups for t in s.members} == set(mmlu.member_names)
    tasks, groups = expand_task_list(["arc_easy", "mmlu"])
    assert len(tasks) == 58 and [g.name for g in groups] == ["mmlu"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: g\nmembers: [m1.yaml]\ntag: toy\n", "exactly one of `tag`"),
        ("name: g\nmembers: [m1.yaml]\naggregate: [micro]\n", "aggregate: unknown key (did you mean 'aggregates'?)"),
        ("name: g\nmembers: [m1.yaml]\naggregates: [median]\n", "aggregates.0"),
        ("name: g\nmembers: [m1.yaml]\nmetrics: [bleu]\n", "member 'm1' has no metric 'bleu'"),
        ("name: g\nmembers: [m1.yaml, nope.yaml]\n", "members.1"),
        ("name: g\nmembers: [m1.yaml]\nsubgroups: [{name: s, members: [m2.yaml]}]\n", "m2 not among the group's members"),
    ],
)
def test_bad_group_files_name_file_and_field(group_dir: Path, text: str, message: str) -> None:
    path = group_dir / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as exc:
        resolve_group(path)
    assert str(path) in str(exc.value) and message in str(exc.value)


def test_report_shows_a_group_as_one_entry_with_drill_down(group_dir: Path, tmp_path: Path) -> None:
    a = tmp_path / "a"
    _run(group_dir, a)
    b = tmp_path / "b"
    _run(group_dir, b, "--model-args", "seed=7")
    runs = load_runs([a, b])
    board = leaderboard(runs)
    assert [(c.task, c.metric) for c in board.columns] == [
        ("toy", "acc_micro"), ("toy", "acc_macro"), ("toy", "acc_norm_micro"), ("toy", "acc_norm_macro")]
    drill = {g.name: g for g in group_boards(runs)}
    assert drill["toy"].members == ["m1", "m2", "m3"]
    assert [c.task for c in drill["toy"].board.columns if c.primary] == ["toy_x", "m1", "m2", "m3"]
    html = render_html([a, b])
    assert 'id="group-toy"' in html and 'id="board-toy"' in html and "toy (group)" in html
