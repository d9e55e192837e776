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
    return "temporal" if "after_rescale" in df else "sweep"


@click.command()
@click.argument("results_paths", metavar="RESULTS...", nargs=-1, required=True, type=click.Path())
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for figures and tables (default: next to RESULTS, named RESULTS-figures).")
@click.option("--json", "as_json", is_flag=True, help="Print a one-object JSON summary.")
def plot(results_paths, out_dir, as_json):
    """Plot results: a sweep or temporal RESULTS.jsonl (several sweep files, e.g. shards, are
    combined) or a `tfflat boolean` output folder. Correlations (Pearson, Spearman, Kendall with
    p-values) are printed and saved as CSV and JSON."""
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
    kinds = {_kind(p, df) for p in paths}
    if len(kinds) > 1:
        raise UserError("cannot combine sweep and temporal results in one plot")
    kind = kinds.pop()
    first = paths[0]
    out_dir = Path(out_dir) if out_dir else first.with_name(first.name.removesuffix(".jsonl") + "-figures")
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
    runs.ensure_dir(out_dir)
    runs.write_json(out_dir / f"{name}.json", rows)
    runs.atomic_write(out_dir / f"{name}.csv", pd.DataFrame(rows).to_csv(index=False))
    tables = [out_dir / f"{name}.csv", out_dir / f"{name}.json"]
    summary = {"kind": kind, "records": len(df), "figures": [str(p) for p in written],
               "tables": [str(p) for p in tables], name: rows}
    emit(summary, as_json, lines + [f"{len(df)} records; figures: {', '.join(p.name for p in written)}",
                                    f"written to {out_dir}"])


def _temporal_line(r: dict) -> str:
    z = r.get("zeta")
    head = f"{r['optimizer']} |A|={r['attack_size']} seed {r['seed']}" + (f" ζ={z:g}" if z == z and z else "")
    line = f"{head}: zero-error epoch {r['zero_error_epoch']}, {r['epochs']} epochs"
    if "rescale_epoch" in r:
        line += (f"; α={r['alpha']:g} at epoch {r['rescale_epoch']}: sharpness {_g(r.get('sharpness_before'))} → "
                 f"{_g(r.get('sharpness_after'))}, log10 P(f) {_g(r.get('log10_prior_before'))} → "
                 f"{_g(r.get('log10_prior_after'))}, train acc {_g(r.get('train_accuracy_before'))} → "
                 f"{_g(r.get('train_accuracy_after'))}")
    return line


def _g(v) -> str:
    return "—" if v is None else f"{v:.4g}"
