"""Keskar sharpness (Keskar et al. 2016, Def. 2.1; paper §2.2, App. E eq. 8, Table 1).

For the mean cross-entropy L on S of the model's head (one logit, a final sigmoid's pre-activation,
z₁ − z₀ of two outputs, or K-class softmax CE; see :mod:`tfflat.flatness.objective`) and the box

    C_ζ = {Δw : |Δw_i| ≤ ζ (|w_i| + 1) for every parameter i}                      (eq. 8)

    sharpness = 100 · (max_{Δw ∈ C_ζ} L(w + Δw) − L(w)) / (1 + L(w))               (Def. 2.1)

flatness = 1 / sharpness; the figures plot −log10 sharpness. The maximum is searched by

* ``method="sgd"`` (the paper's, App. E): minibatch gradient *ascent* Δ ← clip(Δ + lr ∇L_B(w+Δ))
  from Δ = 0, projected back into C_ζ after every step; ``epochs`` passes over S in a fresh random
  order each, minibatches of ``batch_size`` (the last one smaller); the running maximum of the
  *full-S* loss is tracked after every step (``track="step"``, as the published code does) or
  after every epoch (``track="epoch"``). Each epoch is one compiled call (XLA for dense networks):
  shuffle, steps, projections and loss evaluations never leave the graph. Per-step tracking costs
  one full pass over S per step (cheap for the FCNs; for ResNet50 at Table 1's |S| = 5000, batch
  128, ``track="epoch"`` does 40× fewer evaluations).
* ``method="lbfgsb"`` (Keskar's original): scipy's L-BFGS-B minimising −L(w + Δ) over the box
  ``-ζ(|w|+1) ≤ Δ ≤ ζ(|w|+1)`` from Δ = 0, full-S loss and gradient from one compiled function,
  ``maxiter`` iterations (Keskar et al. solve it inexactly with a few; default 10, a choice).

Both report the largest full-S loss among all points they evaluated (every one lies in C_ζ), so
the result is a lower bound on the true maximum. As a check each result also carries the
loss at the first-order corner Δ_i = ζ(|w_i|+1)·sign(∂L/∂w_i), another point of C_ζ: a maximiser
that ends below it has not converged (raise ``lr`` or ``epochs``).

The network runs in inference mode (BatchNorm on its moving statistics); w is the trainable
weights; the model itself is never modified. A result that did not converge is returned with a
:class:`NotConvergedWarning`.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from tfflat import defaults
from tfflat.errors import UserError
from tfflat.flatness import objective

METHODS = ("sgd", "lbfgsb")
TRACKS = ("step", "epoch")
TABLE1_KEYS = ("zeta", "batch_size", "lr", "epochs")


class NotConvergedWarning(UserWarning):
    """The maximiser ended below the loss at the box's first-order corner (raise ``lr``/``epochs`` or
    ``maxiter``)."""


@dataclass
class SharpnessResult:
    """Keskar sharpness of one network on one data set.

    Attributes:
      sharpness: 100 (max_loss − loss) / (1 + loss)  (Def. 2.1).
      log10_sharpness: log10 of it (−inf when 0); the paper plots −log10 sharpness.
      loss: L(w), the mean CE on the data at the unperturbed weights.
      max_loss: the largest L(w + Δ) found in C_ζ.
      corner_loss: L at the first-order corner of C_ζ (a feasible point; see the module doc).
      trace: the running max_loss after each epoch (sgd) or iteration (lbfgsb), shape (epochs,).
      seconds: wall time of the maximisation (including any tracing and compilation).
      method: "sgd" or "lbfgsb".
      settings: everything that determines the number (ζ, lr, epochs, batch size, seed, …).
    """

    sharpness: float
    log10_sharpness: float
    loss: float
    max_loss: float
    corner_loss: float
    trace: np.ndarray
    seconds: float
    method: str
    settings: dict = field(default_factory=dict)

    @property
    def corner_sharpness(self) -> float:
        """Def. 2.1 evaluated at the first-order corner (a feasible point of C_ζ; see the module doc)."""
        return relative_rise(self.loss, self.corner_loss)

    @property
    def converged(self) -> bool:
        """The maximiser reached at least the corner's loss (up to float32 rounding of the loss)."""
        return self.max_loss >= self.corner_loss - 1e-6 * abs(self.corner_loss)

    def to_dict(self) -> dict:
        return {**asdict(self), "trace": [float(t) for t in self.trace]}


def relative_rise(loss: float, higher: float) -> float:
    """100 · (higher − loss) / (1 + loss): sharpness (Def. 2.1) when ``higher`` is the box maximum."""
    return 100.0 * (higher - loss) / (1.0 + loss)


