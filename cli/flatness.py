"""``tfflat sharpness`` and ``tfflat hessian``: flatness of a trained run, saved in RUN/flatness.json.

RUN/flatness.json holds ``{"sharpness": {"sgd": {...}, "lbfgsb": {...}}, "hessian": {...}}``; each
command re-reads the file and replaces only its own entry, atomically. An entry records its settings,
a hash of the weights it was measured on and the package versions; rerunning a command with the
same settings on unchanged weights prints the stored result (``--force`` recomputes).
"""

from __future__ import annotations

import hashlib
import math
import time

import click

from tfflat import defaults

from .output import Progress, emit

FILE = "flatness"


@click.command()
@click.argument("run", type=click.Path())
@click.option("--method", type=click.Choice(["sgd", "lbfgsb"]), default="sgd", show_default=True,
              help="Projected SGD ascent (the paper's) or L-BFGS-B (Keskar et al.'s).")
@click.option("--zeta", type=float, default=None, help="Box size ζ > 0 (default: Table 1 for the run's task/model).")
@click.option("--lr", type=float, default=None, help="Ascent learning rate (sgd; default: Table 1).")
@click.option("--epochs", type=int, default=None, help="Passes over S (sgd; default: Table 1).")
@click.option("--batch-size", type=int, default=None, help="Ascent minibatch size (sgd; default: Table 1).")
@click.option("--track", type=click.Choice(["step", "epoch"]), default="step", show_default=True,
              help="Evaluate the full-S loss after every ascent step or every epoch (sgd).")
@click.option("--maxiter", type=int, default=defaults.LBFGSB_MAXITER, show_default=True,
              help="L-BFGS-B iterations (lbfgsb).")
@click.option("--seed", type=int, default=0, show_default=True, help="Minibatch order of the ascent (sgd).")
@click.option("--force", is_flag=True, help="Recompute even if RUN/flatness.json holds this result.")
@click.option("--json", "as_json", is_flag=True, help="Print a one-object JSON summary.")
def sharpness(run, method, zeta, lr, epochs, batch_size, track, maxiter, seed, force, as_json):
    """Keskar sharpness of RUN's network on its training set S (Def. 2.1; Table 1 defaults).

    100 · (max over the box |Δw_i| ≤ ζ(|w_i|+1) of L(w+Δw) − L(w)) / (1 + L(w)), L the mean sigmoid
    cross-entropy on S, the network in inference mode. The result is added to RUN/flatness.json.
    """
    from tfflat import runs
    from tfflat.flatness.sharpness import check_settings, table1

    run_dir = runs.check(run)
    config = runs.read_json(run_dir / runs.RUN_FILE)["config"]
    given = {"zeta": zeta, "lr": lr, "epochs": epochs, "batch_size": batch_size}
    needed = ("zeta",) if method == "lbfgsb" else tuple(given)
    settings = {} if all(given[k] is not None for k in needed) else table1(config["dataset"], config["model"])
    settings.update({k: v for k, v in given.items() if v is not None})
    settings = {k: settings[k] for k in needed}
    if method == "sgd":
        check_settings(settings["zeta"], method, settings["lr"], settings["epochs"], settings["batch_size"],
                       track=track)
        settings.update(track=track, seed=seed)
    else:
        check_settings(settings["zeta"], method, maxiter=maxiter)
        settings.update(maxiter=maxiter)

    from tfflat.flatness import sharpness as measure

    loaded = runs.load(run_dir)
    fingerprint = weights_hash(loaded.model)
    stored = _read(run_dir).get("sharpness", {}).get(method)
    if not force and _same(stored, settings, fingerprint):
        record, reused = stored, True
    else:
        total = settings.get("epochs", maxiter)
        bar = Progress(f"sharpness ({method})", total, "epochs" if method == "sgd" else "iterations")
        callback = (lambda done, best: bar.update(done, f"max loss {best:.6g}")) if bar.enabled else None
        try:
            result = measure(loaded.model, loaded.splits.x_train, loaded.splits.y_train, method=method,
                             callback=callback, **settings)
        finally:
            bar.close()
        record, reused = {**result.to_dict(), **_provenance(fingerprint)}, False
        _write(run_dir, "sharpness", record, method)
    s = record["settings"]
    if method == "sgd":
        how = (f"sgd, ζ {s['zeta']:g}, lr {s['lr']:g}, batch {s['batch_size']}, {s['epochs']} epochs "
               f"({s['steps']} steps), full-S loss tracked every {s['track']}")
    else:
        how = f"L-BFGS-B, ζ {s['zeta']:g}, {s['iterations']} iterations ({s['evaluations']} evaluations)"
    summary = {"sharpness": record["sharpness"], "log10_sharpness": _num(record["log10_sharpness"]),
               "loss": record["loss"], "max_loss": record["max_loss"], "corner_loss": record["corner_loss"],
               "method": method, "seconds": round(record["seconds"], 3), "settings": s, "stored": reused,
               "file": str(run_dir / f"{FILE}.json")}
    lines = [f"sharpness {record['sharpness']:.6g} (log10 {_num(record['log10_sharpness']):.4f})  [{how}]",
             f"loss on S {record['loss']:.6g} -> max in the box {record['max_loss']:.6g} "
             f"(first-order corner {record['corner_loss']:.6g})  {record['seconds']:.1f}s"
             + ("  (stored result; --force recomputes)" if reused else ""),
             f"saved in {summary['file']}"]
    if record["max_loss"] < record["corner_loss"] * (1 - 1e-6):
        click.echo("warning: the maximiser ended below the loss at the box's first-order corner; "
                   "raise --lr/--epochs (sgd) or --maxiter (lbfgsb)", err=True)
    emit(summary, as_json, lines)


