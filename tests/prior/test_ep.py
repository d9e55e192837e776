"""EP's ln P(f) against independent truths: exact orthant probabilities (scipy), a textbook numpy EP
(R&W Alg. 3.5 with R&W's own log Z formula), closed forms and invariances; robustness and bad input."""

import math

import numpy as np
import pytest
from scipy.special import log_ndtr
from scipy.stats import multivariate_normal, truncnorm

from tfflat.errors import UserError
from tfflat.prior.ep import check_psd, ep_log_prior
from tfflat.prior.kernels import nngp_kernel


# ---------------------------------------------------------------- independent references


def exact_log_orthant(k, y):
    """ln P(sign z = 2y − 1), z ~ N(0, k), by Genz's algorithm (scipy)."""
    s = 2.0 * np.asarray(y) - 1.0
    n = len(s)
    p = multivariate_normal.cdf(np.zeros(n), mean=np.zeros(n), cov=k * np.outer(s, s), allow_singular=True,
                                abseps=1e-12, releps=1e-6, maxpts=50_000 * n, rng=np.random.default_rng(0))
    return math.log(p)


def textbook_ep(k, y, v, sweeps=60):
    """R&W Alg. 3.5 as printed: rank-one updates of the full Σ, likelihood Φ(y z/√v) (eq. 3.58),
    Σ recomputed after every sweep, and log Z from eqs. (3.65)/(3.73) in site-mean/variance form."""
    n = len(k)
    s = 2.0 * np.asarray(y, float) - 1.0
    tau, nu = np.zeros(n), np.zeros(n)
    sig, mu = k.copy(), np.zeros(n)
    for _ in range(sweeps):
        for i in range(n):
            tc = 1 / sig[i, i] - tau[i]
            nc = mu[i] / sig[i, i] - nu[i]
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
        sw = np.sqrt(tau)
        L = np.linalg.cholesky(np.eye(n) + sw[:, None] * k * sw[None, :])
        V = np.linalg.solve(L, sw[:, None] * k)
        sig = k - V.T @ V
        mu = sig @ nu
    tc = 1 / np.diag(sig) - tau
    nc = mu / np.diag(sig) - nu
    m_c, s2_c = nc / tc, 1 / tc
    s2_t, m_t = 1 / tau, nu / tau
    ks = k + np.diag(s2_t)
    z = s * m_c / np.sqrt(v + s2_c)
    return (-0.5 * np.linalg.slogdet(ks)[1] - 0.5 * m_t @ np.linalg.solve(ks, m_t) + np.sum(log_ndtr(z))
            + 0.5 * np.sum(np.log(s2_c + s2_t)) + np.sum((m_c - m_t) ** 2 / (2 * (s2_c + s2_t))))


@pytest.fixture(scope="module")
def mnist_kernel(mnist):
    """Analytic kernel of the paper's d-40-40-1 MNIST FCN on 160 real images, and their true labels."""
    from tfflat.data import make_splits

    sp = make_splits(mnist, 160, 0, 0, seed=5)
    return nngp_kernel(sp.x_train, 2, math.sqrt(2), 1.0), sp.y_train.astype(np.int8)


def random_kernel(rng, n, corr=0.5):
    a = rng.standard_normal((n, n + 3))
    k = a @ a.T / (n + 3)
    return (1 - corr) * k + corr * np.ones((n, n)) + 0.05 * np.eye(n)


# ---------------------------------------------------------------- accuracy


@pytest.mark.parametrize("likelihood", ["heaviside", "probit"])
def test_small_n_matches_exact_orthant_probability(likelihood, mnist_kernel, rng):
    """n ≤ 10, random and real-MNIST kernels: |EP − exact| ≤ 0.01 nats + 0.2 % (achieved: ≤ 0.005 nats)."""
    k_mnist, _ = mnist_kernel
    worst = 0.0
    for trial in range(8):
        n = int(rng.integers(2, 11))
        if trial % 2:
            k = random_kernel(rng, n)
        else:
            idx = rng.choice(len(k_mnist), n, replace=False)
            k = k_mnist[np.ix_(idx, idx)]
        y = rng.integers(0, 2, n)
        res = ep_log_prior(k, y, likelihood, tol=1e-10)
        exact = exact_log_orthant(k + (np.eye(n) if likelihood == "probit" else 0), y)
        assert res.converged
        assert abs(res.ln_z - exact) <= 0.01 + 0.002 * abs(exact), (trial, n, res.ln_z, exact)
        worst = max(worst, abs(res.ln_z - exact))
    assert worst < 0.01


