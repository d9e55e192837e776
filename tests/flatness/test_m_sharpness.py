"""m-sharpness (Foret et al. 2021) against closed forms (logistic regression) and exact SAM steps."""

import numpy as np
import pytest
from flatness_helpers import exact_derivatives, linear_model, loss64, tiny_data, tiny_fcn
from zoo_helpers import augmented, ce, logistic

from tfflat.errors import UserError
from tfflat.flatness.m_sharpness import m_sharpness


def test_one_example_per_batch_is_the_closed_form():
    """m = 1, linear logit: max_{‖ε‖₂≤ρ} CE(z_i + ε·x̃_i) = CE(z_i ± ρ‖x̃_i‖), reached by SAM's one step."""
    x, y = tiny_data(n=15, d=3, seed=3)
    model = linear_model(d=3, seed=5)
    theta, b = logistic(model)
    xt = augmented(x)
    z = xt @ np.append(theta, b)
    rho = 0.2
    worst = ce(z + (1 - 2 * y) * rho * np.linalg.norm(xt, axis=1), y) - ce(z, y)
    res = m_sharpness(model, x, y, rho=rho, m=1)
    assert res["value"] == pytest.approx(np.mean(worst), rel=1e-5) and res["batches"] == 15


def test_minibatches_take_sams_step_on_a_seeded_partition():
    """n = 20, m = 7: batches of 7, 7, 6 from default_rng(seed).permutation; each rise is
    L_B(w + ρ ∇L_B/‖∇L_B‖) − L_B(w) (exact float64 gradient), weighted by batch size."""
    x, y = tiny_data(n=20)
    model = tiny_fcn()
    weights = model.get_weights()
    rho, seed = 0.1, 3
    order = np.random.default_rng(seed).permutation(20)
    total = 0.0
    for b in np.array_split(order, [7, 14]):
        g, _ = exact_derivatives(weights, x[b], y[b], hessian=False)
        step = np.split(rho * g / np.linalg.norm(g), np.cumsum([w.size for w in weights])[:-1])
        moved = [w + s.reshape(w.shape) for w, s in zip(weights, step)]
        total += len(b) * (loss64(moved, x[b], y[b]) - loss64(weights, x[b], y[b]))
    res = m_sharpness(model, x, y, rho=rho, m=7, steps=1, seed=seed)
    assert res["batches"] == 3 and res["value"] == pytest.approx(total / 20, rel=1e-4)
    more = m_sharpness(model, x, y, rho=rho, m=7, steps=5, seed=seed)
    assert more["value"] >= res["value"] * (1 - 1e-6)          # more ascent steps find at least as much


def test_bad_settings():
    x, y = tiny_data(n=8)
    model = linear_model()
    with pytest.raises(UserError, match="m must"):
        m_sharpness(model, x, y, m=0)
    with pytest.raises(UserError, match="rho"):
        m_sharpness(model, x, y, rho=0.0)
