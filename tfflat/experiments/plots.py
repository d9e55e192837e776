"""The figures of sweeps and temporal runs from their records (matplotlib, Agg backend): PNG and PDF.

Records of several results files can be drawn together: each experiment (``experiment_label``, see
:func:`~tfflat.experiments.stats.label_experiments`) × optimizer is one *column* of the combined
figures, titled as the paper titles its panels ("FCN/MNIST, SGD"), and the panels carry the paper's
letters. Points are coloured by the attack-set size (|A| / |S| where experiments of different sizes
share a figure); a point whose sharpness ascent did not converge is drawn as an open circle.

:func:`sweep_figures` writes

* ``generalization`` — generalization vs log10 P(f) (row 1) and vs −log10 sharpness (row 2), one
  column per experiment and optimizer: Figs. 3(a)–(f) and 4(a)–(f) (and S22–S24) as one figure;
* ``prior_vs_sharpness`` — log10 P(f) vs −log10 sharpness (Fig. S12);
* ``hessian`` — per optimizer: generalization vs −log10 ‖∇²L‖ and vs −log10 Π top-k λ, and each
  against −log10 sharpness (Fig. S9 (a)–(h));
* ``overtraining_<experiment>_<optimizer>_<measure>`` — one row per overtraining epoch: generalization
  vs log10 P(f), generalization vs the flatness measure, log10 P(f) vs the flatness measure (Figs.
  S16, S17 sharpness; S18, S20 Hessian norm; S19, S21 top-k product);
* ``ascent_convergence`` — the sharpness ascent's running maximum of L(w + Δ) per epoch (Fig. S10);
* ``pac_bayes`` — the bound of eq. (4) against the test error;
* ``gp_test_error`` — the GP's own predicted error on E against the network's (when recorded);
* ``measures_<experiment>_<optimizer>`` — generalization against log10 P(f) and against each measure of
  the flatness zoo the records carry (``[flatness] measures``), one panel per measure;
* ``sweep_<experiment>_<optimizer>[_over<N>]`` — every scatter panel of one column.

:func:`temporal_figures` writes per trajectory ``temporal_<experiment>_<optimizer>_A<|A|>_seed<s>``:
sharpness (one curve per ζ), log10 P(f) (inset from the zero-error epoch, Fig. 5), the Hessian
spectral norm and top-k product (Fig. S15) and the accuracies against the epoch, with the zero-error
epoch (green) and the α-rescaling (red, "α = 5.9" as the paper writes it) marked (Figs. 5, S11,
S13–S15); and ``ascent_convergence_…`` at a few of its epochs (Fig. S10).

Each function takes a pandas DataFrame of records and an output folder and returns the paths written;
:func:`plot_results` does it all for results files (``tfflat plot``).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from tfflat import figures, runs
from tfflat.errors import UserError
from tfflat.experiments import results, stats

LABELS = {
    "generalization": "Generalization (%)",
    "test_error": "Test error on E (%)",
    "log10_prior": r"$\log_{10} P(f)$",
    "flatness": r"$-\log_{10}(\mathrm{sharpness})$",
    "neg_log10_spectral_norm": r"$-\log_{10}\|\nabla^2 L\|_2$",
    "neg_log10_topk_product": r"$-\log_{10}\,\Pi_{i\leq K}\,\lambda_i$",      # K: the top-k's k
    "pac_bayes_bound_pct": "PAC-Bayes bound, eq. (4) (%)",
    "gp_test_error_pct": "GP test error on E (%)",
}
PANELS = (("log10_prior", "generalization"), ("flatness", "generalization"), ("flatness", "log10_prior"),
          ("neg_log10_spectral_norm", "generalization"), ("neg_log10_topk_product", "generalization"),
          ("flatness", "neg_log10_spectral_norm"), ("flatness", "neg_log10_topk_product"),
          ("test_error", "pac_bayes_bound_pct"), ("test_error", "gp_test_error_pct"))
HESSIAN = (("neg_log10_spectral_norm", "generalization"), ("neg_log10_topk_product", "generalization"),
           ("flatness", "neg_log10_spectral_norm"), ("flatness", "neg_log10_topk_product"))   # Fig. S9
MEASURES = {"flatness": "sharpness", "neg_log10_spectral_norm": "hessian_norm",
            "neg_log10_topk_product": "topk_product"}                                      # Figs. S16–S21
IDENTITY = {"pac_bayes_bound_pct", "gp_test_error_pct"}                                    # drawn with y = x


def slug(text) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("_")


def label(column: str, df=None) -> str:
    """The axis label of a column (the top-k product names its k; a measure of the zoo, its name)."""
    from tfflat.flatness.measures import MEASURES

    if column.startswith(stats.ZOO_PREFIX) and column[len(stats.ZOO_PREFIX):] in MEASURES:
        return column[len(stats.ZOO_PREFIX):].replace("_", " ")
    text = LABELS.get(column, column)
    if column == "neg_log10_topk_product":
        known = df is not None and "hessian_top_k" in df and df["hessian_top_k"].notna().any()
        text = text.replace("K", str(int(df["hessian_top_k"].dropna().iloc[0])) if known else "k")
    return text


def _has(df, *cols) -> bool:
    return all(c in df and np.isfinite(df[c].to_numpy(float)).any() for c in cols)


def _column_title(key: dict, with_over: bool = False) -> str:
    parts = [key.get("experiment_label")]
    opt = key.get("optimizer")
    if opt is not None:
        parts.append(stats.OPTIMIZERS.get(opt, opt))
    text = ", ".join(str(p) for p in parts if p)
    if with_over and key.get("overtrain"):
        text += f", {int(key['overtrain'])} overtraining epochs"
    return text


def _sizes(g) -> str:
    r = g.iloc[0]
    parts = [f"|S| = {int(r['train_size'])}" if "train_size" in g and r["train_size"] == r["train_size"] else "",
             f"|E| = {int(r['test_size'])}" if "test_size" in g and r["test_size"] == r["test_size"] else ""]
    zeta = g["zeta"].dropna() if "zeta" in g else []
    if len(zeta):
        parts.append(f"ζ = {float(zeta.iloc[0]):g}")
    return ", ".join(p for p in parts if p)


class Colour:
    """How points and lines are coloured: ``values(frame)`` → numbers, under ``norm``, named ``label``."""

    def __init__(self, values, lo: float, hi: float, label: str):
        from matplotlib.colors import Normalize

        self.values, self.label = values, label
        self.norm = Normalize(lo, hi if hi > lo else lo + 1)

    @classmethod
    def attack(cls, df) -> "Colour":
        """By |A| — or by |A| / |S| when the experiments in ``df`` have different |S|."""
        relative = "train_size" in df and df["train_size"].nunique() > 1

        def values(g):
            a = g["attack_size"].to_numpy(float)
            return a / g["train_size"].to_numpy(float) if relative else a

        v = values(df)
        return cls(values, float(np.nanmin(v)), float(np.nanmax(v)), "|A| / |S|" if relative else "|A|")

    @classmethod
    def epoch(cls, df) -> "Colour":
        return cls(lambda g: g["epoch"].to_numpy(float), float(df["epoch"].min()), float(df["epoch"].max()), "epoch")


def _scatter_panel(ax, g, xc, yc, colour: Colour):
    """One scatter panel (open circles: unconverged ascents, counted in the correlation box); returns the mappable."""
    x, y = g[xc].to_numpy(float), g[yc].to_numpy(float)
    hollow = stats.unconverged(g).to_numpy() if "flatness" in (xc, yc) else None
    sc = figures.scatter(ax, x, y, colour.values(g), colour.norm, hollow=hollow)
    if xc.startswith(stats.ZOO_PREFIX):          # the zoo's raw values: log scale when they span decades
        figures.auto_scale(ax, "x")
    ax.set_xlabel(label(xc, g))
    ax.set_ylabel(label(yc, g))
    if yc in IDENTITY:
        figures.identity_line(ax, square=yc != "pac_bayes_bound_pct")
        if yc == "pac_bayes_bound_pct":
            figures.level_line(ax, 100.0, "100 % (vacuous above)")
    n = int((hollow & np.isfinite(x) & np.isfinite(y)).sum()) if hollow is not None else 0
    figures.correlation_box(ax, x, y, note=figures.hollow_note(n))
    return sc


def _grid(plt, rows: list[list], colour: Colour, name: str, out_dir: Path, suptitle: str = "",
          titles="each") -> list[Path]:
    """A figure of scatter panels: ``rows`` is a list of rows of cells (group key, its records, x, y)
    or None (an empty place); the panels are lettered row by row as in the paper. ``titles``: "each"
    (every panel names its column), "rows" (the first panel of each row does), "none" (letters only),
    or a list of column titles for the top row."""
    nrow, ncol = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(nrow, ncol, figsize=(figures.PANEL_W * ncol + 0.9, figures.PANEL_H * nrow + 0.5),
                             squeeze=False, layout="constrained")
    sc, i = None, 0
    for r, row in enumerate(rows):
        for c in range(ncol):
            ax = axes[r, c]
            cell = row[c] if c < len(row) else None
            if cell is None:
                ax.set_visible(False)
                continue
            key, g, xc, yc = cell
            sc = _scatter_panel(ax, g, xc, yc, colour)
            if isinstance(titles, list):
                title = titles[c] if r == 0 else ""
            else:
                title = {"each": _column_title(key), "rows": _column_title(key) if c == 0 else ""}.get(titles, "")
            figures.panel_title(ax, i, title)
            i += 1
    if suptitle:
        fig.suptitle(suptitle, fontsize=8)
    if sc is not None:
        cb = fig.colorbar(sc, ax=axes.ravel().tolist(), shrink=0.9, pad=0.02)
        cb.set_label(colour.label)
    written = figures.save(fig, out_dir / name)
    plt.close(fig)
    return written


# ---------------------------------------------------------------- results files → figures and tables
def results_kind(path, df) -> str:
    """"sweep" or "temporal": the sidecar's word, else what the records look like."""
    meta = results.read_meta(path)
    if meta and meta.get("experiment") in ("sweep", "temporal"):
        return meta["experiment"]
    return "temporal" if "after_rescale" in df and df["after_rescale"].notna().any() else "sweep"


