"""tfflat.measure on users' models trained with model.fit: a sigmoid CNN, a 2-class softmax MLP, a
BatchNorm + Dropout MLP, a subclassed model and a 10-class softmax model.

The truth for the binary ones: the same network rewritten by hand to return one linear logit
(same weights, same parameter order) must give the same sharpness and Hessian (float32 rounding);
the user's weights must be bit-identical before and after.
"""

import warnings

import keras
import numpy as np
import pytest

import tfflat
from tfflat.errors import UserError

N, SETTINGS = 48, dict(epochs=2, top_k=3, probes=3, seed=1, lr=1e-2, zeta=1e-3)


def data(shape, classes=2, n=N, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n,) + shape).astype(np.float32)
    score = x.reshape(n, -1) @ rng.normal(size=(int(np.prod(shape)), classes))
    return x, np.argmax(score, axis=1)


def fit(model, x, y, loss):
    model.compile(keras.optimizers.Adam(0.01), loss)
    model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    return model


def snapshot(model):
    return [w.copy() for w in model.get_weights()]


def same_weights(model, before):
    return all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def sigmoid_cnn():
    keras.utils.set_random_seed(0)
    inp = keras.Input((6, 6, 1))
    h = keras.layers.Flatten()(keras.layers.Conv2D(3, 3, activation="relu")(inp))
    return inp, h, keras.layers.Dense(1, activation="sigmoid")


def bn_dropout_mlp():
    keras.utils.set_random_seed(1)
    inp = keras.Input((5,))
    h = keras.layers.Dense(8)(inp)
    h = keras.layers.Dropout(0.3)(keras.layers.Activation("relu")(keras.layers.BatchNormalization()(h)))
    return inp, h, keras.layers.Dense(1, activation="sigmoid")


class Subclassed(keras.Model):
    def __init__(self, width=6, **kwargs):
        super().__init__(**kwargs)
        self.hidden = keras.layers.Dense(width, activation="relu")
        self.out = keras.layers.Dense(1, activation="sigmoid")

    def call(self, x):
        return self.out(self.hidden(x))


def linear_twin(inp, h, last, model):
    """The same network returning the pre-activation logit (weights copied)."""
    twin = keras.Model(inp, keras.layers.Dense(last.units)(h))
    twin.set_weights(model.get_weights())
    return twin


def flat_numbers(rec):
    return {k: rec[k] for k in ("sharpness", "max_loss", "loss", "spectral_norm", "log10_top_product",
                                "hessian_trace")}


