"""Typed model args (backends/options.py): coercion once, each backend's wording kept."""

from __future__ import annotations

import re
from typing import Any

import pytest

from evalharness.backends import load_backend
from evalharness.errors import BackendError


@pytest.mark.parametrize(("name", "args", "message"), [
    ("hf", {"batch_size": "abc"}, "hf backend: batch_size must be an integer, got 'abc'"),
    ("hf", {"batch_size": "0"}, "hf backend: batch_size must be >= 1, got '0'"),
    ("hf", {"add_bos_token": "maybe"}, "expected a boolean, got 'maybe'"),
    ("hf", {"bogus": "1"}, "HFBackend.__init__() got an unexpected keyword argument 'bogus'"),
    ("fake", {"batch_size": "x"}, "backend 'fake': batch_size: expected a whole number, got 'x'"),
    ("fake", {"delay": "soon"}, "backend 'fake': delay: expected seconds, got 'soon'"),
    ("openai-chat", {"max_concurrency": "0"}, "--model-args: max_concurrency must be >= 1, got '0'"),
    ("openai-chat", {"max_retries": "x"}, "--model-args: max_retries must be a whole number, got 'x'"),
    ("openai-chat", {"timeout": "soon"}, "openai-chat: timeout, retry_budget and backoff_base must be seconds"),
    ("openai-chat", {"structured_output": "maybe"}, "openai-chat: structured_output must be true or false, got 'maybe'"),
])
def test_bad_model_args_keep_their_wording(name: str, args: dict[str, Any], message: str) -> None:
    base = {"hf": {"pretrained": "org/model"}, "fake": {}, "openai-chat": {"model": "m"}}[name]
    with pytest.raises(BackendError) as info:
        load_backend(name, {**base, **args})
    assert message in str(info.value)


def test_strings_are_coerced_once() -> None:
    hf: Any = load_backend("hf", {"pretrained": "org/model", "batch_size": " AUTO ", "threads": "none",
                                  "prefix_reuse": "off", "max_length": "256"})
    assert (hf.batch_size, hf._auto_batch, hf.threads, hf.prefix_reuse, hf.max_length) == (8, True, None, False, 256)
    chat: Any = load_backend("openai-chat", {"model": "m", "batch_size": "auto", "max_concurrency": "4",
                                             "max_retries": "", "structured_output": "no"})
    assert (chat.batch_size, chat.max_retries, chat.supports_json_schema) == (4, None, False)
    chat.close()


@pytest.mark.parametrize(("value", "message"), [
    ("2.7", "batch_size: expected a whole number, got '2.7'"),  # was truncated to 2 from a suite file
    (2.7, "batch_size: expected a whole number, got 2.7"),
    (float("inf"), "batch_size: expected a whole number, got inf"),  # was an OverflowError traceback
    ("nan", "batch_size: expected a whole number, got 'nan'"),
    (True, "batch_size: expected a whole number, got True"),
    ("0", "batch_size: expected a number >= 1, got '0'"),
    (-3, "batch_size: expected a number >= 1, got -3"),
])
def test_counts_are_whole_finite_and_in_range_from_any_source(value: object, message: str) -> None:
    from evalharness.backends.fake import FakeBackend

    with pytest.raises(BackendError, match=re.escape(message)):
        FakeBackend(batch_size=value)
    assert FakeBackend(batch_size=4.0).batch_size == 4 and FakeBackend(batch_size="4").batch_size == 4


@pytest.mark.parametrize("value", ["-1", "nan", "inf", float("nan")])
def test_seconds_are_finite_and_not_negative(value: object) -> None:
    from evalharness.backends.fake import FakeBackend

    with pytest.raises(BackendError, match="delay"):
        FakeBackend(delay=value)
