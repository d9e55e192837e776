"""The flatness measures' compiled functions with one replica per device (issue 17): the sharpness
ascent, the loss and its gradient, and the Hessian-vector product, for a
:class:`~tfflat.flatness.objective.Problem` made with a ``tf.distribute`` strategy of several replicas.

The data are split once: replica k holds chunks k, k + R, k + 2R, … of S (padded with all-masked chunks
to equal counts), and a copy of w₀, the BatchNorm state and S itself (for the ascent's minibatches).
Each function sums its loss (or gradient, or HVP) over the replica's chunks and the replicas' sums are
added (``strategy.reduce(SUM)``): L = (1/|S|) Σ_replicas Σ_chunks, the one-device number up to float
rounding. An ascent step splits the one-device step's minibatch (same order, same padding) into one
slice per replica and adds their gradients; Δ is updated once, on the default device. The one-device
functions of :mod:`tfflat.flatness.sharpness` and :mod:`tfflat.flatness.hessian` are not touched.
"""

from __future__ import annotations

import math

from tfflat.flatness import objective


class Shards:
    """A problem's data and weights placed on every replica (see the module doc)."""

    def __init__(self, prob):
        import tensorflow as tf

        self.strategy = strategy = prob.strategy
        r = self.replicas = int(strategy.num_replicas_in_sync)
        xp, yp, mp = prob.chunks
        chunk = prob.chunk
        nc = int(xp.shape[0]) // chunk
        per = math.ceil(nc / r)

        def mine(t, k):
            parts = [t[c * chunk:(c + 1) * chunk] for c in range(k, nc, r)]
            parts += [tf.zeros_like(t[:chunk])] * (per - len(parts))     # all-masked (mask 0) chunks
            return tf.concat(parts, 0)

        def place(fn):
            return strategy.experimental_distribute_values_from_function(lambda ctx: fn(ctx.replica_id_in_sync_group))

        self.chunks = place(lambda k: (mine(xp, k), mine(yp, k), mine(mp, k)))
        self.w0 = place(lambda k: [tf.identity(w) for w in prob.w0])
        self.state = place(lambda k: [tf.identity(s) for s in prob.state])
        self.xy = place(lambda k: (tf.identity(prob.x), tf.identity(prob.y)))
        self.n, self.chunk, self.template = prob.n, chunk, prob.template

    def sum(self, per_replica):
        import tensorflow as tf

        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)


def shards(prob) -> Shards:
    """The problem's :class:`Shards`, made once per problem."""
    if getattr(prob, "_shards", None) is None:
        prob._shards = Shards(prob)
    return prob._shards


def _local_sum(sh, part, chunks):
    xp, yp, mp = chunks
    return objective.chunk_sum(part, xp, yp, mp, sh.chunk)


def value_grad(prob):
    """``(w0, state, data, Δ flat, *, chunk) -> (L(w0 + Δ), ∇L flat)``, the signature of the one-device
    function (w0, state, data are the problem's own and taken from the replicas' copies)."""
    import tensorflow as tf

    sh = shards(prob)
    tmpl = sh.template

    def replica(w0, state, chunks, delta):
        part = objective.value_grad_part(tmpl, w0, state, objective.unflatten(delta, w0))
        out = _local_sum(sh, part, chunks)
        return out[0], objective.flatten(out[1:])

    @tf.function
    def fn(delta):
        loss, grad = sh.strategy.run(replica, args=(sh.w0, sh.state, sh.chunks, delta))
        return sh.sum(loss) / sh.n, sh.sum(grad) / sh.n

    return lambda w0, state, data, delta, *, chunk: fn(tf.constant(delta, tf.float32))


def hvp(prob):
    """``(w0, state, data, v flat, *, chunk) -> H v flat``, the signature of the one-device function."""
    import tensorflow as tf

    sh = shards(prob)
    tmpl = sh.template

    def replica(w0, state, chunks, v):
        part = objective.hvp_part(tmpl, w0, state, objective.unflatten(v, w0))
        return objective.flatten(_local_sum(sh, part, chunks))

    @tf.function
    def fn(v):
        return sh.sum(sh.strategy.run(replica, args=(sh.w0, sh.state, sh.chunks, v))) / sh.n

    return lambda w0, state, data, v, *, chunk: fn(v)


def sgd(prob, loss, zeta, lr, epochs, max_epochs, rtol, window, batch_size, seed, track, callback):
    """The projected minibatch ascent of :func:`tfflat.flatness.sharpness._sgd` on the replicas: same
    minibatch order (seed, epoch), same box, same running maximum, same stopping rule
    (:func:`~tfflat.flatness.sharpness.until_still`). Returns (max loss, trace, stopped by the tolerance)."""
    import tensorflow as tf

    from tfflat.flatness.sharpness import until_still

    sh = shards(prob)
    tmpl, n, r = sh.template, sh.n, sh.replicas
    batches = math.ceil(n / batch_size)
    pad = batches * batch_size - n
    per = math.ceil(batch_size / r)
    per_step = track == "step"

    def replica_grad(w0, state, xy, delta, idx):
        x, y = xy
        k = tf.distribute.get_replica_context().replica_id_in_sync_group
        part = tf.reshape(tf.concat([idx, tf.fill([per * r - batch_size], -1)], 0), [r, per])[k]
        return objective.minibatch_grad(tmpl, w0, state, delta, x, y, part, mean=False)   # summed over replicas

    def replica_loss(w0, state, chunks, delta):
        ws = [w + dw for w, dw in zip(w0, delta)]
        return _local_sum(sh, lambda xb, yb, mb: objective.loss_sum(tmpl, ws, state, xb, yb, mb), chunks)

    def full_loss(delta):
        return sh.sum(sh.strategy.run(replica_loss, args=(sh.w0, sh.state, sh.chunks, delta))) / n

    radius = [zeta * (tf.abs(w) + 1.0) for w in prob.w0]

    @tf.function
    def epoch(delta, best, index):
        key = tf.stack([tf.constant(seed), index])
        order = tf.cast(tf.argsort(tf.random.stateless_uniform([n], seed=key, alg="philox"), stable=True), tf.int32)
        slots = tf.reshape(tf.concat([order, tf.fill([pad], -1)], 0), [batches, batch_size])
        for b in tf.range(batches):
            idx = slots[b]
            count = tf.reduce_sum(tf.cast(idx >= 0, tf.float32))
            grads = sh.strategy.run(replica_grad, args=(sh.w0, sh.state, sh.xy, delta, idx))
            grads = [sh.sum(g) / count for g in grads]
            delta = [tf.clip_by_value(dw + lr * g, -rad, rad) for dw, g, rad in zip(delta, grads, radius)]
            if per_step:
                best = tf.maximum(best, full_loss(delta))
        if not per_step:
            best = tf.maximum(best, full_loss(delta))
        return delta, best

    carry = [[tf.zeros_like(w) for w in prob.w0], tf.constant(loss, tf.float32)]

    def advance(e):
        carry[:] = epoch(*carry, tf.constant(e))
        return carry[1]

    return until_still(advance, loss, epochs, max_epochs, rtol, window, callback)
