"""Bradley-Terry ratings from pairwise outcomes, with bootstrap confidence intervals.

Model: P(i beats j) = sigmoid(beta_i - beta_j). A tie counts as half a win for each side.
Fit: maximum likelihood with a weak Gaussian prior on beta (`l2`, so a model that won every
comparison still gets a finite rating), by Newton's method; betas are centred to mean 0.
Ratings are reported on the Elo scale: `1000 + 400 * log10(e) * beta`, so a
400-point gap means 10:1 odds. CIs: percentile bootstrap, seeded, refitted per resample. With
`questions` (the item each comparison came from) the bootstrap resamples questions, all of a
question's comparisons together: one question yields a comparison per pair of models, and those
share the question's difficulty, so resampling comparisons as if independent understates the
spread (measured: 89.7% coverage by comparisons, 95.4% by questions; docs/statistics.md).
Without `questions` each comparison is its own unit.

Shape written under results.json `bradley_terry` (and `arena.ratings` uses the same entries):

    {
      "models": ["m1", "m2", ...],                 # best first
      "ratings": {"m1": {"rating": 1088.2, "ci_low": 1040.1, "ci_high": 1139.9,
                         "beta": 0.507, "wins": 12.5, "n": 20}, ...},
      "win_rate": {"m1": {"m2": 0.75, ...}, ...},  # observed share (ties = 0.5), row vs column
      "n_comparisons": 40, "n_questions": 20,
      "scale": "elo", "confidence": 0.95, "resamples": 1000, "seed": 0,
      "resampled": "questions",                    # or "comparisons" (no question ids given)
      "ties": "half a win each"
    }
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from evalharness.results.schema import CONFIDENCE

ELO_SCALE = 400.0 / math.log(10.0)
ELO_BASE = 1000.0

Comparison = tuple[str, str, float]  # (model a, model b, score of a: 1 win, 0.5 tie, 0 loss)


def _tables(a: np.ndarray, b: np.ndarray, s: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """wins[i, j]: i's total score against j; games[i, j]: comparisons between i and j."""
    wins = np.zeros((k, k))
    games = np.zeros((k, k))
    np.add.at(wins, (a, b), s)
    np.add.at(wins, (b, a), 1.0 - s)
    np.add.at(games, (a, b), 1.0)
    np.add.at(games, (b, a), 1.0)
    return wins, games


def _objective(beta: np.ndarray, wins: np.ndarray, l2: float) -> float:
    logp = -np.logaddexp(0.0, -(beta[:, None] - beta[None, :]))  # log sigmoid, stable
    return -float((wins * logp).sum()) + 0.5 * l2 * float(beta @ beta)


def fit(wins: np.ndarray, games: np.ndarray, l2: float = 0.01, start: np.ndarray | None = None) -> np.ndarray:
    """Centred MAP log-strengths from a wins matrix (wins[i, j] = i's score against j).

    Newton's method with step halving: the penalized likelihood is strictly convex, and with a
    handful of models each step is a tiny linear solve (a bootstrap of 1,000 fits takes well
    under a second).
    """
    k = wins.shape[0]
    beta = np.zeros(k) if start is None else np.array(start, dtype=float)
    current = _objective(beta, wins, l2)
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-(beta[:, None] - beta[None, :])))
        grad = -(wins.sum(axis=1) - (games * p).sum(axis=1)) + l2 * beta
        w = games * p * (1.0 - p)
        hess = np.diag(w.sum(axis=1) + l2) - w
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while True:
            cand = beta - t * step
            value = _objective(cand, wins, l2)
            if value <= current + 1e-12 or t < 1e-6:
                break
            t /= 2.0
        beta, done = cand, abs(current - value) < 1e-10 and float(np.abs(step).max()) * t < 1e-8
        current = value
        if done:
            break
    centred: np.ndarray = beta - beta.mean()
    return centred


