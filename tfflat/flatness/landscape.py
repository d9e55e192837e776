"""The loss landscape around w₀, as the measure zoo sees it: the zoo's one door to :mod:`objective`.

Every measure in the zoo (:mod:`tfflat.flatness.measures`) is computed from a handful of
primitives on the loss of :mod:`tfflat.flatness.objective`,

    L(w) = (1/|S|) Σ_{(x,y)∈S} ℓ(f_w(x), y),

with the network in inference mode (BatchNorm on its moving statistics) and the weights passed as
tensors, so the model is never modified. Alongside ℓ each primitive also reports the 0-1 error
err(f_w(x), y) = 1[prediction ≠ y] (Jiang et al.'s PAC-Bayes measures bound the training error).

* :meth:`Landscape.losses` — (L, error) at weights w;
* :meth:`Landscape.value_grad` — L, error and ∇_u L at w = w₀ + c ⊙ u, on S or on a minibatch;
* :meth:`Landscape.noisy_losses` — L and error at w₀ + s ⊙ ξ_k for draws ξ_k ~ N(0, I) fixed by a seed;
* :meth:`Landscape.directional` — the per-example directional derivatives dℓ_i/dt along a tangent t
  (one forward-mode pass), as Σ_i (dℓ_i/dt)² / |S| and Σ_i dℓ_i/dt / |S|;
* :meth:`Landscape.block_hvp` — v ↦ H_BB v, the Hessian restricted to a block B of variables;
* :func:`full_hvp` — v ↦ H v (:func:`tfflat.flatness.hessian.hvp`).

All uses of objective's internals (``problem``, ``compiled``, ``logits``, ``chunk_sum``,
``flatten``/``unflatten``) by the zoo are in this module, and the loss ℓ itself in
:func:`_example_terms`; a new loss or output head changes only these.
"""

from __future__ import annotations

import numpy as np

from tfflat.errors import UserError
from tfflat.flatness import objective


def _example_terms(template, ws, state, xb, yb):
    """Per-example (ℓ_i, err_i) of a chunk: the head's cross-entropy (:mod:`tfflat.models.heads`) and the
    0-1 error, 1[(binary logit ≥ 0) ≠ y] or 1[argmax z ≠ y] for K classes."""
    import tensorflow as tf

    head = template.head
    z = objective.logits(template, ws, state, xb)
    if head.binary:
        pred = tf.cast(head.logit(z) >= 0, tf.float32)
    else:
        pred = tf.cast(tf.argmax(tf.reshape(z, [-1, head.outputs]), axis=1), tf.float32)
    wrong = tf.cast(tf.not_equal(pred, yb), tf.float32)
    return head.loss(z, yb), wrong


def full_hvp(model, x, y, eval_batch: int | None = None):
    """v ↦ H v at ``model``'s weights (a :class:`tfflat.flatness.hessian.HVP`)."""
    from tfflat.flatness.hessian import hvp

    return hvp(model, x, y, eval_batch)


def logit_network(model, x, head=None):
    """``model``'s :class:`~tfflat.models.heads.Head` and the network returning its pre-activation logits
    (:func:`tfflat.models.heads.resolve`), which every measure of the zoo is computed on."""
    from tfflat.data.arrays import as_arrays
    from tfflat.models import heads

    x, _ = as_arrays(x, None, model=model)
    return heads.resolve(model, head, x)


