"""Benchmarks, run on demand (`make bench`); results go to BENCHMARKS.md with machine and date.

    python bench/run_all.py [--lmeval-batch 16,32] [--skip-lmeval] [--arc-limit N]

What it measures, each comparison in this one run:
1. Cold start: `evalharness --help` wall time (median of 5).
2. ARC-Easy validation (570 questions) on the embedded SmolLM2 in float32: evalharness
   (no cache) against lm-evaluation-harness's `hf` backend (bench/lmeval, same model folder and
   data) at each batch size given; acc/acc_norm of both and the time ratio at lm-eval's best.
3. Harness overhead over the bare model: the forward passes the evaluation made are recorded
   and replayed straight through torch; overhead = evaluation time / replay time.
4. A fully cached rerun of the demo tasks (`make demo`'s limits) through the CLI.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
LMEVAL_VENV = Path(os.environ.get("LMEVAL_VENV", "/tmp/lmeval-venv"))
DEMO_ARGS = ["--tasks", "arc_easy,squad,gsm8k,lambada_ppl", "--limits", "arc_easy=100,squad=24,gsm8k=6,lambada_ppl=40"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def _timed(cmd: list[str], **kw: Any) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=ROOT, **kw)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, proc


def cold_start() -> float:
    times = [_timed([str(BIN / "evalharness"), "--help"])[0] for _ in range(5)]
    return statistics.median(times)


def arc_ours(limit: int | None, batch: int) -> dict[str, Any]:
    """Our ARC-Easy run in-process, with the model's forward passes recorded for replay."""
    import torch

    from evalharness.backends.hf import HFBackend
    from evalharness.execution.pipeline import RunConfig, evaluate
    from evalharness.spec.library import find_task

    recorded: list[tuple[Any, ...]] = []
    original = HFBackend._forward_packed

    def recording(self: HFBackend, ids: Any, pos: Any, seg: Any, keep: int) -> Any:
        recorded.append((ids.clone(), pos.clone(), seg.clone(), keep))
        return original(self, ids, pos, seg, keep)

    HFBackend._forward_packed = recording  # type: ignore[method-assign]
    out = Path(tempfile.mkdtemp(prefix="bench-arc-"))
    torch.set_num_threads(os.cpu_count() or 1)
    cfg = RunConfig(tasks=[find_task("arc_easy")], model="smollm2", model_args={"batch_size": batch}, output=out,
                    limit=limit, use_cache=False, progress=False, bootstrap_resamples=200)
    from evalharness.backends.smollm2 import SmolLM2Backend

    SmolLM2Backend(batch_size=batch)._load()  # warm the file cache and the converted copy: load is timed apart
    # A first, untimed evaluation records the forward passes and warms torch's per-shape kernels,
    # so the timed evaluation and the replay below both run warm: a like-for-like comparison.
    evaluate(cfg)
    HFBackend._forward_packed = original  # type: ignore[method-assign]
    import dataclasses

    timed = dataclasses.replace(cfg, output=Path(tempfile.mkdtemp(prefix="bench-arc-timed-")))  # no resume
    start = time.perf_counter()
    results = evaluate(timed)
    wall = time.perf_counter() - start
    load_start = time.perf_counter()
    backend = SmolLM2Backend(batch_size=batch)
    backend._load()
    load_s = time.perf_counter() - load_start
    replay = _replay(backend, recorded)
    metrics = results["tasks"]["arc_easy"]["metrics"]
    return {"wall_s": wall, "load_s": load_s, "replay_s": replay, "forwards": len(recorded),
            "acc": metrics["acc"]["value"], "acc_norm": metrics["acc_norm"]["value"], "run_dir": str(out),
            "n": results["tasks"]["arc_easy"]["n_samples"]}


def _replay(backend: Any, recorded: list[tuple[Any, ...]]) -> float:
    """The same forward passes called directly with torch (mask built beforehand, untimed)."""
    import torch

    model = backend.model
    prepared = []
    for ids, pos, seg, keep in recorded:
        width = ids.shape[1]
        causal = torch.ones((width, width), dtype=torch.bool).tril()
        seg_q, seg_k = seg[:, :, None], seg[:, None, :]
        allowed = causal & ((seg_k == 0) | (seg_k == seg_q)) & (seg_k >= 0) & (seg_q >= 0)
        allowed |= torch.eye(width, dtype=torch.bool)
        mask = torch.zeros(allowed.shape, dtype=torch.float32).masked_fill_(~allowed, torch.finfo(torch.float32).min)
        prepared.append((ids, pos, mask[:, None], keep))
    start = time.perf_counter()
    with torch.inference_mode():
        for ids, pos, mask, keep in prepared:
            model(input_ids=ids, position_ids=pos, attention_mask=mask, use_cache=False, logits_to_keep=keep)
    return time.perf_counter() - start


