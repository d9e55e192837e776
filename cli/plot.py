"""``tfflat plot``: figures (PNG + PDF) and correlation tables from sweep, temporal or boolean results."""

from __future__ import annotations

from pathlib import Path

import click

from .output import emit


@click.command()
@click.argument("results_paths", metavar="RESULTS...", nargs=-1, required=True, type=click.Path())
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for figures and tables (default: next to RESULTS, named RESULTS-figures).")
@click.option("--invariance", type=click.Path(dir_okay=False), default=None, metavar="FILE.json",
              help="The measure table's α-invariance as measured on one network: the --out of "
                   "`tfflat flatness RUN --invariance` (default: each measure's expected answer).")
@click.option("--json", "as_json", is_flag=True, help="Print a one-object JSON summary.")
def plot(results_paths, out_dir, invariance, as_json):
    """Plot results: sweep or temporal RESULTS.jsonl files, or a `tfflat boolean` output folder.

    Several files are drawn together: shards of one experiment are merged (the same key once), and
    different experiments (e.g. the MNIST and CIFAR sweeps of Fig. 3) become labelled panels of one
    figure. Correlations (Pearson, Spearman, Kendall with p-values) per experiment, optimizer and
    overtraining epoch are printed and saved as CSV and JSON; `records` in --json is how many
    records were drawn. Records that carry measures of the flatness zoo (`[flatness] measures`,
    `tfflat sweep --measures`) add one panel per measure and the measure table: Kendall's τ and
    Jiang et al.'s granulated τ with generalization per optimizer, beside log10 P(f), and each
    measure's invariance to α-rescaling (measures.csv, measures.json)."""
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
    from tfflat.experiments import plots, stats

    summary = plots.plot_results(paths, out_dir, invariance)
    rows = summary[summary["table"]]
    lines = stats.format_table(rows) if summary["kind"] == "sweep" else [_temporal_line(r) for r in rows]
    if summary["measures"]:
        lines += ["", *stats.format_measure_table(summary["measures"]), ""]
    for e in summary["experiments"]:
        lines.append(f"{e['experiment']} ({e['experiment_id']}): {e['records']} records" + (
            f" ({e['unconverged']} with an unconverged sharpness ascent, drawn as open circles)"
            if e["unconverged"] else ""))
    extra = [f"{n} {k}" for k, n in summary["not_drawn"].items()]
    if summary["duplicates"]:
        extra.append(f"{summary['duplicates']} duplicate(s) of the same experiment and key merged")
    pngs = [Path(p).name for p in summary["figures"] if p.endswith(".png")]
    lines += [f"{summary['records']} records drawn" + (f" ({'; '.join(extra)} not drawn)" if extra else "")
              + f"; figures: {', '.join(pngs)}", f"written to {summary['out']}"]
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
