"""log P(f) of a trained network's function on S + E (SPEC §5): f, the kernel that matches the model,
EP, the PAC-Bayes bound — and a content-keyed kernel cache shared by every run of a sweep.

A sweep computes the kernel once and calls EP per run::

    k = kernel_for(spec, x, cache_dir="runs/kernels")          # x = S + E inputs
    for run in runs:
        res = log_prior(k, labels_of(run), train_size=500, check=False)
"""

from __future__ import annotations

import hashlib
import json
import time
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np

from tfflat import defaults
from tfflat.errors import UserError

KERNELS = ("auto", "analytic", "empirical")
KERNEL_VERSION = 1        # bump when a kernel's definition or numerics change: old cache files stop matching


def kernel_params(spec: dict, kernel: str = "auto", *, task: str | None = None, samples: int | None = None,
                  seed: int = 0, n: int | None = None) -> dict:
    """The complete description of the kernel for ``spec`` (what the cache key hashes).

    ``auto`` is the analytic arc-cosine kernel for FCNs and the empirical kernel (eq. 7) otherwise.
    """
    if kernel not in KERNELS:
        raise UserError(f"unknown kernel {kernel!r}; choose {', '.join(KERNELS)}")
    kind = spec.get("kind")
    if kernel == "auto":
        kernel = "analytic" if kind == "fcn" else "empirical"
    sw_task, sb_task = defaults.SIGMAS.get(task, defaults.SIGMAS["mnist"])
    sigma_w, sigma_b = float(spec.get("sigma_w", sw_task)), float(spec.get("sigma_b", sb_task))
    if kernel == "analytic":
        if kind != "fcn":
            raise UserError(f"the analytic kernel exists only for fully connected ReLU networks, not {kind!r}; "
                            "use --kernel empirical")
        return {"kind": "analytic", "depth": len(spec["widths"]), "sigma_w": sigma_w, "sigma_b": sigma_b,
                "version": KERNEL_VERSION}
    if samples is None and n is not None:
        samples = max(1, round(defaults.EMPIRICAL_KERNEL_FRACTION * n))
    return {"kind": "empirical", "model_spec": spec, "samples": samples, "seed": int(seed),
            "sigma_w": sigma_w, "sigma_b": sigma_b, "version": KERNEL_VERSION}


def kernel_key(x: np.ndarray, params: dict) -> str:
    """SHA-256 of the exact input bytes (shape, dtype, values) and the kernel parameters."""
    x = np.ascontiguousarray(x)
    h = hashlib.sha256()
    h.update(json.dumps(params, sort_keys=True, default=str).encode())
    h.update(f"{x.dtype.str}{x.shape}".encode())
    h.update(memoryview(x).cast("B"))
    return h.hexdigest()


