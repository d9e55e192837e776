"""``tfflat prior``: log P(f) by Expectation Propagation, for a run or for a kernel and labels you bring."""

from __future__ import annotations

from pathlib import Path

import click

from tfflat import defaults

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
@click.argument("run_dir", required=False, type=click.Path())
@click.option("--kernel-file", type=click.Path(), default=None,
              help="A precomputed n×n kernel (.npy or text) instead of a run; needs --labels.")
@click.option("--labels", "labels_file", type=click.Path(), default=None,
              help="The n 0/1 labels (.npy or text) that go with --kernel-file.")
@click.option("--likelihood", type=click.Choice(["heaviside", "probit"]), default="heaviside", show_default=True,
              help="heaviside: the paper's P(f); probit: what the published figures computed (GPy).")
@click.option("--kernel", type=click.Choice(["auto", "analytic", "empirical"]), default="auto", show_default=True,
              help="auto: analytic arc-cosine kernel for FCNs, Monte-Carlo (eq. 7) otherwise.")
@click.option("--kernel-cache", type=click.Path(), default=None,
              help="Directory for kernels keyed by content (inputs + parameters), reused across runs.")
@click.option("--samples", type=int, default=None, help="Empirical kernel: random initialisations M (default 0.1·n).")
@click.option("--kernel-seed", type=int, default=0, show_default=True, help="Empirical kernel: first seed.")
@click.option("--method", type=click.Choice(["sequential", "parallel"]), default="sequential", show_default=True,
              help="EP schedule: sequential (R&W Alg. 3.5) or damped parallel updates.")
@click.option("--tol", type=float, default=None, help="Stop when |Δ ln Z| ≤ tol·max(1, |ln Z|) [default: 1e-6].")
@click.option("--max-sweeps", type=int, default=None, help="Cap on EP sweeps [default: 100].")
@click.option("--delta", type=float, default=defaults.PAC_BAYES_DELTA, show_default=True,
              help="δ of the PAC-Bayes bound (eq. 4).")
@click.option("--train-size", type=int, default=None,
              help="With --kernel-file: |S| for the PAC-Bayes bound (a run knows its own).")
@click.option("--json", "as_json", is_flag=True, help="Print a one-object JSON summary.")
def prior(run_dir, kernel_file, labels_file, likelihood, kernel, kernel_cache, samples, kernel_seed, method, tol,
          max_sweeps, delta, train_size, as_json):
    """log P(f) of a trained network's function on S + E (true labels on S, its predictions on E).

    \b
    tfflat prior RUN                                  writes RUN/prior.json
    tfflat prior --kernel-file K.npy --labels y.npy   any kernel and 0/1 labelling
    """
    from tfflat.errors import UserError

    if (run_dir is None) == (kernel_file is None):
        raise UserError("give either a run directory or --kernel-file K.npy --labels y.npy (not both)")
    if kernel_file is not None and labels_file is None:
        raise UserError("--kernel-file needs --labels y.npy (the 0/1 labelling f)")
    if run_dir is not None and labels_file is not None:
        raise UserError("--labels goes with --kernel-file; a run's labels come from the run itself")
    bar = Progress("prior", unit="sweeps")
    kbar = Progress("kernel", unit="samples")

    def progress(stage, done, total, value):
        if stage == "kernel":
            kbar.total = total
            kbar.update(done)
        else:
            bar.update(done, f"ln Z {value:.6g}")

    if run_dir is not None:
        from tfflat import runs
        from tfflat.prior import log_prior_of_run

        runs.check(run_dir)
        try:
            out = log_prior_of_run(run_dir, kernel, likelihood, cache_dir=kernel_cache, delta=delta, method=method,
                                   tol=tol, max_sweeps=max_sweeps, samples=samples, seed=kernel_seed,
                                   progress=progress)
        finally:
            if kbar.last:
                kbar.close()
            bar.close()
        path = Path(run_dir) / "prior.json"
        previous = runs.read_json(path) if path.is_file() else {}
        by_lik = dict(previous.get("by_likelihood", {}))
        by_lik[likelihood] = {k: out[k] for k in ("log10_prior", "ln_prior", "pac_bayes_bound", "converged")}
        runs.update(run_dir, "prior", {**out, "by_likelihood": by_lik, "versions": runs.versions()})
        where = f"written to {path}"
    else:
        from tfflat.prior import log_prior

        k = _load_array(kernel_file, "kernel")
        y = _load_array(labels_file, "labels")
        try:
            out = log_prior(k, y, likelihood, train_size=train_size, delta=delta, method=method, tol=tol,
                            max_sweeps=max_sweeps, check=True,
                            progress=lambda s, lz: progress("ep", s, None, lz))
        finally:
            bar.close()
        where = None
    ep = out["ep"]
    summary = {"log10_prior": out["log10_prior"], "ln_prior": out["ln_prior"],
               "pac_bayes_bound": out["pac_bayes_bound"], "converged": out["converged"],
               "likelihood": likelihood, "sweeps": out["sweeps"], "n": out["n"], "seconds": round(ep["seconds"], 3)}
    if run_dir is not None:
        summary.update(kernel=out["kernel"]["kind"], run_dir=str(run_dir))
    state = "converged" if out["converged"] else f"NOT converged ({ep['message'] or 'sweep cap reached'})"
    lines = [(f"log10 P(f) = {out['log10_prior']:.4f}   (ln P(f) = {out['ln_prior']:.4f}; {likelihood} likelihood, "
              f"n = {out['n']}, EP {method}: {out['sweeps']} sweeps, {state})")]
    if out["pac_bayes_bound"] is not None:
        lines.append(f"PAC-Bayes bound (δ = {delta}): error on E ≤ {out['pac_bayes_bound']:.4f}")
    if where:
        lines.append(where)
    emit(summary, as_json, lines)
