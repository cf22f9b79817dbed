"""Coverage of the reported 95% intervals, measured by simulation (figures in docs/statistics.md).

Each cell draws many data sets from a known truth and counts how often the interval the harness
reports contains it; an honest 95% interval covers 0.92-0.985 of the time. Draws are vectorised
(one matrix of data sets per cell) and go through the same interval functions `stats.bootstrap`
uses; `test_simulation_uses_the_reported_intervals` ties the two together.
The full grid is slow (`pytest -m slow tests/test_coverage.py -s` prints the table).
"""

from __future__ import annotations

import numpy as np
import pytest

from evalharness.judging.bradley_terry import ELO_BASE, ELO_SCALE, fit, rate
from evalharness.metrics.base import build_metric
from evalharness.stats.bootstrap import bootstrap, percentile_interval, unit_mean_interval

LOW, HIGH = 0.92, 0.985


def _accuracy(rng: np.random.Generator, reps: int, n: int, p: float) -> np.ndarray:
    return (rng.random((reps, n)) < p).astype(float)


def _skewed_f1(rng: np.random.Generator, reps: int, n: int) -> np.ndarray:
    """A SQuAD-like F1 on 0-100: 90% of answers score 0, the rest Beta(3, 2) (mean 60): mean 6."""
    return 100.0 * (rng.random((reps, n)) < 0.1) * rng.beta(3.0, 2.0, (reps, n))


def mean_coverage(x: np.ndarray, truth: float, scale: tuple[float, float]) -> float:
    a, b = scale
    low, high, _ = unit_mean_interval((x - a) / (b - a))
    return float(np.mean((a + (b - a) * low <= truth) & (truth <= a + (b - a) * high)))


# --- corpus BLEU: sentence statistics from a known population ---------------------------------


