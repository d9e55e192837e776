"""Kernels: the analytic arc-cosine kernel against a direct recursion and against the empirical kernel
of a wide Keras FCN (within Monte-Carlo error); the empirical kernel of any model; the kernel cache."""

import math
from functools import partial

import numpy as np
import pytest

from tfflat.errors import UserError
from tfflat.models import build, model_spec
from tfflat.models.fcn import reinitialize
from tfflat.prior import kernel_for, kernel_key, kernel_params
from tfflat.prior.kernels import empirical_kernel, feature_model, nngp_kernel, redraw


def recursion(x, depth, sw, sb):
    """SPEC §5 written out on the full matrix (Cho & Saul 2009, Lee et al. 2017)."""
    x = x.reshape(len(x), -1).astype(np.float64)
    k = sb ** 2 + sw ** 2 * x @ x.T / x.shape[1]
    for _ in range(depth):
        q = np.sqrt(np.diag(k))
        theta = np.arccos(np.clip(k / np.outer(q, q), -1, 1))
        k = sb ** 2 + sw ** 2 / (2 * np.pi) * np.outer(q, q) * (np.sin(theta) + (np.pi - theta) * np.cos(theta))
    return k


@pytest.mark.parametrize("depth", [0, 1, 2, 3])
def test_analytic_kernel_matches_recursion(depth, rng):
    x = rng.random((11, 3, 4))
    k = nngp_kernel(x, depth, 1.3, 0.4, block=4)          # several blocks: exercises the mirroring
    np.testing.assert_allclose(k, recursion(x, depth, 1.3, 0.4), rtol=1e-12, atol=1e-14)
    assert k.dtype == np.float64 and np.array_equal(k, k.T)
    assert np.linalg.eigvalsh(k).min() > -1e-10


def test_analytic_kernel_on_mnist_is_a_covariance(mnist_small):
    k = nngp_kernel(mnist_small.x_test, 2, math.sqrt(2), 1.0, block=64)
    np.testing.assert_allclose(k, recursion(mnist_small.x_test, 2, math.sqrt(2), 1.0), rtol=1e-11)
    assert np.array_equal(k, k.T) and np.all(np.diag(k) > 0)


def test_analytic_equals_empirical_kernel_of_a_wide_fcn(rng):
    """6 groups × 32 random initialisations of a 8-512-512-1 Keras FCN: every entry of the empirical
    kernel (eq. 7) lies within 5 Monte-Carlo standard errors (+ an O(1/width) finite-width allowance)
    of the analytic depth-2 kernel — and far outside that band of the depth-1/3 or wrong-σb kernels."""
    x = rng.standard_normal((10, 8)).astype(np.float32)
    spec = model_spec("fcn:512,512", "boolean", (8,), sigma_w=1.5, sigma_b=0.5)
    fresh = partial(build, spec)
    numpy_redraw = lambda model, seed: reinitialize(model, spec, seed)     # noqa: E731
    calls = []
    # weights redrawn by the layers' own Keras initializers (default) for 5 groups, by numpy for one
    groups = np.array([empirical_kernel(x, fresh, 32, sigma_w=1.5, sigma_b=0.5, seed=1000 * g,
                                        reinit=numpy_redraw if g == 5 else None,
                                        progress=lambda d, t: calls.append((d, t)))
                       for g in range(6)])
    assert calls[-1] == (32, 32) and len(calls) == 6 * 32
    mean, se = groups.mean(0), groups.std(0, ddof=1) / math.sqrt(len(groups))

    def z(k):
        return np.max(np.abs(mean - k) / (se + 2 * np.abs(k) / 512))

    assert z(nngp_kernel(x, 2, 1.5, 0.5)) < 5
    for wrong in (nngp_kernel(x, 1, 1.5, 0.5), nngp_kernel(x, 3, 1.5, 0.5), nngp_kernel(x, 2, 1.5, 0.4)):
        assert z(wrong) > 10


def test_empirical_kernel_of_any_model():
    """A small conv net (not an FCN): symmetric PSD, seeded, features = input of the 'logit' layer."""
    import keras

    def convnet(seed):
        keras.utils.set_random_seed(seed)
        inp = keras.Input((6, 6, 2))
        h = keras.layers.Conv2D(4, 3, activation="relu")(inp)
        h = keras.layers.GlobalAveragePooling2D()(h)
        return keras.Model(inp, keras.layers.Dense(1, name="logit")(h))

    x = np.random.default_rng(1).random((7, 6, 6, 2)).astype(np.float32)
    k = empirical_kernel(x, convnet, 5, sigma_w=1.0, sigma_b=0.1, seed=3, batch_size=3)
    assert k.shape == (7, 7) and np.array_equal(k, k.T) and np.linalg.eigvalsh(k).min() > -1e-9
    np.testing.assert_array_equal(k, empirical_kernel(x, convnet, 5, sigma_w=1.0, sigma_b=0.1, seed=3))
    assert not np.allclose(k, empirical_kernel(x, convnet, 5, sigma_w=1.0, sigma_b=0.1, seed=4))
    # one sample: σw²/n h·h' + σb² with h the pooled conv features
    m = convnet(3)
    h = feature_model(m)(x).numpy().astype(np.float64)
    np.testing.assert_allclose(empirical_kernel(x, convnet, 1, sigma_w=1.0, sigma_b=0.1, seed=3),
                               h @ h.T / h.shape[1] + 0.01, rtol=1e-6)

    # any last Dense layer will do (no 'logit' name needed): its input, here the flattened image, is h —
    # so every sample gives σw²/d x·x' + σb² exactly
    def headless(seed):
        inp = keras.Input((6, 6, 2))
        return keras.Model(inp, keras.layers.Dense(1)(keras.layers.Flatten()(inp)))

    flat = x.reshape(7, -1).astype(np.float64)
    np.testing.assert_allclose(empirical_kernel(x, headless, 2, sigma_w=1.5, sigma_b=0.2),
                               2.25 * flat @ flat.T / 72 + 0.04, rtol=1e-6)


