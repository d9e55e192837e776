"""Tiny networks and an independent float64 implementation of their loss (the truth for flatness tests)."""

import numpy as np


def tiny_data(n=20, d=3, seed=0):
    """n Gaussian inputs in d dimensions, labels from a random linear teacher (both classes present)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = (x @ rng.normal(size=d) > 0).astype(np.float32)
    return x, y


def tiny_fcn(d=3, widths=(4, 3), seed=0):
    from tfflat.models.fcn import fcn

    return fcn((d,), widths, sigma_w=1.5, sigma_b=0.5, seed=seed)


def linear_model(d=3, seed=0):
    """Logistic regression, Input → Dense(1): its loss is convex in w, so a box maximum sits at a vertex."""
    import keras

    inputs = keras.Input((d,))
    logit = keras.layers.Dense(1, name="logit", kernel_initializer=keras.initializers.RandomNormal(0, 1, seed=seed),
                               bias_initializer=keras.initializers.RandomNormal(0, 1, seed=seed + 1))(inputs)
    return keras.Model(inputs, logit)


def loss64(weights, x, y):
    """Mean sigmoid CE of a Dense-ReLU network given as [K0, b0, K1, b1, …], in float64 numpy."""
    h = np.asarray(x, np.float64).reshape(len(x), -1)
    pairs = list(zip(weights[::2], weights[1::2]))
    for i, (k, b) in enumerate(pairs):
        h = h @ np.asarray(k, np.float64) + np.asarray(b, np.float64)
        if i < len(pairs) - 1:
            h = np.maximum(h, 0)
    z = h.ravel()
    return float(np.mean(np.logaddexp(0, z) - y * z))


def exact_derivatives(weights, x, y, hessian=True):
    """(gradient, Hessian or None) of the mean CE w.r.t. the flattened weights, float64, nested autodiff."""
    import tensorflow as tf

    shapes = [np.shape(w) for w in weights]
    sizes = [int(np.prod(s)) for s in shapes]
    flat = tf.Variable(np.concatenate([np.ravel(w) for w in weights]).astype(np.float64))
    xt = tf.constant(np.asarray(x, np.float64).reshape(len(x), -1))
    yt = tf.constant(np.asarray(y, np.float64))
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            parts = [tf.reshape(p, s) for p, s in zip(tf.split(flat, sizes), shapes)]
            h = xt
            for i in range(0, len(parts), 2):
                h = h @ parts[i] + parts[i + 1]
                if i < len(parts) - 2:
                    h = tf.nn.relu(h)
            z = tf.reshape(h, [-1])
            loss = tf.reduce_mean(tf.nn.softplus(z) - yt * z)
        grad = inner.gradient(loss, flat)
    return grad.numpy(), outer.jacobian(grad, flat).numpy() if hessian else None
