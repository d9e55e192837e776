"""Fisher–Rao norm (Liang et al. 2019) against closed forms and exact per-example gradients."""

import keras
import numpy as np
import pytest
from flatness_helpers import exact_derivatives, linear_model, tiny_data, tiny_fcn
from scipy.special import expit
from zoo_helpers import augmented, logistic

from tfflat.flatness.fisher_rao import fisher_rao_norm


def test_logistic_regression_closed_form():
    """f = θ·x + b is linear in (θ, b): ⟨(θ, b), ∇ℓ_i⟩ = (σ(z_i) − y_i) z_i."""
    x, y = tiny_data(n=30, d=4, seed=1)
    model = linear_model(d=4, seed=2)
    theta, b = logistic(model)
    z = augmented(x) @ np.append(theta, b)
    exact = np.mean(((expit(z) - y) * z) ** 2)
    res = fisher_rao_norm(model, x, y)
    assert res["squared"] == pytest.approx(exact, rel=1e-5)
    assert res["value"] == pytest.approx(np.sqrt(exact), rel=1e-5)
    assert res["mean_directional"] == pytest.approx(np.mean((expit(z) - y) * z), rel=1e-5, abs=1e-7)


def test_tiny_relu_net_with_biases_against_exact_per_example_gradients():
    x, y = tiny_data()
    model = tiny_fcn()
    weights = model.get_weights()
    theta = np.concatenate([w.ravel() for w in weights]).astype(np.float64)
    inner = [theta @ exact_derivatives(weights, x[i:i + 1], y[i:i + 1], hessian=False)[0] for i in range(len(y))]
    res = fisher_rao_norm(model, x, y)
    assert res["squared"] == pytest.approx(np.mean(np.square(inner)), rel=1e-5)


def test_bias_free_relu_net_obeys_liangs_lemma():
    """Without biases a ReLU net with L hidden layers is (L+1)-homogeneous: ⟨θ, ∇_θ f⟩ = (L+1) f (Lemma 2.1)."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((3,))
    h = keras.layers.Dense(5, activation="relu", use_bias=False)(inputs)
    h = keras.layers.Dense(4, activation="relu", use_bias=False)(h)
    model = keras.Model(inputs, keras.layers.Dense(1, use_bias=False)(h))
    x, y = tiny_data(n=16)
    z = model.predict(x, verbose=0).ravel().astype(np.float64)
    exact = 9 * np.mean(((expit(z) - y) * z) ** 2)                       # (L+1)² with L = 2
    assert fisher_rao_norm(model, x, y)["squared"] == pytest.approx(exact, rel=1e-5)
