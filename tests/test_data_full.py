"""--data full: a task's canonical source through `datasets` (a local dataset folder here, never the
network) instead of its vendored sample; results.json and the console mark sample scores."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from evalharness.cli import main

FIXTURES = Path(__file__).parent / "fixtures"


def _task(tmp_path: Path, hub: str) -> Path:
    """toy_mc with a 2-row vendored sample and `source:` naming the full dataset."""
    rows = (FIXTURES / "mc.jsonl").read_text().splitlines()
    (tmp_path / "sample.jsonl").write_text("\n".join(rows[:2]) + "\n")
    text = (FIXTURES / "mc.yaml").read_text().replace("path: mc.jsonl", "path: sample.jsonl\n  split: validation")
    text += f"source:\n  hub: {hub}\n  split: validation\n"
    path = tmp_path / "toy_mc.yaml"
    path.write_text(text)
    return path


def test_full_data_reads_the_source_and_sample_scores_are_marked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("datasets")
    full = tmp_path / "toy_hub"
    full.mkdir()
    shutil.copy(FIXTURES / "mc.jsonl", full / "validation.jsonl")  # a local datasets folder: split from the file name
    n_full = len((FIXTURES / "mc.jsonl").read_text().splitlines())
    task = _task(tmp_path, str(full))
    base = ["run", "--model", "fake", "--tasks", str(task), "--no-progress", "--cache-dir", str(tmp_path / "c")]
    assert main([*base, "--output", str(tmp_path / "s")]) == 0
    assert "toy_mc: scored on a sample" in capsys.readouterr().out
    sample = json.loads((tmp_path / "s" / "results.json").read_text())["tasks"]["toy_mc"]
    assert sample["data"] == {"source": "sample", "rows": 2, "of": None} and sample["n_samples"] == 2
    assert main([*base, "--data", "toy_mc=full", "--output", str(tmp_path / "f")]) == 0
    assert "scored on a sample" not in capsys.readouterr().out
    entry = json.loads((tmp_path / "f" / "results.json").read_text())["tasks"]["toy_mc"]
    assert entry["data"] == {"source": "full", "rows": n_full, "of": n_full} and entry["n_samples"] == n_full > 2


def test_full_data_offline_without_cache_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("datasets")
    task = _task(tmp_path, "nobody/not-cached-anywhere")
    assert main(["run", "--model", "fake", "--tasks", str(task), "--data", "full", "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "offline" in err and "run without --data full" in err and "(2 rows)" in err
    assert not (tmp_path / "o").exists()  # refused before any model work


def test_data_flag_rejects_bad_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    task = _task(tmp_path, "x/y")
    assert main(["run", "--model", "fake", "--tasks", str(task), "--data", "everything"]) == 2
    assert "--data: expected sample, full" in capsys.readouterr().err
