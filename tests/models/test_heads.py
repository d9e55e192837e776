"""Heads: read from the last layer and the compiled loss; the measured logits reproduce the model exactly;
everything else is one UserError naming what was found."""

import keras
import numpy as np
import pytest

from tfflat.errors import UserError
from tfflat.models import heads

X = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)


def net(units, activation=None, final=None):
    keras.utils.set_random_seed(0)
    inp = keras.Input((4,))
    h = keras.layers.Dense(5, activation="relu")(inp)
    z = keras.layers.Dense(units, activation=activation)(h)
    if final is not None:
        z = final(z)
    return keras.Model(inp, z)


@pytest.mark.parametrize("make, loss, expected", [
    (lambda: net(1), None, ("logit", 1)),
    (lambda: net(1, "sigmoid"), None, ("sigmoid", 1)),
    (lambda: net(1, "sigmoid"), "binary_crossentropy", ("sigmoid", 1)),
    (lambda: net(1), keras.losses.BinaryCrossentropy(from_logits=True), ("logit", 1)),
    (lambda: net(2, "softmax"), "sparse_categorical_crossentropy", ("softmax", 2)),
    (lambda: net(2), None, ("logits", 2)),
    (lambda: net(10, "softmax"), None, ("softmax", 10)),
    (lambda: net(10), keras.losses.CategoricalCrossentropy(from_logits=True), ("logits", 10)),
    (lambda: net(1, final=keras.layers.Activation("sigmoid")), None, ("sigmoid", 1)),
    (lambda: net(3, final=keras.layers.Softmax()), None, ("softmax", 3)),
])
def test_detected_heads_and_exact_logits(make, loss, expected):
    import tensorflow as tf

    model = make()
    if loss is not None:
        model.compile("sgd", loss)
    before = [w.copy() for w in model.get_weights()]
    h, lm = heads.resolve(model, None, X)
    assert (h.name, h.outputs) == expected
    assert h.classes == max(2, expected[1]) and h.binary == (expected[1] <= 2)
    z = lm(X, training=False)
    out = model(X, training=False).numpy()
    if h.activation == "linear":
        assert lm is model
    else:      # the same layers and variables, minus the activation: bit for bit
        assert lm is not model and all(a is b for a, b in zip(lm.trainable_variables, model.trainable_variables))
        act = tf.sigmoid(z) if h.activation == "sigmoid" else tf.nn.softmax(z)
        np.testing.assert_array_equal(act.numpy(), out)
    want = (out.ravel() >= (0.5 if h.activation == "sigmoid" else 0)) if expected[1] == 1 else np.argmax(out, 1)
    np.testing.assert_array_equal(h.predict(z.numpy()), want.astype(int))
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


@pytest.mark.parametrize("make, loss, head, needle", [
    (lambda: net(1, "tanh"), None, None, "activation 'tanh'"),
    (lambda: net(3, "sigmoid"), None, None, "activation 'sigmoid' and 3 output units"),
    (lambda: net(1), "binary_crossentropy", None, "from_logits=False"),
    (lambda: net(1, "sigmoid"), keras.losses.BinaryCrossentropy(from_logits=True), None, "from_logits=True"),
    (lambda: net(1), "mse", None, "'mse'"),
    (lambda: net(3), "binary_crossentropy", None, "binary cross-entropy"),
    (lambda: net(1), None, "softmax", "needs K ≥ 2"),
    (lambda: net(3), None, "sigmoid", "needs one output unit"),
    (lambda: net(1), None, "probability", "unknown `head`"),
    (lambda: net(1, final=keras.layers.Lambda(lambda t: t * 2)), None, None, "Lambda"),
])
def test_anything_else_is_one_clear_error(make, loss, head, needle):
    model = make()
    if loss is not None:
        model.compile("sgd", loss)
    with pytest.raises(UserError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        heads.resolve(model, head, X)


def test_multi_output_and_bad_output_shapes():
    inp = keras.Input((4,))
    two = keras.Model(inp, [keras.layers.Dense(1)(inp), keras.layers.Dense(1)(inp)])
    with pytest.raises(UserError, match="2 outputs"):
        heads.detect(two)
    seq = keras.Model(inp, keras.layers.Reshape((2, 2))(keras.layers.Dense(4)(inp)))
    with pytest.raises(UserError, match="output has shape"):
        heads.detect(seq, "logits")


class Sub(keras.Model):
    def __init__(self, units=1, activation="sigmoid", **kwargs):
        super().__init__(**kwargs)
        self.hidden = keras.layers.Dense(5, activation="relu")
        self.out = keras.layers.Dense(units, activation=activation)

    def call(self, x):
        return self.out(self.hidden(x))


def test_subclassed_models_need_the_compiled_loss_or_head():
    import tensorflow as tf

    model = Sub()
    model(X[:1])
    with pytest.raises(UserError, match="compile it with its loss"):
        heads.resolve(model, None, X)
    model.compile("sgd", "binary_crossentropy")
    h, lm = heads.resolve(model, None, X)
    assert h.name == "sigmoid" and lm is not model       # a private clone with a linear last layer
    np.testing.assert_allclose(tf.sigmoid(lm(X)).numpy(), model(X).numpy(), rtol=1e-6)
    assert model.out.activation is keras.activations.sigmoid             # the user's model is untouched
    logits = Sub(activation=None)
    logits(X[:1])
    h, lm = heads.resolve(logits, "logit", X)
    assert h.name == "logit" and lm is logits


def test_labels_checked_against_the_head():
    binary, ten = heads.named("sigmoid", 1), heads.named("softmax", 10)
    np.testing.assert_array_equal(binary.check_labels([0, 1, 1]), [0, 1, 1])
    np.testing.assert_array_equal(ten.check_labels(np.eye(10)[[3, 7]]), [3, 7])           # one-hot
    np.testing.assert_array_equal(heads.named("logits", 2).check_labels(np.eye(2)[[1, 0]]), [1, 0])
    with pytest.raises(UserError, match="needs labels 0 or 1"):
        binary.check_labels([0, 2])
    with pytest.raises(UserError, match="integers 0…9"):
        ten.check_labels([0, 10])
    with pytest.raises(UserError, match="shape"):
        binary.check_labels(np.zeros((3, 3)))


def test_losses_are_the_cross_entropies():
    import tensorflow as tf

    z = tf.constant([[0.3, -1.2], [2.0, 0.5]])
    y = tf.constant([1.0, 0.0])
    two = heads.named("logits", 2)
    # the sigmoid CE of z1 - z0 is the 2-class softmax CE
    np.testing.assert_allclose(two.loss(z, y).numpy(),
                               tf.nn.sparse_softmax_cross_entropy_with_logits(tf.cast(y, tf.int32), z).numpy(),
                               rtol=1e-6)
    zk = tf.constant(np.random.default_rng(1).normal(size=(4, 5)), tf.float32)
    yk = np.array([0, 4, 2, 2])
    p = np.exp(zk.numpy()) / np.exp(zk.numpy()).sum(1, keepdims=True)
    np.testing.assert_allclose(heads.named("softmax", 5).loss(zk, yk.astype(np.float32)).numpy(),
                               -np.log(p[np.arange(4), yk]), rtol=1e-5)
