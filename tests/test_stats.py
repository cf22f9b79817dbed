"""Confidence intervals by metric kind: Wilson for 0/1, quasi-binomial Wilson for bounded means, t for
unbounded means, the seeded percentile bootstrap for corpus metrics; never zero-width by accident."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import binomtest, t

from evalharness.errors import UsageError
from evalharness.metrics.base import MeanMetric, build_metric
from evalharness.metrics.perplexity import word_perplexity
from evalharness.stats.bootstrap import bootstrap


class _Mean(MeanMetric):
    name = "mean"


def test_unbounded_mean_gets_the_t_interval_and_lm_eval_stderr() -> None:
    values = np.array([1.0] * 60 + [0.0] * 40)
    res = bootstrap(_Mean(), values[:, None], n_resamples=4000, seed=1)
    assert res.value == pytest.approx(0.6)
    se = float(np.std(values, ddof=1)) / math.sqrt(100)  # lm-eval's mean_stderr
    assert res.stderr == pytest.approx(se, rel=1e-12)
    assert (res.ci_low, res.ci_high) == pytest.approx((0.6 - t.ppf(0.975, 99) * se, 0.6 + t.ppf(0.975, 99) * se))
    assert res.n == 100 and res.resamples == 0 and res.ci_method == "t"


@pytest.mark.parametrize("k", [0, 1, 7, 19, 20])
def test_accuracy_gets_the_wilson_interval(k: int) -> None:
    values = np.array([1.0] * k + [0.0] * (20 - k))
    res = bootstrap(build_metric("acc"), values[:, None])
    ref = binomtest(k, 20).proportion_ci(confidence_level=0.95, method="wilson")
    assert (res.ci_low, res.ci_high) == pytest.approx((ref.low, ref.high), abs=1e-12)
    assert res.ci_method == "wilson" and res.resamples == 0 and res.ci_low < res.ci_high


def test_zero_right_of_twenty_is_not_a_certain_zero() -> None:
    # the acceptance line: 0 of 20 reports an upper end of at least 0.1 on the metric's scale
    zeros = np.zeros((20, 1))
    acc = bootstrap(build_metric("acc"), zeros)
    em = bootstrap(build_metric("exact_match"), zeros)
    f1 = bootstrap(build_metric("f1"), zeros)
    assert acc.ci_low == 0.0 and acc.ci_high >= 0.1 and acc.stderr == 0.0
    assert em.ci_low == 0.0 and em.ci_high >= 10.0  # SQuAD's 0-100 scale
    assert f1.ci_high == em.ci_high and f1.ci_method == "wilson"  # every F1 at a bound: plain Wilson
    full = bootstrap(build_metric("acc"), np.ones((20, 1)))
    assert full.ci_high == 1.0 and full.ci_low <= 0.9


def test_every_interval_holds_its_estimate_at_the_bounds() -> None:
    """0 of n and n of n on the 0-100 scale: the low end was 5.55e-15 above a value of 0 for some n."""
    for n in range(2, 120):
        for fill in (0.0, 1.0):
            res = bootstrap(build_metric("exact_match"), np.full((n, 1), fill))
            assert res.ci_low is not None and res.ci_high is not None
            assert res.ci_low <= res.value <= res.ci_high, (n, fill, res)


def test_graded_bounded_mean_never_collapses() -> None:
    same = bootstrap(build_metric("f1"), np.full((30, 1), 50.0))  # every F1 exactly 50: no spread seen
    assert same.ci_method == "wilson-quasibinomial" and same.ci_low < 50.0 < same.ci_high
    rng = np.random.default_rng(0)
    skewed = 100.0 * (rng.random(100) < 0.1) * rng.beta(3, 2, 100)
    res = bootstrap(build_metric("f1"), skewed[:, None])
    assert 0.0 <= res.ci_low < res.value < res.ci_high <= 100.0
    assert res.stderr == pytest.approx(float(np.std(skewed, ddof=1)) / 10.0)


def test_undefined_intervals_are_null_with_a_reason_and_strict_json() -> None:
    one = bootstrap(build_metric("acc"), np.array([[1.0]]))
    assert (one.value, one.ci_low, one.ci_high, one.stderr, one.n) == (1.0, None, None, None, 1)
    assert one.ci_reason and "n = 1" in one.ci_reason
    flat = bootstrap(_Mean(), np.full((10, 1), 3.0))  # no bounds declared: nothing to build an interval from
    assert flat.ci_low is None and flat.ci_reason and flat.stderr == 0.0
    empty = bootstrap(_Mean(), np.zeros((0, 1)))
    assert empty.n == 0 and math.isnan(empty.value)
    for res in (one, flat, empty):
        text = json.dumps(res.to_json(), allow_nan=False)  # raises on NaN
        assert json.loads(text)["ci_low"] is None
    assert "ci_reason" not in bootstrap(build_metric("acc"), np.zeros((5, 1))).to_json()


def test_resample_counts_are_zero_or_at_least_100() -> None:
    stats = np.array([[-100.0, 20.0], [-300.0, 50.0], [-50.0, 10.0]])
    none = bootstrap(word_perplexity(), stats, n_resamples=0)
    assert none.ci_low is None and none.ci_reason == "no resamples (--bootstrap 0)"
    assert bootstrap(build_metric("acc"), np.zeros((5, 1)), n_resamples=0).ci_high > 0  # closed form needs none
    for bad in (1, 99):
        with pytest.raises(UsageError, match="at least 100"):
            bootstrap(word_perplexity(), stats, n_resamples=bad)


def test_corpus_metric_with_no_spread_has_no_interval() -> None:
    stats = np.tile([[-100.0, 20.0]], (8, 1))  # every passage the same: every resample equal
    res = bootstrap(word_perplexity(), stats, n_resamples=200)
    assert res.ci_low is None and res.ci_reason and "same value" in res.ci_reason


def test_same_seed_same_interval_other_seed_differs() -> None:
    rng = np.random.default_rng(0)
    stats = np.column_stack([-rng.gamma(5.0, 20.0, 50), rng.integers(10, 40, 50)]).astype(float)
    a = bootstrap(word_perplexity(), stats, n_resamples=500, seed=3)
    b = bootstrap(word_perplexity(), stats, n_resamples=500, seed=3)
    c = bootstrap(word_perplexity(), stats, n_resamples=500, seed=4)
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    assert (a.ci_low, a.ci_high) != (c.ci_low, c.ci_high)


def test_corpus_metric_resamples_its_own_aggregate() -> None:
    # Perplexity is a ratio of sums: the CI must come from resampled (ll, count) rows.
    stats = np.array([[-100.0, 20.0], [-300.0, 50.0], [-50.0, 10.0], [-400.0, 80.0], [-90.0, 30.0]])
    res = bootstrap(word_perplexity(), stats, n_resamples=2000, seed=0)
    assert res.value == pytest.approx(math.exp(940 / 190))
    assert res.ci_low < res.value < res.ci_high
    assert res.higher_is_better is False


def test_resampling_in_chunks_gives_the_same_interval() -> None:
    from evalharness.stats.bootstrap import resample_indices

    whole = np.concatenate(list(resample_indices(30, 50, seed=5, chunk_cells=10**9)))
    chunked = np.concatenate(list(resample_indices(30, 50, seed=5, chunk_cells=30 * 7)))
    assert whole.shape == chunked.shape == (50, 30)
    assert np.array_equal(whole, chunked)


def test_shared_draws_and_summed_resamples_change_no_interval() -> None:
    # bootstrap_many draws each resample once for all metrics, and sums an additive metric's
    # integer stats by matrix product; every result must equal a plain per-metric bootstrap.
    from evalharness.metrics.translation import bleu
    from evalharness.stats.bootstrap import bootstrap_many

    class _Gathered:  # the same BLEU, without `additive`: resampled rows are gathered and summed
        def __init__(self) -> None:
            self.inner = bleu()
            self.name, self.higher_is_better, self.additive = "bleu", True, False
            self.kind, self.scale = "corpus", None

        def aggregate(self, stats: np.ndarray) -> float:
            return self.inner.aggregate(stats)

    rng = np.random.default_rng(2)
    total = rng.integers(5, 40, size=(300, 4))
    correct = np.minimum(total, rng.integers(0, 30, size=(300, 4)))
    lengths = rng.integers(10, 60, size=(300, 2))
    bleu_stats = np.hstack([lengths, correct, total]).astype(float)
    mean_stats = rng.normal(size=(300, 1))
    together = bootstrap_many([bleu(), _Mean()], [bleu_stats, mean_stats], n_resamples=400, seed=9)
    assert together[0].ci_method == "bootstrap-percentile-expanded" and together[0].resamples == 400
    alone = [bootstrap(_Gathered(), bleu_stats, n_resamples=400, seed=9), bootstrap(_Mean(), mean_stats, n_resamples=400, seed=9)]
    assert together == alone
    assert together[0].ci_low < together[0].value < together[0].ci_high
