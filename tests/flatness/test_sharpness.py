"""Keskar sharpness (Def. 2.1) against independent truths on tiny networks.

Truths: an eager float64 re-implementation of the projected ascent with the same minibatch order;
the exact box maximum of a convex loss (logistic regression: the maximum sits at one of the 2^p
vertices); the loss at the first-order corner, a feasible point and so a lower bound.
"""

import itertools
import math

import numpy as np
import pytest
from flatness_helpers import exact_derivatives, linear_model, loss64, tiny_data, tiny_fcn

from tfflat.errors import UserError
from tfflat.flatness import sharpness
from tfflat.flatness.sharpness import table1

N, BS = 20, 8                               # 3 minibatches per epoch, the last one of 4


@pytest.fixture(scope="module")
def tiny():
    x, y = tiny_data(N)
    return tiny_fcn(), x, y


def unchanged(model, before):
    return all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def reference_ascent(weights, x, y, zeta, lr, epochs, batch_size, seed):
    """Projected minibatch gradient ascent in eager float64 (same minibatch order as tfflat)."""
    import tensorflow as tf

    w0 = [np.asarray(w, np.float64) for w in weights]
    radius = [zeta * (np.abs(w) + 1) for w in w0]
    delta = [np.zeros_like(w) for w in w0]
    best = loss64(w0, x, y)
    for e in range(epochs):
        order = tf.argsort(tf.random.stateless_uniform([len(y)], seed=[seed, e], alg="philox"), stable=True).numpy()
        for i in range(0, len(y), batch_size):
            b = order[i:i + batch_size]
            grad, _ = exact_derivatives([w + d for w, d in zip(w0, delta)], x[b], y[b], hessian=False)
            parts = np.split(grad, np.cumsum([w.size for w in w0])[:-1])
            delta = [np.clip(d + lr * g.reshape(d.shape), -r, r) for d, g, r in zip(delta, parts, radius)]
            best = max(best, loss64([w + d for w, d in zip(w0, delta)], x, y))
    return best


def test_definition_and_same_steps_as_an_eager_reference(tiny):
    model, x, y = tiny
    before = [w.copy() for w in model.get_weights()]
    res = sharpness(model, x, y, zeta=1e-3, lr=0.05, epochs=3, batch_size=BS, seed=7)
    loss = loss64(before, x, y)
    assert res.loss == pytest.approx(loss, rel=1e-6)
    assert res.max_loss == pytest.approx(reference_ascent(before, x, y, 1e-3, 0.05, 3, BS, 7), rel=1e-5)
    assert res.sharpness == pytest.approx(100 * (res.max_loss - res.loss) / (1 + res.loss))
    assert res.log10_sharpness == pytest.approx(math.log10(res.sharpness))
    assert res.trace.shape == (3,) and np.all(np.diff(res.trace) >= 0) and res.trace[-1] == res.max_loss
    assert res.settings["steps"] == 9 and res.method == "sgd"
    assert unchanged(model, before)


def test_both_methods_find_the_exact_maximum_of_a_convex_loss():
    x, y = tiny_data(N)
    model = linear_model()
    w = model.get_weights()
    zeta = 0.05
    radius = [zeta * (np.abs(a) + 1) for a in w]
    flat_r = np.concatenate([r.ravel() for r in radius])
    exact = max(loss64([a + s.reshape(a.shape) for a, s in zip(w, np.split(np.array(signs) * flat_r, [3]))], x, y)
                for signs in itertools.product((-1, 1), repeat=4))
    for kw in (dict(method="sgd", lr=10.0, epochs=3, batch_size=N), dict(method="lbfgsb")):
        res = sharpness(model, x, y, zeta=zeta, **kw)
        assert exact - 1e-5 <= res.max_loss <= exact + 1e-5, kw
        assert unchanged(model, w)


@pytest.mark.parametrize("method", ["sgd", "lbfgsb"])
def test_reaches_the_first_order_corner_and_grows_with_zeta(tiny, method):
    model, x, y = tiny
    before = [w.copy() for w in model.get_weights()]
    grad, _ = exact_derivatives(before, x, y, hessian=False)
    sizes = np.cumsum([w.size for w in before])[:-1]
    flat = np.concatenate([w.ravel() for w in before]).astype(np.float64)
    values = []
    for zeta in (1e-4, 3e-4, 1e-3):
        # full-batch projected ascent: no minibatch noise to keep it off the corner (see the module doc)
        res = sharpness(model, x, y, zeta=zeta, method=method, lr=1.0, epochs=10, batch_size=N)
        corner = flat + zeta * (np.abs(flat) + 1) * np.sign(grad)
        corner_loss = loss64([c.reshape(w.shape) for c, w in zip(np.split(corner, sizes), before)], x, y)
        assert res.corner_loss == pytest.approx(corner_loss, rel=1e-6)
        assert res.max_loss >= corner_loss * (1 - 1e-6) and res.converged      # up to float32 rounding
        values.append(res.sharpness)
        assert unchanged(model, before)
    assert values[0] < values[1] < values[2]