def plot_results(paths, out_dir=None, invariance=None) -> dict:
    """Figures and tables of one or more results files (what ``tfflat plot`` does).

    Records are loaded per experiment (:func:`tfflat.experiments.results.load`: shards merged, different
    experiments kept apart), drawn (:func:`sweep_figures` or :func:`temporal_figures`) into ``out_dir``
    (default: ``<first file>-figures``), and the correlation table (sweeps) or the temporal summary
    is written there as CSV and JSON; so is, for sweeps whose records carry measures of the zoo, the
    measure table (:func:`~tfflat.experiments.stats.measure_table`, ``measures.csv``/``.json``), with
    the invariance measured on one network when ``invariance`` is given (the JSON that ``tfflat flatness
    RUN --invariance --out FILE`` writes, or its rows).
    Returns a summary: ``records`` (how many were drawn),
    ``records_read``, ``duplicates`` (copies merged), ``not_drawn`` ({status: count}), ``unconverged``,
    ``experiments`` (one entry per experiment), ``figures``, ``tables``, ``table`` (the name of the
    rows' key), the rows themselves and ``measures`` (the measure table's rows; empty without).
    """
    import pandas as pd

    paths = [Path(p) for p in paths]
    df = results.load(paths)
    kinds = {results_kind(p, df[df["results_file"] == str(p)]) for p in dict.fromkeys(paths)}
    if len(kinds) > 1:
        raise UserError("cannot combine sweep and temporal results in one plot; plot them separately")
    kind = kinds.pop()
    out_dir = Path(out_dir) if out_dir else paths[0].with_name(paths[0].name.removesuffix(".jsonl") + "-figures")
    ok = stats.usable(df)
    not_drawn = df.loc[~df.index.isin(ok.index), "status"].value_counts().to_dict() if "status" in df else {}
    measures, invariance = [], read_invariance(invariance)
    if kind == "sweep":
        written, rows, name = sweep_figures(df, out_dir), stats.correlation_table(df), "correlations"
        if stats.zoo_columns(df):
            measures = stats.measure_table(df, invariance=invariance)
    else:
        written, rows, name = temporal_figures(df, out_dir), stats.temporal_summary(df), "temporal_summary"
    labelled = stats.label_experiments(ok.copy())
    experiments = [{"experiment": g["experiment_label"].iloc[0], "experiment_id": ident,
                    "optimizers": list(dict.fromkeys(g["optimizer"])) if "optimizer" in g else [],
                    "files": sorted(set(g["results_file"])), "records": int(len(g)),
                    "unconverged": int(stats.unconverged(g).sum())}
                   for ident, g in labelled.groupby("experiment_id", sort=False)]
    runs.ensure_dir(out_dir)
    tables = [out_dir / f"{name}.csv", out_dir / f"{name}.json"]
    runs.atomic_write(tables[0], pd.DataFrame(rows).to_csv(index=False))
    runs.write_json(tables[1], rows)
    if measures:
        tables += [out_dir / "measures.csv", out_dir / "measures.json"]
        runs.atomic_write(tables[-2], pd.DataFrame(measures).to_csv(index=False))
        runs.write_json(tables[-1], measures)
    return {"kind": kind, "records": int(len(ok)), "records_read": int(df.attrs["read"]),
            "duplicates": int(df.attrs["duplicates"]), "not_drawn": {str(k): int(v) for k, v in not_drawn.items()},
            "unconverged": sum(e["unconverged"] for e in experiments), "experiments": experiments,
            "out": str(out_dir), "figures": [str(p) for p in written], "tables": [str(p) for p in tables],
            "table": name, name: rows, "measures": measures}


