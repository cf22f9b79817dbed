"""Few-shot prefix reuse (issue 20): whole commands, today's path against the new one, and lm-eval.

    bench/lmeval/setup.sh                         # once: the peer venv /tmp/lmeval-venv (for --part mmlu3)
    python bench/prefix_bench.py [--part mmlu3,group,gsm8k,parity] [--group-every 1] [--gsm8k-n 50] \\
        [--out bench/results/prefix_bench.json]

Every side is one `evalharness run` (or `lm_eval`) command in a subprocess, timed whole (start-up,
model load, scoring), on the embedded SmolLM2-135M-Instruct as a float32 folder through the `hf`
backend, batch 16, `--no-cache`, CPU. "today" is the same command with `prefix_reuse=false` (the
unshared path: each question's context computed once with its choices, no few-shot reuse).

* mmlu3: MMLU 5-shot, high_school_psychology, sociology, college_biology (all vendored rows: 91
  questions): today, new, and lm-eval 0.4.13 on its own MMLU task files pointed at the same rows
  (bench/lmeval/parity.py's local copies); per-subject acc and per-choice log-likelihoods compared.
* group: the mmlu subjects (every `--group-every`-th of the 57, all by default): today vs new in
  ABBA order over two halves of the subjects, acc per subject and the group's tokens.
* parity: bench/lmeval/parity.py's MMLU rows (its 4 subjects, first 20 questions), new path vs lm-eval.
* gsm8k: GSM8K 8-shot chain of thought, the first `--gsm8k-n` questions: today vs new, generations
  compared one by one.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench" / "lmeval"))
import parity  # noqa: E402  (the lm-eval local task copies, runner and comparison)

MMLU3 = ["high_school_psychology", "sociology", "college_biology"]
ENV = {**parity.OFFLINE_ENV, "PYTHONPATH": str(ROOT)}


def ours(tasks: list[str], out: Path, reuse: bool, limit: int | None = None, batch: int = 16) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "evalharness", "run", "--model", "hf", "--model-args",
           f"pretrained={parity.MODEL},dtype=float32,prefix_reuse={str(reuse).lower()}", "--tasks", ",".join(tasks),
           "--batch-size", str(batch), "--no-cache", "--no-progress", "--bootstrap", "0", "--output", str(out)]
    if limit is not None:
        cmd += ["--limit", str(limit)]
    timing = parity.run(cmd, out.parent / f"{out.name}.log", ENV)
    results = json.loads((out / "results.json").read_text())
    tasks_out = {}
    for name in tasks:
        t = results["tasks"][name]
        recs = [json.loads(x) for x in (out / "samples" / f"{name}.jsonl").read_text().splitlines() if x.strip()]
        tasks_out[name] = {"metrics": {k: v["value"] for k, v in t["metrics"].items()}, "usage": t["usage"],
                           "samples": {str(r["id"]): r for r in recs}}
    return {**timing, "tasks": tasks_out, "usage": results["usage"]["model"]}


def same_scores(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Per task: metrics equal? max |d log-likelihood|, samples whose prediction or generation differs."""
    out: dict[str, Any] = {}
    for name, ta in a["tasks"].items():
        tb = b["tasks"][name]
        diff, changed = 0.0, []
        for sid, ra in ta["samples"].items():
            rb = tb["samples"][sid]
            if "logprobs" in ra:
                diff = max(diff, *(abs(x - y) for x, y in zip(ra["logprobs"], rb["logprobs"], strict=True)))
                if ra["predicted"] != rb["predicted"]:
                    changed.append(sid)
            elif ra.get("generations") != rb.get("generations"):
                changed.append(sid)
        out[name] = {"metrics_equal": ta["metrics"] == tb["metrics"], "max_abs_dll": diff, "changed": changed,
                     "metrics": [ta["metrics"], tb["metrics"]]}
    return out


def tokens(run: dict[str, Any]) -> dict[str, int]:
    u = run["usage"]
    return {"requested": u.get("tokens_requested", 0), "computed": u.get("tokens_computed", 0)}


def against_lmeval(work: Path, name: str, subjects: list[str], batch: int, limit: int | None) -> tuple[dict[str, Any], ...]:
    """Ours (new path) and lm-eval on the same MMLU subjects: their runs and the per-subject comparison."""
    tasks = [t for t in parity._tasks().values() if t.ours in {f"mmlu_{s}" for s in subjects}]
    if len(tasks) != len(subjects):  # parity.py lists its own subjects: build the others alike
        saved = parity.MMLU_SUBJECTS
        parity.MMLU_SUBJECTS = subjects
        tasks = [parity._tasks()[f"mmlu_{s}"] for s in subjects]
        parity.MMLU_SUBJECTS = saved
    new = ours([t.ours for t in tasks], work / f"{name}_new", reuse=True, batch=batch, limit=limit)
    lm_work = work / "lmeval"
    lm_work.mkdir(exist_ok=True)
    parity.write_local_tasks(tasks, lm_work / "lmeval_tasks", lm_work)
    lm_out = work / f"{name}_lmeval"
    cmd = [str(parity.LMEVAL_VENV / "bin" / "lm_eval"), "--model", "hf", "--model_args",
           f"pretrained={parity.MODEL},dtype=float32", "--tasks", ",".join(t.local for t in tasks),
           "--include_path", str(lm_work / "lmeval_tasks"), "--batch_size", str(batch), "--device", "cpu",
           "--output_path", str(lm_out), "--log_samples"]
    if limit is not None:
        cmd += ["--limit", str(limit)]
    lm = parity.run(cmd, work / f"{name}_lmeval.log", parity.OFFLINE_ENV, cwd=lm_work)
    vs_lmeval = {}
    for t in tasks:
        row = parity.compare(t, work / f"{name}_new", lm_out, lm_work)
        vs_lmeval[t.ours] = {"n": row.n, "ours": row.ours, "lm_eval": row.theirs, "samples_differ": row.differ,
                             "max_abs_dll": row.max_dll, "prompts": row.prompts, "ok": row.ok}
    return new, lm, vs_lmeval