def test_alpha_rescaling_keeps_the_function_and_changes_sharpness(tiny):
    """Dinh et al. (SPEC §3): (W0, b0, W1) -> (αW0, αb0, W1/α) leaves a ReLU network's outputs unchanged."""
    model, x, y = tiny
    weights = model.get_weights()
    alpha = 5.9
    rescaled = tiny_fcn()
    rescaled.set_weights([weights[0] * alpha, weights[1] * alpha, weights[2] / alpha] + weights[3:])
    np.testing.assert_allclose(rescaled.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    settings = dict(zeta=1e-4, lr=0.01, epochs=10, batch_size=BS)
    s0 = sharpness(model, x, y, **settings)
    s1 = sharpness(rescaled, x, y, **settings)
    assert s1.loss == pytest.approx(s0.loss, rel=1e-5)
    # the box ζ(|w|+1) is not rescaling-invariant (its +1): here the sharpness rises 1.85-fold, the
    # spike of Fig. 5 (a box ζ|w| would leave the first-order term Σ|∂L/∂w_i| ζ|w_i| unchanged)
    assert s1.sharpness > 1.2 * s0.sharpness, (s0.sharpness, s1.sharpness)


def test_callback_and_epoch_tracking_follow_the_same_ascent(tiny):
    model, x, y = tiny
    settings = dict(zeta=1e-3, lr=0.05, epochs=4, batch_size=BS, seed=1)
    whole = sharpness(model, x, y, **settings)
    seen = []
    stepwise = sharpness(model, x, y, callback=lambda e, best: seen.append((e, best)), **settings)
    np.testing.assert_allclose(stepwise.trace, whole.trace, rtol=1e-7)
    assert [e for e, _ in seen] == [1, 2, 3, 4] and seen[-1][1] == pytest.approx(whole.max_loss, rel=1e-7)
    per_epoch = sharpness(model, x, y, track="epoch", **settings)
    assert per_epoch.max_loss <= whole.max_loss + 1e-7          # a subset of the same points


def test_table1_defaults():
    assert table1("mnist", "fcn") == dict(zeta=1e-4, batch_size=32, lr=1e-3, epochs=100)
    assert table1("boolean", "fcn:10,10")["epochs"] == 10
    assert table1("cifar_cats_cars", "resnet50")["lr"] == 100.0
    with pytest.raises(UserError, match="Table 1"):
        table1("mnist", "resnet50")


@pytest.mark.parametrize("kw, needle", [
    (dict(zeta=0.0), "ζ"), (dict(zeta=-1e-4), "ζ"), (dict(zeta=float("nan")), "ζ"), (dict(zeta=float("inf")), "ζ"),
    (dict(method="adam"), "method"), (dict(lr=0.0), "learning rate"), (dict(epochs=0), "epochs"),
    (dict(batch_size=0), "batch"), (dict(method="lbfgsb", maxiter=0), "maxiter"), (dict(track="never"), "track"),
])
def test_bad_settings(tiny, kw, needle):
    model, x, y = tiny
    with pytest.raises(UserError, match=needle):
        sharpness(model, x, y, **kw)


def test_bad_data(tiny):
    model, x, y = tiny
    with pytest.raises(UserError, match="labels"):
        sharpness(model, x, y[:-1])
    with pytest.raises(UserError, match="0 or 1"):
        sharpness(model, x, y * 3)



def test_an_unconverged_ascent_warns(tiny):
    from tfflat.flatness import NotConvergedWarning

    model, x, y = tiny
    with pytest.warns(NotConvergedWarning, match="raise `lr` or `epochs`"):
        res = sharpness(model, x, y, zeta=1e-2, lr=1e-6, epochs=1, batch_size=BS)
    assert not res.converged and res.max_loss < res.corner_loss


def test_settings_for_fills_in_table1():
    from tfflat.flatness.sharpness import settings_for

    assert settings_for("sgd", "cifar_cats_cars", "fcn", lr=1e-3) == dict(zeta=1e-5, batch_size=128, lr=1e-3,
                                                                          epochs=100, track="step", seed=0)
    assert settings_for("sgd", None, zeta=1e-3)["lr"] == 1e-3            # no task: the MNIST row
    assert settings_for("lbfgsb", "boolean", "fcn", maxiter=3) == {"zeta": 1e-4, "maxiter": 3}
    with pytest.raises(UserError, match="`zeta`"):
        settings_for("sgd", "boolean", "fcn", zeta=-1.0)