def read_invariance(source) -> list[dict] | None:
    """Invariance rows from ``source``: None, rows of :func:`tfflat.flatness.invariance_table`, or a JSON
    file holding them (alone, or under ``"invariance"`` as ``tfflat flatness --invariance --out`` writes)."""
    if source is None or isinstance(source, list):
        return source
    data = runs.read_json(source)
    rows = data.get("invariance") if isinstance(data, dict) else data
    if not isinstance(rows, list) or not all(isinstance(r, dict) and {"measure", "invariant_layerwise",
                                                                      "invariant_neuronwise"} <= set(r) for r in rows):
        raise UserError(f"{source} holds no invariance table; write one with "
                        "`tfflat flatness RUN --invariance --out FILE.json`")
    return rows


# ---------------------------------------------------------------- sweeps
def sweep_figures(df, out_dir) -> list[Path]:
    """The sweep figures of the module docstring for every experiment in ``df``."""
    plt = figures.pyplot()
    df = stats.derived(stats.usable(df))
    out_dir = runs.ensure_dir(out_dir)
    written = []
    if df.empty:
        return written
    colour = Colour.attack(df)
    cols = stats.groups(df, ("experiment_label", "optimizer"))
    names = _experiment_slugs(df)
    # columns at the first measured epoch (the zero-error epoch, overtrain 0, in Figs. 3, 4, S9, S12)
    first = [(k, g[g["overtrain"] == g["overtrain"].min()] if "overtrain" in g else g) for k, g in cols]
    titles = [_column_title(k) for k, _ in first]

    def row(xc, yc):
        return [(k, g, xc, yc) if _has(g, xc, yc) else None for k, g in first]

    main = [r for r in (row("log10_prior", "generalization"), row("flatness", "generalization")) if any(r)]
    if main:
        written += _grid(plt, main, colour, "generalization", out_dir, titles=titles)
    s12 = [c for c in row("flatness", "log10_prior") if c]
    if s12:
        written += _grid(plt, _wrap(s12, 3), colour, "prior_vs_sharpness", out_dir)
    hess = [[(k, g, xc, yc) if _has(g, xc, yc) else None for xc, yc in HESSIAN] for k, g in first
            if _has(g, "neg_log10_spectral_norm") or _has(g, "neg_log10_topk_product")]
    if hess:
        written += _grid(plt, hess, colour, "hessian", out_dir, titles="rows")
    for yc, name in (("pac_bayes_bound_pct", "pac_bayes"), ("gp_test_error_pct", "gp_test_error")):
        cells = [c for c in row("test_error", yc) if c]
        if cells:
            written += _grid(plt, _wrap(cells, 3), colour, name, out_dir)
    written += _overtraining(plt, cols, names, out_dir)
    written += zoo_figures(plt, first, names, out_dir)
    written += ascent_figure(plt, first, colour, out_dir / "ascent_convergence")
    # every panel of one column (and overtraining epoch)
    for key, g in stats.groups(df, ("experiment_label", "optimizer", "overtrain")):
        panels = [(key, g, x, y) for x, y in PANELS if _has(g, x, y)]
        if not panels:
            continue
        over = int(key.get("overtrain") or 0)
        name = f"sweep_{names[g['experiment_id'].iloc[0]]}_{slug(key.get('optimizer'))}" + (f"_over{over}" if over else "")
        title = _column_title(key, with_over=True) + f" — {_sizes(g)}" + ("" if over else ", zero-error epoch")
        written += _grid(plt, _wrap(panels, 3), Colour.attack(g), name, out_dir, suptitle=title, titles="none")
    return written


