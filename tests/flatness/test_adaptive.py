"""Adaptive sharpness (worst- and average-case) against closed forms for logistic regression, and its
invariance under α-rescaling (the same ascent, step for step)."""

import numpy as np
import pytest
from flatness_helpers import linear_model, tiny_data, tiny_fcn
from zoo_helpers import augmented, ce, gauss_ce, logistic, rescaled

from tfflat.errors import UserError
from tfflat.flatness.adaptive import adaptive_sharpness, average_sharpness


@pytest.fixture(scope="module")
def logreg():
    x, y = tiny_data(n=40, d=3, seed=2)
    return linear_model(d=3, seed=4), x, y


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_worst_case_of_one_example_is_the_corner(logreg, norm):
    """One example: L(w ⊙ (1+u)) = CE(z + Σ_j x̃_j w_j u_j) is monotone along ±(x̃ ⊙ w), so the maximum over
    ‖u‖∞ ≤ ρ is CE(z ± ρ Σ|x̃_j w_j|) and over ‖u‖₂ ≤ ρ it is CE(z ± ρ‖x̃ ⊙ w‖₂), the sign raising the loss."""
    model, x, y = logreg
    theta, b = logistic(model)
    w = np.append(theta, b)
    rho = 0.3
    for i in range(3):
        xt = augmented(x[i:i + 1])[0]
        z = float(xt @ w)
        reach = rho * (np.sum(np.abs(xt * w)) if norm == "linf" else np.linalg.norm(xt * w))
        sign = 1 - 2 * y[i]                                      # y = 1: lowering z raises the loss
        exact = ce(np.array([z + sign * reach]), y[i:i + 1])[0] - ce(np.array([z]), y[i:i + 1])[0]
        res = adaptive_sharpness(model, x[i:i + 1], y[i:i + 1], rho=rho, norm=norm, steps=8)
        assert res["value"] == pytest.approx(exact, rel=1e-5), (i, res)
        assert res["max_loss"] == pytest.approx(res["loss"] + res["value"])


def test_average_case_matches_gauss_hermite(logreg):
    """w ⊙ (1 + u), u ~ N(0, ρ²I): example i's logit is N(z_i, ρ² Σ_j x̃_ij² w_j²), so E L is a 1-d Gaussian
    integral per example; the Monte Carlo mean agrees within 4 of its standard errors."""
    model, x, y = logreg
    theta, b = logistic(model)
    w = np.append(theta, b)
    xt = augmented(x)
    z = xt @ w
    rho = 0.4
    s = rho * np.sqrt((xt ** 2) @ (w ** 2))
    exact = float(np.mean(gauss_ce(z, s, y)) - np.mean(ce(z, y)))
    res = average_sharpness(model, x, y, rho=rho, draws=3000, seed=1)
    assert abs(res["value"] - exact) < 4 * res["stderr"], (res, exact)
    assert res["stderr"] < 0.15 * exact
    again = average_sharpness(model, x, y, rho=rho, draws=3000, seed=1)
    assert again["value"] == res["value"]                                    # fixed draws
    assert average_sharpness(model, x, y, rho=rho, draws=3000, seed=2)["value"] != res["value"]


@pytest.mark.parametrize("kind, units", [("layer", None), ("neuron", [0, 2])])
def test_invariant_under_rescaling_to_float_rounding(kind, units):
    x, y = tiny_data()
    model = tiny_fcn()
    for alpha in (0.2, 5.9):
        other = rescaled(model, kind, 1, alpha, units)
        for norm in ("linf", "l2"):
            a = adaptive_sharpness(model, x, y, rho=0.05, norm=norm, steps=6)
            b = adaptive_sharpness(other, x, y, rho=0.05, norm=norm, steps=6)
            assert a["value"] > 1e-3 and b["value"] == pytest.approx(a["value"], rel=1e-5)
        a = average_sharpness(model, x, y, rho=0.2, draws=10)
        b = average_sharpness(other, x, y, rho=0.2, draws=10)
        assert abs(a["value"]) > 1e-3 and b["value"] == pytest.approx(a["value"], rel=1e-5)


def test_bad_settings_and_model_untouched(logreg):
    model, x, y = logreg
    before = model.get_weights()
    with pytest.raises(UserError, match="norm"):
        adaptive_sharpness(model, x, y, norm="l1")
    with pytest.raises(UserError, match="rho"):
        adaptive_sharpness(model, x, y, rho=-1.0)
    with pytest.raises(UserError, match="steps"):
        adaptive_sharpness(model, x, y, steps=0)
    with pytest.raises(UserError, match="rho"):
        average_sharpness(model, x, y, rho=0.0)
    with pytest.raises(UserError, match="draws"):
        average_sharpness(model, x, y, draws=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