class Landscape:
    """The loss of ``model`` on (x, y) around the weights it has now (a snapshot; the model is not touched).

    Args:
      model: a built Keras classifier (:mod:`tfflat.models.heads`; evaluated with ``training=False``).
      x, y: inputs (n, …) and labels (n,).
      eval_batch: examples per forward chunk (default: all for dense networks, 256 otherwise).

    Weights, perturbations and scales are lists of float32 tensors in ``model.trainable_variables``
    order (the shapes of :attr:`w0`).
    """

    def __init__(self, model, x, y, eval_batch: int | None = None):
        self.problem = objective.problem(model, x, y, eval_batch)
        self.model = self.problem.net       # the variables of w₀ (a final sigmoid/softmax bypassed)

    # ---- the snapshot --------------------------------------------------------------------------
    @property
    def n(self) -> int:
        return self.problem.n

    @property
    def size(self) -> int:
        """p, the number of trainable parameters."""
        return self.problem.size

    @property
    def w0(self) -> list:
        return self.problem.w0

    def ones(self) -> list:
        import tensorflow as tf

        return [tf.ones_like(w) for w in self.w0]

    def zeros(self) -> list:
        import tensorflow as tf

        return [tf.zeros_like(w) for w in self.w0]

    def tensors(self, arrays) -> list:
        """float32 tensors of w₀'s shapes from arrays (or scalars, broadcast)."""
        import tensorflow as tf

        return [tf.constant(np.broadcast_to(np.asarray(a, np.float32), w.shape)) for a, w in zip(arrays, self.w0)]

    def layer_blocks(self) -> list[tuple[str, tuple[int, ...]]]:
        """(layer name, indices of its variables among the trainable ones) for every layer that has some."""
        variables = self.model.trainable_variables
        blocks = []
        for layer in _leaf_layers(self.model):
            idx = tuple(i for i, v in enumerate(variables) if any(v is w for w in layer.trainable_weights))
            if idx:
                blocks.append((layer.name, idx))
        return blocks

    # ---- primitives ----------------------------------------------------------------------------
    def losses(self, ws=None) -> tuple[float, float]:
        """(L(w), error(w)) on all of (x, y); ``ws`` defaults to w₀."""
        p = self.problem
        fn = objective.compiled(p, "zoo_losses", _losses)
        ce, err = fn(self.w0 if ws is None else list(ws), p.state, p.data, chunk=p.chunk)
        return float(ce), float(err)

    def value_grad(self, scale, u, idx=None):
        """(L, error, ∇_u L) at w = w₀ + scale ⊙ u, on all of (x, y) or on the examples ``idx``.

        Args:
          scale, u: lists of tensors shaped like w₀.
          idx: None (all examples) or int32 example indices, −1 for padding (masked out).
        Returns:
          (L: float, error: float, gradient: list of tensors).
        """
        import tensorflow as tf

        p = self.problem
        if idx is None:
            fn = objective.compiled(p, "zoo_value_grad", _value_grad)
            out = fn(self.w0, list(scale), list(u), p.state, p.data, chunk=p.chunk)
        else:
            fn = objective.compiled(p, "zoo_value_grad_batch", _value_grad_batch)
            out = fn(self.w0, list(scale), list(u), p.state, p.x, p.y, tf.constant(np.asarray(idx, np.int32)))
        return float(out[0]), float(out[1]), list(out[2:])

    def noisy_losses(self, scale, seed: int, draws: int) -> tuple[np.ndarray, np.ndarray]:
        """L and error at w₀ + scale ⊙ ξ_k, k = 0…draws−1, ξ_k ~ N(0, I) from (seed, k) (Philox, stateless).

        The draws depend only on (seed, k) and the shapes of w₀, so two networks of one architecture
        see the same ξ_k. Returns two float64 arrays of shape (draws,).
        """
        import tensorflow as tf

        if int(draws) < 1:
            raise UserError(f"draws must be ≥ 1, got {draws}")
        p = self.problem
        fn = objective.compiled(p, "zoo_noisy", _noisy)
        ce, err = fn(self.w0, list(scale), p.state, p.data, tf.constant(int(seed), tf.int32),
                     tf.constant(int(draws), tf.int32), chunk=p.chunk)
        return ce.numpy().astype(np.float64), err.numpy().astype(np.float64)

    def directional(self, tangent) -> dict:
        """Per-example directional derivatives g_i = dℓ_i(w₀ + t·tangent)/dt at t = 0 (forward mode).

        Returns ``{"mean_square": Σ g_i² / n, "mean": Σ g_i / n, "loss": L(w₀)}``.
        """
        p = self.problem
        fn = objective.compiled(p, "zoo_directional", _directional)
        sq, mean, loss = fn(self.w0, list(tangent), p.state, p.data, chunk=p.chunk)
        return {"mean_square": float(sq), "mean": float(mean), "loss": float(loss)}

    def block_hvp(self, idx) -> "BlockHVP":
        """v ↦ H_BB v for the variables ``idx`` (H restricted to them; the other weights held at w₀)."""
        return BlockHVP(self, idx)


