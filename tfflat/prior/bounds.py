"""The PAC-Bayes bound of eq. (4) (McAllester 1998), as used in §3 of the paper."""

from __future__ import annotations

import math

from tfflat import defaults
from tfflat.errors import UserError


def pac_bayes_bound(ln_prior: float, m: int, delta: float = defaults.PAC_BAYES_DELTA) -> float:
    """Eq. (4): with probability ≥ 1 − δ over S, every f with zero error on S has
    ε_{S,E}(f) ≤ (ln 1/P(f) + ln 1/δ) / m.

    Args:
      ln_prior: ln P(f) (≤ 0).
      m: |S|, the number of training examples.
      delta: confidence parameter δ ∈ (0, 1).
    Returns:
      The bound on the error on E (values ≥ 1 are vacuous and returned as they are; +inf when P(f) = 0).
    """
    if not (0.0 < delta < 1.0):
        raise UserError(f"δ must be in (0, 1), got {delta}")
    if int(m) != m or m < 1:
        raise UserError(f"the PAC-Bayes bound needs |S| ≥ 1, got {m}")
    if math.isnan(ln_prior) or ln_prior > 1e-9:
        raise UserError(f"ln P(f) must be ≤ 0, got {ln_prior}")
    return (-min(ln_prior, 0.0) + math.log(1.0 / delta)) / m