def zoo_figures(plt, cols, names, out_dir: Path) -> list[Path]:
    """``measures_<experiment>_<optimizer>``: generalization against log10 P(f) and against every measure of
    the zoo recorded (``flatness_<name>``, its raw value, log-scaled when it spans decades), one panel each,
    for each column (experiment, optimizer) at its first measured epoch."""
    written = []
    for key, g in cols:
        panels = [(key, g, c, "generalization") for c, _, _ in stats.predictors(g)
                  if (c == "log10_prior" or c.startswith(stats.ZOO_PREFIX)) and _has(g, c, "generalization")]
        if not any(c.startswith(stats.ZOO_PREFIX) for _, _, c, _ in panels):
            continue
        name = f"measures_{names[g['experiment_id'].iloc[0]]}_{slug(key.get('optimizer'))}"
        title = _column_title(key) + f" — {_sizes(g)}: generalization against each flatness measure"
        written += _grid(plt, _wrap(panels, 5), Colour.attack(g), name, out_dir, suptitle=title, titles="none")
    return written


def _wrap(cells: list, n: int) -> list[list]:
    return [cells[i:i + n] for i in range(0, len(cells), n)]


def _experiment_slugs(df) -> dict:
    """experiment_id → a file-name part: the config name (``fig3_mnist_sgd``, ``…-quick``), with the
    id's hash where two experiments share a name."""
    ids = list(dict.fromkeys(df["experiment_id"]))
    names = {i: slug(str(i).split("@")[0]) for i in ids}
    return {i: n if list(names.values()).count(n) == 1 else slug(i) for i, n in names.items()}


