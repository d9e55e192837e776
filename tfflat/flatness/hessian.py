"""Hessian measures of flatness (paper §2.2, App. E, Fig. S9): spectrum of H = ∇²L(w) without forming H.

L is the mean cross-entropy on S of the model's head (:mod:`tfflat.flatness.objective`: one logit,
a final sigmoid's pre-activation, z₁ − z₀, or K-class softmax CE; network in inference mode:
BatchNorm on its moving statistics; w = the trainable weights). Everything is built on one
compiled Hessian-vector product (forward-over-reverse: the JVP of the gradient), summed over S in
chunks. From it:

* the top-k eigenvalues (default 50) with scipy's ARPACK ``eigsh`` (implicitly restarted Lanczos)
  on a float64 ``LinearOperator`` whose matvec is the float32 network's HVP; networks too small for
  ARPACK (p ≤ 2k + 1 parameters) get the exact dense spectrum from p HVPs instead;
* the spectral norm ‖H‖₂ = max |λ| (the largest-magnitude eigenvalue, which may be negative away
  from a minimum);
* log10 of the product of the top-k eigenvalues that are positive (Wu et al. 2017; Zhang et al.
  2018; the paper uses k = 50);
* Hutchinson's trace estimate tr H ≈ mean vᵀHv over Rademacher vectors v, with its standard error.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from tfflat import defaults
from tfflat.errors import UserError
from tfflat.flatness import objective

EIGSH_TOL = 1e-6          # relative accuracy of each Ritz value (ARPACK's tol)


class HVP:
    """v ↦ H v with H = ∇²L(w₀), at the weights the model had when this was made.

    Call it with a vector of ``size`` entries (the trainable weights flattened in
    ``model.trainable_variables`` order); it returns H v as float64. ``matvecs`` counts the calls;
    ``callback(matvecs)``, if set, is called after each.
    """

    def __init__(self, model, x, y=None, eval_batch: int | None = None, head=None, strategy=None):
        self.problem = objective.problem(model, x, y, eval_batch, head=head, strategy=strategy)
        if self.problem.strategy is not None:            # summed over S on several devices
            from tfflat.flatness import replicas

            self._fn = replicas.hvp(self.problem)
        else:
            self._fn = objective.compiled(self.problem, "hvp", _hvp)
        self.size = self.problem.size
        self.matvecs = 0
        self.callback = None

    def __call__(self, v) -> np.ndarray:
        import tensorflow as tf

        v = np.asarray(v).reshape(-1)
        if v.shape[0] != self.size:
            raise UserError(f"the vector has {v.shape[0]} entries; the network has {self.size} parameters")
        p = self.problem
        out = self._fn(p.w0, p.state, p.data, tf.constant(v, tf.float32), chunk=p.chunk).numpy().astype(np.float64)
        self.matvecs += 1
        if self.callback is not None:
            self.callback(self.matvecs)
        return out

    def operator(self):
        """This product as a symmetric float64 ``scipy.sparse.linalg.LinearOperator``."""
        from scipy.sparse.linalg import LinearOperator

        return LinearOperator((self.size, self.size), matvec=self, rmatvec=self, dtype=np.float64)

    def dense(self) -> np.ndarray:
        """The full Hessian (p HVPs; tiny networks only), symmetrised."""
        h = np.stack([self(e) for e in np.eye(self.size)], axis=1)
        return (h + h.T) / 2


def hvp(model, x, y=None, eval_batch: int | None = None, *, head=None, strategy=None) -> HVP:
    """The Hessian-vector product of the mean cross-entropy on (x, y) at ``model``'s current weights.

    Args:
      model: a built Keras classifier (evaluated with ``training=False``; see :mod:`tfflat.models.heads`).
      x, y: inputs (n, …) and labels (n,), arrays or tensors, or a ``tf.data.Dataset`` of (x, y) as ``x``.
      eval_batch: examples per forward chunk (default: all for dense networks, 256 otherwise).
      head: the model's head (read from the model by default).
      strategy: a ``tf.distribute`` strategy or :mod:`tfflat.devices` spec (several replicas: the sum
        over S is split over the devices, :mod:`tfflat.flatness.replicas`).
    Returns:
      :class:`HVP`: ``hvp(model, x, y)(v)`` is H v, float64 of shape (p,).
    """
    return HVP(model, x, y, eval_batch, head, strategy)


def _hvp(template, jit):
    """Build ``(w0, state, data, v flat) -> H v flat`` (forward-over-reverse, summed over chunks)."""
    import tensorflow as tf

    def hv(w0, state, data, v, *, chunk):
        _, y, xp, yp, mp = data
        tangents = objective.unflatten(v, w0)

        def part(xb, yb, mb):
            with tf.autodiff.ForwardAccumulator(w0, tangents) as acc:
                with tf.GradientTape() as tape:
                    tape.watch(w0)
                    total = objective.loss_sum(template, w0, state, xb, yb, mb)
                grads = tape.gradient(total, w0, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            return acc.jvp(grads, unconnected_gradients=tf.UnconnectedGradients.ZERO)

        out = objective.chunk_sum(part, xp, yp, mp, chunk)
        return objective.flatten(out) / tf.cast(tf.shape(y)[0], tf.float32)

    return tf.function(hv, jit_compile=jit)


def top_eigenvalues(h: HVP, k: int = defaults.HESSIAN_TOP_K, seed: int = 0, tol: float = EIGSH_TOL) -> np.ndarray:
    """The k largest (algebraic) eigenvalues of H, descending.

    ARPACK ``eigsh(which="LA")`` on :meth:`HVP.operator` (start vector drawn from ``seed``); for
    p ≤ 2k + 1 parameters, where Lanczos would need the whole space anyway, ``numpy.linalg.eigvalsh``
    of the exact Hessian.

    Warning: ARPACK keeps 2k + 1 float64 vectors of p entries: 27 MB for the 784-40-40-1 FCN at
    k = 50, but 19 GB for ResNet50 (p = 23.5 M); use a small k there.
    """
    from scipy.sparse.linalg import eigsh

    k = _check_k(k, h.size)
    check_memory(h.size, k)
    if h.size <= 2 * k + 1:
        return np.linalg.eigvalsh(h.dense())[::-1][:k].copy()
    v0 = np.random.default_rng(seed).standard_normal(h.size)
    with _one_blas_thread():
        values = eigsh(h.operator(), k=k, which="LA", tol=tol, v0=v0, return_eigenvectors=False)
    return np.sort(values)[::-1]


def spectral_norm(h: HVP, seed: int = 0, tol: float = EIGSH_TOL, top: float | None = None) -> float:
    """‖H‖₂ = max |λ|: ARPACK's largest-magnitude eigenvalue (exact for tiny networks)."""
    from scipy.sparse.linalg import eigsh

    if h.size <= 3:
        return float(np.max(np.abs(np.linalg.eigvalsh(h.dense()))))
    v0 = np.random.default_rng(seed + 1).standard_normal(h.size)
    ncv = min(h.size, 20)
    with _one_blas_thread():
        value = float(np.abs(eigsh(h.operator(), k=1, which="LM", tol=tol, v0=v0, ncv=ncv,
                                   return_eigenvectors=False)[0]))
    return max(value, abs(top)) if top is not None else value


