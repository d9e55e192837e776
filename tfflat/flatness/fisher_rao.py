"""The Fisher–Rao norm (Liang, Poggio, Rakhlin & Stokes 2019, §2: ‖θ‖_fr, and its Lemma 2.1).

    ‖θ‖²_fr = ⟨θ, I(θ) θ⟩ = E_{(x,y)} [⟨θ, ∇_θ ℓ(f_θ(x), y)⟩²],   I(θ) = E[∇_θ ℓ ∇_θ ℓᵀ],

with the expectation over the data S and its labels (the empirical Fisher, as Jiang et al. 2020
compute it) and θ all trainable weights. ⟨θ, ∇_θ ℓ_i⟩ is the derivative of ℓ_i along θ itself,
d/dt ℓ_i((1 + t) θ) at t = 0, so all n of them come from one forward-mode pass (a JVP with
tangent θ), never forming a gradient per example. For a bias-free ReLU network with L hidden
layers, ⟨θ, ∇_θ f⟩ = (L + 1) f (Liang et al., Lemma 2.1), so ‖θ‖²_fr = (L + 1)² E[ℓ′(f)² f²].

Invariance: for a function-preserving rescaling θ → Dθ (D positive diagonal), ∇ℓ(Dθ) = D⁻¹∇ℓ(θ),
so ⟨Dθ, ∇ℓ(Dθ)⟩ = ⟨θ, ∇ℓ(θ)⟩ for every example: exactly invariant under layer-wise and
neuron-wise α-rescaling.
"""

from __future__ import annotations

import math

from tfflat.flatness.landscape import Landscape


def fisher_rao_norm(model, x, y, *, eval_batch: int | None = None) -> dict:
    """‖θ‖_fr of ``model`` on (x, y).

    Args:
      model: a built Keras model with one logit.
      x, y: inputs (n, …) and 0/1 labels (n,).
      eval_batch: examples per forward chunk.
    Returns:
      ``{"value": ‖θ‖_fr, "squared": ‖θ‖²_fr, "mean_directional": (1/n) Σ ⟨θ, ∇ℓ_i⟩ = ⟨θ, ∇L⟩, "loss"}``.
    """
    land = Landscape(model, x, y, eval_batch)
    d = land.directional(land.w0)
    return {"value": math.sqrt(max(d["mean_square"], 0.0)), "squared": d["mean_square"],
            "mean_directional": d["mean"], "loss": d["loss"]}
