"""Relative flatness (Petzka, Kamp, Adilova, Sminchisescu & Boley 2021, Def. 3: κ^φ_Tr).

For a network f(x) = ψ(W φ(x)) split at its output layer — φ(x) ∈ R^m the penultimate features,
W the output kernel with rows w_s ∈ R^m for the d outputs s (here d = 1 logit) —

    κ_Tr(W) = Σ_{s,s'=1}^{d} ⟨w_s, w_{s'}⟩ · Tr H_{s,s'},

where H_{s,s'} is the m×m block of the Hessian of L with respect to (w_s, w_{s'}) (the output
layer's bias is not part of W). For one logit κ_Tr = ‖w‖² Tr H_ww.

Tr H_{s,s'} = Σ_u H[(u,s),(u,s')] is computed from Hessian-vector products restricted to the
output kernel: exactly from m·d products with basis vectors when m·d ≤ ``probes``, else by
Hutchinson's estimator with ``probes`` Rademacher vectors r ∈ {±1}^m (d products each:
Tr H_{s,s'} ≈ mean rᵀ H_{s,s'} r), with its standard error.

Invariance (derived from the definition). Layer-wise α on the last hidden layer scales φ by α and
W by 1/α: ⟨w_s, w_s'⟩ → α⁻²⟨w_s, w_s'⟩ and H_{s,s'} → α² H_{s,s'}, so κ is unchanged; rescalings
of earlier hidden layers leave φ(x) and W, hence κ, unchanged. Neuron-wise α_u on the last hidden
layer's units scales column u of W by 1/α_u and H[(u,·),(u,·)] by α_u²: ‖w‖² Tr H becomes
(Σ_u w_u²/α_u²)(Σ_u α_u² H_uu), not invariant in general. So: invariant layer-wise, not neuron-wise.
"""

from __future__ import annotations

import math

import numpy as np

from tfflat.errors import UserError
from tfflat.flatness.landscape import Landscape

DEFAULT_PROBES = 100


def output_kernel(model) -> tuple[int, object]:
    """(index among the trainable variables, layer) of the kernel of the Dense layer producing the output."""
    import keras

    from tfflat.models import heads

    layer = model.layers[-1]
    if isinstance(layer, heads.PreActivation()):      # a final sigmoid/softmax bypassed
        layer = layer.dense
    if not isinstance(layer, keras.layers.Dense):
        raise UserError(f"relative flatness needs a model that ends in a Dense layer; {model.name!r} ends in "
                        f"{layer.name} ({type(layer).__name__})")
    for i, v in enumerate(model.trainable_variables):
        if v is layer.kernel:
            return i, layer
    raise UserError(f"the output layer {layer.name} has no trainable kernel")


def relative_flatness(model, x, y, probes: int = DEFAULT_PROBES, seed: int = 0, *,
                      eval_batch: int | None = None) -> dict:
    """κ_Tr of the penultimate→output layer of ``model`` on (x, y).

    Args:
      model: a built Keras model ending in a Dense layer.
      x, y: inputs (n, …) and 0/1 labels (n,).
      probes: Hutchinson probes; the trace is exact (m·d basis products) when m·d ≤ probes.
      seed: the Rademacher probes.
      eval_batch: examples per forward chunk.
    Returns:
      ``{"value": κ_Tr, "stderr" (0 when exact), "exact", "hessian_trace": Σ_s Tr H_ss, "kernel_norm2": ‖W‖²_F,
      "layer", "features" (m), "outputs" (d), "matvecs"}``.
    """
    if int(probes) < 1:
        raise UserError(f"probes must be ≥ 1, got {probes}")
    land = Landscape(model, x, y, eval_batch)
    k, layer = output_kernel(land.model)
    w = land.w0[k].numpy().astype(np.float64)                  # (m, d)
    m, d = w.shape
    gram = w.T @ w                                             # ⟨w_s, w_s'⟩
    h = land.block_hvp((k,))
    exact = m * d <= int(probes)
    if exact:
        t = np.zeros((d, d))
        for u in range(m):
            for s2 in range(d):
                e = np.zeros((m, d))
                e[u, s2] = 1.0
                t[:, s2] += h(e.ravel()).reshape(m, d)[u, :]
        samples = None
    else:
        rng = np.random.default_rng(seed)
        samples = np.empty(int(probes))
        t = np.zeros((d, d))
        for i in range(int(probes)):
            r = rng.integers(0, 2, m) * 2.0 - 1.0
            ti = np.zeros((d, d))
            for s2 in range(d):
                v = np.zeros((m, d))
                v[:, s2] = r
                ti[:, s2] = r @ h(v.ravel()).reshape(m, d)
            samples[i] = float(np.sum(gram * ti))
            t += ti / int(probes)
    kappa = float(np.sum(gram * t))
    stderr = 0.0 if samples is None else (float(samples.std(ddof=1) / math.sqrt(len(samples))) if len(samples) > 1
                                          else math.nan)
    return {"value": kappa, "stderr": stderr, "exact": bool(exact), "hessian_trace": float(np.trace(t)),
            "kernel_norm2": float(np.sum(w * w)), "layer": layer.name, "features": int(m), "outputs": int(d),
            "matvecs": h.matvecs}