def part_parity(work: Path, batch: int) -> dict[str, Any]:
    """bench/lmeval/parity.py's MMLU rows (its 4 subjects, first 20 questions each), new path vs lm-eval."""
    new, lm, vs_lmeval = against_lmeval(work, "parity", parity.MMLU_SUBJECTS, batch, 20)
    return {"new_s": new["wall_s"], "lmeval_s": lm["wall_s"], "tokens_new": tokens(new), "new_vs_lmeval": vs_lmeval}


def part_mmlu3(work: Path, batch: int) -> dict[str, Any]:
    today = ours([f"mmlu_{s}" for s in MMLU3], work / "mmlu3_today", reuse=False, batch=batch)
    new, lm, vs_lmeval = against_lmeval(work, "mmlu3", MMLU3, batch, None)
    return {"today_s": today["wall_s"], "new_s": new["wall_s"], "lmeval_s": lm["wall_s"],
            "new_over_lmeval": new["wall_s"] / lm["wall_s"], "today_over_lmeval": today["wall_s"] / lm["wall_s"],
            "new_over_today": new["wall_s"] / today["wall_s"], "load": [today["load_before"], new["load_before"],
                                                                      lm["load_before"], lm["load_after"]],
            "tokens_today": tokens(today), "tokens_new": tokens(new),
            "new_vs_today": same_scores(today, new), "new_vs_lmeval": vs_lmeval}


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two commands' runs as one: times and token counts added, tasks united."""
    usage = {k: a["usage"].get(k, 0) + b["usage"].get(k, 0) for k in ("tokens_requested", "tokens_computed")}
    return {"wall_s": a["wall_s"] + b["wall_s"], "tasks": {**a["tasks"], **b["tasks"]}, "usage": usage,
            "load": [a["load_before"], b["load_before"]]}


def part_group(work: Path, batch: int, every: int) -> dict[str, Any]:
    """Today vs new on the mmlu subjects, in ABBA order so that a load that drifts over the ~25
    minutes falls on both sides alike: today on half 1, new on half 1, new on half 2, today on half 2
    (halves: alternate subjects), each side's two commands added."""
    subjects = sorted(p.stem for p in (ROOT / "tasks").glob("mmlu_*.yaml"))[::every]
    halves = [subjects[0::2], subjects[1::2]]
    today1 = ours(halves[0], work / "group_today1", reuse=False, batch=batch)
    new1 = ours(halves[0], work / "group_new1", reuse=True, batch=batch)
    new2 = ours(halves[1], work / "group_new2", reuse=True, batch=batch)
    today2 = ours(halves[1], work / "group_today2", reuse=False, batch=batch)
    today, new = _merge(today1, today2), _merge(new1, new2)
    cmp = same_scores(today, new)
    n = sum(len(t["samples"]) for t in new["tasks"].values())
    return {"subjects": len(subjects), "questions": n, "order": "ABBA (today1, new1, new2, today2)",
            "today_s": today["wall_s"], "new_s": new["wall_s"], "new_over_today": new["wall_s"] / today["wall_s"],
            "halves": {"today": [today1["wall_s"], today2["wall_s"]], "new": [new1["wall_s"], new2["wall_s"]]},
            "load": {"today": today["load"], "new": new["load"], "end": today2["load_after"]},
            "tokens_today": tokens(today), "tokens_new": tokens(new),
            "acc_identical": all(c["metrics_equal"] for c in cmp.values()),
            "predictions_changed": sum(len(c["changed"]) for c in cmp.values()),
            "max_abs_dll": max(c["max_abs_dll"] for c in cmp.values())}


def part_gsm8k(work: Path, batch: int, n: int) -> dict[str, Any]:
    today = ours(["gsm8k"], work / "gsm8k_today", reuse=False, limit=n, batch=batch)
    new = ours(["gsm8k"], work / "gsm8k_new", reuse=True, limit=n, batch=batch)
    cmp = same_scores(today, new)["gsm8k"]
    return {"questions": n, "today_s": today["wall_s"], "new_s": new["wall_s"],
            "new_over_today": new["wall_s"] / today["wall_s"], "load": [today["load_before"], new["load_before"],
                                                                      new["load_after"]],
            "tokens_today": tokens(today), "tokens_new": tokens(new),
            "generations_changed": cmp["changed"], "metrics": cmp["metrics"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", default="mmlu3,group,gsm8k")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--group-every", type=int, default=1, help="every N-th mmlu subject (1: all 57)")
    ap.add_argument("--gsm8k-n", type=int, default=50)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "prefix_bench.json")
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="prefix-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"date": datetime.date.today().isoformat(), "machine": parity.machine(),
                              "cpus_seen": os.cpu_count(), "batch": args.batch, "model": str(parity.MODEL)}
    parts = args.part.split(",")
    for part in parts:
        if part == "mmlu3":
            report["mmlu3"] = part_mmlu3(work, args.batch)
        elif part == "parity":
            report["parity"] = part_parity(work, args.batch)
        elif part == "group":
            report["group"] = part_group(work, args.batch, args.group_every)
        elif part == "gsm8k":
            report["gsm8k"] = part_gsm8k(work, args.batch, args.gsm8k_n)
        else:
            raise SystemExit(f"unknown part {part!r}")
        print(json.dumps({part: {k: v for k, v in report[part].items() if k != "new_vs_today"}}, indent=1), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
