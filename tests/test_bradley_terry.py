"""Bradley-Terry: recovers a known ordering and strengths from simulated comparisons, with CIs."""

from __future__ import annotations

import numpy as np
import pytest

from evalharness.judging.bradley_terry import ELO_SCALE, expected_score, rate

TRUE = {"strong": 1.2, "good": 0.4, "fair": -0.3, "weak": -1.3}


def _simulate(n: int, seed: int, tie_rate: float = 0.1) -> list[tuple[str, str, float]]:
    rng = np.random.default_rng(seed)
    models = list(TRUE)
    comps = []
    for _ in range(n):
        i, j = rng.choice(len(models), 2, replace=False)
        a, b = models[i], models[j]
        p = 1.0 / (1.0 + np.exp(-(TRUE[a] - TRUE[b])))
        # a tie (half a win each) pulls the expected score toward 0.5, so strengths shrink
        comps.append((a, b, 0.5 if rng.random() < tie_rate else 1.0 if rng.random() < p else 0.0))
    return comps


def test_recovers_the_known_ordering_and_strengths() -> None:
    result = rate(_simulate(2000, seed=3, tie_rate=0.0), n_resamples=200, seed=0)
    assert result["models"] == ["strong", "good", "fair", "weak"]
    assert result["n_comparisons"] == 2000
    centre = np.mean(list(TRUE.values()))
    for m, beta in TRUE.items():
        r = result["ratings"][m]
        assert r["ci_low"] < r["rating"] < r["ci_high"]
        # the true strength lies within the interval (a generous margin against a rare miss)
        true_rating = 1000 + ELO_SCALE * (beta - centre)
        assert r["ci_low"] - 25 <= true_rating <= r["ci_high"] + 25, (m, r, true_rating)


def test_ties_keep_the_order() -> None:
    assert rate(_simulate(1000, seed=2, tie_rate=0.3), n_resamples=0)["models"] == ["strong", "good", "fair", "weak"]


def test_cis_shrink_with_more_comparisons() -> None:
    small = rate(_simulate(100, seed=1), n_resamples=200)
    large = rate(_simulate(2000, seed=1), n_resamples=200)
    width = lambda res: np.mean([r["ci_high"] - r["ci_low"] for r in res["ratings"].values()])  # noqa: E731
    assert width(large) < width(small) / 2


def test_equal_models_and_all_ties_rate_equal() -> None:
    result = rate([("a", "b", 0.5)] * 10 + [("b", "c", 0.5)] * 10, n_resamples=100)
    assert {round(r["rating"], 6) for r in result["ratings"].values()} == {1000.0}


def test_perfect_separation_stays_finite_and_ordered() -> None:
    result = rate([("a", "b", 1.0)] * 20 + [("b", "c", 1.0)] * 20, n_resamples=100)
    r = result["ratings"]
    assert result["models"] == ["a", "b", "c"]
    assert all(np.isfinite(v["rating"]) for v in r.values())
    assert r["a"]["rating"] > r["b"]["rating"] > r["c"]["rating"]
    assert result["win_rate"]["a"]["b"] == 1.0 and result["win_rate"]["a"]["c"] is None


def test_seeded_and_shaped_for_the_report() -> None:
    comps = _simulate(300, seed=5)
    one, two = rate(comps, n_resamples=100, seed=7), rate(comps, n_resamples=100, seed=7)
    assert one == two
    assert set(one) == {"models", "ratings", "win_rate", "n_comparisons", "n_questions", "scale", "confidence", "resamples",
                        "seed", "resampled", "ties"}
    assert set(one["ratings"]["strong"]) == {"rating", "ci_low", "ci_high", "beta", "wins", "n"}
    assert expected_score(1400, 1000) == pytest.approx(10 / 11)