def test_n1_is_exact():
    for lik in ("heaviside", "probit"):
        for y in ([0], [1]):
            res = ep_log_prior(np.array([[3.7]]), y, lik)
            assert res.ln_z == pytest.approx(math.log(0.5), abs=1e-12)
            assert res.converged


@pytest.mark.parametrize("likelihood,v", [("probit", 1.0), ("heaviside", 0.0)])
def test_matches_textbook_ep(likelihood, v, mnist_kernel):
    """Blocked sequential and damped parallel EP reach the fixed point of the textbook algorithm."""
    k, y = mnist_kernel
    k, y = k[:150, :150], y[:150].copy()
    y[120:] = 1 - y[120:]        # some labels the kernel disagrees with
    ref = textbook_ep(k, y, v, sweeps=15)
    for method, damping in (("sequential", 1.0), ("parallel", 1.0), ("parallel", 0.6)):
        res = ep_log_prior(k, y, likelihood, method=method, damping=damping, tol=1e-11)   # 2 blocks of 128
        assert res.converged, (method, res.message)
        assert res.ln_z == pytest.approx(ref, rel=1e-7), (method, damping)


def test_probit_is_heaviside_on_k_plus_identity(mnist_kernel):
    k, y = mnist_kernel
    a = ep_log_prior(k, y, "probit", tol=1e-10)
    b = ep_log_prior(k + np.eye(len(k)), y, "heaviside", tol=1e-10)
    assert a.ln_z == pytest.approx(b.ln_z, rel=1e-8)


def test_prior_is_symmetric_and_a_log_probability(mnist_kernel, rng):
    k, y = mnist_kernel
    for lik in ("heaviside", "probit"):
        for f in (y, rng.integers(0, 2, len(y))):
            a, b = ep_log_prior(k, f, lik), ep_log_prior(k, 1 - f, lik)
            assert a.ln_z == pytest.approx(b.ln_z, rel=1e-9)
            assert a.ln_z <= 0 and a.log10_p == pytest.approx(a.ln_z / math.log(10))


def test_flipping_confident_test_labels_lowers_log_prior(mnist_kernel):
    """f = true labels on S + the GP's own predictions on E; flipping the E labels it is most sure of
    costs prior probability, more with every flip."""
    k, y = mnist_kernel
    s, e = slice(0, 100), slice(100, None)
    mean = k[e, s] @ np.linalg.solve(k[s, s] + 1e-6 * np.eye(100), 2.0 * y[s] - 1)
    f = np.concatenate([y[s], (mean > 0).astype(np.int8)])
    order = 100 + np.argsort(-np.abs(mean))          # most confident first
    values = []
    for flips in (0, 3, 10, 30):
        g = f.copy()
        g[order[:flips]] = 1 - g[order[:flips]]
        values.append(ep_log_prior(k, g).ln_z)
    assert all(b < a - 1.0 for a, b in zip(values, values[1:])), values


# ---------------------------------------------------------------- the site update's numerics


