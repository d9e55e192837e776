"""Keskar sharpness of plain ReLU FCNs, one or many at once (Def. 2.1, App. E eq. 8, Table 1).

The same projected minibatch ascent as :func:`tfflat.flatness.sharpness` (``method="sgd"``): from
Δ = 0, ``epochs`` passes over S in the order ``argsort(stateless_uniform(seed, epoch))``, each step
Δ ← clip(Δ + lr ∇L_B(w + Δ), −ζ(|w|+1), ζ(|w|+1)), and the running maximum of the full-S loss
L(w + Δ) after every step (``track="step"``) or epoch. Written out for FCNs (Dense layers, ReLU
between them, one linear logit) it can save arithmetic that the generic path cannot:

* **one first-layer product per step.** The full-S forward after step t gives the first-layer
  pre-activations Z₁ = X_S(W₁ + Δ₁) + b₁ + δb₁ of every example of S, and the minibatch of step t+1
  is a subset of S: its Z₁ rows are gathered, not recomputed. The first-layer weight gradient is
  X_Bᵀ ∂L_B/∂Z₁ (a network's input gradient is never needed).
* **inputs that are zero on all of S** (MNIST's border pixels: 209 of 784 for Table 1's |S| = 500)
  are dropped: their products are exactly 0 and their weights' gradients are exactly 0, so their
  Δ stays 0. Only the order of the float32 sums changes.
* **many networks at once.** Networks measured with the same ``seed`` (e.g. the attack sizes of a
  sweep) take the same minibatches, so their first layers form one wide matrix
  [W₁⁽¹⁾ … W₁⁽ᴷ⁾] and every first-layer product, X_S W₁ and X_Bᵀ G alike, is a single GEMM with
  K× the columns; the deeper (small) layers are batched products.

The numbers equal the generic path's to float32 rounding (``tests/flatness/test_sharpness_batched.py``): the
minibatch order, the steps and the tracked maximum are the same, only the order of float32
additions inside the products differs.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict

import numpy as np

from tfflat import defaults
from tfflat.errors import UserError

_CACHE: dict = {}


def fcn_weights(model) -> list | None:
    """``[W₁, b₁, W₂, b₂, …]`` (numpy) of a plain ReLU FCN with one logit, else ``None``."""
    from tfflat.training.batched import dense_weights

    return dense_weights(model)


def plain_fcn(template) -> bool:
    """Whether an :class:`~tfflat.flatness.objective.Template` is a plain ReLU FCN with one logit under
    sigmoid CE: the case this module writes out."""
    if template.head.outputs != 1 or not template.head.binary:
        return False
    ws = fcn_weights(template.model)      # and w₀ (the trainable variables) in that order
    return ws is not None and [np.shape(w) for w in ws] == [tuple(v.shape) for v in template.model.trainable_variables]


def sharpness_fcns(weights: list, x, y, zeta: float = 1e-4, lr: float = 1e-3, epochs: int = 100,
                   batch_size: int = 32, seeds=0, *, track: str = "step", rtol: float = defaults.SHARPNESS_RTOL,
                   max_epochs: int | None = None, window: int = defaults.SHARPNESS_WINDOW) -> list:
    """Keskar sharpness (``method="sgd"``) of several FCNs on the same data S.

    Args:
      weights: one ``[W₁, b₁, …]`` list per network (e.g. ``model.get_weights()`` of FCNs of one
        architecture; see :func:`fcn_weights`).
      x, y: S, inputs (n, …) and 0/1 labels (n,).
      zeta, lr, epochs, batch_size, rtol, max_epochs, window: as for :func:`tfflat.flatness.sharpness`
        (Table 1 and the stopping rule; each network stops on its own).
      seeds: the minibatch-order seed of each network (an int: the same for all).
      track: ``"step"`` or ``"epoch"``.
    Returns:
      One :class:`~tfflat.flatness.SharpnessResult` per network, equal to
      ``sharpness(model, x, y, zeta, "sgd", lr, epochs, batch_size, seed, rtol=…, max_epochs=…, window=…)``
      to float32 rounding;
      ``seconds`` is the network's share of its group's time.
    """
    from tfflat.flatness import objective
    from tfflat.flatness.sharpness import SharpnessResult, cap, check_settings, relative_rise

    check_settings(zeta, "sgd", lr, epochs, batch_size, track=track, rtol=rtol, max_epochs=max_epochs, window=window)
    limit = cap(epochs, max_epochs)
    if not weights:
        return []
    x, y = objective.check_data(x, y)
    seeds = [int(seeds)] * len(weights) if np.ndim(seeds) == 0 else [int(s) for s in seeds]
    if len(seeds) != len(weights):
        raise UserError(f"got {len(seeds)} seeds for {len(weights)} networks")
    shapes = [tuple(np.shape(w)) for w in weights[0]]
    if any([tuple(np.shape(w)) for w in ws] != shapes for ws in weights):
        raise UserError("all networks must have the same architecture")
    data = Data(x, y, shapes)
    bs = min(int(batch_size), data.n)
    groups = defaultdict(list)
    for k, s in enumerate(seeds):
        groups[s].append(k)
    out = [None] * len(weights)
    for seed, members in groups.items():
        t0 = time.perf_counter()
        stack = Stack(data, [weights[k] for k in members])
        loss, corner = stack.loss_and_corner(zeta)
        best, traces, stopped = stack.ascent(loss, zeta, lr, int(epochs), bs, seed, track == "step",
                                             max_epochs=limit, rtol=float(rtol), window=int(window))
        seconds = (time.perf_counter() - t0) / len(members)
        for i, k in enumerate(members):
            l0, top = float(loss[i]), float(max(best[i], loss[i]))
            sharp = relative_rise(l0, top)
            out[k] = SharpnessResult(
                sharpness=sharp, log10_sharpness=math.log10(sharp) if sharp > 0 else -math.inf, loss=l0,
                max_loss=top, corner_loss=float(corner[i]), trace=traces[i], seconds=seconds, method="sgd",
                settings={"zeta": float(zeta), "method": "sgd", "examples": data.n, "parameters": data.size,
                          "head": "logit", "lr": float(lr), "epochs": int(epochs), "rtol": float(rtol),
                          "window": int(window), "max_epochs": limit, "batch_size": bs, "seed": seed, "track": track,
                          "steps": len(traces[i]) * math.ceil(data.n / bs)},
                ascent_epochs=len(traces[i]), stopped_by_tolerance=bool(stopped[i]))
    return out


def ascent(weights: list, x, y, loss: float, zeta: float, lr: float, epochs: int, batch_size: int, seed: int,
           track: str = "step", callback=None, *, max_epochs: int | None = None, rtol: float | None = None,
           window: int = defaults.SHARPNESS_WINDOW):
    """The ascent of one FCN from Δ = 0 with running maximum starting at ``loss``, under the stopping
    rule (:func:`tfflat.flatness.sharpness.until_still`; ``rtol=None``: exactly ``epochs``):
    (max_loss, trace, stopped by the tolerance). The FCN fast path of
    :func:`tfflat.flatness.sharpness`'s ``method="sgd"``."""
    data = Data(np.asarray(x, np.float32), np.asarray(y, np.float32), [tuple(np.shape(w)) for w in weights])
    stack = Stack(data, [weights])
    best, traces, stopped = stack.ascent(np.array([loss], np.float32), zeta, lr, epochs, min(int(batch_size), data.n),
                                         seed, track == "step", callback, max_epochs=max_epochs, rtol=rtol,
                                         window=window)
    return float(best[0]), traces[0], bool(stopped[0])


