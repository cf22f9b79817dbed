"""Bootstrap confidence intervals: one path for every metric, seeded, sane widths."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evalharness.metrics.base import MeanMetric
from evalharness.metrics.perplexity import word_perplexity
from evalharness.stats.bootstrap import bootstrap


class _Mean(MeanMetric):
    name = "mean"


def test_mean_ci_matches_normal_approximation() -> None:
    values = np.array([1.0] * 60 + [0.0] * 40)
    res = bootstrap(_Mean(), values[:, None], n_resamples=4000, seed=1)
    assert res.value == pytest.approx(0.6)
    half = 1.96 * math.sqrt(0.6 * 0.4 / 100)  # Wald interval half-width
    assert res.ci_low == pytest.approx(0.6 - half, abs=0.02)
    assert res.ci_high == pytest.approx(0.6 + half, abs=0.02)
    assert res.stderr == pytest.approx(math.sqrt(0.6 * 0.4 / 100), rel=0.1)
    assert res.n == 100 and res.resamples == 4000 and res.ci_method == "bootstrap-percentile"


def test_same_seed_same_interval_other_seed_differs() -> None:
    rng = np.random.default_rng(0)
    stats = rng.normal(size=(50, 1))
    a = bootstrap(_Mean(), stats, n_resamples=500, seed=3)
    b = bootstrap(_Mean(), stats, n_resamples=500, seed=3)
    c = bootstrap(_Mean(), stats, n_resamples=500, seed=4)
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    assert (a.ci_low, a.ci_high) != (c.ci_low, c.ci_high)


def test_corpus_metric_resamples_its_own_aggregate() -> None:
    # Perplexity is a ratio of sums: the CI must come from resampled (ll, count) rows.
    stats = np.array([[-100.0, 20.0], [-300.0, 50.0], [-50.0, 10.0], [-400.0, 80.0], [-90.0, 30.0]])
    res = bootstrap(word_perplexity(), stats, n_resamples=2000, seed=0)
    assert res.value == pytest.approx(math.exp(940 / 190))
    assert res.ci_low < res.value < res.ci_high
    assert res.higher_is_better is False


def test_degenerate_sizes() -> None:
    one = bootstrap(_Mean(), np.array([[0.5]]), n_resamples=100)
    assert (one.value, one.ci_low, one.ci_high, one.stderr, one.n) == (0.5, 0.5, 0.5, 0.0, 1)
    empty = bootstrap(_Mean(), np.zeros((0, 1)), n_resamples=100)
    assert empty.n == 0 and math.isnan(empty.value)


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

        def aggregate(self, stats: np.ndarray) -> float:
            return self.inner.aggregate(stats)

    rng = np.random.default_rng(2)
    total = rng.integers(5, 40, size=(300, 4))
    correct = np.minimum(total, rng.integers(0, 30, size=(300, 4)))
    lengths = rng.integers(10, 60, size=(300, 2))
    bleu_stats = np.hstack([lengths, correct, total]).astype(float)
    mean_stats = rng.normal(size=(300, 1))
    together = bootstrap_many([bleu(), _Mean()], [bleu_stats, mean_stats], n_resamples=400, seed=9)
    alone = [bootstrap(_Gathered(), bleu_stats, n_resamples=400, seed=9), bootstrap(_Mean(), mean_stats, n_resamples=400, seed=9)]
    assert together == alone
    assert together[0].ci_low < together[0].value < together[0].ci_high
