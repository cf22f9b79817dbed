"""API benchmark (issue 4): evalharness `openai-chat` against lm-evaluation-harness's
`local-chat-completions`, same loopback server, same concurrency, same data, in one run.

    python bench/api_bench.py [--n 8000] [--concurrency 64] [--latency 0.1] [--big 100000]
                              [--repeats 1] [--skip-lmeval] [--skip-big] [--out bench/results/api_bench.md]

1. The fixture server (tests/openai_fixture_server.py) runs in its own process with a fixed
   latency per request and logs each request's arrival and finish time. The request span of a
   run is the server's first arrival to its last finish; ideal = n x latency / concurrency.
2. Each harness is one whole command, started here: wall time from exec to exit (imports,
   data loading and writing results included), and its peak RSS and CPU time (os.wait4).
3. A large evalharness run (--big requests, latency --big-latency): peak RSS.

Both harnesses read the same JSONL (n rows, one generate request each, stop at "\\n",
at most 16 tokens); evalharness writes its cache and per-sample log as it always does,
lm-eval writes its results file. The figures go to --out as Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
LMEVAL_VENV = Path(os.environ.get("LMEVAL_VENV", "/tmp/lmeval-venv"))
KEEP: Path | None = None
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
       "OPENAI_API_KEY": "EMPTY", "PYTHONUNBUFFERED": "1"}


# ---- the server process ------------------------------------------------------------------------


def serve(latency: float) -> None:
    """Run the fixture server; stdin commands: `dump PATH` (write the log, clear it), `quit`."""
    import socketserver

    # 64 clients connect at once: the default listen backlog (5) would drop SYNs and add
    # 1-second retransmits that measure the kernel, not the harness.
    socketserver.TCPServer.request_queue_size = 1024
    sys.path.insert(0, str(ROOT))
    from tests.openai_fixture_server import FakeOpenAIServer, _Handler

    log: list[tuple[float, float]] = []
    original = _Handler.do_POST

    def do_post(self: Any) -> None:
        start = time.time()
        original(self)
        log.append((start, time.time()))

    _Handler.do_POST = do_post  # type: ignore[method-assign]
    server = FakeOpenAIServer(latency=latency).start()
    print(server.url, flush=True)
    cpu = time.process_time()
    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "dump":
            now = time.process_time()
            Path(arg).write_text(json.dumps({"requests": log, "max_in_flight": server.max_in_flight, "cpu_s": now - cpu}))
            log.clear()
            server.max_in_flight = 0
            cpu = now
            print("ok", flush=True)
        elif cmd == "quit":
            break
    server.stop()


class Server:
    def __init__(self, latency: float) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve", "--latency", str(latency)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http://"):
            raise SystemExit("the fixture server did not start")

    def _cmd(self, text: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def take_log(self, tmp: Path, tag: str) -> dict[str, Any]:
        path = tmp / f"server_log_{tag}.json"
        self._cmd(f"dump {path}")
        data: dict[str, Any] = json.loads(path.read_text())
        if KEEP is not None:  # --keep-logs: the request timeline, for a closer look
            KEEP.mkdir(parents=True, exist_ok=True)
            (KEEP / path.name).write_text(path.read_text())
        return data

    def close(self) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except Exception:  # noqa: BLE001 - best effort
            self.proc.kill()


# ---- inputs for both harnesses -----------------------------------------------------------------


def write_inputs(tmp: Path, n: int) -> tuple[Path, Path]:
    data = tmp / "api_bench.jsonl"
    with data.open("w") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"q{i}", "question": f"Question number {i}: what comes next?", "answer": "alpha"}) + "\n")
    ours = tmp / "api_bench.yaml"
    ours.write_text(
        "name: api_bench\nkind: generate\ndataset:\n  path: api_bench.jsonl\n  id_field: id\n"
        'prompt:\n  template: "{{question}}"\nreferences: answer\n'
        'generate:\n  max_tokens: 16\n  stop: ["\\n"]\nextract:\n  strip: true\nmetrics: [exact_match]\n'
    )
    lm_dir = tmp / "lmeval_tasks"
    lm_dir.mkdir(exist_ok=True)
    (lm_dir / "api_bench_lm.yaml").write_text(
        f"task: api_bench_lm\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\n"
        "output_type: generate_until\ntest_split: test\n"
        'doc_to_text: "{{question}}"\ndoc_to_target: "{{answer}}"\n'
        'generation_kwargs:\n  until: ["\\n"]\n  max_gen_toks: 16\n  do_sample: false\n  temperature: 0.0\n'
        "filter_list:\n  - name: none\n    filter:\n      - function: remove_whitespace\n      - function: take_first\n"
        "metric_list:\n  - metric: exact_match\n    aggregation: mean\n    higher_is_better: true\n"
        "    ignore_case: true\n    ignore_punctuation: true\n"
        "metadata:\n  version: 1.0\n"
    )
    return ours, lm_dir


# ---- running one command -----------------------------------------------------------------------


def run_measured(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Wall time, peak RSS (MB) and CPU seconds of one command and its children."""
    with log.open("w") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env or ENV)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{log.read_text()[-3000:]}")
    return {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024, "cpu_s": usage.ru_utime + usage.ru_stime}


