"""Model backends behind one protocol, found by name in `BACKENDS`."""

from __future__ import annotations

from evalharness.backends.base import BACKENDS, Backend, load_backend

BACKENDS.register("fake", "evalharness.backends.fake:FakeBackend")
BACKENDS.register("hf", "evalharness.backends.hf:HFBackend")
BACKENDS.register("smollm2", "evalharness.backends.smollm2:SmolLM2Backend")
BACKENDS.register("openai-chat", "evalharness.backends.openai.backend:OpenAIChatBackend")
BACKENDS.register("openai-completions", "evalharness.backends.openai.backend:OpenAICompletionsBackend")
BACKENDS.register("openai-embeddings", "evalharness.backends.openai.embeddings:OpenAIEmbeddingsBackend")
BACKENDS.register("sentence-transformers", "evalharness.backends.embedding:SentenceTransformersBackend")
BACKENDS.register("vllm", "evalharness.backends.vllm.engine:VLLMBackend")

__all__ = ["BACKENDS", "Backend", "load_backend"]