def table1(task: str, model: str) -> dict:
    """Table 1's (ζ, batch size, lr, epochs) for a task and a model name (``fcn``, ``resnet50``, …)."""
    key = (task, defaults.model_family(model))
    if key not in defaults.SHARPNESS:
        known = ", ".join(f"{t}/{m}" for t, m in defaults.SHARPNESS)
        raise UserError(f"Table 1 has no sharpness settings for {task}/{key[1]} (it has {known}); "
                        "give `zeta`, `lr`, `epochs` and `batch_size`")
    return dict(defaults.SHARPNESS[key])


def settings_for(method: str = "sgd", task: str | None = None, model: str = "fcn", *, zeta=None, lr=None,
                 epochs=None, batch_size=None, track: str = "step", seed: int = 0,
                 maxiter: int = defaults.LBFGSB_MAXITER) -> dict:
    """The keyword arguments of :func:`sharpness`: those given, the rest from Table 1 for ``task`` and
    the model family (``task=None``: :func:`sharpness`'s defaults, Table 1's MNIST row); checked.

    lbfgsb needs only ζ; sgd needs ζ, lr, epochs and the batch size.
    """
    given = {"zeta": zeta, "lr": lr, "epochs": epochs, "batch_size": batch_size}
    needed = ("zeta",) if method == "lbfgsb" else TABLE1_KEYS
    if all(given[k] is not None for k in needed):
        base = {}
    elif task is None:
        base = dict(defaults.SHARPNESS[("mnist", "fcn")])
    else:
        base = table1(task, model)
    base.update({k: v for k, v in given.items() if v is not None})
    out = {k: base[k] for k in needed}
    if method == "sgd":
        check_settings(out["zeta"], method, out["lr"], out["epochs"], out["batch_size"], track=track)
        out.update(track=track, seed=int(seed))
    else:
        check_settings(out["zeta"], method, maxiter=maxiter)
        out.update(maxiter=int(maxiter))
    return out


def check_settings(zeta: float, method: str = "sgd", lr: float = 1e-3, epochs: int = 100,
                   batch_size: int = 32, maxiter: int = defaults.LBFGSB_MAXITER, track: str = "step") -> None:
    """Raise :class:`UserError` for settings that cannot define a sharpness."""
    if method not in METHODS:
        raise UserError(f"unknown sharpness method {method!r}; choose one of {', '.join(METHODS)}")
    if track not in TRACKS:
        raise UserError(f"`track` must be one of {', '.join(TRACKS)}, got {track!r}")
    if not (_finite(zeta) and zeta > 0):
        raise UserError(f"the box size ζ (`zeta`) must be a positive number, got {zeta}")
    if method == "sgd":
        if not (_finite(lr) and lr > 0):
            raise UserError(f"the ascent learning rate (`lr`) must be positive, got {lr}")
        if int(epochs) < 1:
            raise UserError(f"`epochs` must be ≥ 1, got {epochs}")
        if int(batch_size) < 1:
            raise UserError(f"`batch_size` must be ≥ 1, got {batch_size}")
    elif int(maxiter) < 1:
        raise UserError(f"`maxiter` must be ≥ 1, got {maxiter}")