@click.command()
@click.argument("run", type=click.Path())
@click.option("--top-k", type=int, default=defaults.HESSIAN_TOP_K, show_default=True,
              help="How many of the largest eigenvalues (their positive ones' product is reported).")
@click.option("--probes", type=int, default=defaults.HESSIAN_PROBES, show_default=True,
              help="Rademacher probes of the Hutchinson trace estimate (0: skip).")
@click.option("--seed", type=int, default=0, show_default=True, help="Lanczos start vectors and probes.")
@click.option("--force", is_flag=True, help="Recompute even if RUN/flatness.json holds this result.")
@click.option("--json", "as_json", is_flag=True, help="Print a one-object JSON summary.")
def hessian(run, top_k, probes, seed, force, as_json):
    """Hessian of the loss on S at RUN's weights: top-k eigenvalues, spectral norm, trace (App. E).

    Computed from Hessian-vector products (the Hessian is never formed), the network in inference
    mode (BatchNorm on its moving statistics). The result is added to RUN/flatness.json.
    """
    from tfflat import runs
    from tfflat.errors import UserError

    run_dir = runs.check(run)
    if top_k < 1:
        raise UserError(f"--top-k must be ≥ 1, got {top_k}")
    if probes < 0:
        raise UserError(f"--probes must be ≥ 0, got {probes}")

    from tfflat.flatness import hessian_measures

    loaded = runs.load(run_dir)
    n_params = sum(int(math.prod(v.shape)) for v in loaded.model.trainable_variables)
    if top_k > n_params:
        raise UserError(f"--top-k {top_k} exceeds the network's {n_params} parameters; choose at most {n_params}")
    fingerprint = weights_hash(loaded.model)
    stored = _read(run_dir).get("hessian")
    settings = {"top_k": top_k, "probes": probes, "seed": seed}
    if not force and _same(stored, settings, fingerprint):
        record, reused = stored, True
    else:
        bar = Progress("hessian", None, "Hessian-vector products")
        try:
            result = hessian_measures(loaded.model, loaded.splits.x_train, loaded.splits.y_train, top_k, seed,
                                      probes=probes, callback=bar.update if bar.enabled else None)
        finally:
            bar.close()
        record, reused = {**result.to_dict(), **_provenance(fingerprint)}, False
        _write(run_dir, "hessian", record)
    ev = record["eigenvalues"]
    summary = {"spectral_norm": record["spectral_norm"],
               f"log10_top{top_k}_product": _num(record["log10_top_product"]),
               "trace": _num(record["trace"]), "trace_stderr": _num(record["trace_stderr"]),
               "top_eigenvalues": ev, "positive": record["positive"], "loss": record["loss"],
               "matvecs": record["matvecs"], "seconds": round(record["seconds"], 3), "stored": reused,
               "file": str(run_dir / f"{FILE}.json")}
    shown = ", ".join(f"{e:.4g}" for e in ev[:5]) + (", …" if len(ev) > 5 else "")
    lines = [f"spectral norm {record['spectral_norm']:.6g}   log10 product of the top {top_k} positive "
             f"eigenvalues {_num(record['log10_top_product']):.4f} ({record['positive']} of {top_k} positive)",
             f"top eigenvalues: {shown}",
             (f"trace (Hutchinson, {probes} probes) {record['trace']:.6g} ± {record['trace_stderr']:.2g}"
              if probes else "trace: skipped (--probes 0)"),
             f"{record['matvecs']} Hessian-vector products, {record['seconds']:.1f}s"
             + ("  (stored result; --force recomputes)" if reused else ""),
             f"saved in {summary['file']}"]
    emit(summary, as_json, lines)


def weights_hash(model) -> str:
    """SHA-1 of all the model's weights (trainable and not), to tell whether a stored result still applies."""
    h = hashlib.sha1()
    for w in model.get_weights():
        h.update(w.tobytes())
    return h.hexdigest()


def _provenance(fingerprint: str) -> dict:
    from tfflat import runs

    return {"weights_sha1": fingerprint, "computed": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "versions": runs.versions()}


def _read(run_dir) -> dict:
    from tfflat import runs

    path = run_dir / f"{FILE}.json"
    return runs.read_json(path) if path.exists() else {}


def _write(run_dir, measure: str, record: dict, method: str | None = None) -> None:
    """Re-read RUN/flatness.json, replace this measure's entry, write it back atomically."""
    from tfflat import runs

    data = _read(run_dir)
    if method is None:
        data[measure] = record
    else:
        data.setdefault(measure, {})[method] = record
    runs.update(run_dir, FILE, data)


def _same(stored: dict | None, settings: dict, fingerprint: str) -> bool:
    return bool(stored) and stored.get("weights_sha1") == fingerprint and all(
        stored.get("settings", {}).get(k) == v for k, v in settings.items())


def _num(v) -> float:
    """Stored ±inf come back from JSON as strings."""
    return float(v) if v is not None else math.nan
