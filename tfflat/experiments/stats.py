"""The paper's correlation table over sweep records (coefficients: :func:`tfflat.stats.correlations`).

The correlation table pairs generalization with log10 P(f) (Figs. 3a–c, 4a–c) and with flatness
−log10 sharpness (Figs. 3d–f, 4d–f), log10 P(f) with flatness (Fig. S12), the Hessian measures
(Fig. S9, S18–S21) when present, the PAC-Bayes bound of eq. (4) and the GP's own test error with the
network's — per experiment, optimizer and overtraining epoch (Figs. S16–S21). The measure table
(:func:`measure_table`) ranks every flatness measure of the zoo recorded in a sweep (``flatness_<name>``,
:mod:`tfflat.flatness.measures`) beside log10 P(f) by Kendall's τ with generalization, plain and
granulated over the sweep's axes (Jiang et al. 2020). Also the derived columns the figures plot and
the experiments' labels.
"""

from __future__ import annotations

import math

import numpy as np

from tfflat.stats import correlations, granulated_kendall, kendall

# (x column, y column, label); the figures each pair belongs to in the comment. Generalization is the test accuracy in %, as in the figures;
# "flatness" is −log10(sharpness), the Hessian measures likewise −log10; errors and the bound in %.
PAIRS = (
    ("log10_prior", "generalization", "generalization vs log10 P(f)"),                      # 3a–c, 4a–c
    ("flatness", "generalization", "generalization vs -log10 sharpness"),                   # 3d–f, 4d–f
    ("flatness", "log10_prior", "log10 P(f) vs -log10 sharpness"),                          # S12
    ("neg_log10_spectral_norm", "generalization", "generalization vs -log10 Hessian norm"),  # S9 a/e
    ("neg_log10_topk_product", "generalization", "generalization vs -log10 top-k eigenvalue product"),  # S9 b/f
    ("flatness", "neg_log10_spectral_norm", "-log10 Hessian norm vs -log10 sharpness"),      # S9 c/g
    ("flatness", "neg_log10_topk_product", "-log10 top-k eigenvalue product vs -log10 sharpness"),  # S9 d/h
    ("neg_log10_spectral_norm", "log10_prior", "log10 P(f) vs -log10 Hessian norm"),         # S18, S20
    ("neg_log10_topk_product", "log10_prior", "log10 P(f) vs -log10 top-k eigenvalue product"),  # S19, S21
    ("test_error", "pac_bayes_bound_pct", "PAC-Bayes bound (eq. 4) vs test error"),
    ("test_error", "gp_test_error_pct", "GP test error vs network test error"),
)
SHARPNESS_COLUMNS = ("flatness",)      # pairs with these rest on the sharpness ascent (its convergence matters)
GROUPS = ("experiment_label", "optimizer", "overtrain")

DATASETS = {"mnist": "MNIST", "cifar_cats_cars": "CIFAR-10", "boolean": "Boolean"}
MODELS = {"fcn": "FCN", "fcn-small": "FCN 784-10-40-1", "resnet50": "ResNet50"}
OPTIMIZERS = {"sgd": "SGD", "gd": "Full-batch GD", "adam": "Adam", "entropy-sgd": "Entropy-SGD", "adagrad": "Adagrad",
              "momentum": "Momentum", "rmsprop": "RMSProp"}


def _num(series):
    """A column as floats ("inf"/"-inf" strings of strict JSON included; None and text → NaN)."""
    return series.map(to_float).astype(float)


