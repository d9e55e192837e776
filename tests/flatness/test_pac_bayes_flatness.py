"""PAC-Bayes flatness and sharpness (Jiang et al. 2020) against closed forms.

Truths: the bisection on analytic rise functions; for logistic regression, weight noise u makes
example i's logit N(z_i, s_i²) with s_i² = Σ_j x̃_ij² Var u_j, so the expected 0-1 error is
mean_i Φ(−m_i/s_i) (m_i the signed margin) and the expected CE a 1-d Gaussian integral: σ′ is the
root of a scalar equation (scipy's brentq); for one example, the worst case over a box is its corner.
"""

import numpy as np
import pytest
from flatness_helpers import linear_model, tiny_data, tiny_fcn
from scipy.optimize import brentq
from zoo_helpers import augmented, ce, gauss_ce, gauss_error, logistic, rescaled

from tfflat.errors import UserError
from tfflat.flatness.pac_bayes import largest_scale, pac_bayes_flatness, pac_bayes_sharpness


def test_largest_scale_brackets_and_bisects():
    for c, threshold, start in [(3.0, 0.1, 1.0), (1e-6, 0.5, 1.0), (40.0, 2.0, 1e-3)]:
        truth = np.sqrt(threshold / c)
        s, calls = largest_scale(lambda t: c * t * t, threshold, rtol=1e-6, start=start)
        assert s <= truth and s == pytest.approx(truth, rel=2e-6) and calls < 90
    s, _ = largest_scale(lambda t: float(t > 0.3), 0.5, rtol=1e-8)          # a step: the jump at 0.3
    assert s == pytest.approx(0.3, rel=1e-7) and s <= 0.3
    with pytest.raises(UserError, match="never rises"):
        largest_scale(lambda t: 0.0, 0.1)
    with pytest.raises(UserError, match="every scale"):
        largest_scale(lambda t: 1.0, 0.1)


@pytest.fixture(scope="module")
def logreg():
    """Logistic regression near the teacher of tiny_data (few training errors, so the error can rise by 0.1)."""
    x, y = tiny_data(n=200, d=3, seed=5)
    rng = np.random.default_rng(5)
    rng.normal(size=(200, 3))
    teacher = rng.normal(size=3)
    model = linear_model(d=3, seed=1)
    model.set_weights([(2.0 * teacher + 0.3).reshape(3, 1).astype(np.float32), np.array([0.2], np.float32)])
    return model, x, y


def _noise_truth(model, x, y, magnitude, epsilon, loss, threshold):
    theta, b = logistic(model)
    w = np.append(theta, b)
    xt = augmented(x)
    z = xt @ w

    def s(sigma):
        var = sigma ** 2 * w ** 2 + epsilon ** 2 if magnitude else np.full_like(w, sigma ** 2)
        return np.sqrt((xt ** 2) @ var)

    if loss == "error":
        base = np.mean((z >= 0) != (y > 0.5))
        rise = lambda sigma: np.mean(gauss_error(z, s(sigma), y)) - base       # noqa: E731
    else:
        base = np.mean(ce(z, y))
        rise = lambda sigma: np.mean(gauss_ce(z, s(sigma), y)) - base          # noqa: E731
    return brentq(lambda t: rise(t) - threshold, 1e-6, 1e3, xtol=1e-12)


@pytest.mark.parametrize("magnitude, loss", [(False, "error"), (True, "error"), (False, "ce")])
def test_noise_scale_of_logistic_regression(logreg, magnitude, loss):
    model, x, y = logreg
    epsilon, threshold = 0.05, 0.1
    truth = _noise_truth(model, x, y, magnitude, epsilon, loss, threshold)
    res = pac_bayes_flatness(model, x, y, magnitude=magnitude, epsilon=epsilon, threshold=threshold, loss=loss,
                             draws=2000, seed=3, rtol=1e-4)
    assert res["sigma"] == pytest.approx(truth, rel=0.04), (res, truth)     # Monte Carlo error of 2000 draws
    assert res["value"] == pytest.approx(1 / res["sigma"] ** 2)
    assert res["epsilon"] == (epsilon if magnitude else None) and res["loss"] == loss


@pytest.mark.parametrize("magnitude", [False, True])
def test_worst_case_box_of_one_example(logreg, magnitude):
    """One correctly classified example: the error rises (by 1 > threshold) exactly when the box corner
    reaches the margin, α Σ_j |x̃_j| r_j = |z| with r_j = 1 (plain) or |w_j| + ε (magnitude-aware)."""
    model, x, y = logreg
    theta, b = logistic(model)
    w = np.append(theta, b)
    xt = augmented(x)
    z = xt @ w
    i = int(np.flatnonzero((z >= 0) == (y > 0.5))[0])
    epsilon = 0.01
    r = np.abs(w) + epsilon if magnitude else np.ones_like(w)
    truth = abs(z[i]) / np.sum(np.abs(xt[i]) * r)
    res = pac_bayes_sharpness(model, x[i:i + 1], y[i:i + 1], magnitude=magnitude, epsilon=epsilon, threshold=0.5,
                              steps=5, rtol=1e-6)
    assert res["alpha"] == pytest.approx(truth, rel=1e-4) and res["value"] == pytest.approx(1 / res["alpha"] ** 2)
    # with ε = 0 the magnitude-aware box is α|w| ⊙ u: the same scale for every positive rescaling
    # (checked on a ReLU net in test_invariance.py)


def test_magnitude_aware_is_invariant_without_epsilon():
    x, y = tiny_data()
    model = tiny_fcn()
    other = rescaled(model, "neuron", 1, 5.9, [1, 3])
    for f, kw in [(pac_bayes_flatness, dict(draws=5)), (pac_bayes_sharpness, dict(steps=4))]:
        a = f(model, x, y, magnitude=True, epsilon=0.0, loss="ce", threshold=0.05, rtol=1e-4, **kw)
        b = f(other, x, y, magnitude=True, epsilon=0.0, loss="ce", threshold=0.05, rtol=1e-4, **kw)
        assert b["value"] == pytest.approx(a["value"], rel=1e-4), f.__name__
        c = f(other, x, y, magnitude=False, loss="ce", threshold=0.05, rtol=1e-4, **kw)
        d = f(model, x, y, magnitude=False, loss="ce", threshold=0.05, rtol=1e-4, **kw)
        assert abs(c["value"] / d["value"] - 1) > 0.01, f.__name__            # the plain one is not
        e = f(other, x, y, magnitude=True, epsilon=0.05, loss="ce", threshold=0.05, rtol=1e-4, **kw)
        g = f(model, x, y, magnitude=True, epsilon=0.05, loss="ce", threshold=0.05, rtol=1e-4, **kw)
        assert abs(e["value"] / g["value"] - 1) > 1e-3, f.__name__            # nor, with ε > 0, the other


@pytest.mark.parametrize("kw, needle", [
    (dict(threshold=0.0), "threshold"), (dict(loss="mse"), "loss"), (dict(epsilon=-1.0), "epsilon"),
    (dict(rtol=2.0), "rtol"), (dict(draws=0), "draws"),
])
def test_bad_settings(logreg, kw, needle):
    model, x, y = logreg
    with pytest.raises(UserError, match=needle):
        pac_bayes_flatness(model, x, y, **kw)
