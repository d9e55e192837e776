"""``tfflat.measure``: sharpness, Hessian measures and log P(f) of any Keras classifier, one flat record.

    import tfflat
    record = tfflat.measure(model, x_train, y_train, x_test, y_test)
    record["log10_sharpness"], record["spectral_norm"], record["log10_prior"]

The model is measured as it is — any head (one logit, a final sigmoid, two outputs, K-class softmax
or logits; :mod:`tfflat.models.heads`), in inference mode — and never modified: flatness perturbs
copies of its weights inside compiled functions, the prior draws its initialisations on a private
copy.
"""

from __future__ import annotations

import math
import time

import numpy as np

from tfflat import defaults
from tfflat.errors import UserError

MEASURES = ("sharpness", "hessian", "prior")
SETTINGS = {
    "sharpness": ("zeta", "method", "lr", "epochs", "batch_size", "track", "maxiter", "eval_batch"),
    "hessian": ("top_k", "probes", "tol", "eval_batch"),
    "prior": ("kernel", "likelihood", "feature_layer", "sigma_w", "sigma_b", "samples", "kernel_seed", "delta",
              "cache_dir", "ep_method"),
    "": ("seed",),
}
KEYS = ("head", "classes", "train_size", "test_size", "parameters", "train_accuracy", "test_accuracy",
        "loss", "sharpness", "log10_sharpness", "sharpness_converged", "corner_sharpness", "max_loss",
        "spectral_norm", "log10_top_product", "hessian_trace", "hessian_trace_stderr", "top_eigenvalues",
        "log10_prior", "ln_prior", "pac_bayes_bound", "prior_converged", "likelihood", "kernel", "seconds")


def measure(model, x_train, y_train=None, x_test=None, y_test=None, *, measures=None, head=None,
            **settings) -> dict:
    """Flatness and the prior of a trained Keras classifier, as one flat record.

    Args:
      model: a built Keras classifier (functional, Sequential or subclassed) whose head is read from
        its last layer and compiled loss (``head`` overrides: ``logit``, ``sigmoid``, ``logits``,
        ``softmax``).
      x_train, y_train: the training set S — arrays, tensors, or a ``tf.data.Dataset`` of (x, y) as
        ``x_train`` with ``y_train=None``. Labels: 0/1, or 0…K−1 (one-hot accepted).
      x_test, y_test: the test set E (optional): the prior's f takes the model's labels on E;
        ``y_test`` gives ``test_accuracy``.
      measures: any of ``"sharpness"``, ``"hessian"``, ``"prior"``; default all three, the prior only for
        binary classifiers (it is the prior of a binary function; asking for it for a K-class model is a
        :class:`UserError`).
      settings: ``seed`` (the ascent's minibatch order and the Hessian's start vectors; default 0);
        sharpness: ``zeta``, ``method``, ``lr``, ``epochs``, ``batch_size``, ``track``, ``maxiter``
        (defaults: Table 1's MNIST row, ζ = 1e-4, lr 1e-3, 100 epochs, batch 32); Hessian: ``top_k``
        (default 50, at most the number of parameters), ``probes``, ``tol``; prior: ``kernel``,
        ``likelihood``, ``feature_layer``, ``sigma_w``, ``sigma_b``, ``samples``, ``kernel_seed``,
        ``delta``, ``cache_dir``, ``ep_method``; ``eval_batch`` for both flatness measures.
    Returns:
      A dict with the keys of ``KEYS``: ``None`` for what was not measured. ``sharpness_converged`` is
      False when the ascent ended below the box's first-order corner (a warning is issued too).
    """
    from tfflat import flatness, runs, validate
    from tfflat.data.arrays import as_arrays, check_inputs
    from tfflat.models import heads

    t0 = time.perf_counter()
    wanted = _measures(measures)
    known = {k for keys in SETTINGS.values() for k in keys}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise UserError(f"unknown setting(s) {', '.join(unknown)} for tfflat.measure; known: {', '.join(sorted(known))}")
    seed = validate.seed("seed", settings.get("seed", 0))
    runs.check_weights(model, f"model {getattr(model, 'name', '')!r}")
    xs, ys = as_arrays(x_train, y_train, model=model, names=("x_train", "y_train"))
    if ys is None:
        raise UserError("`y_train` is missing: give the training labels, or a tf.data.Dataset of (x, y) as `x_train`")
    check_inputs(xs, model, "x_train")
    xe, ye = (None, None) if x_test is None else as_arrays(x_test, y_test, model=model, names=("x_test", "y_test"))
    if xe is not None:
        check_inputs(xe, model, "x_test")
    h, net = heads.resolve(model, head, xs)
    lin = h.linear()
    ys = h.check_labels(ys, "y_train")
    if measures is None and not h.binary:
        wanted = tuple(m for m in wanted if m != "prior")
    record = dict.fromkeys(KEYS)
    record.update(head=h.name, classes=h.classes, train_size=len(xs), test_size=0 if xe is None else len(xe),
                  parameters=int(sum(int(np.prod(v.shape)) for v in net.trainable_variables)))
    record["train_accuracy"] = float(np.mean(h.predict(heads.predict_logits(net, xs)) == ys))
    if xe is not None and ye is not None and len(xe):
        record["test_accuracy"] = float(np.mean(h.predict(heads.predict_logits(net, xe)) == h.check_labels(ye, "y_test")))
    pick = lambda group: {k: settings[k] for k in SETTINGS[group] if k in settings}  # noqa: E731
    if "sharpness" in wanted:
        kw = pick("sharpness")
        r = flatness.sharpness(net, xs, ys, seed=seed, head=lin, **kw)
        record.update(sharpness=r.sharpness, log10_sharpness=r.log10_sharpness, sharpness_converged=r.converged,
                      corner_sharpness=r.corner_sharpness, loss=r.loss, max_loss=r.max_loss)
    if "hessian" in wanted:
        kw = pick("hessian")
        kw.setdefault("top_k", min(defaults.HESSIAN_TOP_K, record["parameters"]))
        r = flatness.hessian_measures(net, xs, ys, seed=seed, head=lin, **kw)
        record.update(spectral_norm=r.spectral_norm, log10_top_product=r.log10_top_product,
                      hessian_trace=_finite_or_none(r.trace), hessian_trace_stderr=_finite_or_none(r.trace_stderr),
                      top_eigenvalues=[float(e) for e in r.eigenvalues], loss=r.loss)
    if "prior" in wanted:
        from tfflat.prior import log_prior_of_model

        kw = pick("prior")
        if "kernel_seed" in kw:
            kw["seed"] = kw.pop("kernel_seed")
        if "ep_method" in kw:
            kw["method"] = kw.pop("ep_method")
        r = log_prior_of_model(model, xs, ys, xe, None, head=h, **kw)
        record.update(log10_prior=r["log10_prior"], ln_prior=r["ln_prior"], pac_bayes_bound=r["pac_bayes_bound"],
                      prior_converged=r["converged"], likelihood=r["likelihood"], kernel=r["kernel"]["kind"])
    record["seconds"] = time.perf_counter() - t0
    return record


def _measures(measures) -> tuple:
    if measures is None:
        return MEASURES
    if isinstance(measures, str):
        measures = (measures,)
    bad = [m for m in measures if m not in MEASURES]
    if bad:
        raise UserError(f"unknown measure(s) {', '.join(map(str, bad))} in `measures`; choose from {', '.join(MEASURES)}")
    return tuple(measures)


def _finite_or_none(v):
    return float(v) if v is not None and math.isfinite(v) else None
