"""log P(f) of a trained network's function on S + E (SPEC §5): f, the kernel that matches the model,
EP, the PAC-Bayes bound — and a content-keyed kernel cache shared by every run of a sweep.

A sweep computes the kernel once and calls EP per run::

    k = kernel_for(spec, x, cache_dir="runs/kernels")          # x = S + E inputs
    for run in runs:
        res = log_prior(k, labels_of(run), train_size=500, check=False)

Any Keras binary classifier: :func:`log_prior_of_model` (the analytic kernel when the model is a
plain ReLU FCN, read from its layers and initialisers; else the empirical kernel of eq. (7) of the
model's own architecture). The prior is that of a binary function (the sign of one GP logit); a
K-class model is refused with a :class:`~tfflat.errors.UserError`. A two-output model's logit
z₁ − z₀ is the difference of two i.i.d. GP outputs, so its kernel is twice one output's.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np

from tfflat import defaults, memory, validate
from tfflat.errors import UserError

KERNELS = ("auto", "analytic", "empirical")
KERNEL_VERSION = 1        # bump when a kernel's definition or numerics change: old cache files stop matching
PROBIT_MIN_VARIANCE = 0.1  # below this median prior variance the probit's unit noise swamps the GP (warning)
KERNEL_COPIES = 5          # n × n float64 arrays alive at once: the kernel, its construction, EP's Σ, work, factor


def check_memory(n: int) -> None:
    """Refuse up front (one :class:`UserError` line, with the numbers) a prior on ``n`` points that cannot fit."""
    memory.require(KERNEL_COPIES * 8 * n * n, f"the prior on n = {n:,} points (S + E)",
                   "use a smaller S or E (`train_size`, `test_size`)")


class KernelScaleWarning(UserWarning):
    """The kernel's variance is so small against the probit likelihood's unit noise that log P(f)
    hardly depends on f."""


def check_scale(kernel: np.ndarray, likelihood: str) -> None:
    """Warn when the probit result would be meaningless: its likelihood Φ(z) adds unit-variance noise
    to the GP (probit = Heaviside with K + I), so for a kernel of variance ≪ 1 every f gets about 2⁻ⁿ.
    (The Heaviside orthant probability does not depend on the kernel's scale.)"""
    if likelihood != "probit":
        return
    med = float(np.median(np.diagonal(kernel)))
    if med < PROBIT_MIN_VARIANCE:
        warnings.warn(f"the kernel's median prior variance is {med:.3g}, far below the probit likelihood's unit noise "
                      "variance: log P(f) then hardly depends on f; use likelihood='heaviside' (scale-free) or the "
                      "σw, σb of the prior you mean", KernelScaleWarning, stacklevel=3)


def kernel_params(spec: dict, kernel: str = "auto", *, task: str | None = None, samples: int | None = None,
                  seed: int = 0, n: int | None = None, init: str | None = None,
                  batchnorm: str = "inference") -> dict:
    """The complete description of the kernel for ``spec`` (what the cache key hashes).

    ``auto`` is the analytic arc-cosine kernel for FCNs and the empirical kernel (eq. 7) otherwise.
    The empirical kernel draws its samples with ``init`` (default ``"he"`` for ResNet50 — He-normal
    weights, fresh BatchNorm in inference mode, as the authors' ``ResNet50/empirical_kernel.py`` —
    else ``"model"``, the builder's own initialisation) and ``batchnorm`` (see
    :func:`tfflat.prior.kernels.empirical_kernel`).
    """
    if kernel not in KERNELS:
        raise UserError(f"unknown `kernel` {kernel!r}; choose {', '.join(KERNELS)}")
    samples = validate.integer("samples", samples, least=1, none=True)
    seed = validate.seed("seed", seed)
    kind = spec.get("kind")
    if kernel == "auto":
        kernel = "analytic" if kind == "fcn" else "empirical"
    sw_task, sb_task = defaults.SIGMAS.get(task, defaults.SIGMAS["mnist"])
    sigma_w, sigma_b = float(spec.get("sigma_w", sw_task)), float(spec.get("sigma_b", sb_task))
    if kernel == "analytic":
        if kind != "fcn":
            raise UserError(f"the analytic kernel exists only for fully connected ReLU networks, not {kind!r}; "
                            "use `kernel`='empirical'")
        return {"kind": "analytic", "depth": len(spec["widths"]), "sigma_w": sigma_w, "sigma_b": sigma_b,
                "version": KERNEL_VERSION}
    if samples is None and n is not None:
        samples = max(1, round(defaults.EMPIRICAL_KERNEL_FRACTION * n))
    init = ("he" if kind == "resnet50" else "model") if init is None else init
    _check_sampling(init, batchnorm)
    return {"kind": "empirical", "model_spec": spec, "samples": samples, "seed": int(seed),
            "sigma_w": sigma_w, "sigma_b": sigma_b, "init": init, "batchnorm": batchnorm, "version": KERNEL_VERSION}


def _check_sampling(init, batchnorm) -> None:
    from tfflat.prior.kernels import BATCHNORM_MODES, INITS

    if init not in INITS:
        raise UserError(f"unknown `init` {init!r} for the empirical kernel; choose {' or '.join(INITS)}")
    if batchnorm not in BATCHNORM_MODES:
        raise UserError(f"unknown `batchnorm` {batchnorm!r} for the empirical kernel; choose "
                        f"{' or '.join(BATCHNORM_MODES)}")


def kernel_key(x: np.ndarray, params: dict) -> str:
    """SHA-256 of the exact input bytes (shape, dtype, values) and the kernel parameters."""
    x = np.ascontiguousarray(x)
    h = hashlib.sha256()
    h.update(json.dumps(params, sort_keys=True, default=str).encode())
    h.update(f"{x.dtype.str}{x.shape}".encode())
    h.update(memoryview(x).cast("B"))
    return h.hexdigest()


def compute_kernel(x: np.ndarray, params: dict, progress: Callable[[int, int], None] | None = None,
                   strategy=None) -> np.ndarray:
    """The kernel described by :func:`kernel_params` on inputs ``x``, float64 (n, n); the empirical
    kernel's forward passes sharded over ``strategy``'s devices (:mod:`tfflat.devices`)."""
    from tfflat.prior import kernels

    if params["kind"] == "analytic":
        return kernels.nngp_kernel(x, params["depth"], params["sigma_w"], params["sigma_b"])
    from tfflat import models

    return kernels.empirical_kernel(x, partial(models.build, params["model_spec"]), params["samples"],
                                    sigma_w=params["sigma_w"], sigma_b=params["sigma_b"], seed=params["seed"],
                                    init=params.get("init", "model"), batchnorm=params.get("batchnorm", "inference"),
                                    strategy=strategy, progress=progress)


def kernel_for(spec: dict, x, kernel: str = "auto", *, task: str | None = None, samples: int | None = None,
               seed: int = 0, cache_dir=None, progress: Callable[[int, int], None] | None = None,
               init: str | None = None, batchnorm: str = "inference", strategy=None) -> np.ndarray:
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
      init, batchnorm: how the empirical kernel's samples are drawn (see :func:`kernel_params`).
      strategy: where the empirical kernel's forward passes run (:mod:`tfflat.devices`; not part of the key).
    Returns:
      float64 (n, n) kernel.
    """
    x = np.asarray(x, np.float32)
    params = kernel_params(spec, kernel, task=task, samples=samples, seed=seed, n=len(x), init=init,
                           batchnorm=batchnorm)
    return cached_kernel(x, params, lambda: compute_kernel(x, params, progress, strategy), cache_dir)


def cached_kernel(x: np.ndarray, params: dict, compute: Callable[[], np.ndarray], cache_dir=None) -> np.ndarray:
    """``compute()``, or the file ``<kind>-<sha256>.npy`` in ``cache_dir`` keyed by the input bytes and
    ``params`` (``params["cacheable"] is False``: never cached). Unreadable files are recomputed."""
    path = _cache_path(x, params, cache_dir)
    if path is None:
        return compute()
    from tfflat import runs

    if path.is_file():
        try:
            k = np.load(path, allow_pickle=False)
            if k.shape == (len(x), len(x)) and k.dtype == np.float64 and np.all(np.isfinite(np.diagonal(k))):
                return k
        except (OSError, ValueError):
            pass        # corrupt or truncated: recompute below
    k = compute()
    with runs.atomic_open(path, "wb") as fh:
        np.save(fh, k, allow_pickle=False)
    runs.write_json(path.with_suffix(".json"), {**params, "n": len(x), "file": path.name})
    return k


def _cache_path(x: np.ndarray, params: dict, cache_dir) -> Path | None:
    if cache_dir is None or params.get("cacheable") is False:
        return None
    return Path(cache_dir) / f"{params['kind']}-{kernel_key(x, params)[:40]}.npy"


def kernel_conditioning(k: np.ndarray, x: np.ndarray, params: dict, cache_dir=None) -> dict:
    """:func:`tfflat.prior.kernels.conditioning` of a kernel (how far it is from a constant kernel: prior
    variances, off-diagonal spread and correlations, smallest eigenvalue, condition number), kept in the
    cache's sidecar ``<kind>-<sha256>.json`` next to the kernel so that it is computed once."""
    from tfflat import runs
    from tfflat.prior.kernels import conditioning

    path = _cache_path(np.asarray(x, np.float32), params, cache_dir)
    side = None if path is None else path.with_suffix(".json")
    if side is not None and side.is_file():
        try:
            stored = runs.read_json(side)
            if isinstance(stored.get("conditioning"), dict):
                return stored["conditioning"]
        except (OSError, ValueError):
            stored = None
    else:
        stored = None
    cond = conditioning(k)
    if stored is not None:
        runs.write_json(side, {**stored, "conditioning": cond})
    return cond


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

    delta = validate.number("delta", delta, above=0, below=1)
    tol = validate.number("tol", tol, above=0, none=True)
    max_sweeps = validate.integer("max_sweeps", max_sweeps, least=1, none=True)
    train_size = validate.integer("train_size", train_size, least=1, none=True)
    shape = np.shape(kernel)
    if len(shape) == 2 and shape[0] == shape[1]:
        check_memory(shape[0])
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
    from tfflat.models.heads import LOGIT, predict_logits

    sp = run.splits
    x = np.concatenate([sp.x_train, sp.x_test]).astype(np.float32)
    pred = LOGIT.predict(predict_logits(run.model, x)).astype(np.int8)
    n_s = len(sp.y_train)
    f = np.concatenate([np.asarray(sp.y_train, np.int8), pred[n_s:]])
    info = {"S": n_s, "E": len(sp.y_test), "train_errors": int(np.sum(pred[:n_s] != sp.y_train)),
            "test_accuracy": float(np.mean(pred[n_s:] == sp.y_test)) if len(sp.y_test) else None}
    return x, f, info


def log_prior_of_run(run, kernel: str = "auto", likelihood: str = "heaviside", *, cache_dir=None,
                     delta: float = defaults.PAC_BAYES_DELTA, method: str = "sequential", tol: float | None = None,
                     max_sweeps: int | None = None, samples: int | None = None, seed: int = 0, save: bool = False,
                     progress: Callable[[str, int, int | None, float | None], None] | None = None,
                     init: str | None = None, batchnorm: str = "inference", strategy=None) -> dict:
    """log P(f) of a run's function on S + E, with the kernel that matches its model.

    Args:
      run: a :class:`tfflat.runs.Run` or a run directory.
      kernel: ``auto`` | ``analytic`` | ``empirical`` (see :func:`kernel_for`).
      likelihood: ``heaviside`` (default) or ``probit``.
      cache_dir: kernel cache directory (see :func:`kernel_for`).
      delta, method, tol, max_sweeps: see :func:`log_prior`.
      samples, seed: empirical kernel settings.
      init, batchnorm: how the empirical kernel's samples are drawn (default for ResNet50: He-normal
        weights, BatchNorm in inference mode; see :func:`kernel_params`).
      strategy: devices of the empirical kernel's forward passes (:mod:`tfflat.devices`).
      save: merge the result into ``RUN/prior.json`` (whose ``by_likelihood`` keeps one summary per
        likelihood), atomically.
      progress: ``progress(stage, done, total, value)`` with stage ``"kernel"`` (samples) or ``"ep"``
        (sweeps, ln Z).
    Returns:
      The :func:`log_prior` dict plus ``kernel`` (its parameters, cache key and ``conditioning``,
      :func:`kernel_conditioning`), ``function`` (|S|, |E|,
      training errors, test accuracy, SHA-256 of f) and ``seconds`` (with ``save``: ``by_likelihood``,
      ``versions`` and ``file``).
    """
    from tfflat import models, runs

    t0 = time.perf_counter()
    if not hasattr(run, "splits"):
        run = runs.load(run)
    spec = run.meta["model_spec"]
    models.check_matches(spec, run.model, f"the network of run {run.path}")
    check_memory(len(run.splits.y_train) + len(run.splits.y_test))
    x, f, info = function_of_run(run)
    task = run.meta.get("config", {}).get("dataset")
    params = kernel_params(spec, kernel, task=task, samples=samples, seed=seed, n=len(x), init=init,
                           batchnorm=batchnorm)
    kprog = (lambda d, t: progress("kernel", d, t, None)) if progress else None
    k = kernel_for(spec, x, params["kind"], task=task, samples=samples, seed=seed, cache_dir=cache_dir,
                   progress=kprog, init=params.get("init"), batchnorm=batchnorm, strategy=strategy)
    check_scale(k, likelihood)
    eprog = (lambda s, lz: progress("ep", s, None, lz)) if progress else None
    out = log_prior(k, f, likelihood, train_size=info["S"], delta=delta, method=method, tol=tol,
                    max_sweeps=max_sweeps, check=False, progress=eprog)   # PSD by construction
    shown = {key: val for key, val in params.items() if key != "model_spec"}
    out["kernel"] = {**shown, "key": kernel_key(x, params),
                     "conditioning": kernel_conditioning(k, x, params, cache_dir)}
    out["function"] = {**info, "sha256": hashlib.sha256(f.tobytes()).hexdigest()}
    out["seconds"] = time.perf_counter() - t0
    if save:
        out = save_to_run(run.path, out, likelihood)
    return out


def save_to_run(run_dir, out: dict, likelihood: str) -> dict:
    """Merge a result into ``RUN/prior.json``: the latest result in full, and one summary per likelihood."""
    from tfflat import runs

    path = Path(run_dir) / "prior.json"
    previous = runs.read_json(path, fix="delete it to measure again") if path.is_file() else {}
    by_lik = dict(previous.get("by_likelihood") if isinstance(previous.get("by_likelihood"), dict) else {})
    by_lik[likelihood] = {k: out[k] for k in ("log10_prior", "ln_prior", "pac_bayes_bound", "converged")}
    record = {**out, "by_likelihood": by_lik, "versions": runs.versions()}
    runs.update(run_dir, "prior", record)
    return {**record, "file": str(path)}


# ---- any Keras binary classifier ----------------------------------------------------------------------

def function_of_model(model, x_train, y_train=None, x_test=None, y_test=None, *, head=None):
    """f of ``model`` on S + E: the true labels ``y_train`` on S, the model's labels on E = ``x_test``.

    Returns:
      (x, f, info, head): the inputs of S then E (float32), f (int8 0/1), counts and accuracies, and the
      model's :class:`~tfflat.models.heads.Head`. A K-class model is a :class:`UserError`: P(f) is the
      prior of a binary function.
    """
    from tfflat.data.arrays import as_arrays, check_inputs
    from tfflat.models import heads

    xs, ys = as_arrays(x_train, y_train, model=model, names=("x_train", "y_train"))
    if ys is None:
        raise UserError("`y_train` is missing: f takes the true labels on S")
    check_inputs(xs, model, "x_train")
    xe, ye = (np.zeros((0,) + xs.shape[1:], np.float32), None) if x_test is None else \
        as_arrays(x_test, y_test, model=model, names=("x_test", "y_test"))
    check_inputs(xe, model, "x_test")
    h, net = heads.resolve(model, head, xs)
    if not h.binary:
        raise UserError(f"log P(f) is the prior of a binary function (the sign of one GP logit, SPEC §5); model "
                        f"{model.name!r} has a {h.classes}-class {h.name} head. Measure its sharpness and Hessian, or "
                        "the prior of a binary classifier (e.g. digit ≥ 5)")
    ys = h.check_labels(ys, "y_train").astype(np.int8)
    pred_s = h.predict(heads.predict_logits(net, xs)).astype(np.int8)
    pred_e = h.predict(heads.predict_logits(net, xe)).astype(np.int8) if len(xe) else np.zeros(0, np.int8)
    info = {"S": len(xs), "E": len(xe), "train_errors": int(np.sum(pred_s != ys)),
            "train_accuracy": float(np.mean(pred_s == ys)), "test_accuracy": None}
    if ye is not None and len(xe):
        info["test_accuracy"] = float(np.mean(pred_e == h.check_labels(ye, "y_test")))
    return np.concatenate([xs, xe]), np.concatenate([ys, pred_e]), info, h


def _architecture(model) -> str | None:
    """SHA-256 of a model's configuration (its architecture and initialisers), or None when it has none."""
    try:
        config = model.get_config()
        text = json.dumps({"class": type(model).__name__, "config": config}, sort_keys=True, default=str)
    except Exception:  # noqa: BLE001 - subclassed models without a serialisable config
        return None
    return hashlib.sha256(text.encode()).hexdigest()


def model_kernel_params(model, kernel: str = "auto", *, head=None, feature_layer=None, sigma_w=None,
                        sigma_b=None, samples: int | None = None, seed: int = 0, n: int | None = None,
                        init: str = "model", batchnorm: str = "inference") -> dict:
    """The kernel of a Keras binary classifier (what the cache key hashes).

    ``auto``: the analytic arc-cosine kernel when the model is a plain ReLU FCN (per-layer σw, σb read
    from its initialisers, :func:`tfflat.prior.kernels.fcn_structure`), else the empirical kernel of
    eq. (7) with σw, σb read from the readout layer's initialisers (or given). ``scale`` is 2 for a
    two-output head (z₁ − z₀ of two i.i.d. outputs), else 1. The empirical kernel's samples are drawn
    with ``init`` (``"model"``: the model's own initialisers; ``"he"``: He-normal weights, fresh BatchNorm)
    and ``batchnorm`` (see :func:`tfflat.prior.kernels.empirical_kernel`).
    """
    from tfflat.models import heads
    from tfflat.prior import kernels

    if kernel not in KERNELS:
        raise UserError(f"unknown `kernel` {kernel!r}; choose {', '.join(KERNELS)}")
    sigma_w = validate.number("sigma_w", sigma_w, above=0, none=True)
    sigma_b = validate.number("sigma_b", sigma_b, least=0, none=True)
    samples = validate.integer("samples", samples, least=1, none=True)
    seed = validate.seed("seed", seed)
    h = heads.detect(model, head)
    scale = 2.0 if h.outputs == 2 else 1.0
    fcn, why = kernels.fcn_structure(model) if feature_layer is None else (None, "a `feature_layer` was chosen")
    if kernel == "auto":
        kernel = "analytic" if fcn is not None else "empirical"
    if kernel == "analytic":
        if fcn is None:
            raise UserError(f"the analytic NNGP kernel needs a plain ReLU FCN: {why}; use `kernel`='empirical'")
        depth = fcn["depth"]
        sw = fcn["sigma_w"] if sigma_w is None else [float(sigma_w)] * (depth + 1)
        sb = fcn["sigma_b"] if sigma_b is None else [float(sigma_b)] * (depth + 1)
        return {"kind": "analytic", "depth": depth, "sigma_w": sw, "sigma_b": sb, "scale": scale,
                "version": KERNEL_VERSION}
    name = getattr(feature_layer, "name", feature_layer)
    if name is not None and (sigma_w is None or sigma_b is None) and not _feeds_readout(model, name):
        raise UserError(f"the feature layer {name!r} does not feed model {model.name!r}'s last Dense layer directly; "
                        "give `sigma_w` and `sigma_b`, the scales of the readout from it")
    sw, sb = kernels.readout_sigmas(model, sigma_w, sigma_b)
    if samples is None and n is not None:
        samples = max(1, round(defaults.EMPIRICAL_KERNEL_FRACTION * n))
    arch = _architecture(model)
    _check_sampling(init, batchnorm)
    return {"kind": "empirical", "architecture": arch, "feature_layer": name, "samples": samples, "seed": int(seed),
            "sigma_w": sw, "sigma_b": sb, "init": init, "batchnorm": batchnorm, "scale": scale,
            "version": KERNEL_VERSION, "cacheable": arch is not None}


def _feeds_readout(model, name: str) -> bool:
    from tfflat.models.heads import is_graph
    from tfflat.prior import kernels

    if not is_graph(model):
        return False
    try:
        return kernels.readout(model).input._keras_history[0].name == name
    except (AttributeError, ValueError):
        return False


def kernel_of_model(model, x, params: dict, progress: Callable[[int, int], None] | None = None,
                    cache_dir=None, strategy=None) -> np.ndarray:
    """The kernel :func:`model_kernel_params` describes, on inputs ``x`` (from ``cache_dir`` when possible;
    the empirical kernel's forward passes on ``strategy``'s devices)."""
    from tfflat.prior import kernels

    x = np.asarray(x, np.float32)

    def compute():
        if params["kind"] == "analytic":
            k = kernels.nngp_kernel(x, params["depth"], params["sigma_w"], params["sigma_b"])
        else:
            k = kernels.empirical_kernel(x, model, params["samples"], sigma_w=params["sigma_w"],
                                         sigma_b=params["sigma_b"], seed=params["seed"],
                                         feature_layer=params["feature_layer"], init=params["init"],
                                         batchnorm=params["batchnorm"], strategy=strategy, progress=progress)
        if params["scale"] != 1.0:
            k *= params["scale"]
        return k

    return cached_kernel(x, params, compute, cache_dir)


def log_prior_of_model(model, x_train, y_train=None, x_test=None, y_test=None, *, head=None, kernel: str = "auto",
                       likelihood: str = "heaviside", feature_layer=None, sigma_w=None, sigma_b=None,
                       samples: int | None = None, seed: int = 0, cache_dir=None,
                       delta: float = defaults.PAC_BAYES_DELTA, method: str = "sequential", tol: float | None = None,
                       max_sweeps: int | None = None,
                       progress: Callable[[str, int, int | None, float | None], None] | None = None,
                       init: str = "model", batchnorm: str = "inference", strategy=None) -> dict:
    """log P(f) of any Keras binary classifier's function on S + E (true labels on S, its labels on E).

    Args:
      model: a Keras binary classifier: one logit, a final sigmoid, or two outputs (see
        :mod:`tfflat.models.heads`); it is never modified.
      x_train, y_train: S (arrays, tensors, or a ``tf.data.Dataset`` of (x, y) as ``x_train``).
      x_test, y_test: E (optional; ``y_test`` only for the reported test accuracy).
      head: the model's head (read from the model by default).
      kernel: ``auto`` | ``analytic`` | ``empirical`` (see :func:`model_kernel_params`).
      likelihood: ``heaviside`` (the paper's P(f)) or ``probit``.
      feature_layer, sigma_w, sigma_b, samples, seed: the empirical kernel's h, scales, M and first seed
        (σw, σb also override the analytic kernel's, for every layer).
      cache_dir: kernel cache directory (see :func:`cached_kernel`).
      delta, method, tol, max_sweeps: see :func:`log_prior`.
      progress: as for :func:`log_prior_of_run`.
      init, batchnorm: how the empirical kernel's samples are drawn (see :func:`model_kernel_params`).
      strategy: devices of the empirical kernel's forward passes (:mod:`tfflat.devices`).
    Returns:
      The :func:`log_prior` dict plus ``kernel`` (with its ``conditioning``), ``function`` (|S|, |E|, training errors, accuracies,
      SHA-256 of f), ``head`` and ``seconds``. A :class:`KernelScaleWarning` when a probit result is
      meaningless.
    """
    from tfflat import runs
    from tfflat.models.heads import refuse_savedmodel

    t0 = time.perf_counter()
    refuse_savedmodel(model, "whose architecture tfflat cannot re-initialise for the prior")
    runs.check_weights(model, f"model {model.name!r}")
    x, f, info, h = function_of_model(model, x_train, y_train, x_test, y_test, head=head)
    check_memory(len(x))
    params = model_kernel_params(model, kernel, head=h, feature_layer=feature_layer, sigma_w=sigma_w,
                                 sigma_b=sigma_b, samples=samples, seed=seed, n=len(x), init=init,
                                 batchnorm=batchnorm)
    kprog = (lambda d, t: progress("kernel", d, t, None)) if progress else None
    k = kernel_of_model(model, x, params, kprog, cache_dir, strategy)
    check_scale(k, likelihood)
    eprog = (lambda s, lz: progress("ep", s, None, lz)) if progress else None
    out = log_prior(k, f, likelihood, train_size=info["S"], delta=delta, method=method, tol=tol,
                    max_sweeps=max_sweeps, check=False, progress=eprog)   # PSD by construction
    out["kernel"] = {**{key: v for key, v in params.items() if key != "cacheable"}, "key": kernel_key(x, params),
                     "conditioning": kernel_conditioning(k, x, params, cache_dir)}
    out["function"] = {**info, "sha256": hashlib.sha256(f.tobytes()).hexdigest()}
    out["head"] = h.name
    out["seconds"] = time.perf_counter() - t0
    return out