def _bleu_stats(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """sacrebleu's BLEU statistics per sentence: sys_len, ref_len, correct 1-4, total 1-4."""
    sys_len = rng.poisson(18, shape) + 2
    ref_len = np.maximum(1, sys_len + rng.integers(-4, 5, shape))
    quality = rng.beta(2.0, 2.0, shape)  # sentences differ in how good the translation is
    total = np.stack([np.maximum(sys_len - k, 0) for k in range(4)], axis=-1)
    correct = rng.binomial(total, quality[..., None] ** np.arange(1, 5))
    return np.concatenate([sys_len[..., None], ref_len[..., None], correct, total], axis=-1).astype(float)


def bleu_from_sums(sums: np.ndarray) -> np.ndarray:
    """Corpus BLEU of summed statistics, vectorised (sacrebleu's formula when every n-gram order has a match)."""
    sys_len, ref_len, correct, total = sums[..., 0], sums[..., 1], sums[..., 2:6], sums[..., 6:10]
    log_precision = np.log(correct / total).mean(axis=-1)
    brevity = np.where(sys_len < ref_len, 1.0 - ref_len / sys_len, 0.0)
    return 100.0 * np.exp(log_precision + brevity)


def bleu_coverage(rng: np.random.Generator, reps: int, n: int, resamples: int = 1000) -> float:
    truth = float(bleu_from_sums(_bleu_stats(np.random.default_rng(99), (1_000_000,)).sum(axis=0)))
    hits = 0
    for _ in range(reps):
        stats = _bleu_stats(rng, (n,))
        sums = stats[rng.integers(0, n, (resamples, n))].sum(axis=1)  # one bootstrap resample per row
        with np.errstate(divide="ignore"):  # a resample without a 4-gram match scores 0
            low, high = percentile_interval(bleu_from_sums(sums), n)
        hits += bool(low <= truth <= high)
    return hits / reps


# --- arena: Bradley-Terry with question difficulty varying by model ----------------------------

STRENGTH = np.array([0.6, 0.2, -0.2, -0.6])


def _arena(rng: np.random.Generator, questions: int, spread: float = 1.5) -> tuple[list[tuple[str, str, float]], list[str]]:
    """Every pair of 4 models on each question; each question favours models differently."""
    k = len(STRENGTH)
    effect = STRENGTH + spread * rng.standard_normal((questions, k))
    comps, qs = [], []
    for q in range(questions):
        for i in range(k):
            for j in range(i + 1, k):
                win = rng.random() < 1.0 / (1.0 + np.exp(-(effect[q, i] - effect[q, j])))
                comps.append((f"m{i}", f"m{j}", float(win)))
                qs.append(str(q))
    return comps, qs


def _arena_truth(spread: float = 1.5) -> np.ndarray:
    """The ratings on the whole population of questions: BT fitted to the expected win table."""
    effect = STRENGTH + spread * np.random.default_rng(7).standard_normal((400_000, len(STRENGTH)))
    p = 1.0 / (1.0 + np.exp(-(effect[:, :, None] - effect[:, None, :])))
    games = np.ones((4, 4)) - np.eye(4)
    wins = p.mean(axis=0) * games * 1e6
    return ELO_BASE + ELO_SCALE * fit(wins, games * 1e6, l2=1e-6)


def arena_coverage(trials: int, questions: int, by_question: bool, seed: int, resamples: int = 400) -> tuple[float, float]:
    """(share of model ratings whose CI holds the population rating, mean CI width)."""
    truth = _arena_truth()
    rng = np.random.default_rng(seed)
    hits, widths = [], []
    for t in range(trials):
        comps, qs = _arena(rng, questions)
        result = rate(comps, models=[f"m{i}" for i in range(4)], n_resamples=resamples, seed=t, questions=qs if by_question else None)
        for i in range(4):
            r = result["ratings"][f"m{i}"]
            hits.append(r["ci_low"] <= truth[i] <= r["ci_high"])
            widths.append(r["ci_high"] - r["ci_low"])
    return float(np.mean(hits)), float(np.mean(widths))


# --- fast checks ---------------------------------------------------------------------------------


def test_simulation_uses_the_reported_intervals() -> None:
    rng = np.random.default_rng(0)
    x = _skewed_f1(rng, 5, 40)
    low, high, _ = unit_mean_interval(x / 100.0)
    for row, lo, hi in zip(x, low, high, strict=True):
        res = bootstrap(build_metric("f1"), row[:, None])
        assert (res.ci_low, res.ci_high) == pytest.approx((100 * lo, 100 * hi))
    stats = _bleu_stats(rng, (5, 30))
    bleu = build_metric("bleu")
    for row in stats:
        assert bleu_from_sums(row.sum(axis=0)) == pytest.approx(bleu.aggregate(row), rel=1e-9)


def test_small_accuracy_samples_cover() -> None:
    rng = np.random.default_rng(1)
    for p in (0.05, 0.5, 0.9):
        assert LOW - 0.02 <= mean_coverage(_accuracy(rng, 2000, 20, p), p, (0.0, 1.0)) <= HIGH + 0.01


def test_arena_by_question_is_wider_than_by_comparison() -> None:
    comps, qs = _arena(np.random.default_rng(3), 60)
    by_q = rate(comps, n_resamples=200, questions=qs)
    by_c = rate(comps, n_resamples=200)
    assert by_q["resampled"] == "questions" and by_q["n_questions"] == 60 and by_c["resampled"] == "comparisons"
    width = {name: np.mean([r["ci_high"] - r["ci_low"] for r in res["ratings"].values()]) for name, res in (("q", by_q), ("c", by_c))}
    assert width["q"] > width["c"]
    assert by_q["ratings"] == rate(comps, n_resamples=200, questions=qs)["ratings"]  # seeded


# --- the documented grid -----------------------------------------------------------------------


@pytest.mark.slow
def test_coverage_grid() -> None:
    rng = np.random.default_rng(2024)
    cells: dict[str, float] = {}
    for p in (0.05, 0.5, 0.9):
        for n in (20, 100, 1000):
            cells[f"acc p={p} n={n}"] = mean_coverage(_accuracy(rng, 10_000, n, p), p, (0.0, 1.0))
    for n in (20, 100, 1000):
        cells[f"skewed F1 (mean 6 of 100) n={n}"] = mean_coverage(_skewed_f1(rng, 10_000, n), 6.0, (0.0, 100.0))
    for n in (20, 100, 1000):
        cells[f"corpus BLEU n={n}"] = bleu_coverage(rng, 600, n)
    print()
    for name, cov in cells.items():
        print(f"{name:36s} {cov:.3f}")
    bad = {k: v for k, v in cells.items() if not LOW <= v <= HIGH}
    assert not bad, bad


@pytest.mark.slow
def test_arena_coverage_by_question() -> None:
    by_q, width_q = arena_coverage(150, 100, by_question=True, seed=5)
    by_c, width_c = arena_coverage(150, 100, by_question=False, seed=5)
    print(f"\narena coverage: by question {by_q:.3f} (mean width {width_q:.1f}), by comparison {by_c:.3f} (width {width_c:.1f})")
    assert LOW <= by_q <= HIGH
    assert width_q > width_c