def _finite(v) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def sharpness(model, x, y=None, zeta: float = 1e-4, method: str = "sgd", lr: float = 1e-3, epochs: int = 100,
              batch_size: int = 32, seed: int = 0, *, head=None, maxiter: int = defaults.LBFGSB_MAXITER,
              track: str = "step", eval_batch: int | None = None,
              callback: Callable[[int, float], None] | None = None, strategy=None) -> SharpnessResult:
    """Keskar sharpness (Def. 2.1) of ``model`` on (x, y); the model is left unchanged.

    Args:
      model: a built Keras classifier (evaluated with ``training=False``): one logit, a final sigmoid,
        two outputs or K-class logits/softmax (see :mod:`tfflat.models.heads`).
      x, y: the data S: inputs (n, …) and labels (n,) (0/1, or 0…K−1; one-hot accepted) as arrays or
        tensors, or a ``tf.data.Dataset`` of (x, y) pairs as ``x`` with ``y=None``.
      zeta: box size ζ > 0 (Table 1: 1e-4 Boolean and MNIST, 1e-5 CIFAR).
      method: ``"sgd"`` (projected minibatch gradient ascent, the paper's) or ``"lbfgsb"``.
      lr, epochs, batch_size: the ascent's step size, passes over S and minibatch size (sgd).
      seed: minibatch order (sgd).
      maxiter: L-BFGS-B iterations (lbfgsb; Keskar et al. solve the maximisation inexactly with a
        few iterations; default 10, a choice).
      track: evaluate the full-S loss after every ``"step"`` (default) or every ``"epoch"`` (sgd).
      eval_batch: examples per forward chunk (default: all for dense networks, 256 otherwise).
      head: the model's head, read from the model by default (see :mod:`tfflat.models.heads`).
      callback: ``callback(epoch_or_iteration, max_loss)`` after each epoch (sgd) or iteration (lbfgsb).
      strategy: a ``tf.distribute`` strategy or :mod:`tfflat.devices` spec: with several replicas the
        losses and gradients are summed over S on all devices (:mod:`tfflat.flatness.replicas`).
    Returns:
      :class:`SharpnessResult`; a :class:`NotConvergedWarning` when the maximiser ended below the
      first-order corner.
    """
    check_settings(zeta, method, lr, epochs, batch_size, maxiter, track)
    t0 = time.perf_counter()
    from tfflat.flatness import replicas

    prob = objective.problem(model, x, y, eval_batch, head=head, strategy=strategy)
    value_grad = replicas.value_grad(prob) if prob.strategy is not None else \
        objective.compiled(prob, "value_grad", _value_grad)
    zero = np.zeros(prob.size, np.float32)
    loss, grad = (t.numpy() for t in value_grad(prob.w0, prob.state, prob.data, zero, chunk=prob.chunk))
    radius = zeta * (np.abs(prob.weights_numpy()) + 1.0)
    corner = (radius * np.sign(grad)).astype(np.float32)
    corner_loss = float(value_grad(prob.w0, prob.state, prob.data, corner, chunk=prob.chunk)[0])
    settings = {"zeta": float(zeta), "method": method, "examples": prob.n, "parameters": prob.size,
                "head": prob.head.name}
    if method == "sgd":
        bs = min(int(batch_size), prob.n)
        settings.update(lr=float(lr), epochs=int(epochs), batch_size=bs, seed=int(seed), track=track,
                        steps=int(epochs) * math.ceil(prob.n / bs))
        ascent = replicas.sgd if prob.strategy is not None else _sgd
        max_loss, trace = ascent(prob, float(loss), zeta, lr, int(epochs), bs, seed, track, callback)
    else:
        settings.update(maxiter=int(maxiter))
        max_loss, trace, info = _lbfgsb(prob, value_grad, float(loss), radius, int(maxiter), callback)
        settings.update(info)
    loss, max_loss = float(loss), float(max(max_loss, loss))
    sharp = relative_rise(loss, max_loss)
    result = SharpnessResult(sharpness=sharp, log10_sharpness=math.log10(sharp) if sharp > 0 else -math.inf,
                             loss=loss, max_loss=max_loss, corner_loss=corner_loss, trace=np.asarray(trace),
                             seconds=time.perf_counter() - t0, method=method, settings=settings)
    if not result.converged:
        warn_not_converged(method, result.max_loss, result.corner_loss)
    return result


def warn_not_converged(method: str, max_loss: float, corner_loss: float, stacklevel: int = 3) -> None:
    """The :class:`NotConvergedWarning` of a maximiser that ended below the box's first-order corner."""
    fix = "`lr` or `epochs`" if method == "sgd" else "`maxiter`"
    warnings.warn(f"the sharpness maximiser ended below the loss at the box's first-order corner "
                  f"({max_loss:.6g} < {corner_loss:.6g}): the sharpness is underestimated; raise {fix}",
                  NotConvergedWarning, stacklevel=stacklevel)


# ---- sgd: projected ascent, one compiled call per epoch -----------------------------------------

def _sgd(prob, loss, zeta, lr, epochs, batch_size, seed, track, callback):
    """Run the compiled epoch ``epochs`` times, carrying (Δ, running max); no host sync unless asked.

    Plain ReLU FCNs take the written-out path of :mod:`tfflat.flatness.batched` (same steps, less
    arithmetic: one first-layer product per step, inputs that are zero on S dropped)."""
    import tensorflow as tf

    from tfflat.flatness import batched

    if prob.jit and batched.plain_fcn(prob.template):
        return batched.ascent([w.numpy() for w in prob.w0], prob.x.numpy(), prob.y.numpy(), loss, zeta, lr, epochs,
                              batch_size, seed, track, callback)
    epoch = objective.compiled(prob, "ascent_epoch", _ascent_epoch)
    delta = [tf.zeros_like(w) for w in prob.w0]
    best = tf.constant(loss, tf.float32)
    args = (prob.w0, prob.state, prob.data, tf.constant(zeta, tf.float32), tf.constant(lr, tf.float32))
    statics = dict(batch_size=batch_size, chunk=prob.chunk, per_step=track == "step")
    trace = []
    for e in range(epochs):
        delta, best = epoch(*args, delta, best, tf.constant(e), tf.constant(seed), **statics)
        trace.append(best)
        if callback is not None:
            callback(e + 1, float(best))
    return float(best), np.array([float(b) for b in trace])