class Data:
    """S flattened, restricted to the inputs that are nonzero somewhere on S."""

    def __init__(self, x, y, shapes):
        import tensorflow as tf

        self.n = len(y)
        flat = np.asarray(x, np.float32).reshape(self.n, -1)
        if flat.shape[1] != shapes[0][0]:
            raise UserError(f"inputs have {flat.shape[1]} features but the first layer takes {shapes[0][0]}")
        self.keep = np.flatnonzero(np.any(flat != 0, axis=0))
        if len(self.keep) == 0:
            self.keep = np.arange(1)
        self.all_kept = len(self.keep) == flat.shape[1]
        self.x = tf.constant(flat if self.all_kept else flat[:, self.keep])
        self.y = tf.constant(np.asarray(y, np.float32))
        self.shapes = shapes
        self.size = sum(int(np.prod(s)) for s in shapes)


class Stack:
    """K networks of one architecture on one Data: first layer side by side, deeper layers stacked."""

    def __init__(self, data: Data, weights: list):
        import tensorflow as tf

        self.data, self.k = data, len(weights)
        w1 = np.concatenate([np.asarray(ws[0], np.float32)[data.keep] for ws in weights], axis=1)
        b1 = np.concatenate([np.asarray(ws[1], np.float32) for ws in weights])
        deeper = [np.stack([np.asarray(ws[i], np.float32) for ws in weights]) for i in range(2, len(weights[0]))]
        self.w = tuple(tf.constant(v) for v in [w1, b1] + deeper)
        self.widths = tuple(int(s[1]) for s in data.shapes[::2])

    def _key(self, *extra):
        return (self.k, self.data.n, int(self.data.x.shape[1]), self.widths) + extra

    def loss_and_corner(self, zeta):
        """(L(w), L(w + corner)) per network, as numpy (K,)."""
        import tensorflow as tf

        key = ("corner",) + self._key()
        if key not in _CACHE:
            # called once per stack: a plain graph, no XLA compilation
            _CACHE[key] = tf.function(_loss_and_corner_fn(self.k, self.widths), autograph=False)
        loss, corner = _CACHE[key](self.w, self.data.x, self.data.y, tf.constant(zeta, tf.float32))
        return loss.numpy(), corner.numpy()

    def ascent(self, loss, zeta, lr, epochs, batch_size, seed, per_step, callback=None, *, max_epochs=None,
               rtol=None, window=defaults.SHARPNESS_WINDOW):
        """Run the projected ascent, each network under the stopping rule of
        :func:`tfflat.flatness.sharpness.until_still` (``rtol=None``: exactly ``epochs``, as Table 1):
        the stack runs until every network's running maximum has ceased to change or ``max_epochs``;
        a network's result is its running maximum at its own stop (the networks do not interact, so
        it equals that network's ascent alone). Returns (max per network (K,), its trace per network
        (a list of (epochs_k,) float64 arrays), stopped by the tolerance per network (K,) bool)."""
        import tensorflow as tf

        from tfflat.flatness.sharpness import cap, still

        key = ("ascent",) + self._key(batch_size, per_step)
        if key not in _CACHE:
            _CACHE[key] = tf.function(_epoch_fn(self.k, self.widths, batch_size, per_step), jit_compile=True,
                                      autograph=False)
        epoch = _CACHE[key]
        delta = tuple(tf.zeros_like(w) for w in self.w)
        z1 = tf.matmul(self.data.x, self.w[0]) + self.w[1]          # Z₁ on S at Δ = 0, carried from step to step
        best = tf.constant(np.asarray(loss, np.float32))
        args = (self.w, self.data.x, self.data.y, tf.constant(zeta, tf.float32), tf.constant(lr, tf.float32))
        limit = int(epochs) if rtol is None else cap(epochs, max_epochs)
        base = np.asarray(loss, np.float32).astype(np.float64)          # as the one-network rule reads them
        trace, values, stop = [], {}, np.full(self.k, -1)
        for e in range(limit):
            delta, z1, best = epoch(*args, delta, z1, best, minibatch_order(self.data.n, seed, e))
            trace.append(best)
            if callback is not None:
                callback(e + 1, float(best[0]) if self.k == 1 else best.numpy())
            if rtol is not None and e + 1 + window >= epochs:
                values[e] = best.numpy().astype(np.float64)
                stop[(stop < 0) & still(values, e, base, epochs, rtol, window)] = e
                if (stop >= 0).all():
                    break
        table = np.stack([t.numpy() for t in trace]).astype(np.float64)          # (epochs run, K)
        ends = np.where(stop >= 0, stop, len(trace) - 1)
        return (np.array([table[ends[i], i] for i in range(self.k)]), [table[:ends[i] + 1, i] for i in range(self.k)],
                stop >= 0)