def test_empirical_kernel_of_a_model_leaves_it_alone():
    """Given a (trained) model, every sample is a fresh draw on a private copy: the weights are untouched
    and not used (the kernel equals that of fresh initialisations of the same architecture)."""
    import keras

    def net(seed):
        keras.utils.set_random_seed(seed)
        inp = keras.Input((4,))
        h = keras.layers.Dense(64, activation="relu", kernel_initializer=keras.initializers.RandomNormal(0, 0.5))(inp)
        return keras.Model(inp, keras.layers.Dense(1, activation="sigmoid")(h))

    trained = net(0)
    for w in trained.trainable_variables:
        w.assign(w.numpy() * 7.0 + 3.0)            # far from any initialisation
    before = [w.copy() for w in trained.get_weights()]
    x = np.random.default_rng(2).standard_normal((6, 4)).astype(np.float32)
    k = empirical_kernel(x, trained, 200, sigma_w=1.0, sigma_b=0.0, seed=5)
    assert all(np.array_equal(a, b) for a, b in zip(before, trained.get_weights()))
    # E[relu(w·x) relu(w·x')] for w ~ N(0, 0.25 I): the arc-cosine kernel of degree 1 (Cho & Saul)
    norms = np.linalg.norm(x, axis=1)
    cos = np.clip(x @ x.T / np.outer(norms, norms), -1, 1)
    theta = np.arccos(cos)
    exact = 0.25 * np.outer(norms, norms) * (np.sin(theta) + (np.pi - theta) * cos) / (2 * np.pi)
    np.testing.assert_allclose(k, exact, rtol=0.1, atol=0.02 * exact.max())


def test_redraw_uses_each_layers_initializer():
    import keras

    spec = model_spec("fcn:300", "mnist", (20,), sigma_w=2.0, sigma_b=0.5)
    model = build(spec, seed=0)
    before = [w.copy() for w in model.get_weights()]
    assert redraw(model, 7)
    after = model.get_weights()
    assert all(not np.array_equal(a, b) for a, b in zip(before, after))
    assert np.std(after[0]) == pytest.approx(2.0 / math.sqrt(20), rel=0.03)      # W ~ N(0, σw²/fan_in)
    assert np.std(after[1]) == pytest.approx(0.5, rel=0.15)                       # b ~ N(0, σb²)
    assert redraw(model, 7) and all(np.array_equal(a, b) for a, b in zip(after, model.get_weights()))

    class Plain(keras.layers.Layer):            # a weight without a '<name>_initializer' attribute
        def build(self, shape):
            self.w = self.add_weight(shape=(shape[-1], 1), initializer="ones")

        def call(self, x):
            return x @ self.w

    inp = keras.Input((3,))
    odd = keras.Model(inp, keras.layers.Dense(1, name="logit")(keras.layers.Dense(4)(Plain()(inp))))
    assert not redraw(odd, 1)                   # not every weight known: nothing changed, rebuild instead


def test_kernel_choice_and_cache(tmp_path, monkeypatch, rng):
    from tfflat.prior import prior as prior_mod

    spec = model_spec("fcn", "mnist", (28, 28))
    x = rng.random((9, 28, 28)).astype(np.float32)
    assert kernel_params(spec)["kind"] == "analytic" and kernel_params(spec)["depth"] == 2
    assert kernel_params(spec, "empirical", n=50)["samples"] == 5
    assert kernel_params({"kind": "resnet50", "input_shape": [32, 32, 3]}, task="cifar_cats_cars")["kind"] == \
        "empirical"
    with pytest.raises(UserError, match="only for fully connected"):
        kernel_params({"kind": "resnet50"}, "analytic")

    k = kernel_for(spec, x, cache_dir=tmp_path)
    np.testing.assert_allclose(k, nngp_kernel(x, 2, math.sqrt(2), 1.0))
    files = sorted(p.name for p in tmp_path.glob("*.npy"))
    assert len(files) == 1

    def boom(*a, **kw):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr(prior_mod, "compute_kernel", boom)
    np.testing.assert_array_equal(kernel_for(spec, x, cache_dir=tmp_path), k)       # read back
    monkeypatch.undo()
    # any change of inputs or parameters is a different key, never a stale hit
    x2 = x.copy()
    x2[0, 0, 0] += 1e-3
    other = {**spec, "sigma_b": 0.5}
    assert kernel_key(x, kernel_params(spec)) != kernel_key(x2, kernel_params(spec))
    assert kernel_key(x, kernel_params(spec)) != kernel_key(x, kernel_params(other))
    np.testing.assert_array_equal(kernel_for(spec, x2, cache_dir=tmp_path), nngp_kernel(x2, 2, math.sqrt(2), 1.0))
    np.testing.assert_allclose(kernel_for(other, x, cache_dir=tmp_path), nngp_kernel(x, 2, math.sqrt(2), 0.5))
    assert len(list(tmp_path.glob("*.npy"))) == 3
    # a corrupt cache file is recomputed, not trusted
    (tmp_path / files[0]).write_bytes(b"garbage")
    np.testing.assert_array_equal(kernel_for(spec, x, cache_dir=tmp_path), k)
