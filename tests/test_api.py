"""The Python API (evalharness.evaluate / score -> Results) and the lm-eval spellings of `run`."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

import evalharness
from evalharness.cli import main
from evalharness.errors import UsageError
from evalharness.results.frame import Results

FIXTURES = Path(__file__).parent / "fixtures"


def _metrics(results: dict) -> dict:  # type: ignore[type-arg]
    return {t: {m: (v["value"], v["ci_low"], v["ci_high"], v["n"]) for m, v in e["metrics"].items()}
            for t, e in results["tasks"].items()}


def test_evaluate_in_memory_gives_tables_and_leaves_no_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = evalharness.evaluate(tasks=["arc_easy"], model="fake", limit=5, cache_dir=tmp_path / "cache")
    assert res.path is None and not (tmp_path / "runs").exists()
    df = res.to_pandas()
    assert list(df[["task", "metric"]].itertuples(index=False, name=None)) == [("arc_easy", "acc"), ("arc_easy", "acc_norm")]
    for col in ("value", "ci_low", "ci_high", "stderr", "n", "higher_is_better"):
        assert col in df.columns
    assert set(df["n"]) == {5}
    samples = res.samples("arc_easy")
    assert len(samples) == 5
    assert {"id", "prompt", "target", "output", "extracted", "acc", "acc_norm"} <= set(samples.columns)
    assert samples["acc"].mean() == pytest.approx(df.set_index("metric").loc["acc", "value"])
    assert res.to_dict()["tasks"]["arc_easy"]["n_samples"] == 5
    with pytest.raises(UsageError, match="no task 'gsm8k'"):
        res.samples("gsm8k")


def test_cli_and_api_give_identical_numbers_and_files(tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    assert main(["run", "--model", "fake", "--model_args", "output=A", "--num_fewshot", "0", "--batch_size", "2",
                 "--tasks", "arc_easy,mmlu", "--limit", "3", "--no-progress", "--cache-dir", cache,
                 "--output_path", str(tmp_path / "cli")]) == 0
    api = evalharness.evaluate(["arc_easy", "mmlu"], model="fake", model_args="output=A", num_fewshot=0, batch_size=2,
                               limit=3, output=tmp_path / "api", cache_dir=cache, progress=False)
    cli = Results.load(tmp_path / "cli")
    assert _metrics(api.to_dict()) == _metrics(cli.to_dict())
    assert api.to_dict()["groups"]["mmlu"]["metrics"] == cli.to_dict()["groups"]["mmlu"]["metrics"]
    assert cli.to_dict()["model"]["args"] == {"output": "A", "batch_size": "2"}
    logs = [sorted(p.name for p in (tmp_path / d / "samples").iterdir()) for d in ("api", "cli")]
    assert logs[0] == logs[1]
    assert any(r.startswith("mmlu (group)") for r in api.to_pandas()["task"])


def test_score_in_memory() -> None:
    res = evalharness.score(predictions=["Paris", "Rome"], references=[["Paris"], ["Berlin"]], metrics=["exact_match"])
    df = res.to_pandas()
    assert df.loc[0, "metric"] == "exact_match" and df.loc[0, "value"] == pytest.approx(50.0) and df.loc[0, "n"] == 2
    samples = res.samples("predictions")
    assert list(samples["exact_match"]) == [100.0, 0.0]
    assert list(samples["output"]) == ["Paris", "Rome"]
    with pytest.raises(UsageError, match="references has 1 entries"):
        evalharness.score(["a", "b"], [["a"]], metrics=["exact_match"])


def test_to_pandas_without_pandas_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_pandas(name: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name == "pandas":
            raise ImportError("no pandas")
        return real_import(name, *args, **kwargs)

    res = Results({"tasks": {}}, {})
    monkeypatch.setattr(builtins, "__import__", no_pandas)
    with pytest.raises(UsageError, match=r"evalharness\[data\]"):
        res.to_pandas()


def test_evaluate_rejects_unknown_options() -> None:
    with pytest.raises(UsageError, match="unknown option"):
        evalharness.evaluate(["arc_easy"], model="fake", outptu="x")


def test_a_hand_built_run_config_runs_as_given(tmp_path: Path) -> None:
    cfg = evalharness.RunConfig(tasks=[evalharness.find_task("arc_easy")], model="fake", output=tmp_path / "r", limit=4,
                                use_cache=False, progress=False)
    results = evalharness.evaluate(cfg)
    assert results.path == tmp_path / "r" and results.to_dict()["tasks"]["arc_easy"]["n_samples"] == 4
    with pytest.raises(UsageError, match="pass it alone"):
        evalharness.evaluate(cfg, limit=2)
    # names and string paths, as a notebook writes them
    named = evalharness.RunConfig(tasks=["arc_easy", "mmlu"], model="fake", output=str(tmp_path / "n"), limit=1,
                                  use_cache=False, progress=False)
    assert named.output == tmp_path / "n" and [g.name for g in named.groups] == ["mmlu"]
    assert named.tasks[0].spec.name == "arc_easy" and len(named.tasks) > 50
    assert "mmlu" in evalharness.evaluate(named).to_dict()["groups"]


def test_default_output_is_per_configuration_and_other_configs_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    base = ["run", "--model", "fake", "--tasks", "arc_easy", "--limit", "2", "--no-progress", "--cache-dir", str(tmp_path / "c")]
    assert main(base) == 0
    assert main([*base, "--model-args", "output=B"]) == 0
    assert len(list((tmp_path / "runs").iterdir())) == 2  # the second run did not replace the first
    out = tmp_path / "runs" / "shared"
    assert main([*base, "--output", str(out)]) == 0
    assert main([*base, "--output", str(out), "--batch-size", "3"]) == 0  # same configuration: resumes
    capsys.readouterr()
    assert main([*base, "--output", str(out), "--model-args", "output=B"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "another model configuration" in err and "--output" in err


def test_lm_eval_flags_debug_anywhere_and_include_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tasks = tmp_path / "mytasks"
    tasks.mkdir()
    shutil.copy(FIXTURES / "qa.yaml", tasks / "toy_qa.yaml")  # found by file name
    shutil.copy(FIXTURES / "qa.jsonl", tasks / "qa.jsonl")
    name = "toy_qa"  # tests/fixtures/qa.yaml
    out = tmp_path / "o"
    assert main(["run", "--model", "fake", "--tasks", name, "--include_path", str(tasks), "--output_path", str(out),
                 "--gen_kwargs", "max_gen_toks=8,temperature=0", "--log_samples", "--no-progress",
                 "--cache-dir", str(tmp_path / "c"), "--debug"]) == 0
    assert name in json.loads((out / "results.json").read_text())["tasks"]
    capsys.readouterr()
    assert main(["run", "--model", "fake", "--tasks", "arc_easy", "--numfewshot", "0"]) == 2
    assert "unrecognized arguments: --numfewshot" in capsys.readouterr().err
    assert main(["run", "--model", "fake", "--tasks", "gsm8k", "--gen_kwargs", "top_p=7", "--no-progress"]) == 2
    assert "--gen_kwargs: top_p" in capsys.readouterr().err
    # checked even when no task generates (a typo was a silent no-op on arc_easy)
    for bad in ("temperature=abc", "nosuch=1"):
        assert main(["run", "--model", "fake", "--tasks", "arc_easy", "--gen_kwargs", bad, "--no-progress"]) == 2
        assert f"--gen_kwargs: {bad.split('=')[0]}" in capsys.readouterr().err
    # --device goes to the backend as a model arg (the fake backend has no device, and says so)
    assert main(["run", "--model", "fake", "--tasks", "arc_easy", "--device", "cuda:0", "--no-progress"]) == 2
    assert "unexpected keyword argument 'device'" in capsys.readouterr().err


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"limit": -1}, "limit: expected a whole number >= 1, got -1"),  # was a slice: 569 of 570 rows
    ({"limit": True}, "limit: expected a whole number >= 1, got True"),  # was 1 row
    ({"limit": "5"}, "limit: expected a whole number >= 1, got '5'"),
    ({"limit": 2.5}, "limit: expected a whole number >= 1, got 2.5"),
    ({"num_fewshot": -1}, "num_fewshot: expected a whole number >= 0, got -1"),
    ({"batch_size": 0}, "batch_size: expected a whole number >= 1 or 'auto', got 0"),
    ({"seed": "x"}, "seed: expected a whole number >= 0, got 'x'"),
    ({"model": None}, "model: expected a backend name"),
    ({"model_args": 5}, "model_args: expected a dict or a 'k=v,k2=v2' string, got 5"),
    ({"limits": {"nosuch": 2}}, "limits: 'nosuch' is not among the tasks (arc_easy)"),
    ({"limits": "arc_easy=2"}, "limits: expected a mapping of task name -> count"),
    ({"limits": {"arc_easy": 0}}, "limits: arc_easy: expected a whole number >= 1, got 0"),
])
def test_evaluate_checks_its_arguments_as_the_cli_checks_its_flags(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"model": "fake", **kwargs}
    with pytest.raises(UsageError, match=re.escape(message)):
        evalharness.evaluate("arc_easy", **args)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="tasks: expected a name"):
        evalharness.evaluate(5, model="fake")  # type: ignore[arg-type]


def test_run_config_checks_its_numbers_too() -> None:
    from evalharness.execution.config import RunConfig

    with pytest.raises(UsageError, match="limit: expected a whole number >= 1, got -1"):
        RunConfig(tasks=["arc_easy"], model="fake", limit=-1)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"predictions": "Paris", "references": ["Paris"]}, "predictions: expected a list with one entry per prediction, got str"),
    ({"ids": [None, "y"]}, "ids[0]: expected a non-empty string or an integer, got None"),  # was the id "None"
    ({"predictions": ["Paris", None]}, "predictions[1]: expected a string or a list of strings, got None"),
    ({"predictions": ["Paris", float("nan")]}, "predictions[1]: expected a string or a list of strings, got nan"),
    ({"references": ["Paris", {"a": 1}]}, "references[1]: expected a string or a list of strings"),
    ({"prompts": ["Q?", 3]}, "prompts[1]: expected a string, got 3"),
    ({"metrics": [{"name": "bleu"}]}, "metrics: names only"),
])
def test_score_checks_each_column_entry_and_never_coerces(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"predictions": ["Paris", "x"], "references": ["Paris", "y"], "metrics": ["exact_match"], **kwargs}
    with pytest.raises(UsageError, match=re.escape(message)):
        evalharness.score(**args)  # type: ignore[arg-type]


def test_score_takes_any_iterable_and_a_comma_separated_metric_string() -> None:
    r = evalharness.score((p for p in ["Paris", "x"]), [["Paris"], ["y"]], metrics="exact_match,f1")
    assert {m: v for m, v in r.to_pandas()[["metric", "value"]].itertuples(index=False)} == {"exact_match": 50.0, "f1": 50.0}


def test_samples_of_a_log_with_an_impossible_gold_is_one_clear_error(tmp_path: Path) -> None:
    from evalharness.errors import DataError

    r = evalharness.evaluate("arc_easy", model="fake", limit=3, output=tmp_path / "run")
    log = tmp_path / "run" / "samples" / "arc_easy.jsonl"
    recs = [json.loads(line) for line in log.read_text().splitlines()]
    recs[1]["gold"] = 99
    log.write_text("".join(json.dumps(x) + "\n" for x in recs))
    assert len(r.samples("arc_easy")) == 3  # in memory: untouched
    with pytest.raises(DataError, match=r"sample '.*': gold 99 is not an index into its \d choices"):
        Results.load(tmp_path / "run").samples("arc_easy")
