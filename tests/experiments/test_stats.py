"""The correlation table over a sweep's records: grouping, left-out points, formatting
(the coefficients themselves: tests/test_correlations.py)."""

import pandas as pd

from tfflat.experiments import stats


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