def test_tilted_moments_match_truncated_normal_including_the_far_tail():
    """Heaviside site update from a cavity N(μ, 1): the tilted moments are those of N(μ, 1) truncated
    to z > 0 (scipy's truncnorm), across the switch to the asymptotic series and far beyond it."""
    from tfflat.prior.ep import SERIES_U, _tilted

    mu = np.array([4.0, 0.5, -1.0, -8.0, -30.0, -SERIES_U + 1e-9, -SERIES_U - 1e-9, -200.0, -1e4, -1e7])
    one = np.ones_like(mu)
    _, t, nu = _tilted(one, one, mu, 0.0)
    var_hat = 1 / (1 + t)                  # tilted precision = cavity (1) + site
    mean_hat = (mu + nu) * var_hat
    assert np.all(np.isfinite(t)) and np.all(t > 0)
    moderate = np.abs(mu) <= 30
    tn = truncnorm(-mu[moderate], np.inf, loc=mu[moderate])
    np.testing.assert_allclose(var_hat[moderate], tn.var(), rtol=1e-7)
    np.testing.assert_allclose(mean_hat[moderate], tn.mean(), rtol=1e-7)
    # continuity across the series switch, and Var ≈ 1/u² − 6/u⁴ far out
    assert var_hat[5] == pytest.approx(var_hat[6], rel=1e-9)
    u = -mu[-3:]
    np.testing.assert_allclose(var_hat[-3:], 1 / u ** 2 - 6 / u ** 4, rtol=1e-6)


# ---------------------------------------------------------------- robustness


def test_duplicates_scales_equal_labels(mnist_kernel):
    k, y = mnist_kernel
    k, y = k[:100, :100], y[:100]
    base = ep_log_prior(k, y)
    idx = np.r_[np.arange(len(k)), np.arange(40)]                  # 40 exact duplicates: singular K
    dup = ep_log_prior(k[np.ix_(idx, idx)], y[idx])
    assert dup.ln_z == pytest.approx(base.ln_z, rel=1e-9) and dup.duplicates == 40
    dup_p = ep_log_prior(k[np.ix_(idx, idx)], y[idx], "probit")
    assert np.isfinite(dup_p.ln_z) and dup_p.converged
    for scale in (1e-150, 1e-8, 1e8, 1e150):                       # Heaviside: P(f) is scale-free
        assert ep_log_prior(k * scale, y).ln_z == pytest.approx(base.ln_z, rel=1e-9)
    tiny = ep_log_prior(k * 1e-150, y, "probit")                   # probit on ~0 kernel: Φ(0)ⁿ
    assert tiny.ln_z == pytest.approx(len(y) * math.log(0.5), rel=1e-12)
    huge = ep_log_prior(k * 1e150, y, "probit")                    # … and on a huge one: Heaviside
    assert huge.ln_z == pytest.approx(base.ln_z, rel=1e-7)
    for label in (0, 1):
        same = ep_log_prior(k, np.full(len(y), label))
        assert same.converged and -5 < same.ln_z < 0
    ones = ep_log_prior(np.ones((30, 30)), np.ones(30))             # rank one: all z equal, P = ½
    assert ones.ln_z == pytest.approx(math.log(0.5), abs=1e-12)


def test_incompatible_duplicates_and_non_convergence_are_reported(mnist_kernel):
    k, y = mnist_kernel
    idx = np.r_[np.arange(50), 7]
    f = y[idx].copy()
    f[-1] = 1 - f[7]
    with pytest.raises(UserError, match="inputs 7 and 50 .* P\\(f\\) = 0"):
        ep_log_prior(k[np.ix_(idx, idx)], f)
    assert np.isfinite(ep_log_prior(k[np.ix_(idx, idx)], f, "probit").ln_z)
    capped = ep_log_prior(k, y, max_sweeps=1, allow_unconverged=True)
    assert not capped.converged and "not converged" in capped.message and np.isfinite(capped.ln_z)
    with pytest.raises(UserError, match="not converged after 1 sweeps.*allow_unconverged=True"):
        ep_log_prior(k, y, max_sweeps=1)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("kernel,labels,match", [
    (np.ones((3, 4)), [0, 1, 0], "square"),
    (np.array([[1.0, np.nan], [np.nan, 1.0]]), [0, 1], "NaN"),
    (np.array([[1.0, 0.5], [0.2, 1.0]]), [0, 1], "not symmetric"),
    (np.array([[1.0, 0.0], [0.0, -1.0]]), [0, 1], "positive semi-definite"),
    (np.eye(3), [0, 1], "3×3"),
    (np.eye(3), [0, 1, 2], "0 or 1"),
    (np.eye(3), [[0, 1, 0], [1, 0, 1]], "vector"),
])
def test_bad_input(kernel, labels, match):
    with pytest.raises(UserError, match=match):
        ep_log_prior(kernel, labels)


