"""Path norm and spectral-norm product against path enumeration and closed forms."""

import itertools

import keras
import numpy as np
import pytest
from flatness_helpers import linear_model, tiny_fcn
from zoo_helpers import rescaled

from tfflat.errors import UserError
from tfflat.flatness.norms import path_norm, spectral_norm_product


def enumerate_paths(weights):
    """Σ over every input→output and bias→output path of Π w_e², by explicit enumeration (float64)."""
    ks = [np.asarray(k, np.float64) for k in weights[::2]]
    bs = [np.asarray(b, np.float64) for b in weights[1::2]]
    total = 0.0
    for start in range(len(ks) + 1):            # start = 0: an input; start = l ≥ 1: a bias of layer l − 1
        sizes = [ks[start].shape[0]] if start == 0 else [bs[start - 1].shape[0]]
        sizes += [k.shape[1] for k in ks[start:]]
        for units in itertools.product(*[range(s) for s in sizes]):
            prod = 1.0 if start == 0 else bs[start - 1][units[0]] ** 2
            for step, l in enumerate(range(start, len(ks))):
                prod *= ks[l][units[step], units[step + 1]] ** 2
            total += prod
    return total


def test_path_norm_enumerates_paths():
    model = tiny_fcn()
    res = path_norm(model)
    assert res["squared"] == pytest.approx(enumerate_paths(model.get_weights()), rel=1e-5)
    assert res["value"] == pytest.approx(np.sqrt(res["squared"]))
    lin = linear_model(d=3)
    k, b = lin.get_weights()
    assert path_norm(lin)["squared"] == pytest.approx(float(np.sum(k ** 2) + b[0] ** 2), rel=1e-6)


def test_spectral_norm_product_and_its_invariance():
    model = tiny_fcn()
    kernels = [np.asarray(w, np.float64) for w in model.get_weights()[::2]]
    exact = np.prod([np.linalg.svd(k, compute_uv=False)[0] for k in kernels])
    res = spectral_norm_product(model)
    assert res["value"] == pytest.approx(exact, rel=1e-6) and res["log10"] == pytest.approx(np.log10(exact))
    assert spectral_norm_product(rescaled(model, "layer", 1, 5.9))["value"] == pytest.approx(exact, rel=1e-5)
    assert abs(spectral_norm_product(rescaled(model, "neuron", 1, 5.9, [0, 1]))["value"] / exact - 1) > 0.01
    for kind, units in [("layer", None), ("neuron", [0, 1])]:
        assert path_norm(rescaled(model, kind, 1, 5.9, units))["value"] == \
            pytest.approx(path_norm(model)["value"], rel=1e-5)


def test_path_norm_refuses_non_path_networks():
    inputs = keras.Input((3,))
    tanh = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Dense(4, activation="tanh")(inputs)))
    with pytest.raises(UserError, match="tanh"):
        path_norm(tanh)
    bn = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.BatchNormalization()(keras.layers.Dense(4)(inputs))))
    with pytest.raises(UserError, match="BatchNormalization"):
        path_norm(bn)