class BlockHVP:
    """The Hessian block H_BB = ∂²L/∂w_B² of the variables B as a product v ↦ H_BB v (float64 out).

    Has the interface of :class:`tfflat.flatness.hessian.HVP` (``size``, call, ``operator``, ``dense``,
    ``matvecs``, ``callback``), so the spectral routines of :mod:`tfflat.flatness.hessian` apply.
    The forward-over-reverse product differentiates with respect to B only.
    """

    def __init__(self, land: Landscape, idx):
        self.land = land
        self.idx = tuple(int(i) for i in idx)
        if not self.idx or len(set(self.idx)) != len(self.idx) or min(self.idx) < 0 or max(self.idx) >= len(land.w0):
            raise UserError(f"variable indices must be distinct and in 0…{len(land.w0) - 1}, got {idx}")
        self.like = [land.w0[i] for i in self.idx]
        self.size = sum(int(np.prod(w.shape)) for w in self.like)
        self.matvecs = 0
        self.callback = None
        p = land.problem
        self._fn = objective.compiled(p, "zoo_block_hvp", _block_hvp)

    def __call__(self, v) -> np.ndarray:
        import tensorflow as tf

        v = np.asarray(v, np.float64).reshape(-1)
        if v.shape[0] != self.size:
            raise UserError(f"the vector has {v.shape[0]} entries; the block has {self.size} parameters")
        p = self.land.problem
        tangents = objective.unflatten(tf.constant(v, tf.float32), self.like)
        out = self._fn(p.w0, tangents, p.state, p.data, idx=self.idx, chunk=p.chunk)
        self.matvecs += 1
        if self.callback is not None:
            self.callback(self.matvecs)
        return out.numpy().astype(np.float64)

    def operator(self):
        from scipy.sparse.linalg import LinearOperator

        return LinearOperator((self.size, self.size), matvec=self, rmatvec=self, dtype=np.float64)

    def dense(self) -> np.ndarray:
        h = np.stack([self(e) for e in np.eye(self.size)], axis=1)
        return (h + h.T) / 2


def _leaf_layers(model):
    """The layers of ``model`` that own weights directly (nested models are descended into)."""
    out = []
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            out.extend(_leaf_layers(layer))
        else:
            out.append(layer)
    return out


# ---- compiled functions (one per architecture, see objective.compiled) ------------------------------

def _sums(template, ws, state, xb, yb, mb):
    ce, err = _example_terms(template, ws, state, xb, yb)
    import tensorflow as tf

    return [tf.reduce_sum(ce * mb), tf.reduce_sum(err * mb)]


def _losses(template, jit):
    import tensorflow as tf

    def fn(ws, state, data, *, chunk):
        _, y, xp, yp, mp = data
        out = objective.chunk_sum(lambda xb, yb, mb: _sums(template, ws, state, xb, yb, mb), xp, yp, mp, chunk)
        n = tf.cast(tf.shape(y)[0], tf.float32)
        return out[0] / n, out[1] / n

    return tf.function(fn, jit_compile=jit)


