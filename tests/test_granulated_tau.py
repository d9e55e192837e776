"""Kendall's τ and Jiang et al. 2020's granulated τ (eqs. 4–5) against a table computed by hand."""

import math

import numpy as np
import pytest

from tfflat.stats import granulated_kendall, kendall

# a 4 × 2 grid (|A| ∈ {0, 1, 2, 3}, seed ∈ {0, 1}) with the point (|A| = 3, seed 1) missing and one
# NaN measurement at (|A| = 3, seed 0)'s twin below; x the measure, y the generalization.
#            |A| seed  x     y
TABLE = [(0, 0, 1.0, 10.0), (1, 0, 2.0, 9.0), (2, 0, 3.0, 8.0), (3, 0, 5.0, 1.0),
         (0, 1, 2.0, 7.0), (1, 1, 1.0, 8.0), (2, 1, 0.5, 9.0), (3, 1, math.nan, 2.0)]


def test_granulated_tau_by_hand():
    a, s, x, y = (np.array(c) for c in zip(*TABLE))
    # along |A|, seed 0: x rises while y falls at every pair → τ = −1; seed 1 (the NaN dropped):
    # (2,7)→(1,8) discordant, (2,7)→(0.5,9) discordant, (1,8)→(0.5,9) discordant → τ = −1. ψ_|A| = −1.
    # along the seed, |A| = 0: (1,10)→(2,7) discordant, −1; |A| = 1: (2,9)→(1,8) concordant, +1;
    # |A| = 2: (3,8)→(0.5,9) discordant, −1; |A| = 3: one finite point, no τ. ψ_seed = −1/3.
    # Ψ = (−1 − 1/3)/2 = −2/3.
    g = granulated_kendall(x, y, {"attack_size": a, "seed": s})
    assert g["per_axis"]["attack_size"] == pytest.approx(-1.0)
    assert g["per_axis"]["seed"] == pytest.approx(-1 / 3)
    assert g["granulated_tau"] == pytest.approx(-2 / 3)
    assert g["groups"] == {"attack_size": 2, "seed": 3}
    # one axis: ψ over the whole sample is the plain τ
    one = granulated_kendall(x, y, {"seed": np.zeros(len(x))})
    assert one["granulated_tau"] == pytest.approx(kendall(x, y)[0])


def test_kendall_by_hand_with_ties():
    # n = 4, x has one tie: pairs (C, D) — (1,2): x 1<2, y 1<3 C; (1,3): 1<2, 1<2 C; (1,4): 1<3, 1<4 C;
    # (2,3): x tie; (2,4): 2<3, 3<4 C; (3,4): 2<3, 2<4 C → C = 5, D = 0; n0 = 6, ties in x n1 = 1, in y 0:
    # τ_b = (C − D)/sqrt((n0 − n1)(n0 − n2)) = 5/sqrt(5·6).
    tau, p = kendall([1, 2, 2, 3], [1, 3, 2, 4])
    assert tau == pytest.approx(5 / math.sqrt(30)) and 0 < p < 1
    assert kendall([1, 2, 3], [3, 2, 1])[0] == pytest.approx(-1.0)
    assert all(math.isnan(v) for v in kendall([1, 1, 1], [1, 2, 3]))          # a constant sample
    assert all(math.isnan(v) for v in kendall([1, math.nan], [1, 2]))         # fewer than two pairs
    with pytest.raises(ValueError, match="one value per point"):
        granulated_kendall([1, 2], [1, 2], {"seed": [0]})
