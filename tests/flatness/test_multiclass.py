"""K-class heads: the Hessian of a tiny softmax network against nested float64 autodiff, and the
categorical-CE sharpness against a plain eager float64 ascent with the same minibatches."""

import math

import keras
import numpy as np
import pytest

from tfflat.flatness import hessian_measures, hvp, sharpness

K, D, N, BS = 3, 3, 24, 8


@pytest.fixture(scope="module")
def softmax_net():
    """3-4-3 ReLU net ending in Softmax (its Dropout keeps the measure off XLA, so the minibatch order is
    TensorFlow's, reproducible eagerly), and K-class data."""
    keras.utils.set_random_seed(3)
    inp = keras.Input((D,))
    h = keras.layers.Dropout(0.2)(keras.layers.Dense(4, activation="relu")(inp))
    model = keras.Model(inp, keras.layers.Softmax()(keras.layers.Dense(K)(h)))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, D)).astype(np.float32)
    y = np.argmax(x @ rng.normal(size=(D, K)), axis=1)
    return model, x, y


def ce64(flat, shapes, x, y):
    """Mean softmax CE of the 3-4-3 net with flattened weights ``flat``, float64 (a tf graph of ops)."""
    import tensorflow as tf

    sizes = [int(np.prod(s)) for s in shapes]
    k0, b0, k1, b1 = [tf.reshape(p, s) for p, s in zip(tf.split(flat, sizes), shapes)]
    z = tf.nn.relu(x @ k0 + b0) @ k1 + b1
    return tf.reduce_mean(tf.reduce_logsumexp(z, axis=1) - tf.gather(z, y, axis=1, batch_dims=1))


def derivatives(weights, x, y, hessian=True):
    import tensorflow as tf

    shapes = [w.shape for w in weights]
    flat = tf.Variable(np.concatenate([w.ravel() for w in weights]).astype(np.float64))
    xt, yt = tf.constant(x, tf.float64), tf.constant(y)
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            loss = ce64(flat, shapes, xt, yt)
        grad = inner.gradient(loss, flat)
    return float(loss), grad.numpy(), outer.jacobian(grad, flat).numpy() if hessian else None


def test_exact_hessian_of_a_tiny_softmax_net(softmax_net):
    model, x, y = softmax_net
    w = model.get_weights()
    _, _, exact = derivatives(w, x, y)
    h = hvp(model, x, y)
    assert h.problem.head.name == "softmax" and h.size == exact.shape[0] == 31
    np.testing.assert_allclose(h.dense(), exact, rtol=1e-4, atol=1e-6)
    res = hessian_measures(model, x, y, top_k=4, probes=0)
    np.testing.assert_allclose(res.eigenvalues, np.linalg.eigvalsh(exact)[::-1][:4], rtol=1e-4, atol=1e-6)
    assert res.loss == pytest.approx(derivatives(w, x, y, hessian=False)[0], rel=1e-6)


def test_categorical_sharpness_equals_a_plain_eager_ascent(softmax_net):
    import tensorflow as tf

    model, x, y = softmax_net
    zeta, lr, epochs, seed = 1e-3, 0.5, 3, 4
    w0 = [w.astype(np.float64) for w in model.get_weights()]
    flat0 = np.concatenate([w.ravel() for w in w0])
    radius = zeta * (np.abs(flat0) + 1)
    loss0 = derivatives(w0, x, y, hessian=False)[0]
    shapes = [w.shape for w in w0]

    def split(v):
        return [p.reshape(s) for p, s in zip(np.split(v, np.cumsum([np.prod(s) for s in shapes])[:-1]), shapes)]

    delta, best = np.zeros_like(flat0), loss0
    for e in range(epochs):
        order = tf.argsort(tf.random.stateless_uniform([N], seed=[seed, e], alg="philox"), stable=True).numpy()
        for i in range(0, N, BS):
            b = order[i:i + BS]
            _, g, _ = derivatives(split(flat0 + delta), x[b], y[b], hessian=False)
            delta = np.clip(delta + lr * g, -radius, radius)
            best = max(best, derivatives(split(flat0 + delta), x, y, hessian=False)[0])
    res = sharpness(model, x, y, zeta=zeta, lr=lr, epochs=epochs, batch_size=BS, seed=seed)
    assert res.loss == pytest.approx(loss0, rel=1e-6)
    assert res.max_loss == pytest.approx(best, rel=1e-6)
    assert res.sharpness == pytest.approx(100 * (best - loss0) / (1 + loss0), rel=1e-3)
    assert res.settings["head"] == "softmax" and res.max_loss > res.loss
    assert math.isfinite(res.log10_sharpness)
