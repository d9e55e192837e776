"""The EP classifier's predictive against a textbook EP predictive written here (R&W Alg. 3.5 sites,
eqs. 3.60–3.62 in their matrix-inverse form, float64 numpy), and the GP's test error on E."""

import math

import numpy as np
import pytest
from scipy.special import log_ndtr, ndtr

from tfflat.errors import UserError
from tfflat.prior import EPClassifier, gp_test_error
from tfflat.prior.kernels import nngp_kernel


def textbook_sites(k, y, v, sweeps=40):
    """R&W Alg. 3.5 as printed (rank-one updates of Σ), likelihood Φ(y z/√v): the sites (τ̃, ν̃)."""
    n = len(k)
    s = 2.0 * np.asarray(y, float) - 1.0
    tau, nu = np.zeros(n), np.zeros(n)
    sig, mu = k.copy(), np.zeros(n)
    for _ in range(sweeps):
        for i in range(n):
            tc, nc = 1 / sig[i, i] - tau[i], mu[i] / sig[i, i] - nu[i]
            m_c, s2_c = nc / tc, 1 / tc
            z = s[i] * m_c / np.sqrt(v + s2_c)
            ratio = np.exp(-0.5 * z * z - 0.5 * np.log(2 * np.pi) - log_ndtr(z))
            m_hat = m_c + s[i] * s2_c * ratio / np.sqrt(v + s2_c)
            s2_hat = s2_c - s2_c ** 2 * ratio / (v + s2_c) * (z + ratio)
            dt = 1 / s2_hat - tc - tau[i]
            tau[i] += dt
            nu[i] = m_hat / s2_hat - nc
            si = sig[:, i].copy()
            sig -= dt / (1 + dt * si[i]) * np.outer(si, si)
            mu = sig @ nu
    return tau, nu


def textbook_predictive(k, tau, nu, ks, kss, v):
    """Eqs. 3.60–3.62: mean k*ᵀK⁻¹μ, variance k** − k*ᵀ(K + S̃⁻¹)⁻¹k* (= k** − k*ᵀ(K⁻¹ − K⁻¹ΣK⁻¹)k*),
    π* = Φ(mean / √(v + variance)); Σ = (K⁻¹ + S̃)⁻¹, μ = Σν̃ (K nonsingular)."""
    kinv = np.linalg.inv(k)
    sig = np.linalg.inv(kinv + np.diag(tau))
    mean = ks @ kinv @ (sig @ nu)
    var = kss - np.einsum("ij,jk,ik->i", ks, kinv - kinv @ sig @ kinv, ks)
    return mean, var, ndtr(mean / np.sqrt(v + var))


@pytest.fixture(scope="module")
def mnist_problem(mnist):
    """Kernel of the paper's MNIST FCN on 160 real images (S = first 100, E = the rest) and true labels."""
    from tfflat.data import make_splits

    sp = make_splits(mnist, 160, 0, 0, seed=7)
    return nngp_kernel(sp.x_train, 2, math.sqrt(2), 1.0), sp.y_train.astype(np.int8)


@pytest.mark.parametrize("likelihood,v", [("probit", 1.0), ("heaviside", 0.0)])
def test_predictive_matches_textbook_ep(likelihood, v, mnist_problem):
    k, y = mnist_problem
    tr, te = np.arange(8), np.arange(100, 106)
    ktr, f = k[np.ix_(tr, tr)], y[tr].copy()
    f[[2, 5]] = 1 - f[[2, 5]]                       # labels the kernel disagrees with
    clf = EPClassifier(ktr, likelihood, tol=1e-12).fit(f)
    ks, kss = k[np.ix_(te, tr)], np.diagonal(k)[te]
    proba = clf.predict_proba(ks, kss)
    tau, nu = textbook_sites(ktr, f, v)
    mean, var, pi = textbook_predictive(ktr, tau, nu, ks, kss, v)
    # EP stops on ln Z, which is stationary at the fixed point: the sites (and so the predictive) are
    # converged to about √tol (here 1e-6 relative; ln Z itself to 1e-12)
    np.testing.assert_allclose(proba[:, 1], pi, rtol=1e-6)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    m_c, v_c = clf.latent(ks, kss)                  # in units of the kernel scaled by c
    np.testing.assert_allclose(m_c * math.sqrt(clf.scale_), mean, rtol=1e-6)
    np.testing.assert_allclose(v_c * clf.scale_, var, rtol=1e-6)
    np.testing.assert_array_equal(clf.predict(ks, kss), (mean > 0).astype(np.int8))
    assert clf.log_marginal_likelihood() == clf.result_.ln_z < 0


def test_gp_test_error_matches_textbook_predictions(mnist_problem):
    """f = true labels on S (100 MNIST images); the GP's error on E (60) from textbook EP predictions."""
    k, y = mnist_problem
    n_s = 100
    err = gp_test_error(k, y[:n_s], y[n_s:], n_s)
    tau, nu = textbook_sites(k[:n_s, :n_s], y[:n_s], 0.0, sweeps=12)
    mean, _, _ = textbook_predictive(k[:n_s, :n_s], tau, nu, k[n_s:, :n_s], np.diagonal(k)[n_s:], 0.0)
    assert err == pytest.approx(np.mean((mean > 0) != y[n_s:]))
    assert 0 < err < 0.3                              # the GP has learned something from 100 images
    assert gp_test_error(k * 1e6, y[:n_s], y[n_s:], n_s) == err       # Heaviside: scale-free
    assert 0 < gp_test_error(k, y[:n_s], y[n_s:], n_s, "probit") < 0.3


def test_classifier_errors(mnist_problem):
    k, y = mnist_problem
    clf = EPClassifier(k[:20, :20])
    with pytest.raises(UserError, match="not fitted"):
        clf.predict_proba(k[20:25, :20], np.diagonal(k)[20:25])
    clf.fit(y[:20])
    with pytest.raises(UserError, match=r"shape \(m, 20\)"):
        clf.predict_proba(k[20:25, :19], np.diagonal(k)[20:25])
    with pytest.raises(UserError, match=r"shape \(5,\)"):
        clf.predict_proba(k[20:25, :20], np.diagonal(k)[20:24])
    with pytest.raises(UserError, match="n_s must be"):
        gp_test_error(k, y[:160], y[160:], 160)
    dup = np.r_[np.arange(20), 3]
    f = y[dup].copy()
    f[-1] = 1 - f[3]
    with pytest.raises(UserError, match=r"P\(f\) = 0"):
        EPClassifier(k[np.ix_(dup, dup)]).fit(f)
