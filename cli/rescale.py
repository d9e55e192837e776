"""``tfflat rescale``: α-rescale a trained network (Dinh et al. 2017; App. F eq. 9) into a new run."""

from __future__ import annotations

import click

from .output import emit


@click.command()
@click.argument("run", type=click.Path())
@click.option("--alpha", type=float, required=True, help="Scale factor α > 0 (Fig. 5: 5.9).")
@click.option("--layer", type=int, default=1, show_default=True,
              help="Hidden Dense layer i (1-based): W_i, b_i × α and W_{i+1} ÷ α.")
@click.option("--neuron-wise", "units", default=None, metavar="UNITS",
              help="Rescale only these hidden units of the layer (0-based), e.g. 0,3,5-7.")
@click.option("--out", type=click.Path(), required=True, help="New run directory for the rescaled network.")
@click.option("--json", "as_json", is_flag=True, help="Print a one-object JSON summary.")
def rescale(run, alpha, layer, units, out, as_json):
    """Rescale RUN's network without changing its function and save it as a new run (--out)."""
    from tfflat.rescale import parse_units, rescale_run

    rec = rescale_run(run, out, alpha, layer, None if units is None else parse_units(units))
    what = f"units {units} of layer {layer}" if units is not None else f"layer {layer}"
    emit(rec, as_json, [
        f"rescaled {what} ({' → '.join(rec['layers'])}) by α = {alpha:g}",
        f"logits on S ∪ A ∪ E: max relative change {rec['max_rel_logit_change']:.2e}, "
        f"{rec['labels_changed']} labels changed",
        f"run saved to {out}"])
