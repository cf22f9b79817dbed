"""Issue 18 part 6: a response cache cannot poison a run.

A database SQLite cannot read is moved aside and rebuilt with a warning; one that cannot be
created is one line naming the file and the way out; a row of the wrong shape (valid JSON,
wrong type) is a miss, recomputed, and never copied into the sample log.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from evalharness.cli import main
from evalharness.execution.cache import ResponseCache, parse_cached
from evalharness.types import Response

FIXTURES = Path(__file__).parent / "fixtures"


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def _run(tmp_path: Path, out: str, cache: Path) -> tuple[int, str, str]:
    task = tmp_path / "qa.yaml"
    if not task.exists():
        shutil.copy(FIXTURES / "qa.yaml", task)
        shutil.copy(FIXTURES / "qa.jsonl", tmp_path / "qa.jsonl")
    return cli("run", "--tasks", str(task), "--model", "fake", "--no-progress", "--bootstrap", "0",
               "--output", str(tmp_path / out), "--cache-dir", str(cache))


def _log(run: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (run / "samples" / "toy_qa.jsonl").read_text().splitlines()]


def test_a_corrupt_database_is_moved_aside_and_rebuilt(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "responses.sqlite").write_bytes(b"this is not an SQLite database" * 100)
    code, _, err = _run(tmp_path, "run", cache)
    assert code == 0, err
    assert "response cache unreadable (file is not a database); moved aside to responses.sqlite.corrupt-" in err
    assert "Traceback" not in err
    assert len(ResponseCache(cache / "responses.sqlite")) > 0  # rebuilt and filled
    assert [p.name for p in cache.iterdir() if ".corrupt-" in p.name]


def test_an_unusable_cache_location_is_one_line_exit_2(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    code, _, err = _run(tmp_path, "run", blocker / "cache")
    assert code == 2
    assert f"{blocker / 'cache' / 'responses.sqlite'}: response cache cannot be used" in err and "--no-cache" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("bad", ['"a string"', "[1, 2]", '{"text": 5}', '{"text": null}', '{"logprob": "x"}',
                                 '{"text": "ok", "prompt_tokens": -3}', '{"text": "ok", "surprise": 1}', "{not json"])
def test_a_cached_row_of_the_wrong_shape_is_a_miss_never_logged(tmp_path: Path, bad: str) -> None:
    cache = tmp_path / "cache"
    assert _run(tmp_path, "first", cache)[0] == 0
    first = _log(tmp_path / "first")
    with sqlite3.connect(cache / "responses.sqlite") as conn:
        conn.execute("UPDATE responses SET value = ?", (bad,))
    code, _, err = _run(tmp_path, "second", cache)
    assert code == 0, err
    second = _log(tmp_path / "second")
    assert [r["generations"] for r in second] == [r["generations"] for r in first]  # recomputed, not the bad row
    code, _, err = _run(tmp_path, "third", cache)  # and the recomputed answers replaced the bad rows
    assert code == 0 and [r["generations"] for r in _log(tmp_path / "third")] == [r["generations"] for r in first]


def test_parse_cached_accepts_only_well_formed_responses() -> None:
    assert parse_cached(json.dumps({"text": "hi", "prompt_tokens": 3})) == Response(text="hi", prompt_tokens=3)
    assert parse_cached(json.dumps({"logprob": -1.5, "is_greedy": True})) == Response(logprob=-1.5, is_greedy=True)
    assert parse_cached('{"logprob": NaN}') is None
    assert parse_cached(json.dumps({"text": "x", "error": "boom"})) is None  # failures are never answers
    assert parse_cached(json.dumps({"is_greedy": 1, "logprob": 0.0})) is None
    # every field a backend writes reads back (a local model's model_tokens too): a rerun is all hits
    for written in (Response(logprob=-2.0, is_greedy=False, prompt_tokens=9, model_tokens=3),
                    Response(text="ok", completion_tokens=1, model_tokens=12), Response(logprob=-7.5, n_tokens=4)):
        assert parse_cached(json.dumps(written.to_json())) == written
    assert parse_cached(json.dumps({"logprob": -1.0, "is_greedy": True, "model_tokens": -1})) is None


def test_cached_embeddings_are_answers_only_when_they_are_finite_vectors() -> None:
    from evalharness.execution.cache import answers
    from evalharness.types import Request

    good = parse_cached(json.dumps({"embedding": [0.5, -1, 2.25], "prompt_tokens": 4}))
    assert good == Response(embedding=(0.5, -1, 2.25), prompt_tokens=4)
    for bad in ('{"embedding": []}', '{"embedding": [1.0, NaN]}', '{"embedding": ["1.0"]}', '{"embedding": [true]}',
                '{"embedding": {"0": 1.0}}', '{"embedding": [1e999]}'):
        assert parse_cached(bad) is None, bad
    embed = Request(kind="embed", prompt="a question")
    assert good is not None and answers(embed, good)
    assert not answers(embed, Response(text="an answer cached under the same key"))


def test_the_validator_knows_every_response_field() -> None:
    """A field added to Response but not to the cache's validator would make every cached row a miss."""
    import dataclasses

    from evalharness.execution.cache import _FIELDS

    assert {f.name for f in dataclasses.fields(Response)} - {"error"} == set(_FIELDS)


def test_values_no_model_could_give_are_misses() -> None:
    """A positive log-probability (a probability above 1) or a 400-digit number in a cache row is
    tampering or corruption: a miss, recomputed (a logprob of 5.0 changed acc_norm silently)."""
    assert parse_cached(json.dumps({"logprob": 5.0, "is_greedy": True})) is None
    assert parse_cached(json.dumps({"logprob": 0.0, "is_greedy": True})) is not None  # probability 1 is fine
    assert parse_cached('{"logprob": ' + "9" * 400 + ', "is_greedy": true}') is None  # was an OverflowError later
    assert parse_cached('{"text": "x", "prompt_tokens": ' + "9" * 400 + "}") is None
    assert parse_cached('{"embedding": [1.0, ' + "9" * 400 + "]}") is None


def test_a_cache_table_of_another_shape_is_moved_aside_and_rebuilt(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    with sqlite3.connect(cache / "responses.sqlite") as conn:
        conn.execute("CREATE TABLE responses (key TEXT PRIMARY KEY, value TEXT)")  # no `created` column
    code, _, err = _run(tmp_path, "run", cache)
    assert code == 0, err
    assert "malformed responses table (columns key, value)); moved aside" in err and "Traceback" not in err
    assert len(ResponseCache(cache / "responses.sqlite")) > 0


def test_embeddings_of_different_sizes_are_one_clear_error() -> None:
    from evalharness.errors import DataError
    from evalharness.execution.retrieval import _matrix

    with pytest.raises(DataError, match=r"corpus: embeddings of different sizes \(2, 3\); rerun with --no-cache"):
        _matrix([Response(embedding=(1.0, 0.0)), Response(embedding=(1.0, 0.0, 0.0))], "corpus")
