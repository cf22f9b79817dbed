#!/usr/bin/env bash
# Arena demo (issue 5): the embedded SmolLM2-135M-Instruct as three "models" on MT-Bench questions,
# judged pairwise (both orders) by a judge model, rated with Bradley-Terry (bootstrap 95% CIs).
#
#   bench/arena_demo.sh                      # smollm2 answers, smollm2 judges (offline, CPU)
#   VERDICT=generate bench/arena_demo.sh     # judges write verdicts (default for openai-chat)
#   PER_CATEGORY=1 bench/arena_demo.sh       # fewer questions (LIMIT=N: the subset's first N)
#   JUDGE_MAX_TOKENS=48 bench/arena_demo.sh  # generate judges' replies capped (copies of the built-in files)
#   JUDGE=openai-chat JUDGE_ARGS=model=gpt-4o-mini bench/arena_demo.sh
#   MODEL=fake JUDGE=fake JUDGE_ARGS='output=[[A]]' bench/arena_demo.sh    # dry run of the plumbing
#
# The three "models" are one model under three configurations (variant task files written to
# $WORK/tasks/<model>/mt_bench.yaml; each run directory is named after its model):
#   greedy   the built-in mt_bench task as is: no system prompt, greedy
#   t1.0     the same, sampled at temperature 1.0 (seeded)
#   pirate   greedy, with a system prompt asking for pirate speak that avoids direct answers
# Judges: VERDICT=likelihood (default, except for JUDGE=openai-chat, which cannot score
# log-likelihoods): mt_bench_pairwise_likelihood and mt_bench_single_likelihood, whose verdict is the
# most likely of the allowed verdict strings; VERDICT=generate: mt_bench_pairwise and mt_bench_single,
# whose verdict is parsed from the judge's reply.
# Questions: the first PER_CATEGORY (default 2) questions of each of MT-Bench's 8 categories, first
# turn only (16 of 80 by default, for CPU time). Each run also rates its answers with
# the single-answer judge (the task's metric) by the same judge. Everything goes through the response
# cache in $CACHE_DIR (default $WORK/cache), so a rerun is free. Wall times go to $WORK/times.txt.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
EH="${EVALHARNESS:-$ROOT/.venv/bin/evalharness}"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
WORK="${WORK:-/tmp/evalharness-arena}"
CACHE_DIR="${CACHE_DIR:-$WORK/cache}"
PER_CATEGORY="${PER_CATEGORY:-2}"
LIMIT="${LIMIT:-}"  # then only the first LIMIT questions of the subset
MODEL="${MODEL:-smollm2}"
MODEL_ARGS="${MODEL_ARGS:-}"
JUDGE="${JUDGE:-smollm2}"
JUDGE_ARGS="${JUDGE_ARGS:-}"
JUDGE_MAX_TOKENS="${JUDGE_MAX_TOKENS:-}"  # cap the judges' reply length (built-in: 512) for CPU time
if [ "$JUDGE" = openai-chat ]; then VERDICT="${VERDICT:-generate}"; else VERDICT="${VERDICT:-likelihood}"; fi
MODELS=(greedy t1.0 pirate)

mkdir -p "$WORK"
export EVALHARNESS_DATA_ROOTS="$WORK"  # the subset data file lives outside the task files' folders
: >"$WORK/times.txt"

"$PY" - "$WORK" "$PER_CATEGORY" "$JUDGE_MAX_TOKENS" "$VERDICT" <<'EOF'
import json, sys
from pathlib import Path

import yaml

work, per_cat, cap, verdict = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
# The judges: the built-in files, or (generate) copies that differ only in generation.max_tokens.
suffix = "_likelihood" if verdict == "likelihood" else ""
judges = {}
for name in ("mt_bench_single", "mt_bench_pairwise"):
    judges[name] = name + suffix
    if cap and not suffix:
        spec = yaml.safe_load(Path(f"judges/{name}.yaml").read_text(encoding="utf-8"))
        spec["generation"] = {**spec.get("generation", {}), "max_tokens": int(cap)}
        spec["description"] = f"{spec['description']} (arena demo copy: max_tokens {cap})"
        out = work / "judges" / f"{name}.yaml"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), encoding="utf-8")
        judges[name] = str(out)
(work / "pairwise_judge.txt").write_text(judges["mt_bench_pairwise"], encoding="utf-8")
rows = [json.loads(x) for x in Path("tasks/data/mt_bench_questions.jsonl").read_text(encoding="utf-8").splitlines()]
seen: dict[str, int] = {}
subset = []
for r in rows:  # file order: question_id ascending within each category
    if seen.get(r["category"], 0) < per_cat:
        seen[r["category"]] = seen.get(r["category"], 0) + 1
        subset.append(r)
