"""``tfflat boolean``: P(f) of the n = 7 Boolean system by direct sampling, and the flatness of its
most probable functions (paper §5.1, Figs. 2, S7, S8) — needs no data, so it runs anywhere."""

from __future__ import annotations

import inspect
import math

import click

from tfflat import defaults
from tfflat.boolean.experiment import run as _run
from tfflat.prior.ep import LIKELIHOODS

from .output import Progress, emit

DEFAULT = {k: p.default for k, p in inspect.signature(_run).parameters.items()}     # the library's


def _count(value: str, name: str) -> int:
    """'100000', '1e8' or '1_000_000' → int, or a one-line error."""
    from tfflat.errors import UserError

    try:
        v = float(str(value).replace("_", ""))
    except ValueError:
        raise UserError(f"{name} must be a number such as 1000000 or 1e8, got {value!r}") from None
    if not math.isfinite(v) or v < 0 or v != int(v):
        raise UserError(f"{name} must be a non-negative whole number, got {value}")
    return int(v)


@click.command()
@click.option("--samples", default=str(DEFAULT["samples"]), show_default=True,
              help="Weight samples to draw (the paper: 1e8).")
@click.option("--top", type=int, default=DEFAULT["top"], show_default=True,
              help="Train and measure the K most frequent functions (the paper: 1000; 0: sampling only).")
@click.option("--seed", type=int, default=DEFAULT["seed"], show_default=True, help="Weight stream and training seeds.")
@click.option("--bits", type=int, default=DEFAULT["bits"], show_default=True, help="n, the number of inputs.")
@click.option("--min-count", type=int, default=DEFAULT["min_count"], show_default=True,
              help="Write functions seen at least this often to functions.csv.")
@click.option("--overtrain", type=int, default=DEFAULT["overtrain"], show_default=True,
              help="SGD epochs after the zero-error epoch before measuring flatness.")
@click.option("--likelihood", type=click.Choice(list(LIKELIHOODS)), default=DEFAULT["likelihood"],
              show_default=True,
              help="EP likelihood of the GP check (heaviside: the orthant probability that sampling measures).")
@click.option("--out", type=click.Path(file_okay=False), default="results/boolean", show_default=True,
              help="Output folder (a rerun with the same settings resumes).")
@click.option("--no-figures", is_flag=True, help="Skip the figures (draw them later with `tfflat plot OUT`).")
@click.option("--json", "as_json", is_flag=True, help="Print a one-object JSON summary.")
def boolean(samples, top, seed, bits, min_count, overtrain, likelihood, out, no_figures, as_json):
    """Sample P(f) of an n-bit 7-40-40-1 ReLU FCN (σw = 1, σb = 0.1) and measure its top functions.

    \b
    Writes OUT/functions.csv (function,count,log10_prior; most frequent first), OUT/top.csv
    (per top function: sampled and EP log10 P(f), zero-error epoch, sharpness, Hessian spectral
    norm), OUT/boolean.json (summary, correlations) and the Fig. 2 / S7 / S8 / EP-vs-sampled panels.
    """
    from tfflat.errors import UserError

    samples = _count(samples, "--samples")
    if top < 0:
        raise UserError(f"--top must be ≥ 0, got {top}")
    if not 1 <= bits <= defaults.BOOLEAN_MAX_BITS:
        raise UserError(f"--bits must be between 1 and {defaults.BOOLEAN_MAX_BITS}, got {bits}")
    if min_count < 1:
        raise UserError(f"--min-count must be ≥ 1, got {min_count}")
    if overtrain < 0:
        raise UserError(f"--overtrain must be ≥ 0, got {overtrain}")
    from tfflat import runs

    runs.ensure_dir(out)
    bar = Progress("sampling", samples, "samples")
    tbar = [None]

    def top_progress(done, total, row):
        if tbar[0] is None:
            tbar[0] = Progress("top functions", total, "functions")
        tbar[0].update(done, f"rank {row['rank']} zero-error epoch {row['zero_error_epoch']}")

    def sample_progress(done, total):
        bar.update(done)
        if done >= total:
            bar.close()

    try:
        summary = _run(out, samples=samples, top=top, seed=seed, bits=bits, min_count=min_count,
                      overtrain=overtrain, likelihood=likelihood, figures=not no_figures,
                      sample_progress=sample_progress, top_progress=top_progress)
    finally:
        if tbar[0] is not None:
            tbar[0].close()
    keys = ("samples", "distinct", "seconds", "samples_per_second", "table", "table_rows", "top", "top_table",
            "correlations", "figures")
    result = {k: summary[k] for k in keys if k in summary}
    lines = [f"{summary['samples']} samples, {summary['distinct']} distinct functions, "
             f"{summary['seconds']:.1f}s ({summary['samples_per_second']:,.0f} samples/s)",
             f"table: {summary['table']} ({summary['table_rows']} functions seen ≥ {min_count}×)"]
    if summary.get("top_table"):
        c = summary["correlations"]
        lines.append(f"top {summary['top']} functions: {summary['top_table']} "
                     f"({summary['zero_error']} reached zero error)")
        for name, label in (("log10_prior~log10_sharpness", "log10 P(f) vs log10 sharpness"),
                            ("log10_prior~log10_corner_sharpness", "log10 P(f) vs log10 corner sharpness"),
                            ("log10_prior~log10_spectral_norm", "log10 P(f) vs log10 ‖H‖"),
                            ("log10_sharpness~log10_spectral_norm", "log10 sharpness vs log10 ‖H‖"),
                            ("log10_prior~log10_prior_ep", "log10 P(f) sampled vs EP")):
            r = c[name]
            lines.append(f"  {label}: Pearson r = {r['pearson_r']:.3f}, Spearman ρ = {r['spearman_rho']:.3f} "
                         f"(n = {r['n']})")
    if summary.get("figures"):
        lines.append(f"figures: {len(summary['figures'])} files in {out}")
    emit(result, as_json, lines)
