"""Correlation coefficients with their p-values (scipy.stats): Pearson r, Spearman ρ, Kendall τ, and
Jiang et al. 2020's granulated Kendall coefficient over a grid of hyperparameters.

Used by the sweep's correlation and measure tables (:mod:`tfflat.experiments.stats`) and the
Boolean system (:mod:`tfflat.boolean.top`).
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


def kendall(x, y) -> tuple[float, float]:
    """Kendall's τ-b of two samples with its two-sided p-value (scipy.stats.kendalltau; τ-b equals
    Jiang et al. 2020's eq. (3) when neither sample has ties). Pairs with a missing value are dropped;
    with fewer than 2 pairs, or a constant sample, both are NaN."""
    from scipy import stats

    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.shape != y.shape:
        raise ValueError(f"x and y differ in shape: {x.shape} vs {y.shape}")
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan")
    k = stats.kendalltau(x, y)
    return float(k.statistic), float(k.pvalue)


def granulated_kendall(x, y, axes: dict) -> dict:
    """Jiang et al. 2020's granulated Kendall coefficient (§3, eqs. 4–5) of a measure ``x`` with ``y``
    over a grid of hyperparameter axes.

    For each axis i, ψ_i is the mean, over every combination of the other axes' values, of Kendall's
    τ (:func:`kendall`) between x and y among the points that differ only in axis i (eq. 4); the
    coefficient Ψ is the mean of the ψ_i (eq. 5). A combination whose τ is undefined (fewer than two
    points, or a constant sample) is left out of its mean, as is an axis with no defined τ.

    Args:
      x, y: the measure and the target (e.g. generalization), one value per point.
      axes: ``{axis name: the point's value on that axis}`` (e.g. ``{"attack_size": …, "seed": …}``).
    Returns:
      ``{"granulated_tau": Ψ, "per_axis": {axis: ψ_i}, "groups": {axis: combinations with a τ}}``.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    cols = {a: np.asarray(v, dtype=object) for a, v in axes.items()}
    if not cols:
        raise ValueError("granulated_kendall needs at least one axis")
    if any(len(v) != len(x) for v in cols.values()) or x.shape != y.shape:
        raise ValueError("x, y and every axis need one value per point")
    per_axis, groups = {}, {}
    for axis in cols:
        others = [a for a in cols if a != axis]
        keys = [tuple(cols[a][i] for a in others) for i in range(len(x))]
        taus = []
        for key in dict.fromkeys(keys):
            members = np.array([k == key for k in keys])
            tau, _ = kendall(x[members], y[members])
            if np.isfinite(tau):
                taus.append(tau)
        per_axis[axis] = float(np.mean(taus)) if taus else float("nan")
        groups[axis] = len(taus)
    defined = [v for v in per_axis.values() if np.isfinite(v)]
    return {"granulated_tau": float(np.mean(defined)) if defined else float("nan"), "per_axis": per_axis,
            "groups": groups}
