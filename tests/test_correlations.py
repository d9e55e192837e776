"""Correlations with p-values against closed forms and brute-force counts (nothing from scipy)."""

import itertools
import math

import numpy as np
import pytest

from tfflat.stats import correlations


def pearson_p(r: float, n: int) -> float:
    """Two-sided p of Pearson's r under independence: I_{1−r²}((n−2)/2, ½), in closed form for
    n = 4 (1 − |r|) and n = 6 (1 − (3|r| − |r|³)/2)."""
    a = abs(r)
    return {4: 1 - a, 6: 1 - (3 * a - a ** 3) / 2}[n]


def pairs_sign_sum(x, y) -> int:
    """Σ over pairs i < j of sign(x_j − x_i)·sign(y_j − y_i) = concordant − discordant pairs."""
    return sum(int(np.sign(x[j] - x[i]) * np.sign(y[j] - y[i])) for i, j in itertools.combinations(range(len(x)), 2))


def test_four_points_by_hand():
    # (1,2,3,4) vs (1,3,2,4): cov 1.0 / var 1.25 → r = 0.8; the values are their ranks, so ρ = r;
    # 5 concordant and 1 discordant pairs → τ = 4/6; of the 24 orderings, 8 have |τ| ≥ 4/6
    # (inversion counts 0, 1, 5, 6: 1 + 3 + 3 + 1) → exact p = 1/3
    c = correlations([1, 2, 3, 4], [1, 3, 2, 4])
    assert c["n"] == 4
    assert c["pearson_r"] == pytest.approx(0.8) and c["pearson_p"] == pytest.approx(0.2)
    assert c["spearman_rho"] == pytest.approx(0.8) and c["spearman_p"] == pytest.approx(0.2)
    assert c["kendall_tau"] == pytest.approx(4 / 6) and c["kendall_p"] == pytest.approx(1 / 3)


def test_six_points_against_closed_forms_and_all_orderings():
    x, y = [1, 2, 3, 4, 5, 6], [2, 1, 4, 3, 6, 5]
    c = correlations(x, y)
    dx, dy = np.subtract(x, 3.5), np.subtract(y, 3.5)
    r = float(dx @ dy / math.sqrt((dx @ dx) * (dy @ dy)))          # 29/35
    assert r == pytest.approx(29 / 35)
    assert c["pearson_r"] == pytest.approx(r) and c["pearson_p"] == pytest.approx(pearson_p(r, 6))
    assert c["spearman_rho"] == pytest.approx(r) and c["spearman_p"] == pytest.approx(pearson_p(r, 6))
    s = pairs_sign_sum(x, y)
    assert c["kendall_tau"] == pytest.approx(s / 15)
    null = [abs(pairs_sign_sum(x, p)) >= abs(s) for p in itertools.permutations(y)]
    assert c["kendall_p"] == pytest.approx(np.mean(null))


def test_random_data_against_the_definitions(rng):
    x = rng.normal(size=40)
    y = x + 0.5 * rng.normal(size=40)
    c = correlations(x, y)
    dx, dy = x - x.mean(), y - y.mean()
    assert c["pearson_r"] == pytest.approx(dx @ dy / math.sqrt((dx @ dx) * (dy @ dy)))
    rx, ry = np.argsort(np.argsort(x)).astype(float), np.argsort(np.argsort(y)).astype(float)   # no ties
    rx, ry = rx - rx.mean(), ry - ry.mean()
    assert c["spearman_rho"] == pytest.approx(rx @ ry / (rx @ rx))
    assert c["kendall_tau"] == pytest.approx(pairs_sign_sum(x, y) / math.comb(40, 2))
    assert 0 < c["pearson_p"] < 1e-3 and 0 < c["kendall_p"] < 1e-3     # a clear dependence


def test_missing_values_are_dropped_and_degenerate_samples_give_nan():
    # the pairs left, (1,2) (2,4) (4,8) (5,11): Σdx·dy = 22, Σdx² = 10, Σdy² = 48.75
    c = correlations([1, 2, None, 4, 5, np.inf], [2, 4, 6, 8, 11, 1])
    assert c["n"] == 4 and c["pearson_r"] == pytest.approx(22 / math.sqrt(10 * 48.75))
    assert math.isnan(correlations([1, 2], [3, 4])["pearson_r"])
    assert math.isnan(correlations([1, 1, 1], [1, 2, 3])["kendall_tau"])
    x = np.arange(1.0, 8.0)          # monotone but not linear: ρ = τ = 1, r < 1
    c = correlations(x, np.exp(x))
    assert c["spearman_rho"] == pytest.approx(1.0) and c["kendall_tau"] == pytest.approx(1.0)
    assert c["pearson_r"] < 0.95 and correlations(x, -x)["pearson_r"] == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="differ in shape"):
        correlations([1, 2, 3], [1, 2])