def hutchinson_trace(h: HVP, probes: int = defaults.HESSIAN_PROBES, seed: int = 0) -> tuple[float, float]:
    """Hutchinson's estimate of tr H: (mean of vᵀHv over Rademacher v, its standard error)."""
    if probes < 1:
        raise UserError(f"need at least one probe for the trace estimate, got {probes}")
    rng = np.random.default_rng(seed)
    values = np.empty(probes)
    for i in range(probes):
        v = rng.integers(0, 2, h.size) * 2.0 - 1.0
        values[i] = v @ h(v)
    stderr = float(values.std(ddof=1) / math.sqrt(probes)) if probes > 1 else math.nan
    return float(values.mean()), stderr


@dataclass
class HessianResult:
    """Hessian measures of one network on one data set.

    Attributes:
      eigenvalues: the top-k eigenvalues of H, descending, shape (k,).
      spectral_norm: ‖H‖₂ = max |λ|.
      log10_top_product: log10 Π of the positive ones among the top-k eigenvalues (−inf if none).
      positive: how many of the top-k are positive.
      trace, trace_stderr: Hutchinson's estimate of tr H and its standard error.
      loss: L(w) on the data.
      matvecs: Hessian-vector products used.
      seconds: wall time (including tracing and compilation).
      settings: k, probes, seed, tol, examples, parameters.
    """

    eigenvalues: np.ndarray
    spectral_norm: float
    log10_top_product: float
    positive: int
    trace: float
    trace_stderr: float
    loss: float
    matvecs: int
    seconds: float
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {**asdict(self), "eigenvalues": [float(e) for e in self.eigenvalues]}