def _overtraining(plt, cols, names, out_dir) -> list[Path]:
    """Figs. S16–S21: for each column with several overtraining epochs and each flatness measure,
    rows = overtraining epochs, columns = (gen vs log P, gen vs measure, log P vs measure)."""
    written = []
    for key, g in cols:
        epochs = sorted(g["overtrain"].dropna().unique()) if "overtrain" in g else []
        if len(epochs) < 2:
            continue
        colour = Colour.attack(g)
        for measure, mname in MEASURES.items():
            if not _has(g, measure):
                continue
            nrow, ncol = len(epochs), 3
            fig, axes = plt.subplots(nrow, ncol, figsize=(figures.PANEL_W * ncol + 0.9, figures.PANEL_H * nrow + 0.5),
                                     squeeze=False, layout="constrained")
            sc, i = None, 0
            for r, e in enumerate(epochs):
                ge = g[g["overtrain"] == e]
                for c, (xc, yc) in enumerate((("log10_prior", "generalization"), (measure, "generalization"),
                                              (measure, "log10_prior"))):
                    ax = axes[r, c]
                    if not _has(ge, xc, yc):
                        ax.set_visible(False)
                        continue
                    sc = _scatter_panel(ax, ge, xc, yc, colour)
                    figures.panel_title(ax, i, f"overtraining epochs: {int(e)}")
                    i += 1
            fig.suptitle(_column_title(key) + f" — {_sizes(g)}", fontsize=8)
            if sc is not None:
                fig.colorbar(sc, ax=axes.ravel().tolist(), shrink=0.9, pad=0.02).set_label(colour.label)
            name = f"overtraining_{names[g['experiment_id'].iloc[0]]}_{slug(key.get('optimizer'))}_{mname}"
            written += figures.save(fig, out_dir / name)
            plt.close(fig)
    return written


