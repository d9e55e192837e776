"""m-sharpness (Foret et al. 2021, SAM, §4.1): the worst ℓ2 loss rise, per minibatch of m examples.

S is split at random (``seed``) into minibatches B_1, …, B_⌈n/m⌉ of m examples (the last one
smaller) and

    S_m^ρ(w) = (1/n) Σ_j Σ_{i∈B_j} [ℓ_i(w + ε_j) − ℓ_i(w)],   ε_j = argmax_{‖ε‖₂ ≤ ρ} L_{B_j}(w + ε),

i.e. the example-weighted mean over minibatches of max_{‖ε‖₂≤ρ} L_B(w + ε) − L_B(w). ε_j is found
by ``steps`` normalised gradient-ascent steps projected on the ball
(:func:`tfflat.flatness.ascent.ascend` with c = 1); one step gives SAM's
ε̂ = ρ ∇L_B / ‖∇L_B‖₂ (Foret et al. eq. 2, p = 2), more steps a better maximiser. The largest
minibatch loss among the iterates is used, a lower bound on each maximum.

Invariance: the ball ‖ε‖₂ ≤ ρ is isotropic in w, and a rescaling w → D w maps it to the ellipsoid
‖D⁻¹ε‖ ≤ ρ of the original coordinates, so m-sharpness changes under layer-wise and neuron-wise
α-rescaling (as SAM's sharpness does; ASAM's adaptive version does not).
"""

from __future__ import annotations

import math

import numpy as np

from tfflat.errors import UserError
from tfflat.flatness import ascent
from tfflat.flatness.landscape import Landscape

DEFAULT_RHO = 0.05          # SAM's default ρ (Foret et al. 2021)
DEFAULT_M = 32              # the paper's SGD batch size (SPEC §3)


def m_sharpness(model, x, y, rho: float = DEFAULT_RHO, m: int = DEFAULT_M, steps: int = 1, seed: int = 0, *,
                eval_batch: int | None = None) -> dict:
    """m-sharpness S_m^ρ of ``model`` on (x, y) (see the module doc).

    Args:
      model: a built Keras model with one logit.
      x, y: inputs (n, …) and 0/1 labels (n,).
      rho: the ℓ2 radius ρ > 0.
      m: examples per minibatch (m ≥ n: one batch, the full-batch sharpness).
      steps: ascent steps per minibatch (1 = SAM's first-order ε̂).
      seed: the random partition of S into minibatches.
      eval_batch: examples per forward chunk (unused by the minibatch passes).
    Returns:
      ``{"value", "batches", "m", "rho", "steps", "seed", "loss"}``.
    """
    ascent.check(rho, "l2", steps)
    if int(m) < 1:
        raise UserError(f"the minibatch size m must be ≥ 1, got {m}")
    land = Landscape(model, x, y, eval_batch)
    n = land.n
    m = min(int(m), n)
    order = np.random.default_rng(seed).permutation(n)
    batches = math.ceil(n / m)
    slots = np.full(batches * m, -1, np.int64)
    slots[:n] = order
    total = 0.0
    ones = land.ones()
    for b in range(batches):
        idx = slots[b * m:(b + 1) * m]
        res = ascent.ascend(land, ones, float(rho), "l2", steps, idx=idx)
        total += int(np.sum(idx >= 0)) * (res.max_loss - res.loss)
    loss, _ = land.losses()
    return {"value": total / n, "batches": batches, "m": m, "rho": float(rho), "steps": int(steps), "seed": int(seed),
            "loss": loss}