# ---- the compiled functions -----------------------------------------------------------------

def minibatch_order(n: int, seed: int, epoch: int):
    """The order of S in ascent epoch ``epoch``: ``argsort(stateless_uniform([n], (seed, epoch)))``, drawn by
    XLA as the generic path's compiled epoch draws it (XLA's philox stream is not the eager kernel's), but
    in a small program of its own so that the epoch compiles faster."""
    import tensorflow as tf

    if "order" not in _CACHE:
        def order(n, key):
            u = tf.random.stateless_uniform(tf.reshape(n, [1]), seed=key, alg="philox")
            return tf.cast(tf.argsort(u, stable=True), tf.int32)

        _CACHE["order"] = tf.function(order, jit_compile=True, autograph=False, reduce_retracing=True)
    return _CACHE["order"](tf.constant(n), tf.constant([int(seed), int(epoch)]))


def _head(z1, deeper, k):
    """Logits (K, m) from the first-layer pre-activations z1 (m, K·h₁) through the deeper layers."""
    import tensorflow as tf

    if not deeper:
        return tf.transpose(z1)
    m = tf.shape(z1)[0]
    h = tf.transpose(tf.reshape(tf.nn.relu(z1), [m, k, -1]), [1, 0, 2])
    for i in range(0, len(deeper), 2):
        h = tf.matmul(h, deeper[i]) + deeper[i + 1][:, None, :]
        if i + 2 < len(deeper):
            h = tf.nn.relu(h)
    return h[..., 0]


