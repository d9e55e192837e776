"""Stochastic Lanczos quadrature against the exact Hessian of a tiny network.

Truths: Gauss quadrature from m Lanczos steps is exact for polynomials of degree ≤ 2m − 1, so for
each start vector v, Σ_j τ_j θ_j^k = vᵀH^k v / vᵀv for k ≤ 2m − 1; with m = p steps the nodes are
H's eigenvalues.
"""

import numpy as np
import pytest
from flatness_helpers import exact_derivatives, tiny_data, tiny_fcn

from tfflat.errors import UserError
from tfflat.flatness.density import hessian_density, lanczos, quadrature


@pytest.fixture(scope="module")
def tiny():
    x, y = tiny_data()
    model = tiny_fcn()
    _, hess = exact_derivatives(model.get_weights(), x, y)
    return model, x, y, (hess + hess.T) / 2


def test_lanczos_quadrature_on_a_matrix():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(30, 30))
    a = a + a.T
    v = rng.normal(size=30)
    nodes, weights = quadrature(*lanczos(lambda u: a @ u, v, 6))
    for k in range(12):                                                       # degree ≤ 2·6 − 1
        exact = v @ np.linalg.matrix_power(a, k) @ v / (v @ v)
        assert np.sum(weights * nodes ** k) == pytest.approx(exact, rel=1e-8, abs=1e-8 * 30.0 ** k)
    full, _ = quadrature(*lanczos(lambda u: a @ u, v, 30))
    np.testing.assert_allclose(np.sort(full), np.linalg.eigvalsh(a), atol=1e-8)


def test_moments_and_density_of_a_tiny_network(tiny):
    model, x, y, hess = tiny
    p = hess.shape[0]
    res = hessian_density(model, x, y, steps=5, probes=3, seed=2, grid=4000)
    rng = np.random.default_rng(2)
    probes = [rng.integers(0, 2, p) * 2.0 - 1.0 for _ in range(3)]
    scale = np.abs(np.linalg.eigvalsh(hess)).max()
    for k in range(5):
        exact = np.mean([v @ np.linalg.matrix_power(hess, k) @ v / p for v in probes])
        assert res["moments"][k] == pytest.approx(exact, rel=1e-4, abs=1e-5 * scale ** k), k
    assert res["trace"] == pytest.approx(p * res["moments"][1]) and res["value"] == pytest.approx(p * res["moments"][2])
    assert res["trace"] == pytest.approx(np.mean([v @ hess @ v for v in probes]), rel=1e-4)
    t, d = np.asarray(res["grid"]), np.asarray(res["density"])
    assert np.trapezoid(d, t) == pytest.approx(1.0, abs=1e-3)
    assert np.trapezoid(t * d, t) == pytest.approx(res["moments"][1], rel=1e-3, abs=1e-3 * scale)
    full = hessian_density(model, x, y, steps=p, probes=1)                    # the whole Krylov space
    eig = np.linalg.eigvalsh(hess)
    for node in full["nodes"][0]:
        assert np.min(np.abs(eig - node)) < 1e-4 * scale


def test_bad_settings(tiny):
    model, x, y, _ = tiny
    with pytest.raises(UserError, match="steps"):
        hessian_density(model, x, y, steps=0)
    with pytest.raises(UserError, match="width"):
        hessian_density(model, x, y, width=-1.0)
