"""``tfflat rescale``: α-rescale a trained network (Dinh et al. 2017; App. F eq. 9) into a new run or file."""

from __future__ import annotations

import click

from .output import emit


@click.command()
@click.argument("model", metavar="MODEL", type=click.Path())
@click.option("--alpha", type=float, required=True, help="Scale factor α > 0 (Fig. 5: 5.9).")
@click.option("--layer", type=int, default=1, show_default=True,
              help="Hidden Dense layer i (1-based): W_i, b_i × α and W_{i+1} ÷ α.")
@click.option("--neuron-wise", "units", default=None, metavar="UNITS",
              help="Rescale only these hidden units of the layer (0-based), e.g. 0,3,5-7.")
@click.option("--out", type=click.Path(), required=True,
              help="New run directory (MODEL a run) or new .keras file (MODEL a .keras file or checkpoint folder).")
@click.option("--data", "data_file", type=click.Path(), default=None, metavar="FILE.npz",
              help="A Keras model: check the function on these x_train (default: random inputs).")
@click.option("--data-dir", type=click.Path(), default=None,
              help="A run whose data moved: where its data files are now.")
@click.option("--json", "as_json", is_flag=True, help="Print a one-object JSON summary.")
def rescale(model, alpha, layer, units, out, data_file, data_dir, as_json):
    """Rescale MODEL's network without changing its function and save it as a new run or .keras file.

    MODEL is a tfflat run (saved as a new run directory --out) or a .keras file / ModelCheckpoint
    folder (saved as the new .keras file --out).
    """
    from pathlib import Path

    from tfflat import runs
    from tfflat.rescale import parse_units, rescale_model_file, rescale_run

    parsed = None if units is None else parse_units(units)
    if runs.is_run(model) or not Path(model).exists():
        rec = rescale_run(model, out, alpha, layer, parsed, data_dir=data_dir)
        saved = f"run saved to {out}"
    else:
        if data_dir is not None:
            from tfflat.errors import UserError

            raise UserError("--data-dir is for a run whose data moved; a Keras model is checked on --data")
        x = None
        if data_file is not None:
            from tfflat.data.arrays import load_npz

            x = load_npz(data_file)["x_train"]
        rec = rescale_model_file(model, out, alpha, layer, parsed, x=x)
        saved = f"model saved to {out}"
    what = f"units {units} of layer {layer}" if units is not None else f"layer {layer}"
    emit(rec, as_json, [
        f"rescaled {what} ({' → '.join(rec['layers'])}) by α = {alpha:g}",
        f"outputs on {'S ∪ A ∪ E' if 'run_dir' in rec else str(rec['checked_on']) + ' inputs'}: max relative change "
        f"{rec['max_rel_logit_change']:.2e}, {rec['labels_changed']} labels changed",
        saved])
