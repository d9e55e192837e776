"""``tfflat prior``: log P(f) by Expectation Propagation, for a run, any Keras binary classifier with your
data, or a kernel and labels you bring."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import click

from tfflat import defaults

from .devices import devices_option, scope
from .inputs import check_out, data_options, echo_warnings, open_inputs, write_out
from .output import Progress, emit


def _load_array(path: str, what: str):
    """A ``.npy`` file or a text table (.txt, .csv, .tsv) as a numpy array; one-line error otherwise."""
    import numpy as np

    from tfflat.errors import UserError

    p = Path(path)
    if not p.is_file():
        raise UserError(f"{what} file {path} does not exist")
    try:
        if p.suffix == ".npy":
            return np.load(p, allow_pickle=False)
        return np.loadtxt(p, delimiter="," if p.suffix == ".csv" else None, ndmin=1)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {what} file {path}: {str(err).splitlines()[0]}; "
                        "give a .npy file or a whitespace/comma separated table") from None


@click.command()
@click.argument("model", metavar="MODEL", required=False, type=click.Path())
@data_options
@click.option("--kernel-file", type=click.Path(), default=None,
              help="A precomputed n×n kernel (.npy or text) instead of a model; needs --labels.")
@click.option("--labels", "labels_file", type=click.Path(), default=None,
              help="The n 0/1 labels (.npy or text) that go with --kernel-file.")
@click.option("--likelihood", type=click.Choice(["heaviside", "probit"]), default="heaviside", show_default=True,
              help="heaviside: the paper's P(f); probit: what the published figures computed (GPy).")
@click.option("--kernel", type=click.Choice(["auto", "analytic", "empirical"]), default="auto", show_default=True,
              help="auto: analytic arc-cosine kernel for ReLU FCNs, Monte-Carlo (eq. 7) otherwise.")
@click.option("--kernel-cache", type=click.Path(), default=None,
              help="Directory for kernels keyed by content (inputs + parameters), reused across runs.")
@click.option("--samples", type=int, default=None, help="Empirical kernel: random initialisations M (default 0.1·n).")
@click.option("--kernel-seed", type=int, default=0, show_default=True, help="Empirical kernel: first seed.")
@click.option("--feature-layer", default=None,
              help="Empirical kernel: the layer whose output is h (default: the input of the last Dense layer).")
@click.option("--sigma-w", type=float, default=None, help="Prior weight scale σw (default: read from the initialisers).")
@click.option("--sigma-b", type=float, default=None, help="Prior bias scale σb (default: read from the initialisers).")
@click.option("--method", type=click.Choice(["sequential", "parallel"]), default="sequential", show_default=True,
              help="EP schedule: sequential (R&W Alg. 3.5) or damped parallel updates.")
@click.option("--tol", type=float, default=None, help="Stop when |Δ ln Z| ≤ tol·max(1, |ln Z|) [default: 1e-6].")
@click.option("--max-sweeps", type=int, default=None, help="Cap on EP sweeps [default: 100].")
@click.option("--allow-unconverged", is_flag=True,
              help="Accept an EP that reached --max-sweeps unconverged (reported as converged: false) instead of an error.")
@click.option("--delta", type=float, default=defaults.PAC_BAYES_DELTA, show_default=True,
              help="δ of the PAC-Bayes bound (eq. 4).")
@click.option("--kernel-init", type=click.Choice(["default", "model", "he"]), default="default", show_default=True,
              help="Empirical kernel samples: he = He-normal weights, fresh BatchNorm (the authors' ResNet50 kernel; "
                   "the default for tfflat's ResNet50 runs), model = the model's own initialisers (default otherwise).")
@click.option("--batchnorm", type=click.Choice(["inference", "batch"]), default="inference", show_default=True,
              help="Empirical kernel: BatchNorm on its moving statistics (eval mode) or on each batch's statistics.")
@devices_option
@click.option("--out", type=click.Path(), default=None, help="Also write the result as JSON to this file.")
@click.option("--json", "as_json", is_flag=True, help="Print a one-object JSON summary.")
def prior(model, data_file, dataset, data_dir, train_size, test_size, data_seed, head, kernel_file, labels_file,
          likelihood, kernel, kernel_cache, samples, kernel_seed, feature_layer, sigma_w, sigma_b, method, tol,
          max_sweeps, allow_unconverged, delta, kernel_init, batchnorm, devices, out, as_json):
    """log P(f) of a trained network's function on S + E (true labels on S, its predictions on E).

    \b
    tfflat prior RUN                                  writes RUN/prior.json
    tfflat prior m.keras --data d.npz                 any Keras binary classifier, your data
    tfflat prior --kernel-file K.npy --labels y.npy   any kernel and 0/1 labelling

    Beside it, the GP's own error on E (gp_test_error): the EP classifier on the same kernel, fitted
    on S's labels, predicting E's true labels (for a run, or a model with y_test).
    """
    from tfflat.errors import UserError

    check_out(out)
    if (model is None) == (kernel_file is None):
        raise UserError("give either MODEL (a run, a .keras file, …) or --kernel-file K.npy --labels y.npy (not both)")
    if kernel_file is not None and labels_file is None:
        raise UserError("--kernel-file needs --labels y.npy (the 0/1 labelling f)")
    if model is not None and labels_file is not None:
        raise UserError("--labels goes with --kernel-file; a model's labels come from its data")
    bar = Progress("prior", unit="sweeps")
    kbar = Progress("kernel", unit="samples")

    def progress(stage, done, total, value):
        if stage == "kernel":
            kbar.total = total
            kbar.update(done)
        else:
            bar.update(done, f"ln Z {value:.6g}")

    where, kind = None, None
    sampling = {"batchnorm": batchnorm, **({} if kernel_init == "default" else {"init": kernel_init})}
    try:
        # a kernel file needs no TensorFlow (EP is NumPy/SciPy; its GPU backend picks its own device):
        # --devices is only checked
        if model is None:
            from tfflat.devices import parse

            parse(devices)
        with echo_warnings(), (scope(devices) if model is not None else contextlib.nullcontext()):
            if model is not None:
                from tfflat.prior import log_prior_of_model, log_prior_of_run

                inputs = open_inputs(model, data_file, dataset, data_dir, train_size, test_size, data_seed, head)
                if inputs.arrays is None:
                    if feature_layer is not None or sigma_w is not None or sigma_b is not None:
                        raise UserError("--feature-layer, --sigma-w and --sigma-b are for Keras models; a run knows its "
                                        "kernel (use --kernel)")
                    out_rec = log_prior_of_run(inputs.opened.run, kernel, likelihood, cache_dir=kernel_cache, delta=delta,
                                               method=method, tol=tol, max_sweeps=max_sweeps, samples=samples,
                                               seed=kernel_seed, save=True, allow_unconverged=allow_unconverged,
                                               progress=progress, **sampling)
                    where = out_rec["file"]
                else:
                    a = inputs.arrays
                    out_rec = log_prior_of_model(inputs.model, a["x_train"], a["y_train"], a.get("x_test"),
                                                 a.get("y_test"), head=head, kernel=kernel, likelihood=likelihood,
                                                 feature_layer=feature_layer, sigma_w=sigma_w, sigma_b=sigma_b,
                                                 samples=samples, seed=kernel_seed, cache_dir=kernel_cache,
                                                 delta=delta, method=method, tol=tol, max_sweeps=max_sweeps,
                                                 allow_unconverged=allow_unconverged, progress=progress, **sampling)
                kind = out_rec["kernel"]["kind"]
            else:
                from tfflat.prior import log_prior

                k = _load_array(kernel_file, "kernel")
                y = _load_array(labels_file, "labels")
                out_rec = log_prior(k, y, likelihood, train_size=train_size, delta=delta, method=method,
                                    tol=tol, max_sweeps=max_sweeps, check=True, allow_unconverged=allow_unconverged,
                                    progress=lambda s, lz: progress("ep", s, None, lz))
    finally:
        kbar.close()
        bar.close()
    written = write_out(out, out_rec)
    ep = out_rec["ep"]
    summary = {"log10_prior": out_rec["log10_prior"], "ln_prior": out_rec["ln_prior"],
               "pac_bayes_bound": out_rec["pac_bayes_bound"], "converged": out_rec["converged"],
               "likelihood": likelihood, "sweeps": out_rec["sweeps"], "n": out_rec["n"],
               "gp_test_error": out_rec.get("gp_test_error"), "message": ep.get("message") or None,
               "seconds": round(ep["seconds"], 3)}
    if out_rec.get("gp_test_error_note"):
        summary["gp_test_error_note"] = out_rec["gp_test_error_note"]
    if model is not None:
        summary.update(kernel=kind, model=str(model), file=where or written)
        if "function" in out_rec:
            summary.update(train_accuracy=out_rec["function"].get("train_accuracy"),
                           test_accuracy=out_rec["function"].get("test_accuracy"))
        if inputs.arrays is None:
            summary["run_dir"] = str(model)
    state = "converged" if out_rec["converged"] else f"NOT converged ({ep['message'] or 'sweep cap reached'})"
    lines = [(f"log10 P(f) = {out_rec['log10_prior']:.4f}   (ln P(f) = {out_rec['ln_prior']:.4f}; {likelihood} "
              f"likelihood, n = {out_rec['n']}, EP {method}: {out_rec['sweeps']} sweeps, {state})")]
    if out_rec["ln_prior"] == -math.inf:
        lines.append(f"P(f) = 0: {ep.get('message') or 'EP found no mass on this labelling'}")
    if out_rec["pac_bayes_bound"] is not None:
        lines.append(f"PAC-Bayes bound (δ = {delta}): error on E ≤ {out_rec['pac_bayes_bound']:.4f}")
    if out_rec.get("gp_test_error") is not None:
        lines.append(f"GP (EP classifier on the same kernel, fitted on S) error on E: {out_rec['gp_test_error']:.4f}"
                     + (f"   (the network's: {1 - summary['test_accuracy']:.4f})"
                        if summary.get("test_accuracy") is not None else ""))
    elif out_rec.get("gp_test_error_note"):
        lines.append(f"GP error on E: not available ({out_rec['gp_test_error_note']})")
    lines += [f"written to {f}" for f in (where, written) if f]
    emit(summary, as_json, lines)
