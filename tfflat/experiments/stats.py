"""The paper's correlation table over a sweep's records (coefficients: :func:`tfflat.stats.correlations`).

The table pairs generalization with log10 P(f) (Figs. 3a–c, 4a–c) and with flatness
−log10 sharpness (Figs. 3d–f, 4d–f), log10 P(f) with flatness (Fig. S12), and the Hessian measures
(Fig. S9) when present — per optimizer and per overtraining epoch (Figs. S16–S21).
"""

from __future__ import annotations

import math

import numpy as np

from tfflat.stats import correlations

# (x column, y column, label). Generalization is the test accuracy in %, as in the figures;
# "flatness" is −log10(sharpness).
PAIRS = (
    ("log10_prior", "generalization", "generalization vs log10 P(f)"),
    ("flatness", "generalization", "generalization vs -log10 sharpness"),
    ("flatness", "log10_prior", "log10 P(f) vs -log10 sharpness"),
    ("neg_log10_spectral_norm", "generalization", "generalization vs -log10 Hessian norm"),
    ("neg_log10_topk_product", "generalization", "generalization vs -log10 top-k eigenvalue product"),
    ("flatness", "neg_log10_spectral_norm", "-log10 Hessian norm vs -log10 sharpness"),
)


def derived(df):
    """Add the plotted quantities: generalization (%), flatness = −log10 sharpness, −log10 Hessian."""
    df = df.copy()
    if "test_accuracy" in df:
        df["generalization"] = 100.0 * df["test_accuracy"].astype(float)
    if "log10_sharpness" in df:
        df["flatness"] = -df["log10_sharpness"].astype(float)
    if "log10_spectral_norm" in df:
        df["neg_log10_spectral_norm"] = -df["log10_spectral_norm"].astype(float)
    if "log10_topk_product" in df:
        df["neg_log10_topk_product"] = -df["log10_topk_product"].astype(float)
    return df


def usable(df):
    """The records measured at a zero-error point (status ok)."""
    return df[df["status"] == "ok"] if "status" in df else df


def correlation_table(df, by=("optimizer", "overtrain")) -> list[dict]:
    """One row per (group, pair) present in a sweep's records; see :data:`PAIRS`."""
    df = derived(usable(df))
    by = [c for c in by if c in df and df[c].notna().any()]
    groups = df.groupby(by, sort=True, dropna=False) if by else [((), df)]
    rows = []
    for gkey, g in groups:
        gkey = gkey if isinstance(gkey, tuple) else (gkey,)
        for xc, yc, label in PAIRS:
            if xc not in g or yc not in g or g[xc].notna().sum() == 0 or g[yc].notna().sum() == 0:
                continue
            row = {**{c: _plain(v) for c, v in zip(by, gkey)}, "pair": label, "x": xc, "y": yc}
            row.update(correlations(g[xc].to_numpy(float), g[yc].to_numpy(float)))
            rows.append(row)
    return rows


def _plain(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return None if math.isnan(v) else float(v)
    return v


def format_table(rows: list[dict]) -> list[str]:
    """Text lines of a correlation table (for the terminal)."""
    if not rows:
        return ["(no correlations: no measured records)"]
    keys = [k for k in ("optimizer", "overtrain") if k in rows[0]]
    head = "  ".join(f"{k:<10}" for k in keys) + f"  {'pair':<52} {'n':>4} {'pearson':>8} {'p':>9} " \
        f"{'spearman':>8} {'p':>9} {'kendall':>8} {'p':>9}"
    lines = [head]
    for r in rows:
        lines.append("  ".join(f"{str(r[k]):<10}" for k in keys) +
                     f"  {r['pair']:<52} {r['n']:>4} {r['pearson_r']:>8.3f} {r['pearson_p']:>9.2e} "
                     f"{r['spearman_rho']:>8.3f} {r['spearman_p']:>9.2e} {r['kendall_tau']:>8.3f} {r['kendall_p']:>9.2e}")
    return lines


def temporal_summary(df) -> list[dict]:
    """Per trajectory (and ζ): zero-error epoch, and at the rescaling epoch the sharpness, log10 P(f)
    and accuracies just before and just after α-rescaling (Fig. 5, S11: f and so P(f) unchanged)."""
    rows = []
    for key, g in df.groupby(["optimizer", "attack_size", "seed", "zeta"], sort=True, dropna=False):
        row = dict(zip(("optimizer", "attack_size", "seed", "zeta"), map(_plain, key)))
        zero = g["zero_error_epoch"].dropna()
        row["zero_error_epoch"] = int(zero.iloc[-1]) if len(zero) else None
        row["epochs"] = int(g["epoch"].max())
        if "after_rescale" in g and g["after_rescale"].any():
            r = int(g.loc[g["after_rescale"].astype(bool), "epoch"].min())
            at = g[g["epoch"] == r]
            before, after = at[~at["after_rescale"].astype(bool)], at[at["after_rescale"].astype(bool)]
            row["rescale_epoch"], row["alpha"] = r, float(g["alpha"].dropna().iloc[0])
            for name in ("sharpness", "log10_prior", "train_accuracy", "test_accuracy", "function_hash"):
                if name in g:
                    row[f"{name}_before"] = _plain(before[name].iloc[0]) if len(before) else None
                    row[f"{name}_after"] = _plain(after[name].iloc[0]) if len(after) else None
        rows.append(row)
    return rows
