"""Expectation Propagation for binary GP classification: log P(f) of a labelling (SPEC §5, App. D).

P(f) = ∫ Π_i p(f_i | z_i) N(z; 0, K) dz with the likelihood p(f_i | z) = Φ(y_i z / √v), y = 2f − 1:

- ``heaviside`` (v = 0): p = 1[y z > 0], so P(f) is the orthant probability of N(0, K) — the paper's
  definition, and what direct sampling of networks measures;
- ``probit`` (v = 1): p = Φ(y z) — what GPy's Bernoulli EP computed in the authors' code. It equals
  the Heaviside likelihood on K + v·I, and EP's fixed points (and log Z) are the same for both.

EP (Rasmussen & Williams 2006, §3.6) returns log Z_EP ≈ ln P(f). Two schedules:

- ``sequential`` (R&W Alg. 3.5, the default): sites updated one at a time, each rank-one update
  Σ ← Σ − κ_k x_k x_kᵀ (x_k = Σ[:, k], κ_k = Δτ/(1 + Δτ Σ_kk)) delayed. Within a block J the sites
  need only Σ[J, J], so the updates are applied to the n×n Σ once per block, as one symmetric rank-|J|
  ``dsyrk``: x_k = W a_k with W = Σ[:, J] at the block's start, and A = [a_k] = U⁻¹ for the unit upper
  triangular U with U[j, k] = κ_j x_j[k] (j < k) — because a_k = e_k − Σ_{j<k} a_j κ_j x_j[k]. The
  same identity splits a block recursively in halves (the first half's update of the second half's
  Σ[J₂, J₂] is one small product), down to leaves of :data:`LEAF` sites updated one by one. So a sweep
  costs n³ flops of BLAS-3 plus O(n) small numpy operations, and sequential EP needs fewer sweeps than
  parallel EP (MNIST, n = 1500, Heaviside: 4 against 11; probit: 3 against 4). log|B| is tracked by
  the matrix determinant lemma.
- ``parallel``: all sites from the same posterior, damped, with the posterior recomputed from
  scratch (Cholesky of B = I + S̃½ K S̃½) every sweep.

Both stop when |Δ ln Z| ≤ tol · max(1, |ln Z|) between sweeps (or after ``max_sweeps``; that is an
error unless ``allow_unconverged``). The returned ln Z is computed from the final sites with log|B|
and μ from a fresh Cholesky factorisation (sequential: diag Σ from the tracked Σ, recomputed as well
if the tracked μ shows drift).

Numerics:
- K is divided by its mean diagonal c and v by c: ln Z is unchanged, and huge or tiny kernel scales
  become harmless (Heaviside: exactly scale-free).
- The site update is written so that v = 0 (Heaviside) needs no limit: 1 − β = v/(v+σ²) + ρ·Var,
  where Var, the variance factor of a truncated standard normal, and E[x | x > u] − u use their
  asymptotic series for u ≥ 40 (no cancellation); φ/Φ is √(2/π)/erfcx(−z/√2) and log Φ is
  ``log_ndtr`` (SciPy's, checked against ``tfp.math`` in the tests).
- Site precisions stay ≥ 0; an update whose cavity is not a proper Gaussian is skipped; B is
  always Cholesky-factorised (eigenvalues ≥ 1, fine for singular K) with a jitter fallback.
- Heaviside: inputs whose latent values are ±identical to an earlier input's (duplicates) are dropped
  — P(f) is unchanged and EP is spared double counting — or, if their labels are incompatible,
  P(f) = 0 is reported as a :class:`UserError`.
- Heaviside, singular kernels: one Cholesky factorisation of K/c (with a condition estimate) tells a
  nonsingular kernel from a numerically rank-deficient one. For the latter, with pivoted Cholesky
  K ≈ L Lᵀ (rank r < n), z = L w with w ~ N(0, I_r): a linear programme decides whether any w has
  the signs f. If none does, P(f) = 0 exactly and ``ln_z`` is −∞ (said in ``message``); if some does,
  constraints implied by the others are dropped (small problems; P(f) is unchanged) and EP runs.
  EP that breaks down, or a positive ln Z, is never returned: it is a :class:`UserError`.
- The O(n³) work (rank-|J| updates, Cholesky, triangular solves) goes to a backend
  (:mod:`tfflat.prior.linalg`): SciPy's LAPACK/BLAS by default, TensorFlow (a GPU, float64) when asked
  or, with ``backend="auto"``, when a GPU is visible and n is large. This module imports only NumPy
  and SciPy.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy.special import erfcx, log_ndtr

from tfflat.errors import UserError
from tfflat.prior import linalg
from tfflat.prior.linalg import Posterior

LIKELIHOODS = {"heaviside": 0.0, "probit": 1.0}   # noise variance v of Φ(y z / √v)
METHODS = ("sequential", "parallel")
TOL = 1e-6
MAX_SWEEPS = 100
BLOCK = 256              # sites per rank-|J| update of Σ (sequential; half as many below n = 3000)
LEAF = 16                # sites updated one by one inside a block
SERIES_U = 40.0          # use the asymptotic series of the truncated normal beyond this
JITTERS = linalg.JITTERS
SINGULAR_RTOL = 1e-10    # K/c (mean diagonal 1) is singular when its pivots / eigenvalues fall below this
LP_MAX_ENTRIES = 250_000          # decide P(f) = 0 by linear programming up to n·r this large
REDUNDANT_MAX_ENTRIES = 20_000    # … and drop implied constraints (one LP each) up to this n·r
LP_TOL = 1e-9
SQRT_2_PI = math.sqrt(2.0 / math.pi)
INV_SQRT2 = 1.0 / math.sqrt(2.0)


@dataclass
class EPResult:
    """The EP estimate of ln P(f).

    Attributes:
      ln_z: log Z_EP ≈ ln P(f) (nats); −∞ when P(f) = 0 exactly (Heaviside, singular kernel).
      log10_p: ln_z / ln 10, as plotted in the paper.
      sweeps: sweeps over all sites that were run.
      converged: whether |Δ ln Z| ≤ tol · max(1, |ln Z|) was reached within ``max_sweeps``.
      history: ln Z after each sweep (from the tracked posterior).
      jitter: diagonal jitter (relative to the mean prior variance) the final Cholesky needed.
      duplicates: inputs dropped as exact duplicates (Heaviside only; P(f) is unchanged by them).
      redundant: inputs dropped because the kernel is singular and their sign is implied by the others'.
      rank: numerical rank of the (deduplicated) kernel when it is singular (Heaviside), else None.
      message: why EP did not converge, that P(f) = 0, or other notes ("" when all is well).
      backend: the linear-algebra backend that ran (``numpy`` or ``tensorflow``).
      site_tau, site_nu: the final site parameters, one per input (dropped inputs: 0), for the kernel
        scaled to mean diagonal 1 (of the inputs EP kept); ``scale`` is that divisor c.
    """

    ln_z: float
    sweeps: int
    converged: bool
    likelihood: str
    method: str
    n: int
    tol: float
    seconds: float = 0.0
    jitter: float = 0.0
    duplicates: int = 0
    redundant: int = 0
    rank: int | None = None
    message: str = ""
    backend: str = "numpy"
    history: list = field(default_factory=list)
    site_tau: np.ndarray | None = field(default=None, repr=False)
    site_nu: np.ndarray | None = field(default=None, repr=False)
    scale: float = 1.0

    @property
    def log10_p(self) -> float:
        return self.ln_z / math.log(10.0)

    def to_dict(self) -> dict:
        """JSON-able summary (without the site parameters)."""
        return {"ln_z": self.ln_z, "log10_p": self.log10_p, "sweeps": self.sweeps, "converged": self.converged,
                "likelihood": self.likelihood, "method": self.method, "n": self.n, "tol": self.tol,
                "seconds": self.seconds, "jitter": self.jitter, "duplicates": self.duplicates,
                "redundant": self.redundant, "rank": self.rank, "message": self.message, "backend": self.backend}


# ----------------------------------------------------------------------------------------------
# input checks


def as_kernel(kernel) -> np.ndarray:
    """``kernel`` as a float64 (n, n) array; one-line :class:`UserError` if it is not square and symmetric."""
    k = np.asarray(kernel)
    if k.ndim != 2 or k.shape[0] != k.shape[1] or k.shape[0] == 0:
        raise UserError(f"the kernel must be a non-empty square matrix, got shape {k.shape}")
    if not np.issubdtype(k.dtype, np.number) or np.iscomplexobj(k):
        raise UserError(f"the kernel must hold real numbers, got dtype {k.dtype}")
    k = np.ascontiguousarray(k, dtype=np.float64)
    scale, asym = _scan(k)
    if not math.isfinite(scale):
        raise UserError("the kernel contains NaN or infinite values")
    d = np.diagonal(k)
    if np.any(d < 0):
        i = int(np.argmin(d))
        raise UserError(f"the kernel is not positive semi-definite: K[{i},{i}] = {d[i]:.3g} < 0")
    if not np.any(d > 0):
        raise UserError("the kernel's diagonal is zero: every prior variance is 0")
    if asym > 1e-8 * scale:
        raise UserError(f"the kernel is not symmetric: max |K − Kᵀ| = {asym:.3g} (max |K| = {scale:.3g})")
    return k


def _scan(k: np.ndarray, block: int = 256) -> tuple[float, float]:
    """(max |K| — NaN or ∞ if K has a non-finite entry —, max |K − Kᵀ|), one pass over row blocks."""
    n, scale, worst = len(k), 0.0, 0.0
    for i in range(0, n, block):
        rows = k[i:i + block]
        hi, lo = float(rows.max()), float(rows.min())
        if not (math.isfinite(hi) and math.isfinite(lo)):
            return float("nan"), 0.0
        scale = max(scale, hi, -lo)
        worst = max(worst, float(np.max(np.abs(rows[:, i:] - k[i:, i:i + block].T))))
    return scale, worst


def as_labels(labels, n: int | None = None) -> np.ndarray:
    """0/1 labels as an int8 vector of length ``n``; one-line :class:`UserError` otherwise."""
    y = np.asarray(labels)
    if y.ndim == 2 and 1 in y.shape:
        y = y.reshape(-1)
    if y.ndim != 1:
        raise UserError(f"labels must be a vector of 0/1 values, got shape {y.shape}")
    if n is not None and len(y) != n:
        raise UserError(f"{len(y)} labels for a kernel of size {n}×{n}; they must match")
    if y.dtype == bool:
        return y.astype(np.int8)
    if not np.issubdtype(y.dtype, np.number) or not np.all(np.isin(y, (0, 1))):
        bad = y[~np.isin(y, (0, 1))][:3] if np.issubdtype(y.dtype, np.number) else y[:3]
        raise UserError(f"labels must be 0 or 1, found {', '.join(map(str, bad))}")
    return y.astype(np.int8)


def check_psd(kernel: np.ndarray, rtol: float = 1e-8) -> None:
    """:class:`UserError` unless ``kernel`` is positive semi-definite up to rounding.

    Tests a Cholesky factorisation of K + ε·I with ε = rtol · n · mean(diag K) (O(n³/3)).
    """
    from scipy.linalg import lapack

    k = np.asarray(kernel, np.float64)
    n = len(k)
    eps = rtol * max(n, 1) * float(np.mean(np.diagonal(k)))
    work = k.copy()                     # C order: work.T is the same (symmetric) matrix in Fortran order
    work[np.diag_indices(n)] += eps
    _, info = lapack.dpotrf(work.T, lower=1, overwrite_a=1, clean=0)
    del work
    if info != 0:
        raise UserError(f"the kernel is not positive semi-definite (its Cholesky factorisation fails even with "
                        f"{eps:.2g} added to the diagonal); pass a covariance matrix")


def _duplicates(k: np.ndarray, sgn: np.ndarray, block: int = 1024, rtol: float = 1e-12) -> np.ndarray:
    """Inputs whose latent value is ±identical to an earlier one's (|correlation| ≥ 1 − rtol).

    Under the Heaviside likelihood such an input's constraint is implied by the earlier one, so dropping
    it leaves P(f) unchanged (and spares EP the double counting it would otherwise do); if its label
    demands the opposite sign relation, P(f) = 0 and a :class:`UserError` says so.

    Returns:
      Boolean mask of the inputs to keep.
    """
    d = np.sqrt(np.diagonal(k))
    n = len(k)
    drop = np.zeros(n, bool)
    for i0 in range(0, n, block):
        rows = k[i0:i0 + block] / (d[i0:i0 + block, None] * d[None, :])
        ii, jj = np.nonzero(np.abs(rows) >= 1.0 - rtol)
        ii += i0
        keep = ii < jj
        ii, jj = ii[keep], jj[keep]
        if len(ii):
            ok = sgn[ii] * sgn[jj] * np.sign(k[ii, jj]) > 0
            if not ok.all():
                i, j = int(ii[~ok][0]), int(jj[~ok][0])
                raise UserError(f"inputs {i} and {j} have perfectly correlated prior outputs but incompatible "
                                "labels, so P(f) = 0 under the Heaviside likelihood (log P = −∞); use "
                                "--likelihood probit or remove the duplicate")
            drop[jj] = True
    return ~drop


# ----------------------------------------------------------------------------------------------
# singular kernels (Heaviside): rank, feasibility of the signs, implied constraints


def _factor_check(k: np.ndarray, c: float) -> bool:
    """Whether K/c is clearly nonsingular: its Cholesky factorisation succeeds and λ_min ≥ 1/‖(K/c)⁻¹‖₁
    (LAPACK's estimate, from the factor) is at least 10 · :data:`SINGULAR_RTOL`. One O(n³/3) factorisation."""
    from scipy.linalg import lapack

    work = np.divide(k, c).T            # F-ordered view of a C-ordered copy (K is symmetric)
    anorm = max(float(np.max(np.sum(np.abs(work[i:i + 1024]), axis=1))) for i in range(0, len(k), 1024))
    u, info = lapack.dpotrf(work, lower=0, overwrite_a=1, clean=0)
    if info != 0:
        return False
    rcond, info = lapack.dpocon(u, anorm, uplo="U")
    return info == 0 and rcond * anorm >= 10 * SINGULAR_RTOL


def _low_rank(k: np.ndarray, c: float) -> tuple[int, np.ndarray, np.ndarray]:
    """Pivoted Cholesky of K/c: rank r (pivots > :data:`SINGULAR_RTOL`), the permutation and L (n×r),
    K/c[piv][:, piv] ≈ L Lᵀ."""
    from scipy.linalg import lapack

    n = len(k)
    fac, piv, rank, info = lapack.dpstrf(np.divide(k, c), tol=SINGULAR_RTOL, lower=1)
    if info < 0:
        raise UserError("EP failed: the pivoted Cholesky factorisation of the kernel did not run")
    rank = min(int(rank), n)
    return rank, np.asarray(piv) - 1, np.tril(fac)[:, :rank]           # LAPACK's pivots count from 1


def _sign_margin(a: np.ndarray) -> float:
    """max t subject to a w ≥ t (every row), −1 ≤ w ≤ 1, t ≤ 1: > 0 iff some w has a w > 0."""
    from scipy.optimize import linprog

    n, r = a.shape
    cost = np.zeros(r + 1)
    cost[-1] = -1.0
    res = linprog(cost, A_ub=np.hstack([-a, np.ones((n, 1))]), b_ub=np.zeros(n),
                  bounds=[(-1.0, 1.0)] * r + [(None, 1.0)], method="highs")
    if res.status != 0:
        raise UserError(f"EP failed: the linear programme that decides P(f) > 0 did not solve ({res.message})")
    return -float(res.fun)


def _implied(a: np.ndarray) -> np.ndarray:
    """Mask of the rows of ``a`` whose constraint aᵢ w > 0 is implied by the other (kept) rows'."""
    from scipy.optimize import linprog

    n, r = a.shape
    implied = np.zeros(n, bool)
    for i in range(n):
        others = ~implied
        others[i] = False
        if not others.any():
            break
        res = linprog(a[i], A_ub=-a[others], b_ub=np.zeros(int(others.sum())), bounds=[(-1.0, 1.0)] * r,
                      method="highs")
        implied[i] = res.status == 0 and res.fun >= -LP_TOL
    return implied


# ----------------------------------------------------------------------------------------------
# the site update (R&W eqs. 3.56–3.59) and log Z (R&W eqs. 3.65, 3.73–3.74)


def _tilted(sgn, tau_c, nu_c, v):
    """z_i and the new site parameters (τ̃, ν̃) from the cavity N(μ_c, 1/τ_c), vectorised.

    Likelihood Φ(y z/√v): z_i = y μ_c / √(v + σ_c²); with r = φ(z)/Φ(z), g = z + r and the truncated
    normal's variance factor Var = 1 − r g, the tilted variance is σ_c² (1 − β), β = ρ r g,
    ρ = σ_c²/(v + σ_c²), so τ̃ = τ_c β / (1 − β) with 1 − β = v/(v + σ_c²) + ρ Var ≥ 0.
    """
    sgn, tau_c, nu_c = (np.asarray(a, np.float64) for a in (sgn, tau_c, nu_c))
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        var_c = 1.0 / tau_c
        mu_c = nu_c * var_c
        d2 = v + var_c
        d = np.sqrt(d2)
        z = sgn * mu_c / d
        u = -z
        r = SQRT_2_PI / erfcx(u * INV_SQRT2)                    # φ(z)/Φ(z), no under/overflow
        # asymptotic series in w = 1/u² (u ≥ 40): g = u(w − 2w² + 10w³ − 74w⁴ + 706w⁵),
        # Var = w − 6w² + 50w³ − 518w⁴ + 6354w⁵; truncation error < 1e-11 relative
        us = np.maximum(u, SERIES_U)
        w = 1.0 / (us * us)
        far = u >= SERIES_U
        g = np.where(far, us * w * (1.0 + w * (-2.0 + w * (10.0 + w * (-74.0 + w * 706.0)))), z + r)
        var_t = np.where(far, w * (1.0 + w * (-6.0 + w * (50.0 + w * (-518.0 + w * 6354.0)))), 1.0 - r * g)
        var_t = np.clip(var_t, 0.0, 1.0)
        rho = var_c / d2
        one_minus_beta = v / d2 + rho * var_t
        beta = rho * (1.0 - var_t)
        tau_new = tau_c * beta / one_minus_beta
        nu_new = tau_c * (mu_c * beta + sgn * var_c * r / d) / one_minus_beta
    return z, np.maximum(tau_new, 0.0), nu_new


def _site(s: float, tau_c: float, nu_c: float, v: float):
    """:func:`_tilted` for one site in Python floats: (τ̃, ν̃), or None if the update is not finite."""
    var_c = 1.0 / tau_c
    mu_c = nu_c * var_c
    d2 = v + var_c
    d = math.sqrt(d2)
    z = s * mu_c / d
    r = SQRT_2_PI / erfcx(-z * INV_SQRT2)
    if -z >= SERIES_U:
        w = 1.0 / (z * z)
        g = -z * w * (1.0 + w * (-2.0 + w * (10.0 + w * (-74.0 + w * 706.0))))
        var_t = w * (1.0 + w * (-6.0 + w * (50.0 + w * (-518.0 + w * 6354.0))))
    else:
        g = z + r
        var_t = 1.0 - r * g
    if var_t < 0.0:
        var_t = 0.0
    elif var_t > 1.0:
        var_t = 1.0
    rho = var_c / d2
    one_minus_beta = v / d2 + rho * var_t
    if not one_minus_beta > 0.0:
        return None
    beta = rho * (1.0 - var_t)
    tau_new = tau_c * beta / one_minus_beta
    if tau_new < 0.0:
        tau_new = 0.0
    nu_new = tau_c * (mu_c * beta + s * var_c * r / d) / one_minus_beta
    if not (math.isfinite(tau_new) and math.isfinite(nu_new)):
        return None
    return tau_new, nu_new


def _ln_z(post: Posterior, tau, nu, sgn, v) -> tuple[float, int]:
    """log Z_EP (R&W eqs. 3.65, 3.73–3.74, in GPML's ``infEP`` form) and the number of improper cavities."""
    sig, mu = post.sig, post.mu
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        tau_c = 1.0 / sig - tau
        nu_c = mu / sig - nu
        bad = ~((tau_c > 0) & np.isfinite(tau_c) & np.isfinite(nu_c))
        tau_c = np.where(bad, 1.0, tau_c)
        nu_c = np.where(bad, 0.0, nu_c)
        log_z = log_ndtr(sgn * nu_c / tau_c / np.sqrt(v + 1.0 / tau_c))     # log Φ(z_i), R&W eq. 3.82
        ln_z = (-post.half_logdet + np.sum(log_z) + 0.5 * np.dot(nu, mu) - 0.5 * np.dot(sig, nu * nu)
                + 0.5 * np.sum(nu_c * (tau / tau_c * nu_c - 2.0 * nu) * sig) + 0.5 * np.sum(np.log1p(tau / tau_c)))
    return float(ln_z), int(np.sum(bad))


# ----------------------------------------------------------------------------------------------
# sequential EP inside one block (host, NumPy)


def _block(t, m, tau, nu, sgn, v, a, kappa, coef) -> tuple[float, int]:
    """Sequential EP over the sites of one block J (R&W Alg. 3.5), given t = the current Σ[J, J] and
    m = μ[J] (both overwritten: their trailing parts follow the updates).

    Site k's rank-one update is Σ ← Σ − κ_k x_k x_kᵀ with x_k = W a_k (W = Σ[:, J] now); fills
    ``a`` = A = [a_k] = U⁻¹ (U unit upper triangular, U[j, k] = κ_j x_j[k]), κ and ``coef``
    (μ ← μ − W A coef), and updates τ̃_J, ν̃_J in place. Halves: with A₁, A₂ the halves' matrices and
    R₁₂ = diag(κ₁) X₂₁ᵀ, X₂₁ = Σ[J₂, J₁] A₁ (the first half's update of the second half),
    A = [[A₁, −A₁ R₁₂ A₂], [0, A₂]]. Returns (Σ_k log(1 + Δτ_k Σ_kk), skipped updates).
    """
    b = len(t)
    if b <= LEAF:
        return _leaf(t, m, tau, nu, sgn, v, a, kappa, coef)
    h = ((b // LEAF + 1) // 2) * LEAF
    ld1, sk1 = _block(t[:h, :h], m[:h], tau[:h], nu[:h], sgn[:h], v, a[:h, :h], kappa[:h], coef[:h])
    x21 = t[h:, :h] @ a[:h, :h]
    r12 = (x21 * kappa[:h]).T
    t[h:, h:] -= x21 @ r12
    m[h:] -= x21 @ coef[:h]
    ld2, sk2 = _block(t[h:, h:], m[h:], tau[h:], nu[h:], sgn[h:], v, a[h:, h:], kappa[h:], coef[h:])
    a[:h, h:] = -(a[:h, :h] @ (r12 @ a[h:, h:]))
    return ld1 + ld2, sk1 + sk2


def _leaf(t, m, tau, nu, sgn, v, a, kappa, coef) -> tuple[float, int]:
    """:func:`_block` for a few sites: rank-one updates of the trailing part of [t | m], one site at a time."""
    from scipy.linalg import lapack

    b = len(t)
    tm = np.empty((b, b + 1))           # [Σ_JJ | μ_J]: one outer product updates both
    tm[:, :b] = t
    tm[:, b] = m
    u = np.zeros((b, b))
    logdet, skipped = 0.0, 0
    for k in range(b):
        s_kk, mu_k, tau_k, nu_k = tm.item(k, k), tm.item(k, b), tau.item(k), nu.item(k)
        new = None
        if s_kk > 0:
            tau_c = 1.0 / s_kk - tau_k
            nu_c = mu_k / s_kk - nu_k
            if tau_c > 0 and math.isfinite(tau_c) and math.isfinite(nu_c):
                new = _site(sgn.item(k), tau_c, nu_c, v)
        if new is None:
            skipped += 1
            kappa[k] = coef[k] = 0.0
            continue
        dt, dn = new[0] - tau_k, new[1] - nu_k
        den = 1.0 + dt * s_kk
        kap = dt / den
        logdet += math.log(den)
        cf = kap * (mu_k + s_kk * dn) - dn
        tau[k], nu[k], kappa[k], coef[k] = new[0], new[1], kap, cf
        if k + 1 < b:
            x = tm[k + 1:, k]                       # x_k below the diagonal (Σ_cur[:, k])
            if kap != 0.0:
                tm[k, b] = cf / kap
                z = kap * tm[k, k + 1:]             # [κ x_kᵀ, coef]
                u[k, k + 1:] = z[:-1]
                tm[k + 1:, k + 1:] -= x[:, None] * z
            else:
                tm[k + 1:, b] -= cf * x
    u[np.diag_indices(b)] = 1.0
    a[...] = lapack.dtrtri(u, lower=0)[0]
    return logdet, skipped


# ----------------------------------------------------------------------------------------------
# the driver


def ep_log_prior(kernel, labels, likelihood: str = "heaviside", *, method: str = "sequential",
                 damping: float = 1.0, tol: float = TOL, max_sweeps: int = MAX_SWEEPS, block: int | None = None,
                 check: bool = True, progress: Callable[[int, float], None] | None = None,
                 allow_unconverged: bool = False, backend: str = "auto") -> EPResult:
    """EP estimate of ln P(f) for the labelling ``labels`` under the GP prior N(0, ``kernel``).

    Args:
      kernel: (n, n) symmetric PSD covariance (any scale; singular is fine).
      labels: n labels in {0, 1} (f); label 1 ↔ z > 0.
      likelihood: ``"heaviside"`` (the paper's P(f), default) or ``"probit"`` (GPy's Bernoulli EP,
        = Heaviside on K + I).
      method: ``"sequential"`` (R&W Alg. 3.5, blocked; default) or ``"parallel"`` (damped).
      damping: parallel EP's step on the natural site parameters (1 = undamped); halved
        automatically when a step breaks the posterior.
      tol: stop when |Δ ln Z| ≤ tol · max(1, |ln Z|) between sweeps.
      max_sweeps: cap on sweeps.
      block: sites per delayed update (sequential; default :data:`BLOCK`, or half that for n < 3000 —
        the small products per block cost 2b/n of the rank-b updates).
      check: test that the kernel is positive semi-definite (one O(n³/3) Cholesky; under the
        Heaviside likelihood the nonsingularity test does this anyway).
      progress: ``progress(sweep, ln_z)`` after every sweep.
      allow_unconverged: return a result with ``converged`` False (sweep cap reached) instead of
        raising; a numerical breakdown is an error either way.
      backend: where the O(n³) work runs: ``"numpy"`` (SciPy LAPACK/BLAS), ``"tensorflow"``
        (tf.linalg in float64 on TensorFlow's default device) or ``"auto"`` (a GPU when one is
        visible and n ≥ :data:`tfflat.prior.linalg.GPU_MIN_N`, else NumPy).
    Returns:
      :class:`EPResult`.
    Raises:
      UserError: bad kernel or labels; labels with P(f) = 0 because of two perfectly correlated inputs
        (Heaviside); an n that does not fit in memory; EP that did not converge (unless
        ``allow_unconverged``) or broke down.
    """
    t0 = time.perf_counter()
    if likelihood not in LIKELIHOODS:
        raise UserError(f"unknown likelihood {likelihood!r}; choose {' or '.join(LIKELIHOODS)}")
    if method not in METHODS:
        raise UserError(f"unknown EP method {method!r}; choose {' or '.join(METHODS)}")
    if not (0 < damping <= 1):
        raise UserError(f"damping must be in (0, 1], got {damping}")
    if not (tol > 0) or int(max_sweeps) < 1 or (block is not None and int(block) < 1):
        raise UserError(f"need tol > 0, max_sweeps ≥ 1 and block ≥ 1, got {tol}, {max_sweeps}, {block}")
    k = as_kernel(kernel)
    n = len(k)
    y = as_labels(labels, n)
    block = int(block) if block is not None else (BLOCK if n >= 3000 else BLOCK // 2)
    be = linalg.get(backend, n)
    linalg.check_memory(n, be)
    sgn = 2.0 * y.astype(np.float64) - 1.0
    keep = np.ones(n, bool)
    rank = None
    redundant = 0
    if likelihood == "heaviside":
        if np.any(np.diagonal(k) <= 0):
            i = int(np.argmin(np.diagonal(k)))
            raise UserError(f"K[{i},{i}] = 0: input {i} has zero prior variance, so its sign — and P(f) under "
                            "the Heaviside likelihood — is undefined; use --likelihood probit")
        keep = _duplicates(k, sgn)
        if not keep.all():       # exact duplicates: same P(f) without them
            k = k[np.ix_(keep, keep)]
        c = float(np.mean(np.diagonal(k)))
        if not _factor_check(k, c):
            if check:
                check_psd(k)
            rank, zero, implied = _singular(k, c, sgn[keep])
            if zero is not None:
                return EPResult(float("-inf"), 0, True, likelihood, method, n, tol, time.perf_counter() - t0,
                                duplicates=n - int(keep.sum()), rank=rank, message=zero, backend=be.name,
                                site_tau=np.zeros(n), site_nu=np.zeros(n), scale=c)
            if implied is not None and implied.any():
                idx = np.flatnonzero(keep)
                keep[idx[implied]] = False
                k = k[np.ix_(~implied, ~implied)]
                redundant = int(implied.sum())
                c = float(np.mean(np.diagonal(k)))
        v = 0.0
    else:
        if check:
            check_psd(k)
        c = float(np.mean(np.diagonal(k)))
        v = LIKELIHOODS[likelihood] / c
    run = _sequential if method == "sequential" else _parallel
    try:
        res = run(k, c, sgn[keep], v, be, tol=tol, max_sweeps=int(max_sweeps), block=block, damping=damping,
                  progress=progress)
    except Exception as err:
        if type(err).__name__ == "ResourceExhaustedError":        # TensorFlow out of (GPU) memory
            raise UserError(f"EP at n = {n} ran out of memory on {be.name} ({str(err).splitlines()[0][:80]}); "
                            "pass backend='numpy' or use fewer points") from None
        raise
    finally:
        getattr(be, "release", lambda: None)()
    res.likelihood, res.method, res.n, res.tol, res.backend, res.scale = likelihood, method, n, tol, be.name, c
    res.duplicates = n - int(keep.sum()) - redundant
    res.redundant, res.rank = redundant, rank
    for name in ("site_tau", "site_nu"):
        full = np.zeros(n)
        full[keep] = getattr(res, name)
        setattr(res, name, full)
    res.seconds = time.perf_counter() - t0
    singular = (f"; the kernel on the labelled points is singular (rank {rank} of {int(keep.sum()) + redundant}), "
                "so P(f) may be 0" if rank is not None else "")
    if res.message.startswith("numerical breakdown"):
        raise UserError(f"EP broke down ({res.message}){singular}; try likelihood='probit' or method='parallel'")
    if res.ln_z > 1e-9 * max(1.0, n):
        raise UserError(f"EP broke down: its estimate ln P(f) = {res.ln_z:.4g} is positive, not a log-probability"
                        f"{singular}; try likelihood='probit'")
    if not res.converged:
        last = abs(res.history[-1] - res.history[-2]) if len(res.history) > 1 else float("nan")
        res.message = res.message or (f"not converged after {res.sweeps} sweeps (last |Δ ln Z| = {last:.3g}); "
                                      "raise max_sweeps")
        if not allow_unconverged:
            raise UserError(f"EP {res.message}{singular} (or pass allow_unconverged=True to accept it)")
    return res


def _singular(k, c, sgn) -> tuple[int | None, str | None, np.ndarray | None]:
    """A numerically rank-deficient K/c (Heaviside): (rank, why P(f) = 0 or None, implied-constraint mask)."""
    n = len(k)
    rank, piv, fac = _low_rank(k, c)
    if rank >= n:
        return None, None, None              # ill-conditioned but of full rank: plain EP
    if n * rank > LP_MAX_ENTRIES:
        return rank, None, None              # too big to decide here: EP, and an error if it breaks down
    a = np.empty((n, rank))
    a[piv] = sgn[piv, None] * fac            # row i: y_i L_i, z = L w
    w = np.linalg.lstsq(a, np.ones(n), rcond=None)[0] if rank else np.zeros(0)
    if rank and np.all(a @ w > LP_TOL):
        pass                                 # some w has the signs f: no linear programme needed
    elif rank == 0 or _sign_margin(a) <= LP_TOL:
        return rank, (f"P(f) = 0 exactly (ln P = −∞): the kernel on the labelled points has rank {rank} < {n}, "
                      "and no latent function in its range has the signs f (linear programme)"), None
    implied = _implied(a) if n * rank <= REDUNDANT_MAX_ENTRIES else None
    return rank, None, implied


def _converged(history, tol) -> bool:
    return len(history) >= 2 and abs(history[-1] - history[-2]) <= tol * max(1.0, abs(history[-1]))


def _finish(k, tau, nu, sgn, v, history, sweeps, converged, message, post) -> EPResult:
    """The result, with ln Z from the posterior ``post`` of the final sites."""
    ln_z, bad = _ln_z(post, tau, nu, sgn, v)
    if bad or not math.isfinite(ln_z):
        finite = [h for h in history if math.isfinite(h)]
        ln_z = finite[-1] if finite else float("-inf")
        converged = False
        message = message or f"numerical breakdown: {bad} cavity distributions became improper"
    return EPResult(ln_z, sweeps, converged, "", "", len(k), 0.0, jitter=post.jitter, message=message,
                    history=history, site_tau=tau, site_nu=nu)


def _sequential(k, c, sgn, v, be, *, tol, max_sweeps, block, progress, **_) -> EPResult:
    n = len(k)
    b = max(1, block)
    sig = be.sigma(k, c)        # Σ = K/c at the start
    mu = np.zeros(n)
    tau, nu = np.zeros(n), np.zeros(n)
    logdet = 0.0
    history, converged, message, sweep = [], False, "", 0
    for sweep in range(1, max_sweeps + 1):
        for j0 in range(0, n, b):
            j1 = min(n, j0 + b)
            bb = j1 - j0
            w, t = be.columns(sig, j0, j1)
            a, kap, coef = np.zeros((bb, bb)), np.zeros(bb), np.zeros(bb)
            with linalg.one_thread():       # small operations: BLAS threads would only wait for each other
                ld, _ = _block(t, mu[j0:j1].copy(), tau[j0:j1], nu[j0:j1], sgn[j0:j1], v, a, kap, coef)
            logdet += ld
            mu -= be.update(sig, w, a, kap, coef)
            del w
        post = Posterior(0.5 * logdet, be.diagonal(sig), mu, 0.0)
        ln_z, bad = _ln_z(post, tau, nu, sgn, v)
        history.append(ln_z)
        if progress:
            progress(sweep, ln_z)
        if bad or not math.isfinite(ln_z):
            message = f"numerical breakdown at sweep {sweep}: {bad} improper cavity distributions"
            break
        if _converged(history, tol):
            converged = True
            break
    # Final ln Z: log|B| and μ recomputed from the sites (one Cholesky); diag Σ is the tracked one unless
    # the tracked μ shows drift, in which case Σ's diagonal is recomputed as well (one more n³ solve).
    sig_diag, mu_tracked = be.diagonal(sig), mu
    del sig
    post = be.posterior(k, c, tau, nu, diag=False)
    drift = float(np.max(np.abs(post.mu - mu_tracked))) / max(1.0, float(np.max(np.abs(post.mu))))
    if drift > 1e-8:
        post = be.posterior(k, c, tau, nu, diag=True)
    else:
        post.sig = sig_diag
    return _finish(k, tau, nu, sgn, v, history, sweep, converged, message, post)


def _parallel(k, c, sgn, v, be, *, tol, max_sweeps, damping, progress, **_) -> EPResult:
    n = len(k)
    tau, nu = np.zeros(n), np.zeros(n)
    post = Posterior(0.0, np.diagonal(k) / c, np.zeros(n), 0.0)
    history, converged, message, sweep = [], False, "", 0
    work = np.empty((n, n)) if be.name == "numpy" else None
    eta = float(damping)
    for sweep in range(1, max_sweeps + 1):
        with np.errstate(divide="ignore", invalid="ignore"):
            tau_c, nu_c = 1.0 / post.sig - tau, post.mu / post.sig - nu
        ok = (tau_c > 0) & np.isfinite(tau_c) & np.isfinite(nu_c)
        _, t_new, n_new = _tilted(sgn, np.where(ok, tau_c, 1.0), np.where(ok, nu_c, 0.0), v)
        good = ok & np.isfinite(t_new) & np.isfinite(n_new)
        t_new, n_new = np.where(good, t_new, tau), np.where(good, n_new, nu)
        while True:
            tau_try = np.maximum((1 - eta) * tau + eta * t_new, 0.0)
            nu_try = (1 - eta) * nu + eta * n_new
            try:
                post_try = be.posterior(k, c, tau_try, nu_try, work=work)
                ln_z, bad = _ln_z(post_try, tau_try, nu_try, sgn, v)
            except UserError:
                ln_z, bad = float("nan"), n
            if (not bad and math.isfinite(ln_z)) or eta < 1e-3:
                break
            eta *= 0.5
        if bad or not math.isfinite(ln_z):
            message = f"numerical breakdown at sweep {sweep} even with damping {eta:.3g}"
            break
        tau, nu, post = tau_try, nu_try, post_try
        history.append(ln_z)
        if progress:
            progress(sweep, ln_z)
        if _converged(history, tol):
            converged = True
            break
    return _finish(k, tau, nu, sgn, v, history, sweep, converged, message, post)
