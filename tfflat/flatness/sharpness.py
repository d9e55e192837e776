"""Keskar sharpness (Keskar et al. 2016, Def. 2.1; paper §2.2, App. E eq. 8, Table 1).

For the mean cross-entropy L on S of the model's head (one logit, a final sigmoid's pre-activation,
z₁ − z₀ of two outputs, or K-class softmax CE; see :mod:`tfflat.flatness.objective`) and the box

    C_ζ = {Δw : |Δw_i| ≤ ζ (|w_i| + 1) for every parameter i}                      (eq. 8)

    sharpness = 100 · (max_{Δw ∈ C_ζ} L(w + Δw) − L(w)) / (1 + L(w))               (Def. 2.1)

flatness = 1 / sharpness; the figures plot −log10 sharpness. The maximum is searched by

* ``method="sgd"`` (the paper's, App. E): minibatch gradient *ascent* Δ ← clip(Δ + lr ∇L_B(w+Δ))
  from Δ = 0, projected back into C_ζ after every step; passes over S in a fresh random order
  each, minibatches of ``batch_size`` (the last one smaller). The paper: "we ran SGD for 10 epochs
  and make sure the max value ceases to change" — so the ascent runs at least ``epochs`` epochs
  (Table 1's) and then until the last ``window`` epochs (default 10) raised the running maximum's
  rise max_loss − L(w) by no more than ``rtol`` of it (default 1e-4), at most ``max_epochs``
  epochs (default 1000); the
  result says how many epochs ran and whether the tolerance stopped it (``max_epochs=epochs``: the
  fixed-length ascent of the published code). The running maximum of the
  *full-S* loss is tracked after every step (``track="step"``, as the published code does) or
  after every epoch (``track="epoch"``). Each epoch is one compiled call (XLA for dense networks):
  shuffle, steps, projections and loss evaluations never leave the graph. Per-step tracking costs
  one full pass over S per step (cheap for the FCNs; for ResNet50 at Table 1's |S| = 5000, batch
  128, ``track="epoch"`` does 40× fewer evaluations).
* ``method="lbfgsb"`` (Keskar's original): scipy's L-BFGS-B minimising −L(w + Δ) over the box
  ``-ζ(|w|+1) ≤ Δ ≤ ζ(|w|+1)``, full-S loss and gradient from one compiled function, ``maxiter``
  iterations (Keskar et al. solve it inexactly with a few; default 10, a choice). It solves the
  problem rescaled to the unit box and to the rise per unit ζ,
  max_{|u_i| ≤ 1} (L(w + r⊙u) − L(w)) / ζ with r = ζ(|w|+1), whose gradient (|w|+1)⊙∇L does not
  shrink with ζ: in Δ itself the projected gradient is ζ(|w|+1)|∂L/∂w|, below scipy's absolute
  ``pgtol`` (1e-5) for a small box, and scipy stopped before its first step (sharpness 0 at
  ζ = 1e-6). It starts (``start="corner"``, default) at the first-order corner u = sign(∇L), the
  maximiser of the linearised loss over the box, and refines it with the curvature: from Δ = 0
  (``start="zero"``) ten quasi-Newton steps on a nearly linear loss of thousands of parameters end
  far short of it (measured: 67 % below the corner's sharpness at ζ = 1e-4, a 7-40-40-1 FCN),
  and at ζ = 1e-6 the line search drowns in the float32 rounding of L.

Both report the largest full-S loss among all points they evaluated (every one lies in C_ζ), so
the result is a lower bound on the true maximum. As a check each result also carries the
loss at the first-order corner Δ_i = ζ(|w_i|+1)·sign(∂L/∂w_i), another point of C_ζ: a maximiser
that ends below it, or an ascent stopped by ``max_epochs`` before its maximum ceased to change,
has not converged (raise ``lr``, ``epochs`` or ``max_epochs``).

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
STARTS = ("corner", "zero")
TABLE1_KEYS = ("zeta", "batch_size", "lr", "epochs")


class NotConvergedWarning(UserWarning):
    """The maximiser ended below the loss at the box's first-order corner, or the ascent reached
    ``max_epochs`` before its running maximum ceased to change (raise ``lr``/``epochs``/``max_epochs``
    or ``maxiter``)."""


@dataclass
class SharpnessResult:
    """Keskar sharpness of one network on one data set.

    Attributes:
      sharpness: 100 (max_loss − loss) / (1 + loss)  (Def. 2.1).
      log10_sharpness: log10 of it (−inf when 0); the paper plots −log10 sharpness.
      loss: L(w), the mean CE on the data at the unperturbed weights.
      max_loss: the largest L(w + Δ) found in C_ζ.
      corner_loss: L at the first-order corner of C_ζ (a feasible point; see the module doc).
      trace: the running max_loss after each epoch (sgd) or iteration (lbfgsb), shape (ascent_epochs,).
      seconds: wall time of the maximisation (including any tracing and compilation).
      method: "sgd" or "lbfgsb".
      settings: everything that determines the number (ζ, lr, epochs, rtol, max_epochs, batch size, seed, …).
      ascent_epochs: epochs the ascent ran (sgd; ``epochs`` ≤ it ≤ ``max_epochs``), L-BFGS-B iterations (lbfgsb).
      stopped_by_tolerance: the running maximum ceased to change (sgd: the last ``window`` epochs,
        ending at the ``epochs``-th or later, raised it by ≤ ``rtol`` of its rise; lbfgsb: scipy
        reported convergence) rather than
        the ascent reaching its cap (``max_epochs``, ``maxiter``).
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
    ascent_epochs: int = 0
    stopped_by_tolerance: bool = False

    @property
    def corner_sharpness(self) -> float:
        """Def. 2.1 evaluated at the first-order corner (a feasible point of C_ζ; see the module doc)."""
        return relative_rise(self.loss, self.corner_loss)

    @property
    def reached_corner(self) -> bool:
        """The maximiser reached at least the corner's loss (up to float32 rounding of the loss)."""
        return self.max_loss >= self.corner_loss - 1e-6 * abs(self.corner_loss)

    @property
    def converged(self) -> bool:
        """The maximiser reached the corner's loss and (sgd) its running maximum ceased to change
        before ``max_epochs``; :attr:`note` says why not."""
        return self.reached_corner and (self.method != "sgd" or self.stopped_by_tolerance)

    @property
    def note(self) -> str | None:
        """Why the result has not :attr:`converged` (None when it has)."""
        return not_converged_note(self.method, self.max_loss, self.corner_loss, self.stopped_by_tolerance,
                                  self.ascent_epochs, self.loss)

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
                 maxiter: int = defaults.LBFGSB_MAXITER, rtol: float = defaults.SHARPNESS_RTOL,
                 max_epochs: int | None = None, window: int = defaults.SHARPNESS_WINDOW, start: str = "corner") -> dict:
    """The keyword arguments of :func:`sharpness`: those given, the rest from Table 1 for ``task`` and
    the model family (``task=None``: :func:`sharpness`'s defaults, Table 1's MNIST row); checked.

    lbfgsb needs only ζ; sgd needs ζ, lr, epochs and the batch size (and takes ``rtol``,
    ``window``, ``max_epochs``: the stopping rule, see :func:`sharpness`).
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
        check_settings(out["zeta"], method, out["lr"], out["epochs"], out["batch_size"], track=track, rtol=rtol,
                       max_epochs=max_epochs, window=window)
        out.update(track=track, seed=int(seed), rtol=float(rtol), window=int(window),
                   max_epochs=cap(out["epochs"], max_epochs))
    else:
        check_settings(out["zeta"], method, maxiter=maxiter, start=start)
        out.update(maxiter=int(maxiter), start=start)
    return out


def cap(epochs: int, max_epochs: int | None) -> int:
    """The ascent's epoch cap: ``max_epochs``, by default max(``epochs``, ``defaults.SHARPNESS_MAX_EPOCHS``)."""
    return int(max(int(epochs), defaults.SHARPNESS_MAX_EPOCHS) if max_epochs is None else max_epochs)