def assert_same_measures(a, b):
    for k, v in flat_numbers(a).items():
        assert flat_numbers(b)[k] == pytest.approx(v, rel=1e-4, abs=1e-7), k
    np.testing.assert_allclose(a["top_eigenvalues"], b["top_eigenvalues"], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("build", [sigmoid_cnn, bn_dropout_mlp], ids=["sigmoid_cnn", "bn_dropout_mlp"])
def test_sigmoid_models_equal_their_linear_logit_twin(build):
    inp, h, last = build()
    model = keras.Model(inp, last(h))
    x, y = data(tuple(inp.shape[1:]))
    xt, yt = data(tuple(inp.shape[1:]), seed=1)
    fit(model, x, y, "binary_crossentropy")
    before = snapshot(model)
    rec = tfflat.measure(model, x, y, xt, yt, measures=("sharpness", "hessian"), **SETTINGS)
    assert same_weights(model, before)
    twin = linear_twin(inp, h, last, model)
    ref = tfflat.measure(twin, x, y, xt, yt, measures=("sharpness", "hessian"), **SETTINGS)
    assert rec["head"] == "sigmoid" and ref["head"] == "logit"
    assert_same_measures(rec, ref)
    # the function is the user's: accuracies from its own outputs (p ≥ ½)
    p = model.predict(xt, verbose=0).ravel()
    assert rec["test_accuracy"] == pytest.approx(np.mean((p >= 0.5) == yt))
    assert rec["sharpness"] > 0 and rec["spectral_norm"] > 0


def test_two_class_softmax_equals_the_hand_written_logit_difference():
    keras.utils.set_random_seed(2)
    inp = keras.Input((5,))
    # (a Dropout keeps both networks off XLA, whose minibatch order differs from TensorFlow's: the twin's
    # Lambda is not XLA-compiled)
    h = keras.layers.Dropout(0.1)(keras.layers.Dense(8, activation="relu")(inp))
    z = keras.layers.Dense(2)(h)
    model = keras.Model(inp, keras.layers.Softmax()(z))
    x, y = data((5,))
    fit(model, x, y, "sparse_categorical_crossentropy")
    before = snapshot(model)
    rec = tfflat.measure(model, x, y, measures=("sharpness", "hessian"), **SETTINGS)
    assert same_weights(model, before) and rec["head"] == "softmax" and rec["classes"] == 2
    # by hand: one logit z₁ − z₀ computed by the same layers (same parameters)
    twin = keras.Model(inp, keras.layers.Lambda(lambda t: t[:, 1:2] - t[:, 0:1])(z))
    ref = tfflat.measure(twin, x, y, measures=("sharpness", "hessian"), head="logit", **SETTINGS)
    assert_same_measures(rec, ref)
    assert rec["train_accuracy"] == pytest.approx(np.mean(np.argmax(model.predict(x, verbose=0), 1) == y))


def test_subclassed_sigmoid_model_equals_its_functional_twin():
    keras.utils.set_random_seed(3)
    x, y = data((5,))
    model = fit(Subclassed(), x, y, keras.losses.BinaryCrossentropy())
    before = snapshot(model)
    xt, yt = data((5,), n=20, seed=1)
    rec = tfflat.measure(model, x, y, xt, yt, **SETTINGS, samples=4)
    assert same_weights(model, before) and rec["head"] == "sigmoid"
    inp = keras.Input((5,))
    twin = keras.Model(inp, keras.layers.Dense(1)(keras.layers.Dense(6, activation="relu")(inp)))
    twin.set_weights(model.get_weights())
    ref = tfflat.measure(twin, x, y, measures=("sharpness", "hessian"), **SETTINGS)
    assert_same_measures(rec, ref)
    assert rec["kernel"] == "empirical" and rec["log10_prior"] < 0 and rec["pac_bayes_bound"] > 0


def test_ten_class_softmax_model():
    keras.utils.set_random_seed(4)
    x, y = data((6,), classes=10, n=60)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(12, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    fit(model, x, y, "sparse_categorical_crossentropy")
    before = snapshot(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rec = tfflat.measure(model, x, keras.utils.to_categorical(y, 10), x, y, **SETTINGS)   # one-hot labels
    assert same_weights(model, before)
    assert rec["head"] == "softmax" and rec["classes"] == 10
    assert rec["sharpness"] > 0 and rec["spectral_norm"] > 0 and rec["log10_prior"] is None   # prior: binary only
    assert rec["train_accuracy"] == rec["test_accuracy"] == pytest.approx(
        np.mean(np.argmax(model.predict(x, verbose=0), 1) == y))
    with pytest.raises(UserError, match="binary function"):
        tfflat.measure(model, x, y, measures=("prior",))


def test_record_keys_inputs_and_bad_requests():
    import tensorflow as tf

    keras.utils.set_random_seed(5)
    x, y = data((4,))
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(10)
    a = tfflat.measure(model, ds, measures=("sharpness",), epochs=1)
    b = tfflat.measure(model, tf.constant(x), tf.constant(y), measures=("sharpness",), epochs=1)
    assert a["sharpness"] == b["sharpness"] and a["spectral_norm"] is None
    assert {"sharpness", "log10_sharpness", "sharpness_converged", "spectral_norm", "log10_prior", "pac_bayes_bound",
            "train_accuracy", "test_accuracy"} <= set(a)
    with pytest.raises(UserError, match="unknown setting"):
        tfflat.measure(model, x, y, zeeta=1)
    with pytest.raises(UserError, match="unknown measure"):
        tfflat.measure(model, x, y, measures=("flatness",))
    with pytest.raises(UserError, match=r"shape \(5,\)"):
        tfflat.measure(model, np.zeros((4, 5), np.float32), y[:4])
    with pytest.raises(UserError, match="label 2"):
        tfflat.measure(model, x, y + 1)


def test_import_stays_light():
    import subprocess
    import sys

    code = "import sys, tfflat; f = tfflat.measure; import tfflat.api; assert 'tensorflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