def hessian_measures(model, x, y=None, top_k: int = defaults.HESSIAN_TOP_K, seed: int = 0, *,
                     probes: int = defaults.HESSIAN_PROBES, tol: float = EIGSH_TOL,
                     eval_batch: int | None = None, head=None, callback=None, strategy=None) -> HessianResult:
    """Top-k eigenvalues, spectral norm, log10 top-k product and Hutchinson trace of ∇²L (App. E).

    Args:
      model: a built Keras classifier (evaluated with ``training=False``; see :mod:`tfflat.models.heads`).
      x, y: the data S: inputs (n, …) and labels (n,), arrays or tensors, or a ``tf.data.Dataset`` of
        (x, y) as ``x``.
      top_k: how many of the largest eigenvalues (the paper: 50); at most the number of parameters.
      seed: ARPACK start vectors and the Rademacher probes.
      probes: Hutchinson probes (0 skips the trace).
      tol: ARPACK's relative accuracy per eigenvalue.
      eval_batch: examples per forward chunk.
      head: the model's head (read from the model by default).
      callback: ``callback(matvecs)`` after every Hessian-vector product (progress).
      strategy: the devices of the Hessian-vector products (see :func:`hvp`).
    Returns:
      :class:`HessianResult`.
    """
    t0 = time.perf_counter()
    h = hvp(model, x, y, eval_batch, head=head, strategy=strategy)
    h.callback = callback
    top_k = _check_k(top_k, h.size)
    from tfflat import validate

    probes = validate.integer("probes", probes, least=0)
    seed = validate.seed("seed", seed)
    check_memory(h.size, top_k)
    values = top_eigenvalues(h, top_k, seed, tol)
    norm = spectral_norm(h, seed, tol, top=values[0])
    positive = values[values > 0]
    trace, stderr = hutchinson_trace(h, probes, seed) if probes else (math.nan, math.nan)
    loss = objective.mean_loss(h.problem)
    return HessianResult(
        eigenvalues=values, spectral_norm=norm,
        log10_top_product=float(np.sum(np.log10(positive))) if len(positive) else -math.inf,
        positive=int(len(positive)), trace=trace, trace_stderr=stderr, loss=loss, matvecs=h.matvecs,
        seconds=time.perf_counter() - t0,
        settings={"top_k": top_k, "probes": int(probes), "seed": int(seed), "tol": float(tol),
                  "head": h.problem.head.name,
                  "examples": h.problem.n, "parameters": h.size})


def _one_blas_thread():
    """ARPACK's vector work is small BLAS-2; threads only fight TensorFlow's pool (3-7x slower here)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def eigen_bytes(size: int, k: int) -> int:
    """Memory of :func:`top_eigenvalues` for p = ``size`` parameters: the dense Hessian (p ≤ 2k + 1; the
    identity, the p HVP columns and their symmetrisation: 3 p² float64) or ARPACK's Lanczos basis
    (ncv = max(2k + 1, 20) float64 vectors of p, and ncv² of workspace)."""
    if size <= 2 * k + 1:
        return 3 * 8 * size * size
    ncv = min(size, max(2 * k + 1, 20))
    return 8 * (ncv * size + 2 * ncv * ncv + 4 * size)


def check_memory(size: int, k: int) -> None:
    """Refuse (one :class:`UserError` line, with the numbers) a top-k request that cannot fit in memory."""
    from tfflat import memory

    how = (f"the dense Hessian ({size:,} × {size:,}: `top_k` {k} ≥ half of the {size:,} parameters)"
           if size <= 2 * k + 1 else f"Lanczos for the top {k} of {size:,} parameters")
    memory.require(eigen_bytes(size, k), how, "lower `top_k`")


def _check_k(k, size: int) -> int:
    from tfflat import validate

    k = validate.integer("top_k", k)
    if k < 1 or k > size:
        raise UserError(f"`top_k` must be between 1 and the number of parameters ({size}), got {k}")
    return k

