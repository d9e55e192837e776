"""Spectral density of the Hessian by stochastic Lanczos quadrature (Ghorbani, Krishnan & Xiao 2019 §2;
PyHessian, Yao et al. 2020; Lin, Saad & Yang 2016).

The empirical spectral density of H = ∇²L(w) (p eigenvalues λ_i),
φ(t) = (1/p) Σ_i δ(t − λ_i), is estimated from ``probes`` random unit vectors v (Rademacher/√p):
``steps`` Lanczos iterations from v (with full re-orthogonalisation) give a tridiagonal T_m whose
eigenpairs (θ_j, q_j) are the nodes and weights τ_j = (q_j)₁² of the m-point Gauss quadrature of
the measure Σ_i (vᵀe_i)² δ(t − λ_i), exact for polynomials of degree ≤ 2m − 1:

    vᵀ H^k v = Σ_j τ_j θ_j^k,   k ≤ 2m − 1,                                   (Gauss quadrature)

    φ̂(t) = (1/n_v) Σ_{probes} Σ_j τ_j g_σ(t − θ_j),   g_σ a Gaussian of width σ,   (Ghorbani eq. for φ̂)

and the spectral moments m_k = (1/n_v) Σ_probes Σ_j τ_j θ_j^k estimate (1/p) Tr H^k
(E[vᵀH^k v] = Tr H^k / p), so p·m₁ estimates Tr H and p·m₂ estimates ‖H‖_F² = Σ λ_i². The
measure's value is p·m₂ (a scalar summary of the density's spread); the density on a grid, the
moments and the quadrature nodes and weights are returned with it.

Invariance: the density is that of H, and a rescaling maps H to D⁻¹HD⁻¹ (not similar to H):
the density and its moments change under layer-wise and neuron-wise α-rescaling.
"""

from __future__ import annotations

import math

import numpy as np
from threadpoolctl import threadpool_limits

from tfflat.errors import UserError
from tfflat.flatness.landscape import full_hvp

DEFAULT_STEPS = 64
DEFAULT_PROBES = 2
GRID = 512
MOMENTS = 4


def lanczos(matvec, v0: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(α, β) of the Lanczos tridiagonal after ≤ ``steps`` iterations from v0, full re-orthogonalisation.

    Stops early when the Krylov space is exhausted (β below 1e-10 of the largest |α|, β). Returns
    the diagonal α (m,) and the off-diagonal β (m − 1,).
    """
    v = v0 / np.linalg.norm(v0)
    basis = [v]
    alphas, betas = [], []
    w = matvec(v)
    for j in range(int(steps)):
        a = float(v @ w)
        alphas.append(a)
        w = w - a * v - (betas[-1] * basis[-2] if betas else 0.0)
        Q = np.asarray(basis)
        for _ in range(2):                                      # full re-orthogonalisation, twice
            w = w - Q.T @ (Q @ w)
        b = float(np.linalg.norm(w))
        scale = max([abs(t) for t in alphas] + betas + [1e-300])
        if j == int(steps) - 1 or b <= 1e-10 * scale:
            break
        betas.append(b)
        v = w / b
        basis.append(v)
        w = matvec(v)
    return np.asarray(alphas), np.asarray(betas)


def quadrature(alphas: np.ndarray, betas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gauss nodes θ_j and weights τ_j = (q_j)₁² of the tridiagonal (α, β)."""
    from scipy.linalg import eigh_tridiagonal

    nodes, vectors = eigh_tridiagonal(alphas, betas)
    return nodes, vectors[0, :] ** 2


def hessian_density(model, x, y, steps: int = DEFAULT_STEPS, probes: int = DEFAULT_PROBES, seed: int = 0,
                    grid: int = GRID, width: float | None = None, *, eval_batch: int | None = None) -> dict:
    """Stochastic Lanczos quadrature of the Hessian's spectral density (see the module doc).

    Args:
      model: a built Keras model with one logit.
      x, y: inputs (n, …) and 0/1 labels (n,).
      steps: Lanczos iterations per probe (at most p).
      probes: random start vectors n_v (Rademacher, from ``seed``).
      seed: the start vectors.
      grid: points of the density's grid.
      width: the Gaussian kernel's σ (default 1% of the nodes' range, or of their size if all equal).
      eval_batch: examples per forward chunk.
    Returns:
      ``{"value": p·m₂ ≈ ‖H‖_F², "trace": p·m₁, "moments": [m_0 … m_4], "grid": [...], "density": [...],
      "nodes": [[θ_j] per probe], "weights": [[τ_j] per probe], "width", "parameters", "matvecs"}``.
    """
    if int(steps) < 1 or int(probes) < 1 or int(grid) < 2:
        raise UserError(f"need steps ≥ 1, probes ≥ 1 and grid ≥ 2, got {steps}, {probes}, {grid}")
    if width is not None and not (np.isfinite(width) and width > 0):
        raise UserError(f"the kernel width must be positive, got {width}")
    h = full_hvp(model, x, y, eval_batch)
    p = h.size
    rng = np.random.default_rng(seed)
    nodes, weights = [], []
    for _ in range(int(probes)):
        v0 = rng.integers(0, 2, p) * 2.0 - 1.0
        with threadpool_limits(limits=1, user_api="blas"):   # small BLAS-2 work; threads fight TF's pool
            a, b = lanczos(h, v0, min(int(steps), p))
        theta, tau = quadrature(a, b)
        nodes.append(theta)
        weights.append(tau)
    allnodes = np.concatenate(nodes)
    allweights = np.concatenate(weights) / len(nodes)
    moments = [float(np.sum(allweights * allnodes ** k)) for k in range(MOMENTS + 1)]
    lo, hi = float(allnodes.min()), float(allnodes.max())
    sigma = float(width) if width is not None else 0.01 * ((hi - lo) or max(abs(hi), 1e-12))
    t = np.linspace(lo - 5 * sigma, hi + 5 * sigma, int(grid))
    density = (allweights[None, :] * np.exp(-0.5 * ((t[:, None] - allnodes[None, :]) / sigma) ** 2)).sum(1)
    density /= sigma * math.sqrt(2 * math.pi)
    return {"value": p * moments[2], "trace": p * moments[1], "moments": moments, "grid": t.tolist(),
            "density": density.tolist(), "nodes": [n.tolist() for n in nodes], "weights": [w.tolist() for w in weights],
            "width": sigma, "parameters": int(p), "matvecs": h.matvecs}
