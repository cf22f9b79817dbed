"""Secrets never written: model args named like keys, tokens, secrets or Authorization are
redacted from results, and a marker key passed on the command line appears in no file the run,
the cache or the report writes, and in no error message."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from evalharness.cli import main
from evalharness.results.store import redact

MARKER = "sk-MARKER-3f9c1e7a-do-not-write"


@pytest.mark.parametrize("key", ["api_key", "OPENAI_API_KEY", "api-key", "apikey", "token", "access_token", "hf_token",
                                 "secret", "client_secret", "password", "passwd", "Authorization", "authorization", "auth",
                                 "bearer", "credentials", "cookie", "private_key"])
def test_redact_drops_credential_like_names(key: str) -> None:
    assert redact({key: MARKER, "model": "m"}) == {key: "<redacted>", "model": "m"}


@pytest.mark.parametrize("value", [f"Bearer {MARKER}", f"Authorization: Bearer {MARKER}", f"basic {MARKER}"])
def test_redact_drops_header_values_under_any_name(value: str) -> None:
    assert redact({"headers": value, "model": "m"}) == {"headers": "<redacted>", "model": "m"}


def test_malformed_model_args_part_is_not_echoed(fixtures: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--model", "fake", "--model-args", f"api_key:{MARKER}", "--tasks", str(fixtures / "qa.yaml"),
                 "--output", str(tmp_path / "o"), "--no-cache"])
    assert code == 2 and MARKER not in capsys.readouterr().err


def _scan(root: Path) -> list[str]:
    """Every file under root whose bytes hold the marker (binary files too: SQLite, WAL)."""
    hits = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            if MARKER.encode() in path.read_bytes():
                hits.append(str(path))
    return hits


def test_marker_key_reaches_no_file(fixtures: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, cache = tmp_path / "run", tmp_path / "cache"
    tasks = f"{fixtures / 'qa.yaml'},{fixtures / 'mc.yaml'}"
    argv = ["run", "--model", "fake", "--model-args", f"api_key={MARKER},seed=1", "--tasks", tasks,
            "--output", str(out), "--cache-dir", str(cache), "--no-progress"]
    assert main(argv) == 0
    assert main(argv) == 0  # the cached rerun writes again
    assert main(["report", str(out), "--output", str(tmp_path / "report.html")]) == 0
    captured = capsys.readouterr()
    assert (out / "results.json").exists() and any(cache.iterdir()) and (tmp_path / "report.html").exists()
    assert '"api_key": "<redacted>"' in (out / "results.json").read_text(encoding="utf-8")
    assert _scan(tmp_path) == []
    assert MARKER not in captured.out + captured.err


def test_scan_finds_a_leak(tmp_path: Path) -> None:
    """The scanner itself can fail: a marker in a binary file is found."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.sqlite").write_bytes(b"\x00\x01" + MARKER.encode() + b"\xff")
    assert _scan(tmp_path) == [str(tmp_path / "sub" / "x.sqlite")]


@pytest.mark.parametrize(
    "extra",
    [
        ["--model-args", f"api_key={MARKER},bogus=1"],  # unknown model arg
        ["--model-args", f"api_key={MARKER},batch_size=many"],  # bad value next to the key
        ["--model-args", f"api_key={MARKER}", "--limit", "x"],  # bad CLI argument
        ["--model-args", f"api_key={MARKER}", "--limits", "nope=1"],
        ["--model-args", f"api_key={MARKER}", "--chat-template"],  # fails inside the run
    ],
)
def test_marker_key_not_in_error_messages(extra: list[str], fixtures: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--model", "fake", "--tasks", str(fixtures / "qa.yaml"), "--output", str(tmp_path / "o"),
                 "--cache-dir", str(tmp_path / "c"), "--no-progress", *extra])
    captured = capsys.readouterr()
    assert code == 2
    assert MARKER not in captured.out + captured.err
    assert _scan(tmp_path) == []