def compute_kernel(x: np.ndarray, params: dict, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """The kernel described by :func:`kernel_params` on inputs ``x``, float64 (n, n)."""
    from tfflat.prior import kernels

    if params["kind"] == "analytic":
        return kernels.nngp_kernel(x, params["depth"], params["sigma_w"], params["sigma_b"])
    from tfflat import models

    return kernels.empirical_kernel(x, partial(models.build, params["model_spec"]), params["samples"],
                                    sigma_w=params["sigma_w"], sigma_b=params["sigma_b"], seed=params["seed"],
                                    progress=progress)


def kernel_for(spec: dict, x, kernel: str = "auto", *, task: str | None = None, samples: int | None = None,
               seed: int = 0, cache_dir=None, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """The GP kernel of the network ``spec`` on inputs ``x`` (S + E), from the cache when possible.

    Args:
      spec: :func:`tfflat.models.model_spec` dict (kind, widths, sigma_w, sigma_b, input_shape).
      x: inputs, shape (n, ...) — the exact arrays define the cache key.
      kernel: ``auto`` (analytic for FCNs, empirical otherwise), ``analytic`` or ``empirical``.
      task: the task name (σw, σb of the empirical kernel's last layer when the spec has none).
      samples, seed: empirical kernel: M initialisations (default 0.1 n) and the first seed.
      cache_dir: directory of ``<kind>-<sha256>.npy`` files; the key covers the input bytes and all
        parameters, so a file is only reused for exactly the same kernel. Unreadable files are recomputed.
      progress: ``progress(done, total)`` while the empirical kernel is sampled.
    Returns:
      float64 (n, n) kernel.
    """
    x = np.asarray(x, np.float32)
    params = kernel_params(spec, kernel, task=task, samples=samples, seed=seed, n=len(x))
    if cache_dir is None:
        return compute_kernel(x, params, progress)
    from tfflat import runs

    path = Path(cache_dir) / f"{params['kind']}-{kernel_key(x, params)[:40]}.npy"
    if path.is_file():
        try:
            k = np.load(path, allow_pickle=False)
            if k.shape == (len(x), len(x)) and k.dtype == np.float64 and np.all(np.isfinite(np.diagonal(k))):
                return k
        except (OSError, ValueError):
            pass        # corrupt or truncated: recompute below
    k = compute_kernel(x, params, progress)
    with runs.atomic_open(path, "wb") as fh:
        np.save(fh, k, allow_pickle=False)
    runs.write_json(path.with_suffix(".json"), {**params, "n": len(x), "file": path.name})
    return k


def log_prior(kernel, labels, likelihood: str = "heaviside", *, train_size: int | None = None,
              delta: float = defaults.PAC_BAYES_DELTA, method: str = "sequential", tol: float | None = None,
              max_sweeps: int | None = None, check: bool = True,
              progress: Callable[[int, float], None] | None = None) -> dict:
    """EP's ln P(f) for ``labels`` under N(0, ``kernel``), log10 P(f) and the PAC-Bayes bound (eq. 4).

    Args:
      kernel, labels: (n, n) covariance and n labels in {0, 1}.
      likelihood: ``heaviside`` (the paper's definition) or ``probit`` (the published figures).
      train_size: m = |S| for the bound (``None``: no bound).
      delta: δ of the bound.
      method, tol, max_sweeps, check, progress: see :func:`tfflat.prior.ep.ep_log_prior`.
    Returns:
      JSON-able dict: ``log10_prior``, ``ln_prior``, ``pac_bayes_bound``, ``delta``, ``converged``,
      ``likelihood``, ``sweeps``, ``n``, ``ep`` (all EP details).
    """
    from tfflat.prior.bounds import pac_bayes_bound
    from tfflat.prior.ep import MAX_SWEEPS, TOL, ep_log_prior

    res = ep_log_prior(kernel, labels, likelihood, method=method, tol=TOL if tol is None else tol,
                       max_sweeps=MAX_SWEEPS if max_sweeps is None else max_sweeps, check=check, progress=progress)
    bound = pac_bayes_bound(res.ln_z, train_size, delta) if train_size else None
    return {"log10_prior": res.log10_p, "ln_prior": res.ln_z, "pac_bayes_bound": bound, "delta": delta,
            "converged": res.converged, "likelihood": likelihood, "sweeps": res.sweeps, "n": res.n,
            "ep": res.to_dict()}


def function_of_run(run) -> tuple[np.ndarray, np.ndarray, dict]:
    """f of a trained run on S + E (SPEC §5): the true labels on S, the network's labels on E.

    Returns:
      (x, f, info): inputs of S then E, the 0/1 labels, and counts (|S|, |E|, and how many S labels the
      network gets wrong — 0 at the zero-error epoch).
    """
    from tfflat.training import predict_logits

    sp = run.splits
    x = np.concatenate([sp.x_train, sp.x_test]).astype(np.float32)
    logits = predict_logits(run.model, x)
    pred = (logits >= 0).astype(np.int8)
    n_s = len(sp.y_train)
    f = np.concatenate([np.asarray(sp.y_train, np.int8), pred[n_s:]])
    info = {"S": n_s, "E": len(sp.y_test), "train_errors": int(np.sum(pred[:n_s] != sp.y_train)),
            "test_accuracy": float(np.mean(pred[n_s:] == sp.y_test)) if len(sp.y_test) else None}
    return x, f, info


def log_prior_of_run(run, kernel: str = "auto", likelihood: str = "heaviside", *, cache_dir=None,
                     delta: float = defaults.PAC_BAYES_DELTA, method: str = "sequential", tol: float | None = None,
                     max_sweeps: int | None = None, samples: int | None = None, seed: int = 0,
                     progress: Callable[[str, int, int | None, float | None], None] | None = None) -> dict:
    """log P(f) of a run's function on S + E, with the kernel that matches its model.

    Args:
      run: a :class:`tfflat.runs.Run` or a run directory.
      kernel: ``auto`` | ``analytic`` | ``empirical`` (see :func:`kernel_for`).
      likelihood: ``heaviside`` (default) or ``probit``.
      cache_dir: kernel cache directory (see :func:`kernel_for`).
      delta, method, tol, max_sweeps: see :func:`log_prior`.
      samples, seed: empirical kernel settings.
      progress: ``progress(stage, done, total, value)`` with stage ``"kernel"`` (samples) or ``"ep"``
        (sweeps, ln Z).
    Returns:
      The :func:`log_prior` dict plus ``kernel`` (its parameters and cache key), ``function`` (|S|, |E|,
      training errors, test accuracy, SHA-256 of f) and ``seconds``.
    """
    from tfflat import runs

    t0 = time.perf_counter()
    if not hasattr(run, "splits"):
        run = runs.load(run)
    x, f, info = function_of_run(run)
    spec = run.meta["model_spec"]
    task = run.meta.get("config", {}).get("dataset")
    params = kernel_params(spec, kernel, task=task, samples=samples, seed=seed, n=len(x))
    kprog = (lambda d, t: progress("kernel", d, t, None)) if progress else None
    k = kernel_for(spec, x, params["kind"], task=task, samples=samples, seed=seed, cache_dir=cache_dir,
                   progress=kprog)
    eprog = (lambda s, lz: progress("ep", s, None, lz)) if progress else None
    out = log_prior(k, f, likelihood, train_size=info["S"], delta=delta, method=method, tol=tol,
                    max_sweeps=max_sweeps, check=False, progress=eprog)   # PSD by construction
    shown = {key: val for key, val in params.items() if key != "model_spec"}
    out["kernel"] = {**shown, "key": kernel_key(x, params)}
    out["function"] = {**info, "sha256": hashlib.sha256(f.tobytes()).hexdigest()}
    out["seconds"] = time.perf_counter() - t0
    return out