def arc_lmeval(batch: int, limit: int | None) -> dict[str, Any]:
    out = Path(tempfile.mkdtemp(prefix=f"bench-lmeval-{batch}-"))
    cmd = [str(LMEVAL_VENV / "bin" / "lm_eval"), "--model", "hf",
           "--model_args", f"pretrained={Path.home() / '.cache/evalharness/models/smollm2-135m-instruct-f32'},dtype=float32",
           "--tasks", "arc_easy_local", "--include_path", "bench/lmeval/tasks", "--batch_size", str(batch),
           "--device", "cpu", "--output_path", str(out), "--log_samples"]
    if limit:
        cmd += ["--limit", str(limit)]
    wall, _ = _timed(cmd)
    res_file = sorted(out.rglob("results_*.json"))[-1]
    res = json.loads(res_file.read_text())["results"]["arc_easy_local"]
    return {"wall_s": wall, "acc": res["acc,none"], "acc_norm": res["acc_norm,none"], "out": str(out)}


def arc_cli(limit: int | None, batch: int) -> dict[str, Any]:
    """Our ARC-Easy run end to end through the CLI, as lm-eval is timed (imports and load included)."""
    out = Path(tempfile.mkdtemp(prefix="bench-arc-cli-"))
    cmd = [str(BIN / "evalharness"), "run", "--tasks", "arc_easy", "--no-cache", "--no-progress",
           "--batch-size", str(batch), "--output", str(out)]
    if limit:
        cmd += ["--limit", str(limit)]
    wall, _ = _timed(cmd)
    metrics = json.loads((out / "results.json").read_text())["tasks"]["arc_easy"]["metrics"]
    return {"wall_s": wall, "acc": metrics["acc"]["value"], "acc_norm": metrics["acc_norm"]["value"], "run_dir": str(out)}


def cached_demo() -> float:
    cache = Path(tempfile.mkdtemp(prefix="bench-cache-"))
    cli = [str(BIN / "evalharness"), "run", *DEMO_ARGS, "--cache-dir", str(cache), "--no-progress"]
    _timed([*cli, "--output", str(cache / "first")])
    return _timed([*cli, "--output", str(cache / "second")])[0]


def machine() -> str:
    import torch

    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lmeval-batch", default="16", help="lm-eval batch sizes to try (its best is compared)")
    ap.add_argument("--batch", type=int, default=16, help="evalharness batch size")
    ap.add_argument("--arc-limit", type=int, default=None, help="fewer ARC questions (quick check)")
    ap.add_argument("--skip-lmeval", action="store_true")
    ap.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "latest.json")
    args = ap.parse_args()

    report: dict[str, Any] = {"date": date.today().isoformat(), "machine": machine()}
    report["help_s"] = cold_start()
    print(f"cold start --help: {report['help_s']:.3f} s", flush=True)
    report["cached_demo_s"] = cached_demo()
    print(f"fully cached demo rerun: {report['cached_demo_s']:.2f} s", flush=True)
    inproc = arc_ours(args.arc_limit, args.batch)
    report["overhead"] = inproc
    scoring = inproc["wall_s"] - inproc["load_s"]
    print(f"in-process ARC-Easy: {inproc['wall_s']:.1f} s (model load {inproc['load_s']:.1f} s); the same "
          f"{inproc['forwards']} forward passes through torch: {inproc['replay_s']:.1f} s -> overhead "
          f"{inproc['wall_s'] / inproc['replay_s']:.3f} with load, {scoring / inproc['replay_s']:.3f} without", flush=True)
    ours = arc_cli(args.arc_limit, args.batch)
    report["ours"] = ours
    print(f"evalharness CLI ARC-Easy: {ours['wall_s']:.1f} s acc {ours['acc']:.4f} acc_norm {ours['acc_norm']:.4f}", flush=True)
    if not args.skip_lmeval:
        peers = {}
        for b in (int(x) for x in args.lmeval_batch.split(",")):
            peers[b] = arc_lmeval(b, args.arc_limit)
            print(f"lm-eval batch {b}: {peers[b]['wall_s']:.1f} s acc {peers[b]['acc']:.4f} "
                  f"acc_norm {peers[b]['acc_norm']:.4f}", flush=True)
        report["lmeval"] = peers
        best = min(peers.values(), key=lambda p: p["wall_s"])
        report["ratio_vs_lmeval"] = ours["wall_s"] / best["wall_s"]
        print(f"time ratio evalharness / lm-eval (best batch): {report['ratio_vs_lmeval']:.3f}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}; copy the figures into BENCHMARKS.md")


if __name__ == "__main__":
    main()
