"""The EP Gaussian-process classifier: the GP's own predictions on E beside the network's.

In the style of scikit-learn's ``_gpc.py``, with the lines of Rasmussen & Williams (2006), Alg. 3.6
beside the code. EP itself (R&W Alg. 3.5) is :func:`tfflat.prior.ep.ep_log_prior`; it works on the
kernel scaled to mean diagonal 1 (K/c), and so does everything here: with k* = K(x*, X)/c and
k** = k(x*, x*)/c, the latent predictive f*/√c ~ N(f̄*, V[f*]) and

    π̄* = Φ(f̄* / √(v/c + V[f*]))        (R&W eq. 3.82 for the probit likelihood, v = 1;
                                           the Heaviside likelihood, v = 0: Φ(μ*/σ*))

is the probability of label 1 for either likelihood.
"""

from __future__ import annotations

import numpy as np

from tfflat.errors import UserError
from tfflat.prior.ep import LIKELIHOODS, MAX_SWEEPS, TOL, as_kernel, as_labels, ep_log_prior


class EPClassifier:
    """Binary GP classification by Expectation Propagation for a precomputed kernel.

    Args:
      kernel: (n, n) covariance of the training inputs (the prior N(0, K)).
      likelihood: ``"heaviside"`` (p(f=1 | z) = 1[z > 0], the paper's) or ``"probit"`` (Φ(z)).
      method, tol, max_sweeps, backend, allow_unconverged: EP settings, see
        :func:`tfflat.prior.ep.ep_log_prior`.

    Attributes (after :meth:`fit`):
      result_: the :class:`tfflat.prior.ep.EPResult` (log Z, sites).
      L_: lower Cholesky factor of B = I + S̃½ (K/c) S̃½ (R&W Alg. 3.6, line 2).
      sqrt_tau_: S̃½ as a vector.
      alpha_: ν̃ − z, so that f̄* = k*ᵀ alpha_ (lines 3–4).
    """

    def __init__(self, kernel, likelihood: str = "heaviside", *, method: str = "sequential", tol: float = TOL,
                 max_sweeps: int = MAX_SWEEPS, backend: str = "auto", allow_unconverged: bool = False):
        if likelihood not in LIKELIHOODS:
            raise UserError(f"unknown likelihood {likelihood!r}; choose {' or '.join(LIKELIHOODS)}")
        self.kernel = as_kernel(kernel)
        self.likelihood = likelihood
        self.ep_options = {"method": method, "tol": tol, "max_sweeps": max_sweeps, "backend": backend,
                           "allow_unconverged": allow_unconverged}

    def fit(self, labels) -> EPClassifier:
        """Run EP for the training labels (0/1) and precompute the predictive (R&W Alg. 3.6, lines 2–4)."""
        from scipy.linalg import cho_solve, cholesky

        k = self.kernel
        y = as_labels(labels, len(k))
        res = ep_log_prior(k, y, self.likelihood, **self.ep_options)
        if not np.isfinite(res.ln_z):
            raise UserError(f"cannot fit the EP classifier: {res.message}")
        self.result_ = res
        self.scale_ = res.scale
        kc = k / res.scale
        sw = np.sqrt(res.site_tau)
        # Line 2: L := cholesky(I + S̃½ K S̃½)
        b = sw[:, None] * kc * sw[None, :]
        b[np.diag_indices(len(k))] += 1.0
        self.L_ = cholesky(b, lower=True, overwrite_a=True, check_finite=False)
        # Line 3: z := S̃½ Lᵀ \ (L \ (S̃½ K ν̃))
        z = sw * cho_solve((self.L_, True), sw * (kc @ res.site_nu), check_finite=False)
        # Line 4 (eq. 3.60): f̄* = k*ᵀ (ν̃ − z)
        self.alpha_ = res.site_nu - z
        self.sqrt_tau_ = sw
        return self

    def log_marginal_likelihood(self) -> float:
        """log Z_EP = ln P(labels) under the prior (R&W eq. 3.65)."""
        self._check_fitted()
        return self.result_.ln_z

    def latent(self, kernel_test_train, kernel_test_diag) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance of the latent f* at test inputs, in units of the scaled kernel (K/c).

        Args:
          kernel_test_train: (m, n) K(x*, X).
          kernel_test_diag: (m,) k(x*, x*).
        """
        from scipy.linalg import solve_triangular

        self._check_fitted()
        ks, kss = self._test_kernel(kernel_test_train, kernel_test_diag)
        mean = ks @ self.alpha_                                               # line 4 (eq. 3.60)
        v = solve_triangular(self.L_, self.sqrt_tau_[:, None] * ks.T, lower=True, check_finite=False)   # line 5
        var = np.maximum(kss - np.einsum("ij,ij->j", v, v), 0.0)              # line 6 (eq. 3.61)
        return mean, var

    def predict_proba(self, kernel_test_train, kernel_test_diag) -> np.ndarray:
        """(m, 2) array of [P(label 0), P(label 1)] at the test inputs (line 7, eq. 3.62 / 3.82)."""
        from scipy.special import ndtr

        mean, var = self.latent(kernel_test_train, kernel_test_diag)
        sd = np.sqrt(LIKELIHOODS[self.likelihood] / self.scale_ + var)
        with np.errstate(divide="ignore", invalid="ignore"):
            pi = np.where(sd > 0, ndtr(mean / sd), 0.5 * (1.0 + np.sign(mean)))
        return np.column_stack([1.0 - pi, pi])

    def predict(self, kernel_test_train, kernel_test_diag) -> np.ndarray:
        """0/1 labels of the test inputs: the more probable one (f̄* > 0 ↔ 1)."""
        mean, _ = self.latent(kernel_test_train, kernel_test_diag)
        return (mean > 0).astype(np.int8)

    def _check_fitted(self):
        if not hasattr(self, "result_"):
            raise UserError("the EP classifier is not fitted yet; call fit(labels) first")

    def _test_kernel(self, kernel_test_train, kernel_test_diag):
        ks = np.atleast_2d(np.asarray(kernel_test_train, np.float64))
        kss = np.atleast_1d(np.asarray(kernel_test_diag, np.float64))
        n = len(self.kernel)
        if ks.ndim != 2 or ks.shape[1] != n:
            raise UserError(f"kernel_test_train must have shape (m, {n}), got {ks.shape}")
        if kss.shape != (len(ks),):
            raise UserError(f"kernel_test_diag must have shape ({len(ks)},), got {kss.shape}")
        if not (np.all(np.isfinite(ks)) and np.all(np.isfinite(kss))):
            raise UserError("the test kernel contains NaN or infinite values")
        if np.any(kss < 0):
            raise UserError("kernel_test_diag must be ≥ 0 (prior variances)")
        return ks / self.scale_, kss / self.scale_


def gp_test_error(kernel, y_s, y_e, n_s: int, likelihood: str = "heaviside", **ep_options) -> float:
    """The GP's own error on E: EP fitted on S, predictions on E, compared with ``y_e``.

    Args:
      kernel: ((|S| + |E|), (|S| + |E|)) kernel of S then E (the prior record's kernel).
      y_s: the |S| training labels (0/1).
      y_e: the |E| labels to compare with (0/1; e.g. the true test labels).
      n_s: |S|, the number of leading rows/columns that are S.
      likelihood, ep_options: see :class:`EPClassifier`.
    Returns:
      Fraction of E where the GP's prediction (f̄* > 0 ↔ 1) differs from ``y_e``.
    """
    k = as_kernel(kernel)
    n = len(k)
    if int(n_s) != n_s or not 1 <= n_s < n:
        raise UserError(f"n_s must be an integer in [1, {n - 1}] (|S| of a {n}×{n} kernel of S then E), got {n_s}")
    n_s = int(n_s)
    y_s = as_labels(y_s, n_s)
    y_e = as_labels(y_e, n - n_s)
    clf = EPClassifier(k[:n_s, :n_s], likelihood, **ep_options).fit(y_s)
    pred = clf.predict(k[n_s:, :n_s], np.diagonal(k)[n_s:])
    return float(np.mean(pred != y_e))