# ---------------------------------------------------------------- Fig. S10: the ascent's convergence
def _traces(g) -> list[tuple[int, object, np.ndarray]]:
    """(position in g, record, running max per ascent epoch) of the records that carry a trace."""
    if "ascent_trace" not in g:
        return []
    return [(i, r, np.asarray(t, float)) for i, (_, r) in enumerate(g.iterrows())
            if isinstance(t := r["ascent_trace"], (list, tuple, np.ndarray)) and len(t)]


def ascent_figure(plt, cols, colour: Colour, path: Path, line_label=None, highlight=None) -> list[Path]:
    """Fig. S10 for each column (key, records): (top) the running maximum of L(w + Δ) over the ascent's
    epochs, as in the paper, for the records ``highlight(g)`` selects (default: the first, smallest
    |A| and seed), with the first-order corner's loss dashed — an ascent that ends below it has not
    converged; (bottom) every record's progress (max − L(w)) / (final max − L(w)), which ends at 1:
    a curve still rising at the end is an ascent stopped early; dotted: ``sharpness_converged`` false."""
    import matplotlib

    cols = [(k, g) for k, g in cols if _traces(g)]
    if not cols:
        return []
    ncol = len(cols)
    fig, axes = plt.subplots(2, ncol, figsize=(figures.PANEL_W * ncol + 1.0, 2 * figures.PANEL_H + 0.5),
                             squeeze=False, layout="constrained")
    cmap = matplotlib.colormaps[figures.CMAP]
    for c, (key, g) in enumerate(cols):
        top, bottom = axes[0, c], axes[1, c]
        traces = _traces(g)
        if highlight is not None:
            shown = highlight(g)
        else:
            first = min(traces, key=lambda t: (t[1].get("attack_size", 0), t[1].get("seed", 0)))[0]
            shown = np.arange(len(g)) == first
        colours = cmap(colour.norm(colour.values(g)))
        bad = stats.unconverged(g).to_numpy()
        for i, r, t in traces:
            x = np.arange(1, len(t) + 1)
            if shown[i]:
                top.plot(x, t, color=colours[i], label=line_label(r) if line_label else None)
                corner = stats.to_float(r.get("corner_loss"))
                if np.isfinite(corner):
                    top.axhline(corner, color=colours[i], lw=0.7, ls="--")
            base = stats.to_float(r.get("sharpness_loss"))
            if np.isfinite(base) and t[-1] > base:
                bottom.plot(x, (t - base) / (t[-1] - base), color=colours[i], lw=0.7, ls=":" if bad[i] else "-")
        figures.auto_scale(top, "y")
        top.set(xlabel="ascent epoch", ylabel=r"max $L(w+\Delta)$ so far")
        from matplotlib.lines import Line2D

        handles = top.get_legend_handles_labels()[0] + [Line2D([], [], color="0.4", lw=0.7, ls="--",
                                                                label="first-order corner")]
        top.legend(handles=handles, fontsize=6, loc="best")
        if highlight is None:
            r = g.iloc[int(np.flatnonzero(shown)[0])]
            what = f"|A| = {int(r['attack_size'])}, seed {int(r['seed'])}" if "seed" in g else ""
        else:
            what = ""
        figures.panel_title(top, c, ", ".join(p for p in (_column_title(key), what) if p))
        bottom.axhline(1.0, color="0.5", lw=0.6, ls="--")
        bottom.set(ylim=(-0.05, 1.08), xlabel="ascent epoch", ylabel="fraction of the final rise")
        n_bad = int(bad[[i for i, _, _ in traces]].sum())
        figures.panel_title(bottom, ncol + c, f"all {len(traces)}" + (f"; {n_bad} unconverged (dotted)" if n_bad else
                                                                     "; all converged"))
    from matplotlib.cm import ScalarMappable

    fig.colorbar(ScalarMappable(norm=colour.norm, cmap=figures.CMAP), ax=axes.ravel().tolist(),
                 shrink=0.9, pad=0.02).set_label(colour.label)
    written = figures.save(fig, path)
    plt.close(fig)
    return written


