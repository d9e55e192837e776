"""The measure zoo on user heads: a final sigmoid is measured on its pre-activation, exactly as the same
network written with one linear logit; K-class models get every cross-entropy measure."""

import numpy as np
import pytest
from tfflat.flatness import flatness_measures

FAST = {"keskar_sharpness": {"epochs": 2}, "layer_hessian_trace": {"probes": 10}, "steps": 4}

CHEAP = ["keskar_sharpness", "hessian_spectral_norm", "layer_hessian_trace", "adaptive_sharpness_l2",
         "fisher_rao_norm", "relative_flatness", "m_sharpness", "path_norm", "spectral_norm_product"]


def _pair(units=1, activation="sigmoid", seed=0):
    """A ReLU MLP ending in Dense(units, activation) and its twin ending in the same Dense, linear."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,))
    h = keras.layers.Dense(7, activation="relu")(inputs)
    h = keras.layers.Dense(5, activation="relu")(h)
    user = keras.Model(inputs, keras.layers.Dense(units, activation=activation)(h))
    twin = keras.models.clone_model(user)
    twin.layers[-1].activation = keras.activations.linear
    twin.set_weights(user.get_weights())
    return user, twin


@pytest.mark.filterwarnings("ignore::tfflat.flatness.NotConvergedWarning")
def test_sigmoid_head_equals_its_linear_logit_twin():
    user, twin = _pair()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6)).astype(np.float32)
    y = (rng.random(40) < 0.5).astype(np.int64)
    before = [w.copy() for w in user.get_weights()]
    a = flatness_measures(user, x, y, CHEAP, seed=3, settings=FAST)
    b = flatness_measures(twin, x, y, CHEAP, seed=3, settings=FAST, head="logit")
    for name in CHEAP:
        assert a[name]["value"] == pytest.approx(b[name]["value"], rel=1e-5, abs=1e-9), name
    assert all(np.array_equal(u, v) for u, v in zip(before, user.get_weights()))


@pytest.mark.filterwarnings("ignore::tfflat.flatness.NotConvergedWarning")
def test_ten_class_softmax_model_gets_the_cross_entropy_measures():
    user, _ = _pair(units=10, activation="softmax", seed=1)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 6)).astype(np.float32)
    y = rng.integers(0, 10, 30)
    out = flatness_measures(user, x, y, ["keskar_sharpness", "fisher_rao_norm", "relative_flatness",
                                         "spectral_norm_product"], seed=0, settings={"epochs": 2})
    assert all(np.isfinite(r["value"]) for r in out.values())
    assert out["relative_flatness"]["outputs"] == 10
