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
    assert sample["data"] == {"source": "sample", "rows": 2, "of": None, "used": 2} and sample["n_samples"] == 2
    assert main([*base, "--data", "toy_mc=full", "--output", str(tmp_path / "f")]) == 0
    assert "scored on a sample" not in capsys.readouterr().out
    entry = json.loads((tmp_path / "f" / "results.json").read_text())["tasks"]["toy_mc"]
    assert entry["data"] == {"source": "full", "rows": n_full, "of": n_full, "used": n_full} and entry["n_samples"] == n_full > 2


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


def test_builtin_sample_console_and_report_mark_the_full_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """hellaswag's vendored 1,000 rows are marked against the 10,042 of its validation split; arc_easy's
    copy is the whole split (570 rows), so it is recorded as full and not marked."""
    from evalharness.report.html import render_html

    out = tmp_path / "run"
    assert main(["run", "--model", "fake", "--tasks", "hellaswag,arc_easy", "--no-progress",
                 "--cache-dir", str(tmp_path / "c"), "--output", str(out)]) == 0
    console = capsys.readouterr().out
    assert "hellaswag: scored on a sample of Rowan/hellaswag, 1,000 of 10,042 rows" in console
    assert "arc_easy:" not in console and "full size not recorded" not in console and "--limit" not in console
    tasks = json.loads((out / "results.json").read_text())["tasks"]
    assert tasks["hellaswag"]["data"] == {"source": "sample", "rows": 1000, "of": 10042, "used": 1000}
    assert tasks["arc_easy"]["data"] == {"source": "full", "rows": 570, "of": 570, "used": 570}
    html = render_html([out])
    assert html.count('class="sample-badge">sample: 1,000 of 10,042 rows<') == 2  # acc and acc_norm cells
    assert "† hellaswag (" in html and "570 of 570" not in html and "† arc_easy" not in html


def test_a_limited_run_is_marked_as_part_whatever_its_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--limit 5 scores 5 rows: the console, results.json and the report say so, for the whole
    vendored split (arc_easy) as for a sample (hellaswag), never the sample's or split's size alone."""
    from evalharness.report.html import render_html

    out = tmp_path / "run"
    assert main(["run", "--model", "fake", "--tasks", "hellaswag,arc_easy", "--limit", "5", "--no-progress",
                 "--cache-dir", str(tmp_path / "c"), "--output", str(out)]) == 0
    console = capsys.readouterr().out
    assert ("hellaswag: scored on part of Rowan/hellaswag, 5 of 10,042 rows (--limit, from a 1,000-row sample); "
            "not the benchmark's score") in console
    assert "arc_easy: scored on part of allenai/ai2_arc, 5 of 570 rows (--limit); not the benchmark's score" in console
    tasks = json.loads((out / "results.json").read_text())["tasks"]
    assert tasks["hellaswag"]["data"] == {"source": "sample", "rows": 1000, "of": 10042, "used": 5}
    assert tasks["arc_easy"]["data"] == {"source": "full", "rows": 570, "of": 570, "used": 5}
    html = render_html([out])
    assert html.count('class="sample-badge">sample: 5 of 570 rows (--limit)<') == 2
    assert "† arc_easy (" in html and "1,000 of 10,042 rows<" not in html
    assert "scored on 5 of 570 rows (--limit), not the whole benchmark</li>" in html  # no "--data full" advice


def test_local_data_report_has_no_sample_marking(tmp_path: Path) -> None:
    from evalharness.report.html import render_html

    out = tmp_path / "run"
    assert main(["run", "--model", "fake", "--tasks", str(FIXTURES / "mc.yaml"), "--no-progress",
                 "--cache-dir", str(tmp_path / "c"), "--output", str(out)]) == 0
    assert json.loads((out / "results.json").read_text())["tasks"]["toy_mc"]["data"]["source"] == "local"
    html = render_html([out])
    assert "sample-badge\">" not in html and "sample-notes\"" not in html and "scored on a sample" not in html


def test_group_data_sums_members_and_the_report_marks_the_group(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from evalharness.report.html import render_html

    out = tmp_path / "run"
    assert main(["run", "--model", "fake", "--tasks", "mmlu", "--no-progress",
                 "--cache-dir", str(tmp_path / "c"), "--output", str(out)]) == 0
    console = capsys.readouterr().out
    assert "mmlu (group): scored on a sample, 1,430 of 14,042 rows" in console
    assert "mmlu_anatomy:" not in console  # the group's note stands for its 57 members
    assert "note: mmlu_stem (group)" not in console and console.count("note: ") == 1  # and for its subgroups
    groups = json.loads((out / "results.json").read_text())["groups"]
    assert groups["mmlu"]["data"] == {"source": "sample", "rows": 1430, "of": 14042, "used": 1430}
    html = render_html([out])
    assert "sample: 1,430 of 14,042 rows" in html and "† mmlu (group) (" in html
