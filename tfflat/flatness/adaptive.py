"""Adaptive sharpness (Kwon et al. 2021, ASAM; Andriushchenko et al. 2023): perturbations relative to |w|.

Worst case (Andriushchenko et al. 2023, eq. 1, with c = |w|: Kwon et al. 2021's §3 normalisation
operator T_w = diag(|w|), without its η):

    S_max^ρ(w) = max_{‖δ ⊙ |w|⁻¹‖_p ≤ ρ} L(w + δ) − L(w),   p ∈ {∞, 2},

searched in the scaled coordinates u = δ / w, i.e. over w' = w ⊙ (1 + u), ‖u‖_p ≤ ρ, by projected
gradient ascent on u (:func:`tfflat.flatness.ascent.ascend`: signed steps for ℓ∞, normalised
steps for ℓ2, from u = 0); the largest loss seen is reported, a lower bound on the maximum.

Average case (Andriushchenko et al. 2023, eq. 2):

    S_avg^ρ(w) = E_{u ~ N(0, ρ² I)} L(w ⊙ (1 + u)) − L(w),

a Monte Carlo mean over ``draws`` fixed draws u_k (Philox, from ``seed``), with its standard error.

Invariance. For a positive diagonal rescaling T(w) = D w that leaves the network's function
unchanged (layer-wise and neuron-wise α-rescaling of ReLU layers), L(D w ⊙ (1 + u)) = L(w ⊙ (1 + u))
for every u, and the ascent's gradient ∇_u = w ⊙ ∇L is unchanged too, so both measures (and the
ascent's path) are exactly the same: invariant under layer-wise and neuron-wise rescaling.
(ASAM's T_w = |w| + η would break this for η > 0, so η = 0 here.)

The mean loss L is that of :mod:`tfflat.flatness.landscape` (the network in inference mode; the
model is never modified).
"""

from __future__ import annotations

import math

import numpy as np

from tfflat.errors import UserError
from tfflat.flatness import ascent
from tfflat.flatness.landscape import Landscape

DEFAULT_RHO = {"linf": 0.01, "l2": 0.5}     # choices: a loss rise of ~1e-3…1e-1 for the paper's FCNs
DEFAULT_AVG_RHO = 0.1
DEFAULT_STEPS = 20                           # Andriushchenko et al. 2023 use 20 (Auto-)PGD steps
DEFAULT_DRAWS = 100


def adaptive_sharpness(model, x, y, rho: float | None = None, norm: str = "linf", steps: int = DEFAULT_STEPS, *,
                       eval_batch: int | None = None) -> dict:
    """Worst-case adaptive sharpness S_max^ρ (eq. 1) of ``model`` on (x, y).

    Args:
      model: a built Keras model with one logit.
      x, y: inputs (n, …) and 0/1 labels (n,).
      rho: the radius ρ of ‖u‖_p ≤ ρ (default 0.01 for ℓ∞, 0.5 for ℓ2).
      norm: ``"linf"`` or ``"l2"``.
      steps: projected-ascent steps.
      eval_batch: examples per forward chunk.
    Returns:
      ``{"value": max_loss − loss, "loss", "max_loss", "rho", "norm", "steps"}``.
    """
    rho = DEFAULT_RHO.get(norm, math.nan) if rho is None else float(rho)
    ascent.check(rho, norm, steps)
    land = Landscape(model, x, y, eval_batch)
    res = ascent.ascend(land, land.w0, rho, norm, steps)
    return {"value": res.max_loss - res.loss, "loss": res.loss, "max_loss": res.max_loss, "rho": rho,
            "norm": norm, "steps": int(steps)}


def average_sharpness(model, x, y, rho: float = DEFAULT_AVG_RHO, draws: int = DEFAULT_DRAWS, seed: int = 0, *,
                      eval_batch: int | None = None) -> dict:
    """Average-case adaptive sharpness S_avg^ρ (eq. 2): E_u L(w ⊙ (1 + u)) − L(w), u ~ N(0, ρ²I).

    Args:
      model, x, y: as for :func:`adaptive_sharpness`.
      rho: the relative noise level ρ > 0.
      draws: Monte Carlo draws u_k (fixed by ``seed``: the same for every network of this architecture).
      seed: the draws.
      eval_batch: examples per forward chunk.
    Returns:
      ``{"value", "stderr" (of the Monte Carlo mean), "loss", "mean_loss", "rho", "draws", "seed"}``.
    """
    if not (np.isfinite(rho) and rho > 0):
        raise UserError(f"the noise level rho must be a positive number, got {rho}")
    land = Landscape(model, x, y, eval_batch)
    loss, _ = land.losses()
    ce, _ = land.noisy_losses([float(rho) * w for w in land.w0], seed, draws)
    stderr = float(ce.std(ddof=1) / math.sqrt(len(ce))) if len(ce) > 1 else math.nan
    return {"value": float(ce.mean()) - loss, "stderr": stderr, "loss": loss, "mean_loss": float(ce.mean()),
            "rho": float(rho), "draws": int(draws), "seed": int(seed)}
