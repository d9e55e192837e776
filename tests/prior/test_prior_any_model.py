"""log P(f) of any Keras binary classifier: the kernel read from its layers and initialisers, f = true
labels on S + its labels on E, the model untouched; clear errors where a prior cannot be defined."""

import math
import warnings

import keras
import numpy as np
import pytest

from tfflat.errors import UserError
from tfflat.prior import log_prior, log_prior_of_model, model_kernel_params
from tfflat.prior.kernels import empirical_kernel, fcn_structure, init_variance, nngp_kernel


def recursion(x, sw, sb):
    """The arc-cosine recursion with per-layer scales (sw[l], sb[l]), written out on the full matrix."""
    x = x.reshape(len(x), -1).astype(np.float64)
    k = sb[0] ** 2 + sw[0] ** 2 * x @ x.T / x.shape[1]
    for w, b in zip(sw[1:], sb[1:]):
        q = np.sqrt(np.diag(k))
        theta = np.arccos(np.clip(k / np.outer(q, q), -1, 1))
        k = b ** 2 + w ** 2 / (2 * np.pi) * np.outer(q, q) * (np.sin(theta) + (np.pi - theta) * np.cos(theta))
    return k


def test_initializer_variances():
    inits = keras.initializers
    assert init_variance(inits.RandomNormal(0, 0.3), (5, 7)) == pytest.approx(0.09)
    assert init_variance(inits.RandomUniform(-0.6, 0.6), (5, 7)) == pytest.approx(0.12)
    assert init_variance(inits.GlorotUniform(), (5, 7)) == pytest.approx(2 / 12)
    assert init_variance(inits.HeNormal(), (5, 7)) == pytest.approx(2 / 5)
    assert init_variance(inits.LecunNormal(), (5, 7)) == pytest.approx(1 / 5)
    assert init_variance(inits.Zeros(), (7,)) == 0.0
    for opaque in (inits.Orthogonal(), inits.Ones(), inits.RandomNormal(1.0, 0.1), inits.Identity()):
        assert init_variance(opaque, (5, 5)) is None
    # Keras' TruncatedNormal(stddev) and VarianceScaling(truncated_normal) draws: the variance empirically
    for init, var in ((inits.TruncatedNormal(0, 0.5, seed=1), None), (inits.HeNormal(seed=2), 2 / 400)):
        draws = np.asarray(init((400, 400)))
        assert np.var(draws) == pytest.approx(init_variance(init, (400, 400)), rel=0.02)
        if var is not None:
            assert init_variance(init, (400, 400)) == pytest.approx(var)


def user_fcn(activation="sigmoid", units=1):
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((3, 2)), keras.layers.Flatten(),
        keras.layers.Dense(16, activation="relu"),                                        # Glorot, zero bias
        keras.layers.Dropout(0.2),
        keras.layers.Dense(8, activation="relu", kernel_initializer="he_normal",
                           bias_initializer=keras.initializers.RandomNormal(0, 0.3)),
        keras.layers.Dense(units, activation=activation, kernel_initializer=keras.initializers.RandomNormal(0, 0.2),
                           bias_initializer=keras.initializers.RandomNormal(0, 0.1)),
    ])


def data(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3, 2)).astype(np.float32)
    return x, (x[:, 0, 0] > 0).astype(int)


def test_a_users_relu_fcn_gets_the_analytic_kernel_of_its_own_initialisers():
    model = user_fcn()
    structure, _ = fcn_structure(model)
    sw = [math.sqrt(2 / 22 * 6), math.sqrt(2.0), math.sqrt(0.04 * 8)]         # Glorot, He, N(0, 0.2²)
    sb = [0.0, 0.3, 0.1]
    assert structure["depth"] == 2
    np.testing.assert_allclose(structure["sigma_w"], sw, rtol=1e-12)
    np.testing.assert_allclose(structure["sigma_b"], sb, rtol=1e-12)
    x, y = data(30, 0)
    xe, ye = data(20, 1)
    before = [w.copy() for w in model.get_weights()]
    out = log_prior_of_model(model, x, y, xe, ye)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert out["kernel"]["kind"] == "analytic" and out["head"] == "sigmoid"
    k = recursion(np.concatenate([x, xe]), sw, sb)
    pred = (model.predict(xe, verbose=0).ravel() >= 0.5).astype(int)
    ref = log_prior(k, np.concatenate([y, pred]), train_size=30)
    assert out["ln_prior"] == pytest.approx(ref["ln_prior"], rel=1e-9)
    assert out["pac_bayes_bound"] == pytest.approx(ref["pac_bayes_bound"], rel=1e-9)
    assert out["function"]["test_accuracy"] == pytest.approx(np.mean(pred == ye))
    # a two-output head: z1 − z0 of two i.i.d. GP outputs has twice the kernel
    two = user_fcn("softmax", 2)
    params = model_kernel_params(two)
    assert params["kind"] == "analytic" and params["scale"] == 2.0
    pred2 = np.argmax(two.predict(xe, verbose=0), 1)
    ref2 = log_prior(2 * k, np.concatenate([y, pred2]), "probit", train_size=30)
    assert log_prior_of_model(two, x, y, xe, likelihood="probit")["ln_prior"] == pytest.approx(ref2["ln_prior"], rel=1e-9)


