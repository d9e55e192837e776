"""Per-layer Hessian measures (PyHessian's layer-wise spectra, Yao et al. 2020): the diagonal blocks of H.

For every layer ℓ with trainable weights w_ℓ (a Dense layer's kernel and bias together), the block

    H_ℓℓ = ∂²L / ∂w_ℓ²       (rows and columns of H = ∇²L(w) for w_ℓ only)

is applied to vectors by Hessian-vector products restricted to w_ℓ
(:meth:`tfflat.flatness.landscape.Landscape.block_hvp`: forward-over-reverse differentiating with
respect to w_ℓ alone, the other weights held fixed). From it

* the spectral norm ‖H_ℓℓ‖₂ = max |λ(H_ℓℓ)| (exact from the dense block for at most
  ``DENSE_LIMIT`` parameters, else ARPACK, :func:`tfflat.flatness.hessian.spectral_norm`);
* the trace Tr H_ℓℓ: exact from the p_ℓ basis products when p_ℓ ≤ ``probes``, else Hutchinson's
  estimate with ``probes`` Rademacher vectors (:func:`tfflat.flatness.hessian.hutchinson_trace`)
  and its standard error.

Σ_ℓ Tr H_ℓℓ = Tr H (the blocks cover the diagonal), the per-layer spectral norms are each ≤ ‖H‖₂.
Both measures report every layer and, as their value, the sum over layers (Σ_ℓ ‖H_ℓℓ‖₂, Σ_ℓ Tr H_ℓℓ):
rescaling hidden layer i changes only the blocks of layers i and i + 1, so a maximum over layers
could stay put by accident while a sum moves.

Invariance: a rescaling w → D w maps H_ℓℓ to D_ℓ⁻¹ H_ℓℓ D_ℓ⁻¹ (D_ℓ: the block of D), so both
measures change, layer-wise (α⁻² on layer i, and the kernel of layer i + 1 by α²) and neuron-wise.
"""

from __future__ import annotations

import numpy as np

from tfflat.errors import UserError
from tfflat.flatness.hessian import EIGSH_TOL, hutchinson_trace, spectral_norm
from tfflat.flatness.landscape import Landscape

DENSE_LIMIT = 64            # blocks this small are formed exactly (p_ℓ products)
DEFAULT_PROBES = 100


def layer_hessian_norms(model, x, y, seed: int = 0, tol: float = EIGSH_TOL, *, eval_batch: int | None = None) -> dict:
    """‖H_ℓℓ‖₂ for every layer ℓ with weights.

    Returns:
      ``{"value": Σ_ℓ ‖H_ℓℓ‖₂, "max": max_ℓ ‖H_ℓℓ‖₂, "layers": {name: {"spectral_norm", "parameters"}},
      "matvecs"}``.
    """
    land = Landscape(model, x, y, eval_batch)
    layers, matvecs = {}, 0
    for name, idx in land.layer_blocks():
        h = land.block_hvp(idx)
        if h.size <= DENSE_LIMIT:
            norm = float(np.max(np.abs(np.linalg.eigvalsh(h.dense()))))
        else:
            norm = spectral_norm(h, seed=seed, tol=tol)
        layers[name] = {"spectral_norm": norm, "parameters": h.size}
        matvecs += h.matvecs
    norms = [v["spectral_norm"] for v in layers.values()]
    return {"value": float(sum(norms)), "max": max(norms), "layers": layers, "matvecs": matvecs}


def layer_hessian_traces(model, x, y, probes: int = DEFAULT_PROBES, seed: int = 0, *,
                         eval_batch: int | None = None) -> dict:
    """Tr H_ℓℓ for every layer ℓ with weights (exact for p_ℓ ≤ probes, else Hutchinson).

    Returns:
      ``{"value": Σ_ℓ Tr H_ℓℓ (= Tr H), "stderr" (of the sum), "layers": {name: {"trace", "stderr", "exact",
      "parameters"}}, "matvecs"}``.
    """
    if int(probes) < 1:
        raise UserError(f"probes must be ≥ 1, got {probes}")
    land = Landscape(model, x, y, eval_batch)
    layers, matvecs = {}, 0
    for j, (name, idx) in enumerate(land.layer_blocks()):
        h = land.block_hvp(idx)
        if h.size <= int(probes):
            trace, stderr, exact = float(sum(h(e)[i] for i, e in enumerate(np.eye(h.size)))), 0.0, True
        else:
            trace, stderr = hutchinson_trace(h, int(probes), seed + j)
            exact = False
        layers[name] = {"trace": trace, "stderr": stderr, "exact": exact, "parameters": h.size}
        matvecs += h.matvecs
    total_se = float(np.sqrt(sum(v["stderr"] ** 2 for v in layers.values())))
    return {"value": float(sum(v["trace"] for v in layers.values())), "stderr": total_se, "layers": layers,
            "matvecs": matvecs}
