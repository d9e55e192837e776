"""Projected gradient ascent of the loss over a ball of perturbations, the worst case of several measures.

Maximises L(w₀ + c ⊙ u) over u in

* ``norm="linf"``: the box |u_i| ≤ r_i (r a scalar or one radius per parameter), by signed steps
  u ← clip(u + η r ⊙ sign ∇_u L, −r, r);
* ``norm="l2"``: the ball ‖u‖₂ ≤ r, by normalised steps u ← Π(u + η r ∇_u L / ‖∇_u L‖₂);

from u = 0, with η = 2.5 / steps (Madry et al. 2018's choice: the walk can cross the ball's
diameter). With c = |w|-like scales (c = w₀) the steps are taken in the scaled coordinates u and
the search is the same for every positive rescaling of w (see :mod:`tfflat.flatness.adaptive`);
with c = 1 it is the plain search of SAM (:mod:`tfflat.flatness.m_sharpness`). The result is the
largest loss among the points evaluated (all feasible), a lower bound on the maximum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tfflat.errors import UserError

NORMS = ("linf", "l2")
STEP = 2.5          # η·steps: the ascent's total path length, in units of the radius


@dataclass
class Ascent:
    """The worst case found by :func:`ascend`.

    Attributes:
      loss, error: L and the 0-1 error at u = 0.
      max_loss: the largest L among the iterates (including u = 0).
      max_error: the largest error among the iterates.
      steps: ascent steps taken.
    """

    loss: float
    error: float
    max_loss: float
    max_error: float
    steps: int


def check(rho, norm: str, steps: int, name: str = "rho") -> None:
    if norm not in NORMS:
        raise UserError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
    if not (np.isfinite(rho) and rho > 0):
        raise UserError(f"the radius {name} must be a positive number, got {rho}")
    if int(steps) < 1:
        raise UserError(f"steps must be ≥ 1, got {steps}")


def ascend(land, scale, radius, norm: str, steps: int, idx=None) -> Ascent:
    """Projected ascent of L(w₀ + scale ⊙ u) over ‖u‖ ≤ radius (see the module doc).

    Args:
      land: a :class:`tfflat.flatness.landscape.Landscape`.
      scale: c, a list of tensors shaped like w₀.
      radius: r: a float, or (``norm="linf"`` only) a list of per-parameter radius tensors.
      norm: ``"linf"`` or ``"l2"``.
      steps: ascent steps.
      idx: evaluate on these examples only (int indices, −1 = padding), default all of them.
    """
    import tensorflow as tf

    per_parameter = isinstance(radius, (list, tuple))
    if per_parameter and norm != "linf":
        raise UserError("per-parameter radii need norm='linf'")
    r = list(radius) if per_parameter else [tf.fill(tf.shape(w), tf.constant(float(radius), tf.float32))
                                             for w in land.w0]
    eta = STEP / int(steps)
    u = land.zeros()
    loss, error, grad = land.value_grad(scale, u, idx)
    best_loss, best_error = loss, error
    for _ in range(int(steps)):
        if norm == "linf":
            u = [tf.clip_by_value(d + eta * ri * tf.sign(g), -ri, ri) for d, g, ri in zip(u, grad, r)]
        else:
            gnorm = tf.sqrt(tf.add_n([tf.reduce_sum(g * g) for g in grad]))
            if float(gnorm) == 0.0:
                break
            u = [d + (eta * float(radius)) * g / gnorm for d, g in zip(u, grad)]
            unorm = float(tf.sqrt(tf.add_n([tf.reduce_sum(d * d) for d in u])))
            if unorm > float(radius):
                u = [d * (float(radius) / unorm) for d in u]
        value, err, grad = land.value_grad(scale, u, idx)
        best_loss, best_error = max(best_loss, value), max(best_error, err)
    return Ascent(loss=loss, error=error, max_loss=best_loss, max_error=best_error, steps=int(steps))