def span(server_log: dict[str, Any]) -> dict[str, Any]:
    reqs = server_log["requests"]
    first = min(a for a, _ in reqs)
    last = max(b for _, b in reqs)
    busy = sum(b - a for a, b in reqs)  # request-seconds in flight: busy / span = mean concurrency
    return {"requests_seen": len(reqs), "span_s": last - first, "max_in_flight": server_log["max_in_flight"],
            "mean_in_flight": busy / (last - first) if last > first else 0.0, "server_cpu_s": server_log["cpu_s"]}


TRANSPORT = "openai"


def ours(server: Server, task: Path, tmp: Path, n: int, conc: int, tag: str) -> dict[str, Any]:
    out, cache = tmp / f"run_{tag}", tmp / f"cache_{tag}"
    cmd = [str(BIN / "evalharness"), "run", "--model", "openai-chat",
           "--model-args", f"model=toy,base_url={server.url},max_concurrency={conc},transport={TRANSPORT}",
           "--tasks", str(task), "--output", str(out), "--cache-dir", str(cache)]
    m = run_measured(cmd, tmp / f"ours_{tag}.log")
    m.update(span(server.take_log(tmp, tag)))
    res = json.loads((out / "results.json").read_text())["tasks"]["api_bench"]
    m["n_scored"], m["n_failed"] = res["n_samples"], res["n_failed"]
    m["exact_match"] = res["metrics"]["exact_match"]["value"]
    return m


def lmeval(server: Server, lm_dir: Path, tmp: Path, conc: int, tag: str) -> dict[str, Any]:
    url = server.url + "/chat/completions"
    cmd = [str(LMEVAL_VENV / "bin" / "lm_eval"), "--model", "local-chat-completions",
           "--model_args", f"model=toy,base_url={url},num_concurrent={conc},max_retries=3",
           "--apply_chat_template", "--tasks", "api_bench_lm", "--include_path", str(lm_dir),
           "--output_path", str(tmp / f"lm_{tag}")]
    env = {**ENV, "HF_DATASETS_CACHE": str(tmp / "hf_datasets")}
    m = run_measured(cmd, tmp / f"lmeval_{tag}.log", env=env)
    m.update(span(server.take_log(tmp, tag)))
    found = sorted((tmp / f"lm_{tag}").rglob("results_*.json"))
    if found:
        res = json.loads(found[-1].read_text())["results"]["api_bench_lm"]
        m["exact_match"] = res.get("exact_match,none")
    return m


# ---- report ------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model or platform.processor(), "nproc": os.cpu_count(), "python": platform.python_version(),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "load_before": os.getloadavg()}


def row(name: str, m: dict[str, Any], ideal: float) -> str:
    return (f"| {name} | {m['requests_seen']:,} | {m['span_s']:.2f} | {m['span_s'] / ideal:.3f}x | {m['wall_s']:.2f} | "
            f"{m['cpu_s']:.1f} | {1000 * m['cpu_s'] / max(1, m['requests_seen']):.2f} | {m['peak_rss_mb']:.0f} | "
            f"{m['mean_in_flight']:.1f} / {m['max_in_flight']} | {m['server_cpu_s']:.1f} |")


