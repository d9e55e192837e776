"""Figures of the Boolean system (PNG + PDF, matplotlib Agg) from a `tfflat boolean` output folder.

* ``fig2_prior_vs_flatness`` — log10 P(f) (direct sampling) vs −log10 sharpness (Fig. 2);
* ``figS7_sharpness_vs_hessian`` — −log10 sharpness vs −log10 ‖∇²L‖ (Fig. S7);
* ``figS8_prior_vs_hessian`` — log10 P(f) vs −log10 ‖∇²L‖ (Fig. S8);
* ``ep_vs_sampled`` — log10 P(f) from EP on the NNGP kernel vs the sampled frequency;
* ``prior_rank`` — sampled log10 P(f) against the function's rank (log scale).

Points are coloured by the training loss at which flatness was measured (log10), since a
network stopped at its first zero-error epoch can sit far from a minimum.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from tfflat.errors import UserError

SUMMARY, TABLE, TOP = "boolean.json", "functions.csv", "top.csv"
RANK_ROWS = 10 ** 5        # rows of the table drawn in the rank plot


def read_top(path) -> list[dict]:
    """Rows of ``top.csv`` as dicts of floats (empty cells → None; ``function`` stays a string)."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            rows.append({k: (v if k == "function" else (None if v in ("", "None") else _num(v))) for k, v in r.items()})
    return rows


def _num(v: str):
    if v in ("True", "False"):
        return v == "True"
    return float(v)


def plot_boolean(out_dir, fig_dir=None) -> list[Path]:
    """Draw every figure the data in ``out_dir`` allows into ``fig_dir`` (default ``out_dir``)."""
    from tfflat import runs
    from tfflat import figures
    from tfflat.boolean import top
    from tfflat.boolean.table import read_table
    from tfflat.stats import correlations

    out_dir = Path(out_dir)
    if not (out_dir / SUMMARY).is_file():
        raise UserError(f"{out_dir} has no {SUMMARY}; give the --out folder of `tfflat boolean`")
    summary = runs.read_json(out_dir / SUMMARY)
    fig_dir = runs.ensure_dir(fig_dir or out_dir)
    plt = figures.pyplot()
    rows = read_top(out_dir / TOP)
    written = []
    title = (f"n = {summary.get('bits')}, FCN {'-'.join(str(w) for w in summary.get('widths', []))}, "
             f"{summary.get('samples', 0):.3g} samples")
    loss = top.column(rows, "loss")
    color = np.log10(np.maximum(loss, 1e-12)) if len(rows) else loss
    panels = [
        ("fig2_prior_vs_flatness", "log10_prior", "log10_sharpness", r"$\log_{10} P(f)$ (sampled)",
         r"$-\log_{10}(\mathrm{sharpness})$", (1, -1)),
        ("fig2_prior_vs_corner_flatness", "log10_prior", "log10_corner_sharpness", r"$\log_{10} P(f)$ (sampled)",
         r"$-\log_{10}(\mathrm{sharpness})$ at the first-order corner", (1, -1)),
        ("figS7_sharpness_vs_hessian", "log10_sharpness", "log10_spectral_norm", r"$-\log_{10}(\mathrm{sharpness})$",
         r"$-\log_{10}\|\nabla^2 L\|$", (-1, -1)),
        ("figS8_prior_vs_hessian", "log10_prior", "log10_spectral_norm", r"$\log_{10} P(f)$ (sampled)",
         r"$-\log_{10}\|\nabla^2 L\|$", (1, -1)),
        ("ep_vs_sampled", "log10_prior", "log10_prior_ep", r"$\log_{10} P(f)$ (sampled)",
         r"$\log_{10} P(f)$ (EP, NNGP kernel)", (1, 1)),
    ]
    for name, a, b, xlabel, ylabel, (sa, sb) in panels:
        x, y = sa * top.column(rows, a), sb * top.column(rows, b)
        if not np.any(np.isfinite(x) & np.isfinite(y)):
            continue
        fig, ax = plt.subplots(figsize=(3.4, 2.8), constrained_layout=True)
        sc = ax.scatter(x, y, c=color, s=9, cmap="viridis", edgecolors="none")
        fig.colorbar(sc, ax=ax, label=r"$\log_{10}$ loss at measurement")
        if name == "ep_vs_sampled":
            ok = np.isfinite(x) & np.isfinite(y)
            lo, hi = min(x[ok].min(), y[ok].min()), max(x[ok].max(), y[ok].max())
            ax.plot([lo, hi], [lo, hi], color="0.6", lw=0.8, ls="--", zorder=0)
        c = correlations(x, y)
        stat = (f"r = {c['pearson_r']:.2f}, ρ = {c['spearman_rho']:.2f}, τ = {c['kendall_tau']:.2f}"
                if np.isfinite(c["pearson_r"]) else "")
        ax.set(xlabel=xlabel, ylabel=ylabel, title=f"{title}, top {len(rows)}\n{stat}")
        written += figures.save(fig, fig_dir / name)
        plt.close(fig)
    if (out_dir / TABLE).is_file():
        _, counts, logp = read_table(out_dir / TABLE, RANK_ROWS)
        if len(counts):
            fig, ax = plt.subplots(figsize=(3.4, 2.8), constrained_layout=True)
            ax.plot(np.arange(1, len(logp) + 1), logp, ".", ms=2)
            ax.set_xscale("log")
            ax.set(xlabel="rank", ylabel=r"$\log_{10} P(f)$ (sampled)", title=title)
            written += figures.save(fig, fig_dir / "prior_rank")
            plt.close(fig)
    return written
