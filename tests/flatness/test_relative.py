"""Relative flatness κ_Tr (Petzka et al. 2021) against the closed form of the output layer's Hessian."""

import keras
import numpy as np
import pytest
from flatness_helpers import tiny_data, tiny_fcn
from zoo_helpers import relu_forward, rescaled, sigmoid_prime

from tfflat.errors import UserError
from tfflat.flatness.relative import relative_flatness


def exact_block(model, x):
    """z = h·w + b is linear in w: ∂²L/∂w² = (1/n) Σ σ'(z_i) h_i h_iᵀ (exact for the last layer)."""
    weights = model.get_weights()
    h, z = relu_forward(weights, x)
    return (h * sigmoid_prime(z)[:, None]).T @ h / len(z), np.asarray(weights[-2], np.float64).ravel()


def test_exact_and_hutchinson_paths_against_the_closed_form():
    x, y = tiny_data(n=20)
    model = tiny_fcn()
    block, w = exact_block(model, x)
    kappa = float(w @ w * np.trace(block))
    res = relative_flatness(model, x, y, probes=100)                          # m = 3 ≤ probes: exact
    assert res["exact"] and res["stderr"] == 0.0 and res["matvecs"] == 3
    assert res["value"] == pytest.approx(kappa, rel=1e-5)
    assert res["hessian_trace"] == pytest.approx(np.trace(block), rel=1e-5)
    # Hutchinson with the documented probes (Rademacher from default_rng(seed)) is reproduced exactly
    res = relative_flatness(model, x, y, probes=2, seed=4)
    rng = np.random.default_rng(4)
    probes = [rng.integers(0, 2, 3) * 2.0 - 1.0 for _ in range(2)]
    estimate = np.mean([r @ block @ r for r in probes]) * (w @ w)
    assert not res["exact"] and res["value"] == pytest.approx(estimate, rel=1e-5)


def test_invariance_follows_the_derivation():
    """Layer-wise on either layer and neuron-wise on the first leave κ unchanged; neuron-wise on the last
    hidden layer (which feeds the output kernel) does not."""
    x, y = tiny_data(n=20)
    model = tiny_fcn()
    base = relative_flatness(model, x, y)["value"]
    for kind, layer, units in [("layer", 1, None), ("layer", 2, None), ("neuron", 1, [0, 2])]:
        assert relative_flatness(rescaled(model, kind, layer, 5.9, units), x, y)["value"] == \
            pytest.approx(base, rel=1e-5), (kind, layer)
    changed = relative_flatness(rescaled(model, "neuron", 2, 5.9, [0]), x, y)["value"]
    assert abs(changed / base - 1) > 0.05


def test_needs_a_dense_output_layer():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Activation("linear")(keras.layers.Dense(1)(inputs)))
    x, y = tiny_data(n=8)
    with pytest.raises(UserError, match="ends in a Dense"):
        relative_flatness(model, x, y)
