"""pass@k: functional correctness of generated programs, by the Codex paper's unbiased estimator.

Each sample is a problem with n generations (the task's `generate.n`). Every generation
becomes a program, as OpenAI human-eval and lm-evaluation-harness assemble it:

    <sample[prompt_field]> + <generation> + "\n" + <sample[test_field]> + "\n" + "check(<sample[entry_point_field]>)"

(`include_prompt: false` for models that write the whole function; `entry_point_field: null`
for tests that are plain asserts). Programs run in `evalharness.metrics.sandbox`, many at a time, under
OS isolation (bubblewrap); the tests run in a separate judge process that calls the program's
functions and alone can report a pass (metrics/sandbox/). One passes if its tests run to their end
within the time and memory limits (as in human-eval and HF code_eval, an exit before the end,
even with status 0, fails, and `__main__` blocks do not run). With c of n passing, the
problem's pass@k is 1 - C(n-c, k) / C(n, k), computed in the numerically stable product form of
Chen et al. (2021), "Evaluating Large Language Models Trained on Code", and identical to
`human_eval.evaluation.estimate_pass_at_k`. The corpus value is the mean over problems, on the
0-1 scale; k > n is an error (the estimator is undefined).

Execution results are memoised by program and limits within the process, so pass@1 and pass@10
on the same task run each program once.
"""

from __future__ import annotations

import ast
import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from evalharness.errors import DataError, SpecError
from evalharness.metrics.base import MeanMetric, MetricKind, TaskKind
from evalharness.metrics.sandbox import Limits, RunResult, require_isolation, run_programs
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


def execute(programs: Sequence[str], limits: Limits, workers: int | None = None,
            tests: Sequence[str] | None = None, under_test: Sequence[tuple[str, ...]] | None = None) -> list[RunResult]:
    """Run programs in the sandbox (each judged against `tests[i]` when given), reusing results of
    programs already run with these tests and limits."""
    tests = list(tests) if tests is not None else [""] * len(programs)
    names = list(under_test) if under_test is not None else [()] * len(programs)
    keys = [(hashlib.sha256(f"{len(p)}:{len(t)}:{p}{t}{','.join(n)}".encode("utf-8", "surrogateescape")).hexdigest(), limits)
            for p, t, n in zip(programs, tests, names, strict=True)]
    todo: dict[tuple[str, Limits], tuple[str, str, tuple[str, ...]]] = {}
    for key, program, test, name in zip(keys, programs, tests, names, strict=True):
        if key not in _memo:
            todo.setdefault(key, (program, test, name))
    pending = list(todo.values())
    ran = run_programs([p for p, _, _ in pending], limits, workers, tests=[t for _, t, _ in pending],
                       under_test=[n for _, _, n in pending]) if pending else []
    for key, result in zip(todo, ran, strict=True):
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
        require_isolation()  # no sandbox and no opt-in: refuse now, before any generation
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

    def parts(self, sample: Sample, completion: str) -> tuple[str, str]:
        """(program, tests): prompt + completion, and the tests + the check call, judged apart (metrics/sandbox/)."""
        head = self._field(sample, self.prompt_field) if self.prompt_field else ""
        tests = [self._field(sample, self.test_field)]
        if self.entry_point_field:
            tests.append(f"check({self._field(sample, self.entry_point_field)})")
        return head + completion + "\n", "\n".join(tests) + "\n"

    def under_test(self, sample: Sample) -> tuple[str, ...]:
        """The names the tests may take from the program even where they shadow a builtin: the entry
        point, or for plain-assert tests the functions the reference solution defines (MBPP 126 is
        called `sum`). Any other program name like `abs` or `set` never replaces the tests' builtin."""
        if self.entry_point_field:
            return (self._field(sample, self.entry_point_field),)
        try:
            tree = ast.parse(sample.references[0]) if sample.references else None
        except (SyntaxError, ValueError):
            tree = None
        return tuple(n.name for n in (tree.body if tree else []) if isinstance(n, (ast.FunctionDef, ast.ClassDef)))

    def program(self, sample: Sample, completion: str) -> str:
        """The whole program as human-eval assembles it: prompt + completion + tests + the check call."""
        return "".join(self.parts(sample, completion))

    def score_batch(self, samples: Sequence[Sample], outputs: Sequence[Output]) -> list[Score]:
        programs: list[str] = []
        tests: list[str] = []
        names: list[tuple[str, ...]] = []
        for sample, output in zip(samples, outputs, strict=True):
            if len(output.generations) < self.k:
                raise DataError(
                    f"{self.name}: sample {sample.id!r} has {len(output.generations)} generation(s); "
                    f"pass@{self.k} needs generate.n >= {self.k}"
                )
            # Raw generations, not `extracted`: stripping would break the indentation of the body.
            under_test = self.under_test(sample)
            for g in output.generations:
                program, test = self.parts(sample, g)
                programs.append(program)
                tests.append(test)
                names.append(under_test)
        results = iter(execute(programs, self.limits, self.workers, tests, names))
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