def to_float(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def derived(df):
    """Add the plotted quantities: generalization and test error (%), flatness = −log10 sharpness,
    −log10 of the Hessian measures, the PAC-Bayes bound and the GP's test error (%), the zoo's values
    as numbers, and ``experiment_label`` (:func:`label_experiments`)."""
    df = label_experiments(df.copy())
    if "test_accuracy" in df:
        acc = _num(df["test_accuracy"])
        df["generalization"] = 100.0 * acc
        df["test_error"] = 100.0 * (1.0 - acc)
    if "log10_sharpness" in df:
        df["flatness"] = -_num(df["log10_sharpness"])
    if "log10_spectral_norm" in df:
        df["neg_log10_spectral_norm"] = -_num(df["log10_spectral_norm"])
    if "log10_topk_product" in df:
        df["neg_log10_topk_product"] = -_num(df["log10_topk_product"])
    if "pac_bayes_bound" in df:
        df["pac_bayes_bound_pct"] = 100.0 * _num(df["pac_bayes_bound"])
    if "gp_test_error" in df:
        df["gp_test_error_pct"] = 100.0 * _num(df["gp_test_error"])
    if "log10_prior" in df:
        df["log10_prior"] = _num(df["log10_prior"])
    for name in zoo_columns(df):                 # the zoo's values ("inf" strings of strict JSON included)
        df[f"{ZOO_PREFIX}{name}"] = _num(df[f"{ZOO_PREFIX}{name}"])
    return df


def unconverged(df):
    """Boolean mask: the record's sharpness ascent did not reach the first-order corner's loss
    (``sharpness_converged`` false; records without the field are not counted)."""
    import pandas as pd

    if "sharpness_converged" not in df:
        return pd.Series(False, index=df.index)
    return df["sharpness_converged"].map(lambda v: not pd.isna(v) and not bool(v)).astype(bool)


def label_experiments(df):
    """Add ``experiment_label``: "FCN/MNIST" from the records' model and dataset. Two experiments
    may share it when their optimizers differ (their records then stay apart by optimizer, as in
    Fig. 4's "FCN/MNIST, Adam" beside Fig. 3's "FCN/MNIST, SGD"); otherwise the config name (and
    then the id) is added. A frame that has the column already keeps it."""
    if "experiment_label" in df:
        return df
    if "experiment_id" not in df:
        from tfflat.experiments.results import IDENTITY, record_id

        cols = [c for c in IDENTITY if c in df]
        df["experiment_id"] = [record_id(dict(zip(cols, v))) for v in df[cols].itertuples(index=False, name=None)]
    firsts = df.drop_duplicates("experiment_id")
    base = {}
    for _, r in firsts.iterrows():
        model, data = r.get("model"), r.get("dataset")
        parts = [MODELS.get(model, str(model).upper()) if isinstance(model, str) else None,
                 DATASETS.get(data, data) if isinstance(data, str) else None]
        base[r["experiment_id"]] = "/".join(p for p in parts if p) or str(r["experiment_id"])
    labels = dict(base)
    opts = ({i: set(g["optimizer"].dropna()) for i, g in df.groupby("experiment_id")} if "optimizer" in df
            else {i: {None} for i in base})
    for ident, lab in base.items():
        # experiments sharing a label stay apart through their optimizers (Fig. 4: "FCN/MNIST, Adam")
        # unless they share one: then the config name is added
        if any(o != ident and base[o] == lab and opts[o] & opts[ident] for o in base):
            labels[ident] = f"{lab} ({str(ident).split('@')[0]})"
    named = dict(labels)
    for ident, lab in named.items():
        if any(o != ident and named[o] == lab and opts[o] & opts[ident] for o in named):
            labels[ident] = f"{lab} [{ident}]"
    df["experiment_label"] = df["experiment_id"].map(labels)
    return df


def usable(df):
    """The records measured at a zero-error point (status ok)."""
    return df[df["status"] == "ok"] if "status" in df else df


def groups(df, by=GROUPS):
    """(dict of the group's values, its rows) for each group of ``by`` present, in order of appearance
    of the experiments and the optimizers, then by overtraining epoch."""
    by = [c for c in by if c in df and df[c].notna().any()]
    if not by:
        return [({}, df)]
    order = {c: {v: i for i, v in enumerate(dict.fromkeys(df[c]))} for c in by}
    out = [(dict(zip(by, k if isinstance(k, tuple) else (k,))), g)
           for k, g in df.groupby(by, sort=False, dropna=False)]
    return sorted(out, key=lambda kg: tuple(order[c].get(kg[0][c], 0) if c != "overtrain" else kg[0][c] for c in by))


def correlation_table(df, by=GROUPS) -> list[dict]:
    """One row per (group, pair) present in the records (see :data:`PAIRS`); a pair resting on
    sharpness also counts the records whose ascent did not converge (``unconverged``)."""
    df = derived(usable(df))
    rows = []
    for key, g in groups(df, by):
        bad = unconverged(g)
        for xc, yc, label in PAIRS:
            if xc not in g or yc not in g or g[xc].notna().sum() == 0 or g[yc].notna().sum() == 0:
                continue
            row = {("experiment" if c == "experiment_label" else c): _plain(v) for c, v in key.items()}
            row.update(pair=label, x=xc, y=yc)
            row.update(correlations(g[xc].to_numpy(float), g[yc].to_numpy(float)))
            if xc in SHARPNESS_COLUMNS or yc in SHARPNESS_COLUMNS:
                ok = np.isfinite(g[xc].to_numpy(float)) & np.isfinite(g[yc].to_numpy(float))
                row["unconverged"] = int((bad.to_numpy() & ok).sum())
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
    keys = [k for k in ("experiment", "optimizer", "overtrain") if k in rows[0]]
    width = {k: max(len(k), *(len(str(r.get(k))) for r in rows)) for k in keys}
    head = "  ".join(f"{k:<{width[k]}}" for k in keys) + f"  {'pair':<52} {'n':>4} {'pearson':>8} {'p':>9} " \
        f"{'spearman':>8} {'p':>9} {'kendall':>8} {'p':>9}"
    lines = [head]
    for r in rows:
        note = f"  ({r['unconverged']} unconverged)" if r.get("unconverged") else ""
        lines.append("  ".join(f"{str(r.get(k)):<{width[k]}}" for k in keys) +
                     f"  {r['pair']:<52} {r['n']:>4} {r['pearson_r']:>8.3f} {r['pearson_p']:>9.2e} "
                     f"{r['spearman_rho']:>8.3f} {r['spearman_p']:>9.2e} {r['kendall_tau']:>8.3f} "
                     f"{r['kendall_p']:>9.2e}{note}")
    return lines


def temporal_summary(df) -> list[dict]:
    """Per trajectory (and ζ): zero-error epoch, and at the rescaling epoch the sharpness, log10 P(f)
    and accuracies just before and just after α-rescaling (Fig. 5, S11: f and so P(f) unchanged);
    ``unconverged`` counts the measurements whose sharpness ascent did not converge."""
    df = label_experiments(df.copy())
    keys = ["experiment_label", "optimizer", "attack_size", "seed", "zeta"]
    names = ["experiment", "optimizer", "attack_size", "seed", "zeta"]
    rows = []
    for key, g in df.groupby(keys, sort=False, dropna=False):
        row = dict(zip(names, map(_plain, key)))
        zero = g["zero_error_epoch"].dropna()
        row["zero_error_epoch"] = int(zero.iloc[-1]) if len(zero) else None
        row["epochs"] = int(g["epoch"].max())
        row["measurements"] = int(len(g))
        if "sharpness_converged" in g:
            row["unconverged"] = int(unconverged(g).sum())
        if "after_rescale" in g and g["after_rescale"].any():
            r = int(g.loc[g["after_rescale"].astype(bool), "epoch"].min())
            at = g[g["epoch"] == r]
            before, after = at[~at["after_rescale"].astype(bool)], at[at["after_rescale"].astype(bool)]
            row["rescale_epoch"], row["alpha"] = r, float(g["alpha"].dropna().iloc[0])
            for name in ("rescale_direction", "rescale_layer", "rescale_factor"):
                if name in g and g[name].notna().any():
                    row[name] = _plain(g[name].dropna().iloc[0])
            for name in ("sharpness", "log10_prior", "train_accuracy", "test_accuracy", "function_hash"):
                if name in g:
                    row[f"{name}_before"] = _plain(before[name].iloc[0]) if len(before) else None
                    row[f"{name}_after"] = _plain(after[name].iloc[0]) if len(after) else None
        rows.append(row)
    return rows


# ---------------------------------------------------------------- the measure zoo against generalization
ZOO_PREFIX = "flatness_"
AXES = ("attack_size", "seed")          # a sweep's grid within one experiment, optimizer and overtraining epoch


def zoo_columns(df) -> list[str]:
    """The measures of the zoo recorded in ``df`` (``flatness_<name>`` columns), in the registry's order."""
    from tfflat.flatness.measures import MEASURES

    return [name for name in MEASURES if f"{ZOO_PREFIX}{name}" in df]


# α-rescaling invariance of the sweep's own measures: P(f) depends on the function only (paper §1, App. F);
# the sharpness and the Hessian are keskar_sharpness's and hessian_*'s of the zoo
INVARIANCE = {"log10_prior": (True, True), "flatness": (False, False), "neg_log10_spectral_norm": (False, False),
              "neg_log10_topk_product": (False, False)}


def predictors(df) -> list[tuple[str, str, int]]:
    """(column, row name, sign) of what :func:`measure_table` ranks: log10 P(f), −log10 sharpness,
    the Hessian measures and each recorded measure of the zoo; ``sign`` orients it so that larger
    means "predicted to generalize better" (flatter, simpler, more probable)."""
    rows = [("log10_prior", "log10 P(f)", 1), ("flatness", "-log10 sharpness ([sharpness])", 1),
            ("neg_log10_spectral_norm", "-log10 Hessian norm ([hessian])", 1),
            ("neg_log10_topk_product", "-log10 Hessian top-k product", 1)]
    out = [r for r in rows if r[0] in df]
    return out + [(f"{ZOO_PREFIX}{name}", name, -1) for name in zoo_columns(df)]


def measure_table(df, by=GROUPS, axes=AXES, target: str = "generalization", invariance=None) -> list[dict]:
    """Kendall's τ of each measure with generalization, and Jiang et al.'s granulated τ over the sweep's
    axes, per experiment, optimizer and overtraining epoch (one row per (group, measure)).

    The measures are oriented as "larger predicts better generalization": ``tau`` is τ(sign · measure,
    test accuracy) with sign −1 for every flatness measure (each grows with sharpness) and +1 for
    log10 P(f) and the already negated −log10 sharpness, so a positive τ means the measure ranks the
    networks as their generalization does. ``granulated_tau`` is Ψ (eq. 5) over the axes that vary
    within the group (|A| and the seed of a sweep), ``tau_<axis>`` its ψ_i (eq. 4).
    Also: ``n`` (points with a value), ``errors`` (records where the measure did not apply) and the
    measure's α-rescaling invariance expected from its definition (``expected_layerwise``,
    ``expected_neuronwise``; checked on a trained network by tests/flatness/test_invariance.py) and,
    given ``invariance`` (rows of :func:`tfflat.flatness.invariance_table` on one of the sweep's
    networks), the measured one (``measured_layerwise``, ``measured_neuronwise``).
    """
    from tfflat.flatness.measures import MEASURES

    measured = {r["measure"]: r for r in (invariance or [])}

    df = derived(usable(df))
    rows = []
    if target not in df:
        return rows
    for key, g in groups(df, by):
        varying = [a for a in axes if a in g and g[a].nunique(dropna=True) > 1]
        y = g[target].to_numpy(float)
        for col, name, sign in predictors(g):
            x = sign * _num(g[col]).to_numpy(float)
            ok = np.isfinite(x) & np.isfinite(y)
            row = {("experiment" if c == "experiment_label" else c): _plain(v) for c, v in key.items()}
            row.update(measure=name, column=col, sign=sign, n=int(ok.sum()))
            row["tau"], row["tau_p"] = kendall(x, y)
            if varying:
                gk = granulated_kendall(x[ok], y[ok], {a: g[a].to_numpy()[ok] for a in varying})
                row["granulated_tau"] = gk["granulated_tau"]
                row.update({f"tau_{a}": v for a, v in gk["per_axis"].items()})
            else:
                row["granulated_tau"] = float("nan")
            err = f"{col}_error"
            row["errors"] = int(g[err].notna().sum()) if err in g else 0
            if row["errors"]:
                row["error"] = str(g[err].dropna().iloc[0])
            if name in MEASURES:
                row["expected_layerwise"], row["expected_neuronwise"] = MEASURES[name].expected()
            elif col in INVARIANCE:
                row["expected_layerwise"], row["expected_neuronwise"] = INVARIANCE[col]
            if name in measured:
                row["measured_layerwise"] = bool(measured[name]["invariant_layerwise"])
                row["measured_neuronwise"] = bool(measured[name]["invariant_neuronwise"])
            rows.append(row)
    return rows


def group_title(row: dict) -> str:
    """"FCN/MNIST, SGD" (", N overtraining epochs" when N > 0) for a row of a table."""
    text = ", ".join(str(p) for p in (row.get("experiment"), OPTIMIZERS.get(row.get("optimizer"), row.get("optimizer")))
                     if p)
    over = row.get("overtrain")
    return text + (f", over {int(over)}" if over else "")


def format_measure_table(rows: list[dict]) -> list[str]:
    """Text lines of :func:`measure_table`: measure | τ and granulated Ψ per group (e.g. SGD, Adam) |
    invariant to α-rescaling layer-wise / neuron-wise — measured where the rows carry it
    (``measured_*``: :func:`tfflat.flatness.invariance_table` on one of the sweep's networks), else the
    registry's answer from the definition (``expected_*``), which tests/flatness/test_invariance.py
    checks on a trained MNIST FCN."""
    if not rows:
        return ["(no measure table: no measured records)"]
    titles = list(dict.fromkeys(group_title(r) for r in rows))
    names = list(dict.fromkeys(r["measure"] for r in rows))
    cell = {(group_title(r), r["measure"]): r for r in rows}
    width = max(28, *(len(n) for n in names))
    colw = max(15, *(len(t) for t in titles))

    def num(v):
        return "—" if v is None or not np.isfinite(v) else f"{v:+.3f}"

    def yn(b):
        return "—" if b is None else ("yes" if b else "no")

    measured = any("measured_layerwise" in r for r in rows)
    how = "measured on a sweep network" if measured else "expected from the definition, tested by the test suite"
    head = f"{'measure':<{width}} " + " ".join(f"{t:>{colw}}" for t in titles) + f"  α-invariant ({how})"
    sub = f"{'':<{width}} " + " ".join(f"{'τ / Ψ':>{colw}}" for _ in titles) + "  layer-wise neuron-wise"
    lines = [head, sub, "-" * len(head)]
    for name in names:
        cells = []
        for t in titles:
            r = cell.get((t, name))
            cells.append(f"{(num(r['tau']) + ' / ' + num(r['granulated_tau'])) if r else '':>{colw}}")
        r = next((cell[(t, name)] for t in titles if (t, name) in cell), {})
        kind = "measured" if "measured_layerwise" in r else "expected"
        lw, nw = r.get(f"{kind}_layerwise"), r.get(f"{kind}_neuronwise")
        note = " (expected)" if measured and kind == "expected" and lw is not None else ""
        lines.append(f"{name:<{width}} " + " ".join(cells) + f"  {yn(lw):<10} {yn(nw)}{note}")
    lines.append("τ: Kendall's τ of generalization with the measure oriented flat = larger (−measure; "
                 "log10 P(f) as is); "
                 "Ψ: Jiang et al. 2020's granulated τ over |A| and seed")
    bad = [r for r in rows if r.get("errors")]
    lines += [f"{group_title(r)}: {r['measure']} did not apply in {r['errors']} record(s): {r.get('error')}"
              for r in bad]
    return lines
