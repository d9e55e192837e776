"""``tfflat sharpness`` and ``tfflat hessian``: flatness of a trained network on its training set S.

MODEL is a tfflat run — measured on its own S with Table 1's settings, the result added to
RUN/flatness.json (the library's cache: the same request on unchanged weights is answered from it) —
or a ``.keras`` file, a ModelCheckpoint folder or a SavedModel with ``--data``/``--dataset``.
"""

from __future__ import annotations

import math

import click

from tfflat import defaults

from .devices import devices_option, scope
from .inputs import check_out, data_options, echo_warnings, open_inputs, write_out
from .output import Progress, emit


@click.command()
@click.argument("model", metavar="MODEL", type=click.Path())
@data_options
@click.option("--method", type=click.Choice(["sgd", "lbfgsb"]), default="sgd", show_default=True,
              help="Projected SGD ascent (the paper's) or L-BFGS-B (Keskar et al.'s).")
@click.option("--zeta", type=float, default=None, help="Box size ζ > 0 (default: Table 1 for the task/model).")
@click.option("--lr", type=float, default=None, help="Ascent learning rate (sgd; default: Table 1).")
@click.option("--epochs", type=int, default=None, help="Passes over S (sgd; default: Table 1).")
@click.option("--batch-size", type=int, default=None, help="Ascent minibatch size (sgd; default: Table 1).")
@click.option("--track", type=click.Choice(["step", "epoch"]), default="step", show_default=True,
              help="Evaluate the full-S loss after every ascent step or every epoch (sgd).")
@click.option("--maxiter", type=int, default=defaults.LBFGSB_MAXITER, show_default=True,
              help="L-BFGS-B iterations (lbfgsb).")
@click.option("--seed", type=int, default=0, show_default=True, help="Minibatch order of the ascent (sgd).")
@click.option("--force", is_flag=True, help="Recompute even if RUN/flatness.json holds this result.")
@devices_option
@click.option("--out", type=click.Path(), default=None, help="Also write the result as JSON to this file.")
@click.option("--json", "as_json", is_flag=True, help="Print a one-object JSON summary.")
def sharpness(model, data_file, dataset, data_dir, train_size, test_size, data_seed, head, method, zeta, lr, epochs,
              batch_size, track, maxiter, seed, force, devices, out, as_json):
    """Keskar sharpness of MODEL on its training set S (Def. 2.1; Table 1 defaults).

    100 · (max over the box |Δw_i| ≤ ζ(|w_i|+1) of L(w+Δw) − L(w)) / (1 + L(w)), L the mean
    cross-entropy of the model's head on S, the network in inference mode.

    \b
    tfflat sharpness RUN                       adds to RUN/flatness.json
    tfflat sharpness m.keras --data d.npz      any Keras classifier, your data
    """
    from tfflat import validate
    from tfflat.flatness import sharpness as measure
    from tfflat.flatness import sharpness_of_run
    from tfflat.flatness.sharpness import settings_for

    check_out(out)
    validate.seed("seed", seed)
    inputs = open_inputs(model, data_file, dataset, data_dir, train_size, test_size, data_seed, head)
    given = dict(zeta=zeta, lr=lr, epochs=epochs, batch_size=batch_size, track=track, seed=seed, maxiter=maxiter)
    bar = Progress(f"sharpness ({method})", None, "epochs" if method == "sgd" else "iterations")
    callback = (lambda done, best: bar.update(done, f"max loss {best:.6g}")) if bar.enabled else None
    try:
        with echo_warnings(), scope(devices):
            if inputs.arrays is None:
                record = sharpness_of_run(inputs.opened.run, method, force=force, callback=callback, **given)
            else:
                settings = settings_for(method, inputs.task, "fcn", **given)
                bar.total = settings.get("epochs", maxiter)
                result = measure(inputs.model, inputs.arrays["x_train"], inputs.arrays["y_train"], method=method,
                                 head=head, callback=callback, **settings)
                record = {**result.to_dict(), "stored": False, "file": None}
    finally:
        bar.close()
    written = write_out(out, record)
    s = record["settings"]
    if method == "sgd":
        how = (f"sgd, ζ {s['zeta']:g}, lr {s['lr']:g}, batch {s['batch_size']}, {s['epochs']} epochs "
               f"({s['steps']} steps), full-S loss tracked every {s['track']}")
    else:
        how = f"L-BFGS-B, ζ {s['zeta']:g}, {s['iterations']} iterations ({s['evaluations']} evaluations)"
    converged = record["max_loss"] >= record["corner_loss"] * (1 - 1e-6)
    summary = {"sharpness": record["sharpness"], "log10_sharpness": _num(record["log10_sharpness"]),
               "loss": record["loss"], "max_loss": record["max_loss"], "corner_loss": record["corner_loss"],
               "converged": converged, "method": method, "head": s.get("head", "logit"),
               "seconds": round(record["seconds"], 3), "settings": s, "stored": record["stored"],
               "file": record["file"] or written}
    lines = [f"sharpness {record['sharpness']:.6g} (log10 {_num(record['log10_sharpness']):.4f})  [{how}]",
             f"loss on S {record['loss']:.6g} -> max in the box {record['max_loss']:.6g} "
             f"(first-order corner {record['corner_loss']:.6g})  {record['seconds']:.1f}s"
             + ("  (stored result; --force recomputes)" if record["stored"] else "")]
    lines += [f"saved in {f}" for f in (record["file"], written) if f]
    emit(summary, as_json, lines)


