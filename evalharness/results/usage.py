"""Token usage and cost, the model under test and the judge apart, for results.json and the console.

Each usage block (`tasks.<t>.usage`: the model under test; `tasks.<t>.judge_usage`: the judge
calls of that task's judge metrics; `usage.model` / `usage.judge`: the run's totals) holds
- request counts: `requests`, `unique_requests`, `cache_hits` (cache or resumed run), `computed`
  (answered by the backend in this run), `failed`;
- `prompt_tokens`, `completion_tokens`: the tokens of every answer this evaluation used, those
  reused from the cache or a resumed run included (what the evaluation costs from scratch);
- `computed_prompt_tokens`, `computed_completion_tokens`: the tokens of the requests the backend
  answered in this run (what this run spent);
- `tokens_requested`, `tokens_computed` (backends that report what the model ran: hf, smollm2):
  the prompt + completion tokens of the requests answered in this run, and the token positions
  the model actually ran for them (a question's shared context or a few-shot prefix computed once
  counts once); absent when no answer computed in this run reported it;
- `cost_usd` (for the first pair) and `computed_cost_usd` (for the second): USD where the backend
  knows its price; null when it does not (tokens only); absent for backends with no notion of
  price (local models).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from evalharness.types import RunStats

if TYPE_CHECKING:
    from evalharness.backends.base import Backend
    from evalharness.metrics.base import Metric

COUNTS = ("requests", "unique_requests", "cache_hits", "computed", "failed")
TOKENS = ("prompt_tokens", "completion_tokens", "computed_prompt_tokens", "computed_completion_tokens")
WORK = ("tokens_requested", "tokens_computed")  # present only where a backend reported them
COSTS = ("cost_usd", "computed_cost_usd")


def merge_stats(total: RunStats, more: RunStats) -> None:
    """Add `more`'s counts and tokens into `total` (judge calls arrive in several runner calls)."""
    for name in ("requests", "unique", "cache_hits", "computed", "failed", "prompt_tokens", "completion_tokens",
                 "computed_prompt_tokens", "computed_completion_tokens", *WORK, "batches"):
        setattr(total, name, getattr(total, name, 0) + getattr(more, name, 0))
    total.errors.extend(more.errors)


def usage_json(stats: RunStats, backend: Backend | None = None) -> dict[str, Any]:
    """One usage block from a runner's statistics; cost from `backend.cost(prompt, completion)` if it has one."""
    usage: dict[str, Any] = {
        "requests": stats.requests,
        "unique_requests": stats.unique,
        "cache_hits": stats.cache_hits,
        "computed": stats.computed,
        "failed": stats.failed,
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens,
        "computed_prompt_tokens": stats.computed_prompt_tokens,
        "computed_completion_tokens": stats.computed_completion_tokens,
    }
    if stats.tokens_requested or stats.tokens_computed:  # local models that say what they ran
        usage.update({k: getattr(stats, k) for k in WORK})
    if backend is not None and backend.priced:  # API backends: USD, or None (null) when the price is unknown
        usage["cost_usd"] = backend.cost(usage["prompt_tokens"], usage["completion_tokens"])
        usage["computed_cost_usd"] = backend.cost(usage["computed_prompt_tokens"], usage["computed_completion_tokens"])
    return usage


def judge_entry(metrics: Sequence[Metric]) -> dict[str, Any]:
    """`{"judge_usage": block}` for the judge metrics among `metrics` (all on one judge backend), else {}."""
    judges = [m for m in metrics if m.judge_stats is not None]
    if not judges:
        return {}
    total = RunStats()
    for m in judges:
        assert m.judge_stats is not None
        merge_stats(total, m.judge_stats)
    return {"judge_usage": usage_json(total, judges[0].judge_backend)}


def add_blocks(items: Iterable[Any]) -> dict[str, Any] | None:
    """The sum of usage blocks (non-dicts skipped); a cost is null when any block's is unknown, absent when none has one."""
    blocks: list[dict[str, Any]] = [b for b in items if isinstance(b, dict)]
    if not blocks:
        return None
    out: dict[str, Any] = {k: sum(int(b.get(k) or 0) for b in blocks) for k in (*COUNTS, *TOKENS)}
    if any(k in b for b in blocks for k in WORK):
        out.update({k: sum(int(b.get(k) or 0) for b in blocks) for k in WORK})
    for key in COSTS:
        if any(key in b for b in blocks):
            values = [b.get(key) for b in blocks]
            numbers = [v for v in values if isinstance(v, (int, float))]
            out[key] = sum(numbers) if len(numbers) == len(values) else None
    return out


def run_usage(tasks: dict[str, Any]) -> dict[str, Any]:
    """results.json top-level `usage`: `model` (the model under test) and `judge` totals over tasks."""
    out: dict[str, Any] = {}
    for who, key in (("model", "usage"), ("judge", "judge_usage")):
        total = add_blocks(t.get(key) for t in tasks.values() if isinstance(t, dict))
        if total is not None:
            out[who] = total
    return out


def _cost(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "unknown price"
    return f"${value:,.4f}" if value == 0 or value >= 0.0001 else f"${value:.2g}"


def describe(block: dict[str, Any]) -> str:
    """`P prompt + C completion tokens (computed now p + c, reused p' + c'), cost ...` for one block."""
    p, c = int(block.get("prompt_tokens") or 0), int(block.get("completion_tokens") or 0)
    cp, cc = int(block.get("computed_prompt_tokens") or 0), int(block.get("computed_completion_tokens") or 0)
    text = (f"{p:,} prompt + {c:,} completion tokens (computed now {cp:,} + {cc:,}; "
            f"from cache/resume {max(0, p - cp):,} + {max(0, c - cc):,})")
    if block.get("tokens_requested"):
        text += f"; {work(block)}"
    if "cost_usd" in block:
        if isinstance(block.get("cost_usd"), (int, float)):
            text += f", cost {_cost(block['cost_usd'])} (this run {_cost(block.get('computed_cost_usd'))})"
        else:
            text += ", cost unknown (no price for this model)"
    return text


def work(block: dict[str, Any]) -> str:
    """`model ran C of R requested tokens (C/R)`: what sharing contexts and prefixes saved."""
    req, ran = int(block.get("tokens_requested") or 0), int(block.get("tokens_computed") or 0)
    return f"model ran {ran:,} of {req:,} requested tokens ({ran / req:.3f})" if req else "model ran no tokens"


def usage_line(results: dict[str, Any]) -> str:
    """The console usage line (the model under test and the judge, tokens and cost), then, where the
    backend reported them, the tokens the model ran against those requested, task by task."""
    usage = results.get("usage") or run_usage(results.get("tasks") or {})
    parts = [f"{who} {describe(usage[who])}" for who in ("model", "judge") if usage.get(who)]
    lines = ["usage: " + ("; ".join(parts) if parts else "none")]
    for name, task in (results.get("tasks") or {}).items():
        block = task.get("usage") if isinstance(task, dict) else None
        if isinstance(block, dict) and block.get("tokens_requested"):
            lines.append(f"  {name}: {work(block)}")
    return "\n".join(lines)