def test_non_psd_kernel_is_refused():
    k = np.array([[1.0, 0.9, -0.9], [0.9, 1.0, 0.9], [-0.9, 0.9, 1.0]])     # indefinite, unit diagonal
    with pytest.raises(UserError, match="not positive semi-definite"):
        check_psd(k)
    with pytest.raises(UserError, match="not positive semi-definite"):
        ep_log_prior(k, [0, 1, 0])
    check_psd(np.ones((4, 4)))                       # singular PSD is fine


def test_memory_is_checked_up_front(monkeypatch):
    from tfflat.prior import linalg

    monkeypatch.setattr(linalg, "available_ram", lambda: 10_000)
    with pytest.raises(UserError, match=r"n = 30 needs 0\.0 GB of RAM .* available"):
        ep_log_prior(np.eye(30), np.ones(30))


# ---------------------------------------------------------------- singular kernels (Heaviside)


def wedge_probability(a):
    """Exact P(a w > 0 for every row), w ~ N(0, I₂): the angle of the wedge over 2π."""
    phi = np.arctan2(a[:, 1], a[:, 0])
    cuts = np.sort(np.mod(np.r_[phi - np.pi / 2, phi + np.pi / 2], 2 * np.pi))
    gaps = np.diff(np.r_[cuts, cuts[0] + 2 * np.pi])
    mids = cuts + gaps / 2
    inside = np.all(a @ np.vstack([np.cos(mids), np.sin(mids)]) > 0, axis=0)
    return float(np.sum(gaps[inside]) / (2 * np.pi))