def check_settings(zeta: float, method: str = "sgd", lr: float = 1e-3, epochs: int = 100,
                   batch_size: int = 32, maxiter: int = defaults.LBFGSB_MAXITER, track: str = "step",
                   rtol: float = defaults.SHARPNESS_RTOL, max_epochs: int | None = None,
                   window: int = defaults.SHARPNESS_WINDOW, start: str = "corner") -> None:
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
        if not (_finite(rtol) and rtol >= 0):
            raise UserError(f"the ascent's relative tolerance `rtol` must be a number ≥ 0, got {rtol}")
        if int(window) < 1:
            raise UserError(f"the stopping rule's `window` must be ≥ 1 epoch, got {window}")
        if max_epochs is not None and int(max_epochs) < int(epochs):
            raise UserError(f"`max_epochs` ({max_epochs}) must be ≥ `epochs` ({epochs}), the ascent's minimum; "
                            "give max_epochs=epochs for a fixed-length ascent")
    elif int(maxiter) < 1:
        raise UserError(f"`maxiter` must be ≥ 1, got {maxiter}")
    elif start not in STARTS:
        raise UserError(f"the L-BFGS-B `start` must be one of {', '.join(STARTS)}, got {start!r}")


def _finite(v) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def sharpness(model, x, y=None, zeta: float = 1e-4, method: str = "sgd", lr: float = 1e-3, epochs: int = 100,
              batch_size: int = 32, seed: int = 0, *, head=None, maxiter: int = defaults.LBFGSB_MAXITER,
              track: str = "step", eval_batch: int | None = None, rtol: float = defaults.SHARPNESS_RTOL,
              max_epochs: int | None = None, window: int = defaults.SHARPNESS_WINDOW, start: str = "corner",
              callback: Callable[[int, float], None] | None = None, strategy=None) -> SharpnessResult:
    """Keskar sharpness (Def. 2.1) of ``model`` on (x, y); the model is left unchanged.

    Args:
      model: a built Keras classifier (evaluated with ``training=False``): one logit, a final sigmoid,
        two outputs or K-class logits/softmax (see :mod:`tfflat.models.heads`).
      x, y: the data S: inputs (n, …) and labels (n,) (0/1, or 0…K−1; one-hot accepted) as arrays or
        tensors, or a ``tf.data.Dataset`` of (x, y) pairs as ``x`` with ``y=None``.
      zeta: box size ζ > 0 (Table 1: 1e-4 Boolean and MNIST, 1e-5 CIFAR).
      method: ``"sgd"`` (projected minibatch gradient ascent, the paper's) or ``"lbfgsb"``.
      lr, batch_size: the ascent's step size and minibatch size (sgd).
      epochs: the fewest passes over S (sgd; Table 1's: 10 Boolean, 100 MNIST/CIFAR).
      rtol, window, max_epochs: the stopping rule (sgd; the paper's "make sure the max value ceases
        to change"): from the ``epochs``-th epoch on, stop once the last ``window`` epochs (default
        10) raised the running maximum's rise max_loss − L(w) by ≤ ``rtol`` × the rise (default
        1e-4), or after ``max_epochs`` (default max(epochs, 1000)); ``max_epochs=epochs`` runs
        exactly ``epochs``. A window, not one epoch: minibatch noise leaves single epochs flat.
      seed: minibatch order (sgd).
      maxiter: L-BFGS-B iterations (lbfgsb; Keskar et al. solve the maximisation inexactly with a
        few iterations; default 10, a choice).
      start: where L-BFGS-B starts, ``"corner"`` (the first-order corner, default) or ``"zero"`` (w).
      track: evaluate the full-S loss after every ``"step"`` (default) or every ``"epoch"`` (sgd).
      eval_batch: examples per forward chunk (default: all for dense networks, 256 otherwise).
      head: the model's head, read from the model by default (see :mod:`tfflat.models.heads`).
      callback: ``callback(epoch_or_iteration, max_loss)`` after each epoch (sgd) or iteration (lbfgsb).
      strategy: a ``tf.distribute`` strategy or :mod:`tfflat.devices` spec: with several replicas the
        losses and gradients are summed over S on all devices (:mod:`tfflat.flatness.replicas`).
    Returns:
      :class:`SharpnessResult`; a :class:`NotConvergedWarning` when the maximiser ended below the
      first-order corner or the ascent reached ``max_epochs`` before its maximum ceased to change.
    """
    check_settings(zeta, method, lr, epochs, batch_size, maxiter, track, rtol, max_epochs, window, start)
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
        limit = cap(epochs, max_epochs)
        settings.update(lr=float(lr), epochs=int(epochs), rtol=float(rtol), window=int(window), max_epochs=limit,
                        batch_size=bs, seed=int(seed), track=track)
        ascent = replicas.sgd if prob.strategy is not None else _sgd
        max_loss, trace, stopped = ascent(prob, float(loss), zeta, lr, int(epochs), limit, float(rtol), int(window),
                                          bs, seed, track, callback)
        ran = len(trace)
        settings.update(steps=ran * math.ceil(prob.n / bs))
    else:
        settings.update(maxiter=int(maxiter), start=start)
        u0 = np.sign(grad).astype(np.float64) if start == "corner" else np.zeros(prob.size)
        max_loss, trace, info = _lbfgsb(prob, value_grad, float(loss), radius, float(zeta), int(maxiter), u0,
                                        callback)
        settings.update(info)
        ran, stopped = info["iterations"], info["status"] == 0
    loss, max_loss = float(loss), float(max(max_loss, loss))
    sharp = relative_rise(loss, max_loss)
    result = SharpnessResult(sharpness=sharp, log10_sharpness=math.log10(sharp) if sharp > 0 else -math.inf,
                             loss=loss, max_loss=max_loss, corner_loss=corner_loss, trace=np.asarray(trace),
                             seconds=time.perf_counter() - t0, method=method, settings=settings,
                             ascent_epochs=int(ran), stopped_by_tolerance=bool(stopped))
    if not result.converged:
        warn_not_converged(result.note)
    return result