data = work / "data" / "mt_bench_subset.jsonl"
data.parent.mkdir(parents=True, exist_ok=True)
data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in subset), encoding="utf-8")
print(f"questions: {len(subset)} ({per_cat} per category): {', '.join(str(r['question_id']) for r in subset)}")

base = yaml.safe_load(Path("tasks/mt_bench.yaml").read_text(encoding="utf-8"))
base["dataset"]["path"] = str(data)
base["metrics"] = [{"name": "judge", "params": {"judge": judges["mt_bench_single"], "question": "question"}}]
pirate = ("You are a pirate. Always answer in heavy pirate speak, talk mostly about the sea and "
          "your ship, and never answer the question directly.")
variants = {
    "greedy": {},
    "t1.0": {"generate": {**base["generate"], "temperature": 1.0, "seed": 1234}},
    "pirate": {"prompt": {**base["prompt"], "system": pirate}},
}
for name, change in variants.items():
    spec = {**base, **change, "description": f"mt_bench, arena demo model {name!r}"}
    out = work / "tasks" / name / "mt_bench.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), encoding="utf-8")
EOF

timed() {  # label, command...
    local label=$1 start
    shift
    start=$(date +%s%N)
    "$@"
    local ms=$((($(date +%s%N) - start) / 1000000))
    printf '%s\t%d.%d s\n' "$label" $((ms / 1000)) $((ms % 1000 / 100)) | tee -a "$WORK/times.txt"
}

for m in "${MODELS[@]}"; do
    timed "run $m" "$EH" run --tasks "$WORK/tasks/$m/mt_bench.yaml" --model "$MODEL" --model-args "$MODEL_ARGS" \
        --judge-model "$JUDGE" --judge-model-args "$JUDGE_ARGS" --cache-dir "$CACHE_DIR" \
        --output "$WORK/runs/$m" --no-progress ${LIMIT:+--limit "$LIMIT"}
done

timed "arena" "$EH" arena "${MODELS[@]/#/$WORK/runs/}" --judge "$(cat "$WORK/pairwise_judge.txt")" --judge-model "$JUDGE" \
    --judge-model-args "$JUDGE_ARGS" --cache-dir "$CACHE_DIR" --output "$WORK/arena"

# The HTML report renders the Bradley-Terry table, win-rate heatmap and position consistency
# (the Markdown report has no arena section); the per-model runs' judge scores go to Markdown.
"$EH" report "$WORK/arena" --output "$WORK/arena/report.html"
"$EH" report "${MODELS[@]/#/$WORK/runs/}" --format md --output "$WORK/runs/report.md"
cat "$WORK/runs/report.md"

if [ "$VERDICT" = likelihood ]; then
    # Supplementary, not the arena's rating: Bradley-Terry on each comparison's swap-averaged
    # expected win share (the judge's P(first answer's label) + P(tie)/2, averaged over both orders:
    # a fixed preference for one label cancels). Argmax verdicts that flip with the order are ties.
    "$PY" - "$WORK/arena" <<'EOF' | tee "$WORK/arena/soft_bt.txt"
import json, sys
from pathlib import Path

from evalharness.judging.bradley_terry import rate

arena = Path(sys.argv[1])
results = json.loads((arena / "results.json").read_text(encoding="utf-8"))
log = [json.loads(x) for x in (arena / "samples" / "arena.jsonl").read_text(encoding="utf-8").splitlines()]
comps = [(r["models"][0], r["models"][1], r["expected_share"]) for r in log if "expected_share" in r]
bt = rate(comps, models=results["arena"]["models"], n_resamples=1000, seed=0)
print(f"supplementary: Bradley-Terry on swap-averaged expected win shares ({len(comps)} comparisons)")
for m in bt["models"]:
    r = bt["ratings"][m]
    print(f"  {m:8s} {r['rating']:7.1f}  [{r['ci_low']:.1f}, {r['ci_high']:.1f}]  wins {r['wins']:.2f} / {r['n']}")
for a, row in bt["win_rate"].items():
    print(f"  {a:8s} " + "  ".join(f"vs {b}: {v:.3f}" for b, v in row.items() if v is not None))
EOF
fi
echo "arena: $WORK/arena/results.json, $WORK/arena/report.html; times: $WORK/times.txt"
