"""The figures of sweeps and temporal runs from their results records (matplotlib, Agg backend): PNG and PDF.

* :func:`sweep_figures` — generalization vs log10 P(f) and vs −log10 sharpness coloured by |A|
  (Figs. 3, 4, S22–S24), log10 P(f) vs −log10 sharpness (Fig. S12), the Hessian measures
  (Fig. S9) when measured; one figure per optimizer and overtraining epoch (Figs. S16–S21).
* :func:`temporal_figures` — sharpness (one curve per ζ), log10 P(f) and accuracy against the
  epoch, with the zero-error epoch (green) and the α-rescaling epoch (red) marked (Figs. 5, S11,
  S13–S15).

Each function takes a pandas DataFrame of records and an output folder, and returns the paths
written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tfflat import figures, runs
from tfflat.experiments import stats
from tfflat.stats import correlations

LABELS = {
    "generalization": "Generalization (%)",
    "log10_prior": r"$\log_{10} P(f)$",
    "flatness": r"$-\log_{10}(\mathrm{sharpness})$",
    "neg_log10_spectral_norm": r"$-\log_{10}\|\nabla^2 L\|$",
    "neg_log10_topk_product": r"$-\log_{10}\prod_{i\leq k}\lambda_i$",
}
PANELS = (("log10_prior", "generalization"), ("flatness", "generalization"), ("flatness", "log10_prior"),
          ("neg_log10_spectral_norm", "generalization"), ("neg_log10_topk_product", "generalization"),
          ("flatness", "neg_log10_spectral_norm"))


def _annotate(ax, x, y) -> None:
    c = correlations(x, y)
    if c["n"] >= 3 and np.isfinite(c["pearson_r"]):
        ax.text(0.03, 0.97, f"r = {c['pearson_r']:.2f}\nρ = {c['spearman_rho']:.2f}\nτ = {c['kendall_tau']:.2f}",
                transform=ax.transAxes, va="top", ha="left", fontsize=6.5,
                bbox=dict(boxstyle="round,pad=0.25", fc="white", ec="0.8", lw=0.5))


def _title(df, extra: str = "") -> str:
    first = df.iloc[0]
    parts = [str(first.get("model", "")).upper(), str(first.get("dataset", "")),
             f"|S|={first.get('train_size')}", f"|E|={first.get('test_size')}"]
    return "  ".join(p for p in parts if p and p != "None") + (f"  —  {extra}" if extra else "")


def sweep_figures(df, out_dir) -> list[Path]:
    """Scatter panels of a sweep (see the module docstring); one PNG + PDF per (optimizer, overtrain)."""
    plt = figures.pyplot()
    df = stats.derived(stats.usable(df))
    out_dir = runs.ensure_dir(out_dir)
    written = []
    if df.empty:
        return written
    panels = [(x, y) for x, y in PANELS if x in df and y in df and df[x].notna().any() and df[y].notna().any()]
    groups = df.groupby(["optimizer", "overtrain"] if "overtrain" in df else ["optimizer"], sort=True)
    a_min, a_max = float(df["attack_size"].min()), float(df["attack_size"].max())
    for gkey, g in groups:
        opt, over = (gkey + (0,))[:2] if isinstance(gkey, tuple) else (gkey, 0)
        ncol = min(3, len(panels))
        nrow = int(np.ceil(len(panels) / ncol))
        fig, axes = plt.subplots(nrow, ncol, figsize=(2.4 * ncol + 0.8, 2.2 * nrow + 0.3), squeeze=False,
                                 layout="constrained")
        sc = None
        for ax, (xc, yc) in zip(axes.flat, panels):
            sc = ax.scatter(g[xc], g[yc], c=g["attack_size"], cmap="viridis", vmin=a_min, vmax=max(a_max, a_min + 1),
                            s=14, edgecolors="k", linewidths=0.3)
            ax.set_xlabel(LABELS.get(xc, xc))
            ax.set_ylabel(LABELS.get(yc, yc))
            _annotate(ax, g[xc].to_numpy(float), g[yc].to_numpy(float))
        for ax in list(axes.flat)[len(panels):]:
            ax.set_visible(False)
        extra = f"{opt}" + (f", {int(over)} overtraining epochs" if over else ", zero-error epoch")
        fig.suptitle(_title(g, extra), fontsize=8)
        if sc is not None:
            cb = fig.colorbar(sc, ax=axes.ravel().tolist(), shrink=0.9, pad=0.02)
            cb.set_label("|A|")
        name = f"sweep_{opt}" + (f"_over{int(over)}" if over else "")
        written += figures.save(fig, out_dir / name)
        plt.close(fig)
    return written


def temporal_figures(df, out_dir) -> list[Path]:
    """Per trajectory: sharpness, log10 P(f), accuracy (and Hessian norm) against the epoch."""
    plt = figures.pyplot()
    out_dir = runs.ensure_dir(out_dir)
    written = []
    for (opt, a, seed), g in df.groupby(["optimizer", "attack_size", "seed"], sort=True):
        g = g.sort_values(["epoch", "after_rescale"], kind="stable")
        common = g.drop_duplicates(["epoch", "after_rescale"])
        rows = [r for r in ("log10_sharpness", "log10_prior", "spectral_norm") if r in g and g[r].notna().any()]
        rows.append("accuracy")
        r_epochs = g.loc[g["after_rescale"].astype(bool), "epoch"] if "after_rescale" in g else []
        rescaled = float(min(r_epochs)) if len(r_epochs) else None
        fig, axes = plt.subplots(len(rows), 1, figsize=(4.8, 1.6 * len(rows) + 0.4), sharex=True, squeeze=False,
                                 layout="constrained")
        axes = axes[:, 0]
        for ax, row in zip(axes, rows):
            if row == "log10_sharpness":
                for zeta, gz in g.groupby("zeta", sort=True, dropna=False):
                    ax.plot(gz["epoch"], 10.0 ** gz["log10_sharpness"], label=f"ζ = {zeta:g}")
                ax.set_yscale("log")
                ax.set_ylabel("sharpness")
                if g["zeta"].nunique() > 1:
                    ax.legend(frameon=False)
            elif row == "log10_prior":
                ax.plot(common["epoch"], common["log10_prior"], color="C1")
                ax.set_ylabel(LABELS["log10_prior"])
                zero = g["zero_error_epoch"].dropna()
                late = common[common["epoch"] >= float(zero.iloc[-1])] if len(zero) else common.iloc[:0]
                if len(late) > 1:       # inset from the zero-error epoch on, as in Fig. 5
                    inset = ax.inset_axes([0.45, 0.42, 0.52, 0.5])
                    inset.plot(late["epoch"], late["log10_prior"], color="C1")
                    inset.tick_params(labelsize=6)
                    if rescaled is not None:
                        inset.axvline(rescaled, color="red", ls="--", lw=0.8)
            elif row == "spectral_norm":
                ax.plot(common["epoch"], common["spectral_norm"], color="C4")
                ax.set_yscale("log")
                ax.set_ylabel(r"$\|\nabla^2 L\|$")
            else:
                ax.plot(common["epoch"], 100 * common["train_accuracy"], label="train (S)", color="C0")
                ax.plot(common["epoch"], 100 * common["test_accuracy"], label="test (E)", color="C3")
                ax.set_ylabel("accuracy (%)")
                ax.legend(frameon=False)
            zero = g["zero_error_epoch"].dropna()
            if len(zero):
                ax.axvline(float(zero.iloc[-1]), color="green", ls="--", lw=0.8)
            if rescaled is not None:
                ax.axvline(rescaled, color="red", ls="--", lw=0.8)
        axes[-1].set_xlabel("epoch")
        extra = f"{opt}, |A|={a}, seed {seed}"
        if rescaled is not None:
            extra += f", α = {g['alpha'].dropna().iloc[0]:.3g} at epoch {rescaled:g}"
        axes[0].set_title(_title(g) + "\n" + extra)
        written += figures.save(fig, out_dir / f"temporal_{opt}_A{a}_seed{seed}")
        plt.close(fig)
    return written
