"""Correlation coefficients with their p-values (scipy.stats): Pearson r, Spearman ρ, Kendall τ.

Used by the sweep's correlation table (:mod:`tfflat.experiments.stats`) and the Boolean system
(:mod:`tfflat.boolean.top`).
"""

from __future__ import annotations

import numpy as np


def correlations(x, y) -> dict:
    """Pearson r, Spearman ρ and Kendall τ of two samples, each with its two-sided p-value.

    Pairs where either value is missing (None/NaN/inf) are dropped; with fewer than 3 pairs, or a
    constant sample, the coefficients are NaN.
    """
    from scipy import stats

    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.shape != y.shape:
        raise ValueError(f"x and y differ in shape: {x.shape} vs {y.shape}")
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    out = {"n": int(len(x))}
    nan = float("nan")
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {**out, "pearson_r": nan, "pearson_p": nan, "spearman_rho": nan, "spearman_p": nan,
                "kendall_tau": nan, "kendall_p": nan}
    p = stats.pearsonr(x, y)
    s = stats.spearmanr(x, y)
    k = stats.kendalltau(x, y)
    return {**out, "pearson_r": float(p.statistic), "pearson_p": float(p.pvalue),
            "spearman_rho": float(s.statistic), "spearman_p": float(s.pvalue),
            "kendall_tau": float(k.statistic), "kendall_p": float(k.pvalue)}
