"""PAC-Bayes flatness and sharpness, plain and magnitude-aware (Jiang et al. 2020, App. C.3–C.4).

Jiang et al. ("Fantastic generalization measures") turn the noise scale a network tolerates into a
measure: the largest scale at which the training loss (their choice: the 0-1 training error) rises
by no more than a threshold (theirs: 0.1), reported as 1/scale² (larger = sharper):

* ``pac_bayes_flatness`` (their eq. 53, μ_pacbayes.flatness = 1/σ′²): σ′ is the largest σ with
      E_{u ~ N(0, σ² I)} [L(w + u)] − L(w) ≤ threshold;
* ``pac_bayes_mag_flatness`` (eq. 61, μ_pacbayes.mag.flatness = 1/σ′²): magnitude-aware noise,
      u_i ~ N(0, σ² w_i² + ε²), ε = 10⁻³;
* ``pac_bayes_sharpness`` (the worst-case counterpart, μ_sharpness.flatness = 1/α′²): α′ is the
  largest α with  max_{|u_i| ≤ α} L(w + u) − L(w) ≤ threshold;
* ``pac_bayes_mag_sharpness`` (μ_sharpness.mag.flatness = 1/α′²): the box |u_i| ≤ α(|w_i| + ε).
  (Jiang et al.'s box adds an absolute ε′; on a network of 10⁴–10⁷ weights the worst case over the
  ε-box alone can exceed the threshold, so here ε is relative, as the 1 of Keskar's ζ(|w_i| + 1) —
  a choice.)

The expectation is a Monte Carlo mean over ``draws`` fixed draws (Philox from ``seed``, the same
for every network of one architecture; Jiang et al. use 10), the maximum a signed-gradient ascent
on the cross-entropy inside the box (:func:`tfflat.flatness.ascent.ascend`, ``steps`` steps; the
largest loss among the iterates, a lower bound). The scale is found by :func:`largest_scale`:
doubling or halving from 1 until the threshold is bracketed, then bisection to a relative
width ``rtol`` (Jiang et al. bisect to a tolerance too); the largest scale verified to stay below
the threshold is returned.

``loss="error"`` measures the rise of the 0-1 training error (Jiang et al.), ``loss="ce"`` that of
the mean cross-entropy.

Invariance under a function-preserving positive rescaling w → D w (layer- or neuron-wise α):
isotropic noise N(0, σ²I) or the box |u_i| ≤ α become D⁻¹-distorted in the original coordinates,
so the plain measures change. The magnitude-aware noise σ|w_i| ξ_i and box α|w_i| scale with w
(D w + σ|D w| ⊙ ξ = D (w + σ|w| ⊙ ξ), and the signed ascent steps ∝ α|w_i| sign(∂L/∂w_i) map alike),
so for ε = 0 they are exactly invariant; Jiang et al.'s ε = 10⁻³ adds an isotropic part and makes
them invariant only approximately (to the degree ε ≪ σ|w_i|).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from tfflat.errors import UserError
from tfflat.flatness import ascent
from tfflat.flatness.landscape import Landscape

THRESHOLD = 0.1             # Jiang et al.: the training error may rise by 0.1
EPSILON = 1e-3              # Jiang et al.'s ε of the magnitude-aware measures
DRAWS = 10                  # Jiang et al.'s Monte Carlo samples
RTOL = 1e-5                 # bisection stops at a relative bracket width (a choice)
ASCENT_STEPS = 10           # signed-gradient steps of the worst case (a choice)
LOSSES = ("error", "ce")


def largest_scale(rise: Callable[[float], float], threshold: float, rtol: float = RTOL, start: float = 1.0,
                  limit: float = 2.0 ** 60, what: str = "the loss") -> tuple[float, int]:
    """The largest s > 0 with ``rise(s) ≤ threshold`` (for a ``rise`` increasing through the threshold).

    Brackets the crossing by doubling (or halving) from ``start``, then bisects until the bracket
    [lo, hi] has hi − lo ≤ rtol·hi. Returns (lo, number of ``rise`` evaluations): lo is a verified
    scale (rise(lo) ≤ threshold) within rtol of one where the threshold is exceeded.
    """
    if not (rtol > 0):
        raise UserError(f"rtol must be positive, got {rtol}")
    calls = 0

    def below(s):
        nonlocal calls
        calls += 1
        return rise(s) <= threshold

    if below(start):
        lo, hi = start, 2.0 * start
        while below(hi):
            lo, hi = hi, 2.0 * hi
            if hi > limit:
                raise UserError(f"{what} never rises by the threshold {threshold} (tried scales up to {limit:g}); "
                                "lower the threshold, or use loss='ce'")
    else:
        lo, hi = 0.5 * start, start
        while not below(lo):
            lo, hi = 0.5 * lo, lo
            if lo < 1.0 / limit:
                raise UserError(f"{what} rises by more than the threshold {threshold} at every scale down to "
                                f"{1.0 / limit:g}; raise the threshold")
    while hi - lo > rtol * hi:
        mid = 0.5 * (lo + hi)
        if below(mid):
            lo = mid
        else:
            hi = mid
    return lo, calls


def _check(threshold, loss, epsilon, rtol):
    if loss not in LOSSES:
        raise UserError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    if not (np.isfinite(threshold) and threshold > 0):
        raise UserError(f"threshold must be a positive number, got {threshold}")
    if not (np.isfinite(epsilon) and epsilon >= 0):
        raise UserError(f"epsilon must be ≥ 0, got {epsilon}")
    if not (np.isfinite(rtol) and 0 < rtol < 1):
        raise UserError(f"rtol must be in (0, 1), got {rtol}")


def _what(loss, base):
    return (f"the training error (now {base:.3g})" if loss == "error" else f"the cross-entropy (now {base:.3g})")


def _result(scale_name, scale, calls, base, **settings):
    return {"value": 1.0 / scale ** 2, scale_name: scale, "evaluations": calls, "base": base, **settings}


def pac_bayes_flatness(model, x, y, magnitude: bool = False, epsilon: float = EPSILON, threshold: float = THRESHOLD,
                       loss: str = "error", draws: int = DRAWS, seed: int = 0, rtol: float = RTOL, *,
                       eval_batch: int | None = None) -> dict:
    """1/σ′² for the largest noise scale σ′ whose expected loss rise stays ≤ ``threshold`` (eqs. 53, 61).

    Args:
      model: a built Keras model with one logit.
      x, y: inputs (n, …) and 0/1 labels (n,).
      magnitude: False: u ~ N(0, σ²I) (eq. 53); True: u_i ~ N(0, σ²w_i² + ε²) (eq. 61).
      epsilon: ε of the magnitude-aware noise (Jiang et al.: 10⁻³).
      threshold: the allowed rise of the loss (Jiang et al.: 0.1 of training error).
      loss: ``"error"`` (0-1 training error) or ``"ce"`` (mean cross-entropy).
      draws: Monte Carlo draws per scale (fixed by ``seed``).
      seed: the draws.
      rtol: relative width at which the bisection stops.
      eval_batch: examples per forward chunk.
    Returns:
      ``{"value": 1/σ′², "sigma": σ′, "evaluations", "base": loss at w, …settings}``.
    """
    _check(threshold, loss, epsilon, rtol)
    land = Landscape(model, x, y, eval_batch)
    ce0, err0 = land.losses()
    base = err0 if loss == "error" else ce0
    w2 = [w * w for w in land.w0]

    def rise(sigma):
        if magnitude:
            scale = [(sigma ** 2 * a + epsilon ** 2) ** 0.5 for a in w2]
        else:
            scale = land.tensors([sigma] * len(w2))
        ce, err = land.noisy_losses(scale, seed, draws)
        return float(np.mean(err if loss == "error" else ce)) - base

    sigma, calls = largest_scale(rise, threshold, rtol, what=_what(loss, base))
    return _result("sigma", sigma, calls, base, magnitude=bool(magnitude),
                   epsilon=float(epsilon) if magnitude else None, threshold=float(threshold), loss=loss, draws=int(draws), seed=int(seed), rtol=float(rtol))


def pac_bayes_sharpness(model, x, y, magnitude: bool = False, epsilon: float = EPSILON, threshold: float = THRESHOLD,
                        loss: str = "error", steps: int = ASCENT_STEPS, rtol: float = RTOL, *,
                        eval_batch: int | None = None) -> dict:
    """1/α′² for the largest box |u_i| ≤ α (or α(|w_i| + ε)) whose worst loss rise stays ≤ ``threshold``.

    Args:
      model, x, y: as for :func:`pac_bayes_flatness`.
      magnitude: False: the box |u_i| ≤ α; True: |u_i| ≤ α(|w_i| + ε).
      epsilon, threshold, loss, rtol, eval_batch: as for :func:`pac_bayes_flatness`.
      steps: signed-gradient ascent steps on the cross-entropy per box.
    Returns:
      ``{"value": 1/α′², "alpha": α′, "evaluations", "base", …settings}``.
    """
    _check(threshold, loss, epsilon, rtol)
    if int(steps) < 1:
        raise UserError(f"steps must be ≥ 1, got {steps}")
    land = Landscape(model, x, y, eval_batch)
    ce0, err0 = land.losses()
    base = err0 if loss == "error" else ce0
    absw = [abs(w) for w in land.w0]
    ones = land.ones()

    def rise(alpha):
        radius = [alpha * (a + epsilon) for a in absw] if magnitude else land.tensors([alpha] * len(absw))
        res = ascent.ascend(land, ones, radius, "linf", steps)
        return (res.max_error if loss == "error" else res.max_loss) - base

    alpha, calls = largest_scale(rise, threshold, rtol, what=_what(loss, base))
    return _result("alpha", alpha, calls, base, magnitude=bool(magnitude),
                   epsilon=float(epsilon) if magnitude else None, threshold=float(threshold), loss=loss, steps=int(steps), rtol=float(rtol))