def not_converged_note(method: str, max_loss: float, corner_loss: float, stopped_by_tolerance: bool = True,
                       ascent_epochs: int | None = None, loss: float | None = None) -> str | None:
    """Why a maximisation has not converged, in one sentence (None when it has; see
    :attr:`SharpnessResult.converged`)."""
    notes = []
    if max_loss < corner_loss - 1e-6 * abs(corner_loss):
        fix = "`lr` or `max_epochs`" if method == "sgd" else "`maxiter`"
        short = "" if loss is None or corner_loss <= loss else \
            f", {100 * (corner_loss - max_loss) / (corner_loss - loss):.2g} % below the corner's sharpness"
        notes.append(f"the sharpness maximiser ended below the loss at the box's first-order corner "
                     f"({max_loss:.6g} < {corner_loss:.6g}{short}): the sharpness is underestimated; raise {fix}")
    if method == "sgd" and not stopped_by_tolerance:
        notes.append(f"the ascent reached `max_epochs` ({ascent_epochs}) before its running maximum ceased to change "
                     "(by `rtol` over `window` epochs); raise `max_epochs` or `lr`")
    return "; ".join(notes) or None


def record_note(record: dict) -> str | None:
    """:attr:`SharpnessResult.note` of a stored :meth:`SharpnessResult.to_dict` record."""
    return not_converged_note(record.get("method", "sgd"), float(record["max_loss"]), float(record["corner_loss"]),
                              bool(record.get("stopped_by_tolerance", True)), record.get("ascent_epochs"),
                              record.get("loss"))