@click.command()
@click.argument("model", metavar="MODEL", type=click.Path())
@data_options
@click.option("--top-k", type=int, default=defaults.HESSIAN_TOP_K, show_default=True,
              help="How many of the largest eigenvalues (their positive ones' product is reported).")
@click.option("--probes", type=int, default=defaults.HESSIAN_PROBES, show_default=True,
              help="Rademacher probes of the Hutchinson trace estimate (0: skip).")
@click.option("--seed", type=int, default=0, show_default=True, help="Lanczos start vectors and probes.")
@click.option("--force", is_flag=True, help="Recompute even if RUN/flatness.json holds this result.")
@devices_option
@click.option("--out", type=click.Path(), default=None, help="Also write the result as JSON to this file.")
@click.option("--json", "as_json", is_flag=True, help="Print a one-object JSON summary.")
def hessian(model, data_file, dataset, data_dir, train_size, test_size, data_seed, head, top_k, probes, seed, force,
            devices, out, as_json):
    """Hessian of the loss on S at MODEL's weights: top-k eigenvalues, spectral norm, trace (App. E).

    Computed from Hessian-vector products (the Hessian is never formed), the network in inference
    mode (BatchNorm on its moving statistics). For a run the result is added to RUN/flatness.json.
    """
    from tfflat.flatness import hessian_measures, hessian_of_run

    check_out(out)
    inputs = open_inputs(model, data_file, dataset, data_dir, train_size, test_size, data_seed, head)
    bar = Progress("hessian", None, "Hessian-vector products")
    callback = bar.update if bar.enabled else None
    try:
        with echo_warnings(), scope(devices):
            if inputs.arrays is None:
                record = hessian_of_run(inputs.opened.run, top_k, probes, seed, force=force, callback=callback)
            else:
                result = hessian_measures(inputs.model, inputs.arrays["x_train"], inputs.arrays["y_train"], top_k,
                                          seed, probes=probes, head=head, callback=callback)
                record = {**result.to_dict(), "stored": False, "file": None}
    finally:
        bar.close()
    written = write_out(out, record)
    ev = record["eigenvalues"]
    summary = {"spectral_norm": record["spectral_norm"],
               f"log10_top{top_k}_product": _num(record["log10_top_product"]),
               "trace": _num(record["trace"]), "trace_stderr": _num(record["trace_stderr"]),
               "top_eigenvalues": ev, "positive": record["positive"], "loss": record["loss"],
               "head": record["settings"].get("head", "logit"), "matvecs": record["matvecs"],
               "seconds": round(record["seconds"], 3), "stored": record["stored"], "file": record["file"] or written}
    shown = ", ".join(f"{e:.4g}" for e in ev[:5]) + (", …" if len(ev) > 5 else "")
    lines = [f"spectral norm {record['spectral_norm']:.6g}   log10 product of the top {top_k} positive "
             f"eigenvalues {_num(record['log10_top_product']):.4f} ({record['positive']} of {top_k} positive)",
             f"top eigenvalues: {shown}",
             (f"trace (Hutchinson, {probes} probes) {record['trace']:.6g} ± {_num(record['trace_stderr']):.2g}"
              if probes else "trace: skipped (--probes 0)"),
             f"{record['matvecs']} Hessian-vector products, {record['seconds']:.1f}s"
             + ("  (stored result; --force recomputes)" if record["stored"] else "")]
    lines += [f"saved in {f}" for f in (record["file"], written) if f]
    emit(summary, as_json, lines)


def _num(v) -> float:
    """Stored ±inf come back from JSON as strings."""
    return float(v) if v is not None else math.nan