def report(args: argparse.Namespace, info: dict[str, Any], runs: list[tuple[str, dict[str, Any]]],
           big: dict[str, Any] | None) -> str:
    ideal = args.n * args.latency / args.concurrency
    lines = [
        "# API benchmark (bench/api_bench.py)", "",
        f"Machine: {info['cpu']}, {info['nproc']} CPUs, Python {info['python']}; {info['date']}; "
        f"load average before: {', '.join(f'{x:.2f}' for x in info['load_before'])}; after: "
        f"{', '.join(f'{x:.2f}' for x in info['load_after'])}.", "",
        f"Loopback fixture server (tests/openai_fixture_server.py, own process, {1000 * args.latency:.0f} ms per request), "
        f"{args.n:,} chat requests at concurrency {args.concurrency}: ideal span n x {args.latency:g} s / "
        f"{args.concurrency} = {ideal:.2f} s. Span: the server's first arrival to last finish. Wall: the whole "
        "command, start-up included. CPU: the harness process's user+system time.", "",
        f"evalharness transport: `{args.transport}`"
        + (" (the default: the openai package with its aiohttp client)." if args.transport == "openai" else "."), "",
        "| harness | requests | span (s) | span / ideal | wall (s) | CPU (s) | CPU ms/request | peak RSS (MB) "
        "| in flight mean / max | server CPU (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [row(name, m, ideal) for name, m in runs]
    ours_runs = [m for name, m in runs if name.startswith("evalharness")]
    lm_runs = [m for name, m in runs if name.startswith("lm-eval")]
    if ours_runs and lm_runs:
        best_ours = min(m["wall_s"] for m in ours_runs)
        best_lm = min(m["wall_s"] for m in lm_runs)
        lines += ["", f"Whole command, best of each: evalharness {best_ours:.2f} s, lm-eval {best_lm:.2f} s: "
                      f"ratio {best_ours / best_lm:.2f} (target <= 0.5).",
                  f"Span / ideal, best of each: evalharness {min(m['span_s'] for m in ours_runs) / ideal:.3f}x, "
                  f"lm-eval {min(m['span_s'] for m in lm_runs) / ideal:.3f}x (target <= 1.05x).",
                  f"Same generations, same score: exact match evalharness {ours_runs[0]['exact_match']:.2f} (0-100), "
                  f"lm-eval {100 * (lm_runs[0].get('exact_match') or 0):.2f} (x100; remove_whitespace, ignore case "
                  "and punctuation)."]
    if big is not None:
        lines += ["", f"Large run, evalharness alone: {big['requests_seen']:,} requests, latency {1000 * args.big_latency:g} ms, "
                      f"concurrency {args.concurrency}: wall {big['wall_s']:.1f} s, span {big['span_s']:.1f} s, "
                      f"CPU {big['cpu_s']:.1f} s ({1000 * big['cpu_s'] / max(1, big['requests_seen']):.2f} ms/request), "
                      f"peak RSS {big['peak_rss_mb']:.0f} MB (target < 600 MB), failed {big['n_failed']}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=8000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--latency", type=float, default=0.1)
    ap.add_argument("--repeats", type=int, default=1, help="runs of each harness, alternating")
    ap.add_argument("--big", type=int, default=100_000)
    ap.add_argument("--big-latency", type=float, default=0.0)
    ap.add_argument("--skip-lmeval", action="store_true")
    ap.add_argument("--skip-big", action="store_true")
    ap.add_argument("--transport", choices=["openai", "httpcore"], default="openai",
                    help="evalharness's HTTP path: the openai package (default; its aiohttp client) or transport=httpcore")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "api_bench.md")
    ap.add_argument("--keep-logs", type=Path, default=None, help="copy the server's request timelines here")
    args = ap.parse_args()
    global TRANSPORT
    TRANSPORT = args.transport
    global KEEP
    KEEP = args.keep_logs
    if args.serve:
        serve(args.latency)
        return
    info = machine()
    runs: list[tuple[str, dict[str, Any]]] = []
    big = None
    with tempfile.TemporaryDirectory(prefix="api_bench_") as tmp_name:
        tmp = Path(tmp_name)
        task, lm_dir = write_inputs(tmp, args.n)
        server = Server(args.latency)
        try:
            for rep in range(args.repeats):
                m = ours(server, task, tmp, args.n, args.concurrency, f"o{rep}")
                runs.append((f"evalharness openai-chat (run {rep + 1})", m))
                print(runs[-1], flush=True)
                if not args.skip_lmeval:
                    m = lmeval(server, lm_dir, tmp, args.concurrency, f"l{rep}")
                    runs.append((f"lm-eval local-chat-completions (run {rep + 1})", m))
                    print(runs[-1], flush=True)
        finally:
            server.close()
        if not args.skip_big:
            big_dir = tmp / "big"
            big_dir.mkdir()
            big_task, _ = write_inputs(big_dir, args.big)
            server = Server(args.big_latency)
            try:
                big = ours(server, big_task, big_dir, args.big, args.concurrency, "big")
                print(("big", big), flush=True)
            finally:
                server.close()
    info["load_after"] = os.getloadavg()
    text = report(args, info, runs, big)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