# ---------------------------------------------------------------- temporal runs
def alpha_text(g) -> str:
    """The rescaling as the paper writes it ("α = 5.9"), with the transformation applied."""
    a = float(g["alpha"].dropna().iloc[0])
    direction = g["rescale_direction"].dropna().iloc[0] if "rescale_direction" in g and \
        g["rescale_direction"].notna().any() else None
    layer = int(g["rescale_layer"].dropna().iloc[0]) if "rescale_layer" in g and g["rescale_layer"].notna().any() else 1
    i, j = layer, layer + 1
    if direction == "inverse":
        how = rf"$(W_{i}/\alpha,\ b_{i}/\alpha,\ \alpha W_{j})$"
    elif direction == "eq9":
        how = rf"$(\alpha W_{i},\ \alpha b_{i},\ W_{j}/\alpha)$"
    else:
        how = ""
    return f"α = {a:g}" + (f" {how}" if how else "")


def temporal_figures(df, out_dir) -> list[Path]:
    """Per trajectory: sharpness, log10 P(f), Hessian measures and accuracy against the epoch, and
    the ascent's convergence at a few epochs (see the module docstring)."""
    plt = figures.pyplot()
    out_dir = runs.ensure_dir(out_dir)
    df = stats.label_experiments(df.copy())
    names = _experiment_slugs(df)
    written = []
    keys = ["experiment_label", "optimizer", "attack_size", "seed"]
    for (lab, opt, a, seed), g in df.groupby(keys, sort=False):
        g = g.sort_values(["epoch", "after_rescale"], kind="stable")
        g = stats.derived(g)
        common = g.drop_duplicates(["epoch", "after_rescale"])
        rows = [r for r in ("log10_sharpness", "log10_prior", "spectral_norm", "log10_topk_product") if _has(g, r)]
        rows.append("accuracy")
        r_epochs = g.loc[g["after_rescale"].astype(bool), "epoch"] if "after_rescale" in g else []
        rescaled = float(min(r_epochs)) if len(r_epochs) else None
        zero = g["zero_error_epoch"].dropna()
        zero = float(zero.iloc[-1]) if len(zero) else None
        fig, axes = plt.subplots(len(rows), 1, figsize=(4.8, 1.55 * len(rows) + 0.5), sharex=True, squeeze=False,
                                 layout="constrained")
        axes = axes[:, 0]
        for i, (ax, row) in enumerate(zip(axes, rows)):
            if row == "log10_sharpness":
                bad_total = 0
                for zeta, gz in g.groupby("zeta", sort=True, dropna=False):
                    y = 10.0 ** gz["log10_sharpness"].map(stats.to_float)
                    line, = ax.plot(gz["epoch"], y, label=f"ζ = {zeta:g}" if zeta == zeta else None)
                    bad = stats.unconverged(gz).to_numpy()
                    if bad.any():
                        bad_total += int(bad.sum())
                        ax.plot(gz["epoch"][bad], y[bad], ls="", marker="o", mfc="none", mec=line.get_color(), ms=3)
                ax.set_yscale("log")
                ax.set_ylabel("sharpness (Def. 2.1)")
                if g["zeta"].nunique() > 1:
                    ax.legend(fontsize=6, ncols=3)
                if bad_total:
                    ax.text(0.99, 0.97, f"○ ascent not converged ({bad_total})", transform=ax.transAxes,
                            ha="right", va="top", fontsize=6)
            elif row == "log10_prior":
                ax.plot(common["epoch"], common["log10_prior"], color="C1")
                ax.set_ylabel(LABELS["log10_prior"])
                late = common[common["epoch"] >= zero] if zero is not None else common.iloc[:0]
                if len(late) > 1:       # inset from the zero-error epoch on, as in Fig. 5
                    inset = ax.inset_axes([0.45, 0.42, 0.52, 0.5])
                    inset.plot(late["epoch"], late["log10_prior"], color="C1")
                    inset.tick_params(labelsize=6)
                    if rescaled is not None:
                        inset.axvline(rescaled, **figures.RESCALING)
            elif row == "spectral_norm":
                ax.plot(common["epoch"], common["spectral_norm"].map(stats.to_float), color="C4")
                ax.set_yscale("log")
                ax.set_ylabel(r"$\|\nabla^2 L\|_2$")
            elif row == "log10_topk_product":
                k = int(g["hessian_top_k"].dropna().iloc[0]) if "hessian_top_k" in g and g["hessian_top_k"].notna().any() else "k"
                ax.plot(common["epoch"], common["log10_topk_product"].map(stats.to_float), color="C5")
                ax.set_ylabel(rf"$\log_{{10}}\,\Pi_{{i\leq {k}}}\,\lambda_i$")
            else:
                ax.plot(common["epoch"], 100 * common["train_accuracy"], label="train (S)", color="C0")
                ax.plot(common["epoch"], 100 * common["test_accuracy"], label="test (E)", color="C3")
                ax.set_ylabel("accuracy (%)")
            if zero is not None:
                ax.axvline(zero, **figures.ZERO_ERROR, label="zero training error" if row == "accuracy" else None)
            if rescaled is not None:
                ax.axvline(rescaled, **figures.RESCALING,
                           label=f"α-rescaling, {alpha_text(g)}" if row == "accuracy" else None)
            figures.panel_title(ax, i)
        axes[-1].legend(fontsize=6, loc="lower right")
        axes[-1].set_xlabel("epoch")
        title = f"{lab}, {stats.OPTIMIZERS.get(opt, opt)}, |A| = {a}, seed {seed} — {_sizes(g)}"
        if rescaled is not None:
            title += f"\nα-rescaling at epoch {rescaled:g}: {alpha_text(g)}"
        fig.suptitle(title, fontsize=8)
        stem = f"{names[g['experiment_id'].iloc[0]]}_{slug(opt)}_A{a}_seed{seed}"
        written += figures.save(fig, out_dir / f"temporal_{stem}")
        plt.close(fig)
        written += _temporal_ascent(plt, g, zero, rescaled, out_dir / f"ascent_convergence_{stem}")
    return written


def _temporal_ascent(plt, g, zero, rescaled, path) -> list[Path]:
    """Fig. S10 for a trajectory: its ascents at the zero-error epoch, just after rescaling and at the
    last epoch (top), and at every measured epoch (bottom); one column per ζ."""
    if "ascent_trace" not in g:
        return []
    last = g["epoch"].max()
    picks = {(zero, False), (rescaled, True), (last, bool(g.loc[g["epoch"] == last, "after_rescale"].astype(bool).any()))}

    def highlight(gz):
        return np.array([(e, bool(a)) in picks for e, a in zip(gz["epoch"], gz["after_rescale"])])

    def line_label(r):
        return f"epoch {int(r['epoch'])}" + (" (just rescaled)" if r["epoch"] == rescaled and r.get("after_rescale")
                                             else "")

    cols = [({"experiment_label": f"ζ = {z:g}" if z == z else ""}, gz)
            for z, gz in g.groupby("zeta", sort=True, dropna=False)]
    return ascent_figure(plt, cols, Colour.epoch(g), path, line_label=line_label, highlight=highlight)
