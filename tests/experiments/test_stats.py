"""Correlations against scipy and hand-computed values; the correlation table's grouping."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as ss

from tfflat.experiments import stats


def test_matches_scipy_on_random_data(rng):
    x = rng.normal(size=40)
    y = 0.6 * x + rng.normal(size=40)
    c = stats.correlations(x, y)
    assert c["n"] == 40
    assert c["pearson_r"] == pytest.approx(ss.pearsonr(x, y)[0]) and c["pearson_p"] == pytest.approx(ss.pearsonr(x, y)[1])
    assert c["spearman_rho"] == pytest.approx(ss.spearmanr(x, y)[0])
    assert c["kendall_tau"] == pytest.approx(ss.kendalltau(x, y)[0])
    assert c["kendall_p"] == pytest.approx(ss.kendalltau(x, y)[1])


def test_known_values():
    # Pearson of (1,2,3,4) vs (1,3,2,4): cov 1.0 / var 1.25 → r = 0.8;
    # Kendall: 5 concordant, 1 discordant pair → τ = 4/6; Spearman on ranks equals Pearson here.
    c = stats.correlations([1, 2, 3, 4], [1, 3, 2, 4])
    assert c["pearson_r"] == pytest.approx(0.8)
    assert c["spearman_rho"] == pytest.approx(0.8)
    assert c["kendall_tau"] == pytest.approx(4 / 6)
    # a perfect monotone, non-linear relation: ρ = τ = 1 but r < 1
    x = np.arange(1.0, 8.0)
    c = stats.correlations(x, np.exp(x))
    assert c["spearman_rho"] == pytest.approx(1.0) and c["kendall_tau"] == pytest.approx(1.0)
    assert c["pearson_r"] < 0.95
    assert stats.correlations(x, -x)["pearson_r"] == pytest.approx(-1.0)


def test_missing_values_are_dropped_and_degenerate_samples_give_nan():
    c = stats.correlations([1, 2, None, 4, 5, np.inf], [2, 4, 6, 8, 11, 1])
    assert c["n"] == 4
    assert c["pearson_r"] == pytest.approx(ss.pearsonr([1, 2, 4, 5], [2, 4, 8, 11])[0])
    assert math.isnan(stats.correlations([1, 2], [3, 4])["pearson_r"])
    assert math.isnan(stats.correlations([1, 1, 1], [1, 2, 3])["kendall_tau"])


def test_table_groups_by_optimizer_and_overtraining(rng):
    rows = []
    for opt, sign in (("sgd", 1.0), ("adam", -1.0)):
        for over in (0, 100):
            for a in range(10):
                rows.append({"optimizer": opt, "overtrain": over, "attack_size": 50 * a, "status": "ok",
                             "test_accuracy": 0.9 - 0.03 * a + 0.001 * rng.normal(),
                             "log10_prior": -300 - 10 * a, "log10_sharpness": sign * (0.1 * a) + 0.01 * rng.normal()})
    rows.append({"optimizer": "sgd", "overtrain": 0, "attack_size": 0, "status": "no_zero_error",
                 "test_accuracy": 0.1, "log10_prior": None, "log10_sharpness": None})
    table = stats.correlation_table(pd.DataFrame(rows))
    assert {(r["optimizer"], r["overtrain"]) for r in table} == {("sgd", 0), ("sgd", 100), ("adam", 0), ("adam", 100)}
    get = {(r["optimizer"], r["overtrain"], r["x"], r["y"]): r for r in table}
    assert get["sgd", 0, "log10_prior", "generalization"]["n"] == 10          # the failed point is left out
    assert get["sgd", 0, "log10_prior", "generalization"]["pearson_r"] > 0.99
    assert get["sgd", 0, "flatness", "generalization"]["spearman_rho"] > 0.9    # flat ↔ good for "sgd"
    assert get["adam", 0, "flatness", "generalization"]["spearman_rho"] < -0.9
    assert not any(r["x"].startswith("neg_log10") for r in table)             # no Hessian columns here
    assert len(stats.format_table(table)) == len(table) + 1