def warn_not_converged(note: str | None, stacklevel: int = 3) -> None:
    """The :class:`NotConvergedWarning` of a maximisation that has not converged (``note``: why)."""
    if note:
        warnings.warn(note, NotConvergedWarning, stacklevel=stacklevel)


# ---- sgd: projected ascent, one compiled call per epoch -----------------------------------------

def _sgd(prob, loss, zeta, lr, epochs, max_epochs, rtol, window, batch_size, seed, track, callback):
    """Run the compiled epoch, carrying (Δ, running max), under the stopping rule of :func:`until_still`.
    Returns (max loss, trace, stopped by the tolerance).

    Plain ReLU FCNs take the written-out path of :mod:`tfflat.flatness.batched` (same steps, same rule,
    less arithmetic: one first-layer product per step, inputs that are zero on S dropped)."""
    import tensorflow as tf

    from tfflat.flatness import batched

    if prob.jit and batched.plain_fcn(prob.template):
        return batched.ascent([w.numpy() for w in prob.w0], prob.x.numpy(), prob.y.numpy(), loss, zeta, lr, epochs,
                              batch_size, seed, track, callback, max_epochs=max_epochs, rtol=rtol, window=window)
    epoch = objective.compiled(prob, "ascent_epoch", _ascent_epoch)
    args = (prob.w0, prob.state, prob.data, tf.constant(zeta, tf.float32), tf.constant(lr, tf.float32))
    statics = dict(batch_size=batch_size, chunk=prob.chunk, per_step=track == "step")
    carry = [[tf.zeros_like(w) for w in prob.w0], tf.constant(loss, tf.float32)]

    def advance(e):
        carry[:] = epoch(*args, *carry, tf.constant(e), tf.constant(seed), **statics)
        return carry[1]

    return until_still(advance, loss, epochs, max_epochs, rtol, window, callback)