def _value_grad(template, jit):
    import tensorflow as tf

    def fn(w0, scale, u, state, data, *, chunk):
        _, y, xp, yp, mp = data

        def part(xb, yb, mb):
            with tf.GradientTape() as tape:
                tape.watch(u)
                ws = [w + s * d for w, s, d in zip(w0, scale, u)]
                ce, err = _sums(template, ws, state, xb, yb, mb)
            return [ce, err] + tape.gradient(ce, u, unconnected_gradients=tf.UnconnectedGradients.ZERO)

        out = objective.chunk_sum(part, xp, yp, mp, chunk)
        n = tf.cast(tf.shape(y)[0], tf.float32)
        return [t / n for t in out]

    return tf.function(fn, jit_compile=jit)


def _value_grad_batch(template, jit):
    import tensorflow as tf

    def fn(w0, scale, u, state, x, y, idx):
        mask = tf.cast(idx >= 0, tf.float32)
        safe = tf.maximum(idx, 0)
        xb, yb = tf.gather(x, safe), tf.gather(y, safe)
        with tf.GradientTape() as tape:
            tape.watch(u)
            ws = [w + s * d for w, s, d in zip(w0, scale, u)]
            ce, err = _sums(template, ws, state, xb, yb, mask)
        grads = tape.gradient(ce, u, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        m = tf.reduce_sum(mask)
        return [ce / m, err / m] + [g / m for g in grads]

    return tf.function(fn, jit_compile=jit)


def _noisy(template, jit):
    import tensorflow as tf

    def fn(w0, scale, state, data, seed, draws, *, chunk):
        _, y, xp, yp, mp = data
        n = tf.cast(tf.shape(y)[0], tf.float32)
        nv = len(w0)
        ce_out = tf.TensorArray(tf.float32, size=draws)
        err_out = tf.TensorArray(tf.float32, size=draws)
        for k in tf.range(draws):
            ws = [w + s * tf.random.stateless_normal(tf.shape(w), seed=tf.stack([seed, k * nv + j]), alg="philox")
                  for j, (w, s) in enumerate(zip(w0, scale))]
            out = objective.chunk_sum(lambda xb, yb, mb: _sums(template, ws, state, xb, yb, mb), xp, yp, mp, chunk)
            ce_out = ce_out.write(k, out[0] / n)
            err_out = err_out.write(k, out[1] / n)
        return ce_out.stack(), err_out.stack()

    return tf.function(fn, jit_compile=jit)


def _directional(template, jit):
    import tensorflow as tf

    def fn(w0, tangent, state, data, *, chunk):
        _, y, xp, yp, mp = data

        def part(xb, yb, mb):
            with tf.autodiff.ForwardAccumulator(w0, tangent) as acc:
                ce, _ = _example_terms(template, w0, state, xb, yb)
            g = acc.jvp(ce, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            return [tf.reduce_sum(mb * g * g), tf.reduce_sum(mb * g), tf.reduce_sum(mb * ce)]

        out = objective.chunk_sum(part, xp, yp, mp, chunk)
        n = tf.cast(tf.shape(y)[0], tf.float32)
        return [t / n for t in out]

    return tf.function(fn, jit_compile=jit)


def _block_hvp(template, jit):
    import tensorflow as tf

    def fn(w0, tangents, state, data, *, idx, chunk):
        _, y, xp, yp, mp = data
        block = [w0[i] for i in idx]

        def part(xb, yb, mb):
            with tf.autodiff.ForwardAccumulator(block, tangents) as acc:
                with tf.GradientTape() as tape:
                    tape.watch(block)
                    ce, _ = _sums(template, w0, state, xb, yb, mb)
                grads = tape.gradient(ce, block, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            return acc.jvp(grads, unconnected_gradients=tf.UnconnectedGradients.ZERO)

        out = objective.chunk_sum(part, xp, yp, mp, chunk)
        return objective.flatten(out) / tf.cast(tf.shape(y)[0], tf.float32)

    return tf.function(fn, jit_compile=jit)