def test_per_layer_analytic_kernel_is_the_wide_networks_kernel():
    """A 6-512-1 Glorot/He net: the Monte-Carlo kernel of its initialisations (eq. 7, 64 draws) lies within
    5 standard errors (+ O(1/width)) of the per-layer analytic kernel, and far from the uniform-σ one."""
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(512, activation="relu"),
                              keras.layers.Dense(1, kernel_initializer="he_normal",
                                                 bias_initializer=keras.initializers.RandomNormal(0, 0.5))])
    x = np.random.default_rng(3).normal(size=(8, 6)).astype(np.float32)
    params = model_kernel_params(model)
    groups = np.array([empirical_kernel(x, model, 16, sigma_w=params["sigma_w"][-1], sigma_b=params["sigma_b"][-1],
                                        seed=100 * g) for g in range(4)])
    mean, se = groups.mean(0), groups.std(0, ddof=1) / 2
    analytic = nngp_kernel(x, 1, params["sigma_w"], params["sigma_b"])
    z = lambda k: np.max(np.abs(mean - k) / (se + 2 * np.abs(k) / 512))  # noqa: E731
    assert z(analytic) < 5
    assert z(nngp_kernel(x, 1, params["sigma_w"][0], params["sigma_b"][-1])) > 10


class Sub(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(3, 2, activation="relu")
        self.pool = keras.layers.GlobalAveragePooling2D()
        self.out = keras.layers.Dense(1, activation="sigmoid",
                                      bias_initializer=keras.initializers.RandomNormal(0, 0.5))

    def call(self, x):
        return self.out(self.pool(self.conv(x)))


def test_empirical_kernel_of_cnns_functional_and_subclassed():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(10, 4, 4, 2)).astype(np.float32)
    y = (x.mean(axis=(1, 2, 3)) > 0).astype(int)
    sub = Sub()
    sub(x[:1])
    sub.compile("sgd", "binary_crossentropy")
    inp = keras.Input((4, 4, 2))
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(3, 2, activation="relu")(inp))
    out = keras.layers.Dense(1, activation="sigmoid", bias_initializer=keras.initializers.RandomNormal(0, 0.5))(h)
    fun = keras.Model(inp, out)
    fun.set_weights(sub.get_weights())
    before = [w.copy() for w in sub.get_weights()]
    a = log_prior_of_model(sub, x[:6], y[:6], x[6:], samples=5, seed=2)
    b = log_prior_of_model(fun, x[:6], y[:6], x[6:], samples=5, seed=2)
    assert all(np.array_equal(p, q) for p, q in zip(before, sub.get_weights()))
    # σw² = Glorot's 2/(fan_in + fan_out) · width 3, σb = 0.5, read from the readout layer
    assert a["kernel"]["sigma_w"] == pytest.approx(math.sqrt(2 / 4 * 3)) and a["kernel"]["sigma_b"] == pytest.approx(0.5)
    assert a["kernel"]["kind"] == b["kernel"]["kind"] == "empirical"
    assert a["ln_prior"] == pytest.approx(b["ln_prior"], rel=1e-6)      # the same architecture and draws


def test_what_cannot_have_a_prior_is_one_clear_error():
    x, y = data(12, 2)
    orth = keras.Sequential([keras.Input((3, 2)), keras.layers.Flatten(), keras.layers.Dense(4, activation="tanh"),
                             keras.layers.Dense(1, kernel_initializer="orthogonal")])
    with pytest.raises(UserError, match="pass `sigma_w` and `sigma_b`"):
        log_prior_of_model(orth, x, y)
    assert log_prior_of_model(orth, x, y, sigma_w=1.0, sigma_b=0.1, samples=3)["kernel"]["kind"] == "empirical"
    with pytest.raises(UserError, match="does not feed"):
        log_prior_of_model(orth, x, y, feature_layer=orth.layers[0].name)
    with pytest.raises(UserError, match="plain ReLU FCN"):
        log_prior_of_model(orth, x, y, kernel="analytic", sigma_w=1.0, sigma_b=0.1)
    ten = keras.Sequential([keras.Input((3, 2)), keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    with pytest.raises(UserError, match="binary function"):
        log_prior_of_model(ten, x, y)


def test_probit_warns_when_the_kernel_is_too_small_to_matter():
    from tfflat.prior import KernelScaleWarning

    keras.utils.set_random_seed(5)
    tiny = keras.Sequential([keras.Input((3, 2)), keras.layers.Flatten(), keras.layers.Dense(1, activation="sigmoid",
                             kernel_initializer=keras.initializers.RandomNormal(0, 0.01))])
    x, y = data(12, 3)
    with pytest.warns(KernelScaleWarning, match="probit"):
        log_prior_of_model(tiny, x, y, likelihood="probit")
    with warnings.catch_warnings():
        warnings.simplefilter("error", KernelScaleWarning)
        log_prior_of_model(tiny, x, y)                     # Heaviside is scale-free: no warning
