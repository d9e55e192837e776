"""Hessian measures against the exact Hessian of tiny networks (float64 nested autodiff, numpy eigh)."""

import math

import numpy as np
import pytest
from flatness_helpers import exact_derivatives, tiny_data, tiny_fcn

from tfflat.errors import UserError
from tfflat.flatness import hessian_measures, hutchinson_trace, hvp, spectral_norm, top_eigenvalues


@pytest.fixture(scope="module")
def tiny():
    x, y = tiny_data()
    model = tiny_fcn()
    _, hess = exact_derivatives(model.get_weights(), x, y)
    return model, x, y, hess


def test_hvp_equals_exact_hessian_times_v(tiny):
    model, x, y, hess = tiny
    h = hvp(model, x, y)
    assert h.size == hess.shape[0] == 35
    rng = np.random.default_rng(1)
    scale = np.abs(hess).max()
    for _ in range(3):
        v = rng.normal(size=h.size)
        np.testing.assert_allclose(h(v), hess @ v, atol=2e-5 * scale * np.abs(v).sum() / 10)
    np.testing.assert_allclose(h.dense(), hess, atol=1e-5 * scale)


def test_eigenvalues_match_numpy_eigh(tiny):
    model, x, y, hess = tiny
    exact = np.linalg.eigvalsh(hess)[::-1]
    h = hvp(model, x, y)
    scale = np.abs(exact).max()
    top = top_eigenvalues(h, k=5)                       # ARPACK: 35 parameters > 2k + 1
    assert h.matvecs < 35 * 10
    np.testing.assert_allclose(top, exact[:5], atol=1e-5 * scale)
    np.testing.assert_allclose(top_eigenvalues(h, k=35), exact, atol=1e-5 * scale)   # dense path, k = p
    assert spectral_norm(h) == pytest.approx(np.abs(exact).max(), rel=1e-5)


def test_hessian_measures_summary_and_trace(tiny):
    model, x, y, hess = tiny
    exact = np.linalg.eigvalsh(hess)[::-1]
    before = [w.copy() for w in model.get_weights()]
    res = hessian_measures(model, x, y, top_k=8, probes=400, seed=3)
    positive = exact[:8][exact[:8] > 0]
    assert res.positive == len(positive)
    assert res.log10_top_product == pytest.approx(np.sum(np.log10(positive)), abs=1e-4)
    assert res.spectral_norm == pytest.approx(np.abs(exact).max(), rel=1e-5)
    # Hutchinson: unbiased, and its standard error is the Rademacher one, sqrt(2 Σ_{i≠j} H_ij² / m)
    off = hess - np.diag(np.diag(hess))
    sd = math.sqrt(2 * np.sum(off ** 2) / 400)
    assert res.trace_stderr == pytest.approx(sd, rel=0.3)
    assert abs(res.trace - np.trace(hess)) < 4 * sd
    assert res.loss == pytest.approx(float(np.mean(np.logaddexp(0, model.predict(x, verbose=0).ravel())
                                                   - y * model.predict(x, verbose=0).ravel())), rel=1e-5)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    d = res.to_dict()
    assert d["eigenvalues"] == [float(e) for e in res.eigenvalues] and d["settings"]["top_k"] == 8


def test_hutchinson_is_exact_for_a_diagonal_operator():
    class Diagonal:
        size = 6

        def __call__(self, v):
            return np.arange(1.0, 7.0) * v

    trace, stderr = hutchinson_trace(Diagonal(), probes=5)
    assert trace == pytest.approx(21.0) and stderr == pytest.approx(0.0)


def test_batchnorm_network_in_inference_mode():
    """A conv + BatchNorm network: the HVP is that of the inference-mode loss, also summed over S in
    padded chunks (12 examples, chunks of 5); nothing is updated."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 4, 1))
    h = keras.layers.Conv2D(2, 3, name="conv")(inputs)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.Activation("relu")(keras.layers.Flatten()(h))
    model = keras.Model(inputs, keras.layers.Dense(1, name="logit")(h))
    bn = model.get_layer("bn")
    bn.moving_mean.assign([0.3, -0.2])
    bn.moving_variance.assign([2.0, 0.5])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 4, 4, 1)).astype(np.float32)
    y = (rng.random(12) < 0.5).astype(np.float32)
    before = [w.copy() for w in model.get_weights()]

    variables = model.trainable_variables
    with tf.GradientTape(persistent=True) as outer:
        with tf.GradientTape() as inner:
            z = tf.reshape(model(x, training=False), [-1])
            loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=z))
        grad = tf.concat([tf.reshape(g, [-1]) for g in inner.gradient(loss, variables)], 0)
    exact = tf.concat([tf.reshape(j, [grad.shape[0], -1]) for j in outer.jacobian(grad, variables)], 1).numpy()

    h = hvp(model, x, y, eval_batch=5)
    assert h.size == exact.shape[0]
    np.testing.assert_allclose(h.dense(), (exact + exact.T) / 2, atol=1e-4 * np.abs(exact).max())
    res = hessian_measures(model, x, y, top_k=3, probes=10)
    np.testing.assert_allclose(res.eigenvalues, np.linalg.eigvalsh((exact + exact.T) / 2)[::-1][:3],
                               atol=1e-4 * np.abs(exact).max())
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_bad_input(tiny):
    model, x, y, _ = tiny
    with pytest.raises(UserError, match="number of parameters"):
        hessian_measures(model, x, y, top_k=36)
    with pytest.raises(UserError, match="between 1"):
        hessian_measures(model, x, y, top_k=0)
    with pytest.raises(UserError, match="labels"):
        hvp(model, x, y + 2)
    with pytest.raises(UserError, match="parameters"):
        hvp(model, x, y)(np.ones(3))