def _backward(z1, deeper, y, weight, k):
    """Gradients of Σ_K Σ_b weight_b · CE(logit_kb, y_b): (∂/∂z1 (m, K·h₁), [∂/∂W₂, ∂/∂b₂, …])."""
    import tensorflow as tf

    m = tf.shape(z1)[0]
    if not deeper:
        return tf.transpose((tf.sigmoid(tf.transpose(z1)) - y) * weight), []
    pre = [tf.transpose(tf.reshape(z1, [m, k, -1]), [1, 0, 2])]          # (K, m, h₁)
    acts = []
    for i in range(0, len(deeper), 2):
        acts.append(tf.nn.relu(pre[-1]))
        pre.append(tf.matmul(acts[-1], deeper[i]) + deeper[i + 1][:, None, :])
    dz = (tf.sigmoid(pre[-1]) - y[:, None]) * weight[:, None]           # (K, m, 1)
    grads = []
    for i in range(len(deeper) - 2, -1, -2):
        a = acts[i // 2]
        grads = [tf.matmul(a, dz, transpose_a=True), tf.reduce_sum(dz, 1)] + grads
        dz = tf.matmul(dz, deeper[i], transpose_b=True) * tf.cast(pre[i // 2] > 0, tf.float32)
    return tf.reshape(tf.transpose(dz, [1, 0, 2]), [m, -1]), grads


def _mean_ce(logits, y, mask=None):
    """Mean sigmoid CE per network (K,) over the examples (masked, for a padded minibatch)."""
    import tensorflow as tf

    labels = tf.broadcast_to(y[None], tf.shape(logits))
    ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
    if mask is None:
        return tf.reduce_sum(ce, 1) / tf.cast(tf.shape(y)[0], tf.float32)
    return tf.reduce_sum(ce * mask, 1) / tf.reduce_sum(mask)


def _loss_and_corner_fn(k, widths):
    import tensorflow as tf

    def fn(w, x, y, zeta):
        w = list(w)
        with tf.GradientTape() as tape:
            tape.watch(w)
            loss = _mean_ce(_head(tf.matmul(x, w[0]) + w[1], w[2:], k), y)
            total = tf.reduce_sum(loss)
        grads = tape.gradient(total, w)
        corner = [v + zeta * (tf.abs(v) + 1.0) * tf.sign(g) for v, g in zip(w, grads)]
        corner_loss = _mean_ce(_head(tf.matmul(x, corner[0]) + corner[1], corner[2:], k), y)
        return loss, corner_loss

    return fn


def _epoch_fn(k, widths, batch_size, per_step):
    """One epoch of the ascent of a Stack (its order fixed by (seed, epoch)); carries (Δ, Z₁ on S, best)."""
    import tensorflow as tf

    def epoch(w, x, y, zeta, lr, delta, z1s, best, order):
        n = int(y.shape[0])
        batches = math.ceil(n / batch_size)
        pad = batches * batch_size - n
        w = list(w)
        radius = [zeta * (tf.abs(v) + 1.0) for v in w]

        def first(d):
            return tf.matmul(x, w[0] + d[0]) + (w[1] + d[1])

        def full_loss(z1, d):
            return _mean_ce(_head(z1, [v + dv for v, dv in zip(w[2:], d[2:])], k), y)

        slots = tf.reshape(tf.concat([order, tf.fill([pad], -1)], 0), [batches, batch_size])

        def step(b, delta, z1s, best):
            idx = slots[b]
            mask = tf.cast(idx >= 0, tf.float32)
            safe = tf.maximum(idx, 0)
            xb, yb = tf.gather(x, safe), tf.gather(y, safe)
            deep = [v + dv for v, dv in zip(w[2:], delta[2:])]
            z1b = tf.gather(z1s, safe) if per_step else tf.matmul(xb, w[0] + delta[0]) + (w[1] + delta[1])
            g1, grads = _backward(z1b, deep, yb, mask / tf.reduce_sum(mask), k)
            grads = [tf.matmul(xb, g1, transpose_a=True), tf.reduce_sum(g1, 0)] + grads
            delta = tuple(tf.clip_by_value(dv + lr * g, -r, r) for dv, g, r in zip(delta, grads, radius))
            if per_step:
                z1s = first(delta)
                best = tf.maximum(best, full_loss(z1s, delta))
            return b + 1, delta, z1s, best

        _, delta, z1s, best = tf.while_loop(lambda b, *_: b < batches, step, (tf.constant(0), tuple(delta), z1s, best))
        if not per_step:
            best = tf.maximum(best, full_loss(first(delta), delta))
        return delta, z1s, best

    return epoch


def value_grad(w0, state, data, delta, *, chunk=None):
    """``(L(w₀ + Δ), ∇L flat)`` on all of S for a plain FCN (``w₀ = [W₁, b₁, …]``; Δ flat): the FCN case
    of :func:`tfflat.flatness.sharpness`'s loss-and-gradient (eager or traced)."""
    import tensorflow as tf

    from tfflat.flatness import objective

    x, y = data[0], data[1]
    h0 = tf.reshape(x, [tf.shape(x)[0], -1])
    d = objective.unflatten(delta, w0)
    with tf.GradientTape() as tape:
        tape.watch(d)
        h = h0
        for i in range(0, len(w0), 2):
            h = tf.matmul(h, w0[i] + d[i]) + (w0[i + 1] + d[i + 1])
            if i + 2 < len(w0):
                h = tf.nn.relu(h)
        loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=h[:, 0]))
    return loss, objective.flatten(tape.gradient(loss, d))