def until_still(advance, loss: float, epochs: int, max_epochs: int, rtol: float, window: int, callback=None):
    """The stopping rule of the ascent ("we ran SGD for 10 epochs and make sure the max value ceases to
    change", §5.1): ``advance(e)`` (epoch e, 0-based; returns the running maximum) ``epochs`` times,
    then on until the last ``window`` epochs raised the rise best − loss by ≤ ``rtol`` of it, at most
    ``max_epochs`` in all (a host sync per epoch only near and after the ``epochs``-th).
    Returns (max loss, trace of the running maximum per epoch, stopped by the tolerance)."""
    trace, stopped, values = [], False, {}
    best = loss
    for e in range(max_epochs):
        best = advance(e)
        trace.append(best)
        if callback is not None:
            callback(e + 1, float(best))
        if e + 1 + window >= epochs:        # the change over the last `window` epochs, from the epochs-th on
            values[e] = float(best)
            if still(values, e, loss, epochs, rtol, window):
                stopped = True
                break
    return float(best), np.array([float(b) for b in trace]), stopped


def still(values, e: int, loss, epochs: int, rtol: float, window: int):
    """The rule's test after epoch ``e`` (0-based): ``values[e]`` (the running maximum; for a stack,
    arrays over its networks) rose by ≤ ``rtol`` of its rise above ``loss`` over the last ``window``
    epochs, at or after the ``epochs``-th."""
    if e + 1 < epochs:
        return False
    now = values[e]
    before = values[e - window] if e - window >= 0 else loss
    return now - before <= rtol * (now - loss)


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
            grads = objective.minibatch_grad(template, w0, state, d, x, y, idx)
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
        part = objective.value_grad_part(template, w0, state, objective.unflatten(delta, w0))
        out = objective.chunk_sum(part, xp, yp, mp, chunk)
        n = tf.cast(tf.shape(y)[0], tf.float32)
        return out[0] / n, objective.flatten(out[1:]) / n

    return tf.function(value_grad, jit_compile=jit)


def _lbfgsb(prob, value_grad, loss, radius, zeta, maxiter, u0, callback):
    """Maximise L over the box with scipy's L-BFGS-B, in the unit box u = Δ / radius and on the rise per
    unit ζ (see the module doc); the max over every evaluated (feasible) point."""
    from scipy.optimize import Bounds, minimize

    best = [loss]
    radius = np.asarray(radius, np.float64)

    def neg(u):
        delta = (radius * u).astype(np.float32)
        value, grad = value_grad(prob.w0, prob.state, prob.data, delta, chunk=prob.chunk)
        value = float(value)
        best[0] = max(best[0], value)
        return -(value - loss) / zeta, -(radius / zeta) * grad.numpy().astype(np.float64)

    trace = []

    def iteration(intermediate_result):
        trace.append(best[0])
        if callback is not None:
            callback(len(trace), best[0])

    ones = np.ones(prob.size)
    out = minimize(neg, u0, jac=True, method="L-BFGS-B", bounds=Bounds(-ones, ones),
                   callback=iteration, options={"maxiter": maxiter})
    return best[0], trace, {"iterations": int(out.nit), "evaluations": int(out.nfev),
                            "message": str(out.message), "status": int(out.status)}
