"""``tfflat plot``: figures (PNG + PDF) and correlation tables from sweep, temporal or boolean results."""

from __future__ import annotations

from pathlib import Path

import click

from .output import emit


def _kind(path: Path, df) -> str:
    from tfflat.experiments import results

    meta = results.read_meta(path)
    if meta and meta.get("experiment") in ("sweep", "temporal"):
        return meta["experiment"]
    return "temporal" if "after_rescale" in df and df["after_rescale"].notna().any() else "sweep"


@click.command()
@click.argument("results_paths", metavar="RESULTS...", nargs=-1, required=True, type=click.Path())
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for figures and tables (default: next to RESULTS, named RESULTS-figures).")
@click.option("--json", "as_json", is_flag=True, help="Print a one-object JSON summary.")
def plot(results_paths, out_dir, as_json):
    """Plot results: sweep or temporal RESULTS.jsonl files, or a `tfflat boolean` output folder.

    Several files are drawn together: shards of one experiment are merged (the same key once), and
    different experiments (e.g. the MNIST and CIFAR sweeps of Fig. 3) become labelled panels of one
    figure. Correlations (Pearson, Spearman, Kendall with p-values) per experiment, optimizer and
    overtraining epoch are printed and saved as CSV and JSON; `records` in --json is how many
    records were drawn."""
    from tfflat.errors import UserError

    paths = [Path(p) for p in results_paths]
    if len(paths) == 1 and paths[0].is_dir():
        if not (paths[0] / "boolean.json").is_file():
            raise UserError(f"{paths[0]} is a folder without boolean.json; give a results .jsonl file "
                            "or the --out folder of `tfflat boolean`")
        from tfflat.boolean.plots import plot_boolean

        written = plot_boolean(paths[0], out_dir)
        emit({"figures": [str(p) for p in (written or [])]}, as_json,
             [f"wrote {p}" for p in (written or [])] or [f"figures written to {paths[0]}"])
        return
    import pandas as pd

    from tfflat import runs
    from tfflat.experiments import plots, results, stats

    df = results.load(paths)
    read, duplicates = df.attrs["read"], df.attrs["duplicates"]
    kinds = {_kind(p, df[df["results_file"] == str(p)]) for p in dict.fromkeys(paths)}
    if len(kinds) > 1:
        raise UserError("cannot combine sweep and temporal results in one plot; plot them separately")
    kind = kinds.pop()
    first = paths[0]
    out_dir = Path(out_dir) if out_dir else first.with_name(first.name.removesuffix(".jsonl") + "-figures")
    ok = stats.usable(df)
    not_drawn = df.loc[~df.index.isin(ok.index), "status"].value_counts().to_dict() if "status" in df else {}
    if kind == "sweep":
        written = plots.sweep_figures(df, out_dir)
        rows = stats.correlation_table(df)
        lines = stats.format_table(rows)
        name = "correlations"
    else:
        written = plots.temporal_figures(df, out_dir)
        rows = stats.temporal_summary(df)
        lines = [_temporal_line(r) for r in rows]
        name = "temporal_summary"
    labelled = stats.label_experiments(ok.copy())
    experiments = [{"experiment": g["experiment_label"].iloc[0], "experiment_id": ident,
                    "optimizers": list(dict.fromkeys(g["optimizer"])) if "optimizer" in g else [],
                    "files": sorted(set(g["results_file"])), "records": int(len(g)),
                    "unconverged": int(stats.unconverged(g).sum())}
                   for ident, g in labelled.groupby("experiment_id", sort=False)]
    unconverged = sum(e["unconverged"] for e in experiments)
    runs.ensure_dir(out_dir)
    runs.write_json(out_dir / f"{name}.json", rows)
    runs.atomic_write(out_dir / f"{name}.csv", pd.DataFrame(rows).to_csv(index=False))
    tables = [out_dir / f"{name}.csv", out_dir / f"{name}.json"]
    summary = {"kind": kind, "records": int(len(ok)), "records_read": int(read), "duplicates": int(duplicates),
               "not_drawn": {str(k): int(v) for k, v in not_drawn.items()}, "unconverged": unconverged,
               "experiments": experiments, "figures": [str(p) for p in written],
               "tables": [str(p) for p in tables], name: rows}
    lines += [f"{e['experiment']} ({e['experiment_id']}): {e['records']} records" + (f" ({e['unconverged']} with an unconverged "
              "sharpness ascent, drawn as open circles)" if e["unconverged"] else "") for e in experiments]
    extra = [f"{n} {k}" for k, n in summary["not_drawn"].items()] + ([f"{duplicates} duplicate(s) of the same "
                                                                      "experiment and key merged"] if duplicates else [])
    lines += [f"{len(ok)} records drawn" + (f" ({'; '.join(extra)} not drawn)" if extra else "")
              + f"; figures: {', '.join(p.name for p in written if p.suffix == '.png')}", f"written to {out_dir}"]
    emit(summary, as_json, lines)


def _temporal_line(r: dict) -> str:
    z = r.get("zeta")
    head = f"{r['experiment']}: {r['optimizer']} |A|={r['attack_size']} seed {r['seed']}" + (
        f" ζ={z:g}" if z == z and z else "")
    line = f"{head}: zero-error epoch {r['zero_error_epoch']}, {r['epochs']} epochs"
    if r.get("unconverged"):
        line += f", {r['unconverged']} of {r['measurements']} sharpness ascents not converged"
    if "rescale_epoch" in r:
        how = {"inverse": f" (W{r.get('rescale_layer', 1)}/α)", "eq9": f" (α·W{r.get('rescale_layer', 1)})"}.get(
            r.get("rescale_direction"), "")
        line += (f"; α={r['alpha']:g}{how} at epoch {r['rescale_epoch']}: sharpness {_g(r.get('sharpness_before'))} → "
                 f"{_g(r.get('sharpness_after'))}, log10 P(f) {_g(r.get('log10_prior_before'))} → "
                 f"{_g(r.get('log10_prior_after'))}, train acc {_g(r.get('train_accuracy_before'))} → "
                 f"{_g(r.get('train_accuracy_after'))}")
    return line


def _g(v) -> str:
    return "—" if v is None else f"{v:.4g}"
