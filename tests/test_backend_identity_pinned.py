"""Backend identities (what goes into cache keys) pinned: a restructure must not change them.

The expected values were computed from the tree before the model args became typed options
(issue 19); a change here invalidates every cached answer, so it must be deliberate.
"""

from __future__ import annotations

from typing import Any

import pytest

from evalharness.backends import load_backend
from evalharness.errors import BackendError
from evalharness.execution.cache import request_key
from evalharness.types import Request

A, B = "a" * 40, "b" * 40

CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("hf", {"pretrained": "org/model", "revision": A, "dtype": "bf16", "max_length": "512", "stride": "128",
            "add_bos_token": "true", "batch_size": "auto"},
     {"backend": "hf", "impl": 1, "model": "org/model", "revision": A, "dtype": "bfloat16", "gguf_file": None,
      "max_length": 512, "stride": 128, "add_bos_token": True, "commit": A}),
    ("hf", {"pretrained": "org/model", "revision": B},
     {"backend": "hf", "impl": 1, "model": "org/model", "revision": B, "dtype": "float32", "gguf_file": None,
      "max_length": None, "stride": None, "add_bos_token": None, "commit": B}),
    ("fake", {"output": "x", "seed": "3", "batch_size": "2", "prefer": "a"},
     {"backend": "fake", "output": "x", "seed": "3", "script": [], "prefer": "a"}),
    ("openai-chat", {"model": " gpt-4o-mini ", "base_url": "http://user:pw@localhost:8000/v1/chat/completions?x=1"},
     {"backend": "openai-chat", "impl": 1, "model": "gpt-4o-mini", "base_url": "http://localhost:8000/v1"}),
    ("openai-completions", {"model": "m", "base_url": "http://localhost:8000/v1", "prefix": "<|endoftext|>"},
     {"backend": "openai-completions", "impl": 1, "model": "m", "base_url": "http://localhost:8000/v1",
      "prefix": "<|endoftext|>"}),
]


@pytest.mark.parametrize(("name", "args", "expected"), CASES, ids=[c[0] for c in CASES])
def test_identity_pinned(name: str, args: dict[str, Any], expected: dict[str, Any]) -> None:
    backend = load_backend(name, args)
    try:
        assert backend.identity() == expected
    finally:
        backend.close()


def test_request_key_pinned() -> None:
    backend = load_backend("fake", {"output": "x", "seed": "3", "batch_size": "2", "prefer": "a"})
    key = request_key(backend.identity(), Request(kind="generate", prompt="2+2="))
    assert key == "be5665c1a3e444463014df935992306f07b80928652b041de546fe2336811b57"


def test_smollm2_identity_pinned() -> None:
    from evalharness.backends import smollm2

    try:
        folder = smollm2.package_folder()
    except BackendError:  # the embedded model is an optional package
        pytest.skip("the embedded model is not installed")
    from importlib.metadata import version

    backend = load_backend("smollm2", {"max_length": "1024", "dtype": "float32"})
    assert backend.identity() == {
        "backend": "smollm2", "impl": 1, "package": f"{smollm2.PACKAGE}=={version(smollm2.PACKAGE)}",
        "gguf_file": smollm2.GGUF_FILE, "gguf_bytes": (folder / smollm2.GGUF_FILE).stat().st_size,
        "dtype": "float32", "max_length": 1024, "stride": None, "add_bos_token": None,
    }
