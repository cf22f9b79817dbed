"""What identifies a model on disk without loading it: a folder's fingerprint, a hub id's cached commit."""

from __future__ import annotations

import hashlib
import os
from typing import Any

_HASHED_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "tokenizer.model",
                 "special_tokens_map.json", "chat_template.jinja", "generation_config.json")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")


def _sha256(path: str, limit: int | None = None) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read() if limit is None else handle.read(limit))
    return digest.hexdigest()


def folder_fingerprint(folder: str) -> dict[str, Any]:
    """A cheap fingerprint of a model folder: hashes of small files, size+mtime of weights."""
    small: dict[str, str] = {}
    weights: dict[str, list[int]] = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue
        if name in _HASHED_FILES:
            small[name] = _sha256(path)
        elif name.endswith(_WEIGHT_SUFFIXES):
            stat = os.stat(path)
            weights[name] = [stat.st_size, stat.st_mtime_ns]
    return {"files": small, "weights": weights}


def _hub_commit(repo_id: str, revision: str | None) -> str | None:
    """The commit a hub id resolves to in the local HF cache (no network), if known."""
    if revision and len(revision) == 40 and all(c in "0123456789abcdef" for c in revision):
        return revision
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
    except ImportError:  # pragma: no cover - transformers always brings it
        return None
    ref = os.path.join(HF_HUB_CACHE, "models--" + repo_id.replace("/", "--"), "refs", revision or "main")
    try:
        with open(ref) as handle:
            return handle.read().strip() or None
    except OSError:
        return None