@pytest.mark.parametrize("seed", range(40))
def test_random_singular_kernels_give_the_exact_zero_or_a_log_probability(seed):
    """n = 10, K = L Lᵀ of rank r ∈ {2, 3, 4}; random labels (mostly P(f) = 0) and labels that some
    w realises. Truth: the exact wedge angle (r = 2) or 10⁶ Monte-Carlo draws of w (r ≥ 3)."""
    rng = np.random.default_rng(seed)
    n, r = 10, 2 + seed % 3
    lmat = rng.standard_normal((n, r))
    k = lmat @ lmat.T
    s = np.sign(lmat @ rng.standard_normal(r)) if seed % 2 else rng.choice([-1.0, 1.0], n)
    a = s[:, None] * lmat
    if r == 2:
        truth, resolved = wedge_probability(a), True
    else:
        hits = int(np.sum(np.all(rng.standard_normal((1_000_000, r)) @ a.T > 0, axis=1)))
        truth, resolved = hits / 1e6, hits >= 1000
    res = ep_log_prior(k, (s + 1) // 2)
    assert not np.isnan(res.ln_z) and res.ln_z <= 0
    assert res.rank == r
    if truth == 0:
        assert res.ln_z == -np.inf and res.converged and "P(f) = 0 exactly" in res.message
    elif resolved:
        assert res.converged and abs(res.ln_z - math.log(truth)) <= 0.25 + 0.05 * abs(math.log(truth)), (res, truth)
    else:
        assert np.isfinite(res.ln_z) and res.ln_z < math.log(2e-3)


def test_singular_kernel_of_the_issue():
    """Rank 2, n = 10, P(f) = 0: once log10 P = +16.1; now −∞, plainly; probit stays finite."""
    rng = np.random.default_rng(12)
    lmat = rng.standard_normal((10, 2))
    y = np.array([1, 0, 1, 1, 0, 0, 1, 0, 1, 0])
    assert wedge_probability((2.0 * y - 1)[:, None] * lmat) == 0
    res = ep_log_prior(lmat @ lmat.T, y)
    assert res.ln_z == -np.inf and res.log10_p == -np.inf and "rank 2 < 10" in res.message
    assert np.isfinite(ep_log_prior(lmat @ lmat.T, y, "probit").ln_z)


def test_implied_constraints_are_dropped_and_nonsingular_kernels_untouched(mnist_kernel):
    """Rank 2 with labels some w realises: only the wedge's two edges count, and EP on two inputs in
    two dimensions is the exact wedge probability to EP's accuracy; full-rank kernels keep every input."""
    rng = np.random.default_rng(3)
    lmat = rng.standard_normal((9, 2))
    s = np.sign(lmat @ np.array([0.3, -1.0]))
    res = ep_log_prior(lmat @ lmat.T, (s + 1) // 2)
    assert res.rank == 2 and res.redundant == 7 and res.converged
    assert res.ln_z == pytest.approx(math.log(wedge_probability(s[:, None] * lmat)), abs=0.02)
    k, y = mnist_kernel
    full = ep_log_prior(k, y)
    assert full.rank is None and full.redundant == 0


# ---------------------------------------------------------------- special functions, site update, backends


def test_scipy_special_functions_match_tfp_and_the_math_library():
    """EP uses SciPy's log_ndtr and erfcx. They agree with references from Python's math module (libm's
    erfc, exact to a few ulps) to 1e-12, and with TFP's public versions (the standard normal's log_cdf,
    tfp.math.erfcx) to TFP's float64 accuracy."""
    import tensorflow_probability as tfp
    from scipy.special import erfcx

    x = np.r_[-np.logspace(3, -3, 40), 0.0, np.logspace(-3, 1.5, 40)]
    near = x[np.abs(x) <= 37]
    ref = np.array([math.log(0.5 * math.erfc(-t / math.sqrt(2))) if t < 1 else math.log1p(-0.5 * math.erfc(t / math.sqrt(2)))
                    for t in near])
    np.testing.assert_allclose(log_ndtr(near), ref, rtol=1e-12)
    normal = tfp.distributions.Normal(np.float64(0.0), np.float64(1.0))
    np.testing.assert_allclose(log_ndtr(x), normal.log_cdf(x).numpy(), rtol=1e-6)
    small = x[np.abs(x) <= 5]
    np.testing.assert_allclose(erfcx(small), [math.exp(t * t) * math.erfc(t) for t in small], rtol=1e-13)
    np.testing.assert_allclose(erfcx(x[x > -25]), tfp.math.erfcx(x[x > -25]).numpy(), rtol=1e-12)


def test_scalar_site_update_equals_the_vectorised_one(rng):
    from tfflat.prior.ep import _site, _tilted

    s = rng.choice([-1.0, 1.0], 200)
    tau_c = np.exp(rng.uniform(-8, 8, 200))
    nu_c = rng.normal(0, 1, 200) * tau_c * np.exp(rng.uniform(-3, 4, 200))
    for v in (0.0, 0.7):
        _, t_vec, n_vec = _tilted(s, tau_c, nu_c, v)
        scalar = np.array([_site(*args, v) for args in zip(s, tau_c, nu_c)])
        np.testing.assert_allclose(scalar[:, 0], t_vec, rtol=1e-12, atol=1e-300)
        np.testing.assert_allclose(scalar[:, 1], n_vec, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("likelihood", ["heaviside", "probit"])
def test_tensorflow_backend_on_cpu_gives_the_same_ln_z(likelihood, mnist_kernel):
    """The TensorFlow backend (tf.linalg, float64; here on the CPU) against SciPy's: the same ln Z."""
    k, y = mnist_kernel
    for method in ("sequential", "parallel"):
        a = ep_log_prior(k, y, likelihood, method=method, backend="numpy")
        b = ep_log_prior(k, y, likelihood, method=method, backend="tensorflow")
        assert b.backend == "tensorflow" and b.sweeps == a.sweeps
        assert b.ln_z == pytest.approx(a.ln_z, rel=1e-10)


def test_auto_backend_needs_no_tensorflow_without_a_gpu(monkeypatch):
    import subprocess
    import sys

    from tfflat.prior import linalg

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert not linalg.gpu_visible() and linalg.get("auto", 10 ** 6).name == "numpy"
    code = ("import sys, numpy as np; from tfflat.prior.ep import ep_log_prior; "
            "r = ep_log_prior(np.eye(3) + 0.5, [0, 1, 1]); assert r.backend == 'numpy'; "
            "print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    with pytest.raises(UserError, match="unknown EP backend"):
        ep_log_prior(np.eye(3), [0, 1, 1], backend="cuda")