def _unit_tables(ia: np.ndarray, ib: np.ndarray, sc: np.ndarray, unit: np.ndarray, n_units: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per resampling unit (question), its wins and games tables flattened: (n_units, k * k) each."""
    wins = np.zeros((n_units, k, k))
    games = np.zeros((n_units, k, k))
    np.add.at(wins, (unit, ia, ib), sc)
    np.add.at(wins, (unit, ib, ia), 1.0 - sc)
    np.add.at(games, (unit, ia, ib), 1.0)
    np.add.at(games, (unit, ib, ia), 1.0)
    return wins.reshape(n_units, k * k), games.reshape(n_units, k * k)


def _resampled_fits(ia: np.ndarray, ib: np.ndarray, sc: np.ndarray, unit: np.ndarray, n_units: int, k: int,
                    beta: np.ndarray, n_resamples: int, seed: int, l2: float) -> np.ndarray:
    """Strengths refitted on `n_resamples` draws of the units (questions, or single comparisons)."""
    unit_wins, unit_games = _unit_tables(ia, ib, sc, unit, n_units, k)
    rng = np.random.default_rng(seed)
    draws = np.empty((n_resamples, k))
    for start in range(0, n_resamples, 100):  # counts of each unit per resample, then tables by matrix product
        picks = rng.integers(0, n_units, size=(min(100, n_resamples - start), n_units))
        counts = np.stack([np.bincount(p, minlength=n_units) for p in picks]).astype(float)
        for r, (w, g) in enumerate(zip(counts @ unit_wins, counts @ unit_games, strict=True)):
            draws[start + r] = fit(w.reshape(k, k), g.reshape(k, k), l2, start=beta)
    return draws


def _units(questions: Sequence[str] | None, n: int) -> tuple[np.ndarray, int]:
    """The resampling unit of each comparison (its question's index, else its own) and how many units."""
    if questions is None:
        return np.arange(n), n
    if len(questions) != n:
        raise ValueError(f"questions: {len(questions)} ids for {n} comparisons")
    units = {q: u for u, q in enumerate(dict.fromkeys(questions))}
    return np.array([units[q] for q in questions], dtype=int), len(units)


def rate(
    comparisons: Sequence[Comparison],
    models: Sequence[str] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = CONFIDENCE,
    l2: float = 0.01,
    questions: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Bradley-Terry ratings with bootstrap CIs, in the shape documented above. `questions[i]` is
    the item comparison i came from: the bootstrap then resamples questions, not comparisons."""
    from evalharness.stats.bootstrap import check_resamples

    check_resamples(n_resamples)
    names = list(models) if models is not None else sorted({m for a, b, _ in comparisons for m in (a, b)})
    index = {m: i for i, m in enumerate(names)}
    ia = np.array([index[a] for a, _, _ in comparisons], dtype=int)
    ib = np.array([index[b] for _, b, _ in comparisons], dtype=int)
    sc = np.array([float(s) for _, _, s in comparisons], dtype=float)
    n, k = len(sc), len(names)
    unit, n_units = _units(questions, n)
    wins, games = _tables(ia, ib, sc, k)
    beta = fit(wins, games, l2) if k else np.zeros(0)
    lows = highs = beta
    if n and n_resamples > 0 and k > 1:
        draws = _resampled_fits(ia, ib, sc, unit, n_units, k, beta, n_resamples, seed, l2)
        alpha = (1.0 - confidence) / 2.0
        lows, highs = np.quantile(draws, alpha, axis=0), np.quantile(draws, 1.0 - alpha, axis=0)
    elo = ELO_BASE + ELO_SCALE * beta
    order = sorted(range(k), key=lambda i: -elo[i])
    ratings = {
        names[i]: {
            "rating": round(float(elo[i]), 2),
            "ci_low": round(float(ELO_BASE + ELO_SCALE * lows[i]), 2),
            "ci_high": round(float(ELO_BASE + ELO_SCALE * highs[i]), 2),
            "beta": round(float(beta[i]), 6),
            "wins": float(wins[i].sum()),
            "n": int(games[i].sum()),
        }
        for i in order
    }
    win_rate = {
        names[i]: {names[j]: (float(wins[i, j] / games[i, j]) if games[i, j] else None) for j in range(k) if j != i} for i in order
    }
    return {
        "models": [names[i] for i in order],
        "ratings": ratings,
        "win_rate": win_rate,
        "n_comparisons": n,
        "n_questions": n_units if questions is not None else None,
        "scale": "elo",
        "confidence": confidence,
        "resamples": n_resamples if k > 1 and n else 0,
        "seed": seed,
        "resampled": "questions" if questions is not None else "comparisons",
        "ties": "half a win each",
    }


def expected_score(rating_a: float, rating_b: float) -> float:
    """P(a beats b) implied by two Elo-scale ratings."""
    return float(1.0 / (1.0 + 10.0 ** ((rating_b - rating_a) / 400.0)))
