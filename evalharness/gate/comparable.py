"""Whether two runs evaluated the same thing: fingerprints, the gate config's names, and the
samples (same ids, same prompts and answers). Each problem is one line; `run_gate` refuses the
comparison when there is any."""

from __future__ import annotations

from typing import Any

from evalharness.errors import UsageError
from evalharness.results.rundir import RunDir
from evalharness.spec.gate import GateConfig

# Fingerprint fields that may differ between the two sides: the model is what is compared;
# a new harness version or bootstrap seed does not change what was asked. Every other field
# (task_file_hash, prompt_template_hash, num_fewshot, chat_template, and any added later) must
# match. The sample set is compared id by id from the logs, not by its hash.
EXPECTED_TO_DIFFER = frozenset({"model_identity_hash", "sample_ids_hash"})
NOTED_IF_DIFFERENT = frozenset({"harness_version", "seed"})
# What each sample was asked and what counted as right; must match for shared samples.
SAMPLE_FIELDS = ("prompt", "choices", "gold", "references")



def check_config_names(cfg: GateConfig, base: RunDir, cur: RunDir, shared: list[str]) -> None:
    """A rule for a task or metric the runs do not share is a typo until proven otherwise."""
    for task, rules in cfg.tasks.items():
        if task not in shared:
            raise UsageError(f"gate config: tasks.{task}: not a task of both runs (shared: {', '.join(shared) or 'none'})")
        metrics = set(base.tasks[task].get("metrics", {})) & set(cur.tasks[task].get("metrics", {}))
        for metric, rule in rules.items():
            if metric not in metrics:
                raise UsageError(f"gate config: tasks.{task}.{metric}: not a metric of both runs (shared: {', '.join(sorted(metrics))})")
            judged = any(isinstance(run.tasks[task]["metrics"][metric].get("judge"), dict) for run in (base, cur))
            if rule.max_unparseable_rate is not None and not judged:
                raise UsageError(f"gate config: tasks.{task}.{metric}.max_unparseable_rate: {metric} is not a judge metric "
                                 "(it has no verdicts to parse)")


def fingerprint_problems(task: str, base: dict[str, Any], cur: dict[str, Any], notes: list[str]) -> list[str]:
    fb, fc = base.get("fingerprint") or {}, cur.get("fingerprint") or {}
    problems: list[str] = []
    for key in sorted(set(fb) | set(fc)):
        if key in EXPECTED_TO_DIFFER or fb.get(key) == fc.get(key):
            continue
        line = f"{task}: {key} differs: baseline {fb.get(key)!r}, current {fc.get(key)!r}"
        (notes if key in NOTED_IF_DIFFERENT else problems).append(line)
    for metric in sorted(set(base.get("metrics", {})) & set(cur.get("metrics", {}))):
        hb = base["metrics"][metric].get("higher_is_better", True)
        hc = cur["metrics"][metric].get("higher_is_better", True)
        if hb != hc:
            problems.append(f"{task}.{metric}: higher_is_better differs: baseline {hb}, current {hc}")
    return problems


def examples(ids: list[str], k: int = 3) -> str:
    shown = ", ".join(ids[:k])
    return f"{shown}, ..." if len(ids) > k else shown


def sample_problems(task: str, base: dict[str, dict[str, Any]], cur: dict[str, dict[str, Any]]) -> list[str]:
    problems = []
    only_b = [i for i in base if i not in cur]
    only_c = [i for i in cur if i not in base]
    if only_b:
        problems.append(f"{task}: {len(only_b)} sample(s) missing from the current run ({examples(only_b)})")
    if only_c:
        problems.append(f"{task}: {len(only_c)} sample(s) not in the baseline ({examples(only_c)})")
    for name in SAMPLE_FIELDS:
        differ = [i for i in base if i in cur and base[i].get(name) != cur[i].get(name)]
        if differ:
            n_shared = len(base) - len(only_b)
            problems.append(f"{task}: {name} differs on {len(differ)} of {n_shared} shared sample(s) ({examples(differ)})")
    return problems