def _ascent_epoch(template, jit):
    """Build one compiled epoch of the projected ascent (its minibatch order fixed by (seed, epoch))."""
    import tensorflow as tf

    def epoch(w0, state, data, zeta, lr, delta, best, index, seed, *, batch_size, chunk, per_step):
        x, y, xp, yp, mp = data
        n = int(y.shape[0])
        batches = math.ceil(n / batch_size)
        pad = batches * batch_size - n
        radius = [zeta * (tf.abs(w) + 1.0) for w in w0]

        def full_loss(d):
            ws = [w + dw for w, dw in zip(w0, d)]
            return objective.chunk_sum(lambda xb, yb, mb: objective.loss_sum(template, ws, state, xb, yb, mb),
                                       xp, yp, mp, chunk) / n

        def step(d, idx):
            mask = tf.cast(idx >= 0, tf.float32)
            safe = tf.maximum(idx, 0)
            xb, yb = tf.gather(x, safe), tf.gather(y, safe)
            with tf.GradientTape() as tape:
                tape.watch(d)
                ws = [w + dw for w, dw in zip(w0, d)]
                batch_loss = objective.loss_sum(template, ws, state, xb, yb, mask) / tf.reduce_sum(mask)
            grads = tape.gradient(batch_loss, d, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            return [tf.clip_by_value(dw + lr * g, -r, r) for dw, g, r in zip(d, grads, radius)]

        key = tf.stack([seed, index])
        order = tf.cast(tf.argsort(tf.random.stateless_uniform([n], seed=key, alg="philox"), stable=True), tf.int32)
        slots = tf.reshape(tf.concat([order, tf.fill([pad], -1)], 0), [batches, batch_size])
        for b in tf.range(batches):
            delta = step(delta, slots[b])
            if per_step:
                best = tf.maximum(best, full_loss(delta))
        if not per_step:
            best = tf.maximum(best, full_loss(delta))
        return delta, best

    return tf.function(epoch, jit_compile=jit)


# ---- lbfgsb: scipy's L-BFGS-B on a compiled loss-and-gradient --------------------------------------

def _value_grad(template, jit):
    """Build ``(w0, state, data, Δ flat) -> (L(w0 + Δ), ∇L flat)`` over the whole data set.

    Plain ReLU FCNs get the written-out :func:`tfflat.flatness.batched.value_grad`, run eagerly: it is
    called a few times (L-BFGS-B: tens), so tracing and compiling it would cost more than it saves."""
    import tensorflow as tf

    from tfflat.flatness import batched

    if jit and batched.plain_fcn(template):
        return batched.value_grad

    def value_grad(w0, state, data, delta, *, chunk):
        _, y, xp, yp, mp = data
        d = objective.unflatten(delta, w0)

        def part(xb, yb, mb):
            with tf.GradientTape() as tape:
                tape.watch(d)
                total = objective.loss_sum(template, [w + dw for w, dw in zip(w0, d)], state, xb, yb, mb)
            return [total] + tape.gradient(total, d, unconnected_gradients=tf.UnconnectedGradients.ZERO)

        out = objective.chunk_sum(part, xp, yp, mp, chunk)
        n = tf.cast(tf.shape(y)[0], tf.float32)
        return out[0] / n, objective.flatten(out[1:]) / n

    return tf.function(value_grad, jit_compile=jit)


def _lbfgsb(prob, value_grad, loss, radius, maxiter, callback):
    """Maximise L over the box with scipy's L-BFGS-B; the max over every evaluated (feasible) point."""
    from scipy.optimize import Bounds, minimize

    best = [loss]

    def neg(delta):
        value, grad = value_grad(prob.w0, prob.state, prob.data, delta.astype(np.float32), chunk=prob.chunk)
        value = float(value)
        best[0] = max(best[0], value)
        return -value, -grad.numpy().astype(np.float64)

    trace = []

    def iteration(intermediate_result):
        trace.append(best[0])
        if callback is not None:
            callback(len(trace), best[0])

    out = minimize(neg, np.zeros(prob.size), jac=True, method="L-BFGS-B", bounds=Bounds(-radius, radius),
                   callback=iteration, options={"maxiter": maxiter})
    return best[0], trace, {"iterations": int(out.nit), "evaluations": int(out.nfev),
                            "message": str(out.message)}
