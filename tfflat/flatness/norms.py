"""Norm-based measures for comparison: the ℓ2 path norm and the product of spectral norms.

Path norm (Neyshabur, Salakhutdinov & Srebro 2015, Path-SGD, the ℓ2 path regulariser; Jiang et al.
2020 eq. 44), biases included as edges from a constant unit:

    φ₂(w)² = Σ_{paths p from an input or a bias to an output} Π_{edges e ∈ p} w_e²,

computed as Jiang et al. do: the network with every weight squared, applied to an all-ones input
(with non-negative weights and inputs every ReLU is the identity, so the output sums the products
over paths). Only networks built from Dense/convolution layers with ReLU or linear activations
(plus Flatten, Reshape, Dropout, Add, Concatenate) are paths of this kind; others are refused.

Spectral-norm product (Bartlett et al. 2017; Neyshabur et al. 2018; Jiang et al. eq. 32):

    Π_i ‖W_i‖₂  over the kernels of the Dense (and convolution) layers,

the largest singular value of each kernel (a convolution kernel reshaped to (k·k·c_in, c_out), an
approximation of its operator norm as in Jiang et al.); biases do not enter.

Invariance. α-rescaling multiplies the in-weights (and bias) of a hidden unit by α and its
out-weights by 1/α; every path through the unit carries exactly one of each, so φ₂ is exactly
invariant, layer-wise and neuron-wise. Layer-wise, ‖αW_i‖₂ ‖W_{i+1}/α‖₂ = ‖W_i‖₂ ‖W_{i+1}‖₂, so
the product is invariant; neuron-wise the two kernels are scaled by diagonal matrices, whose
effect on the largest singular values does not cancel: not invariant.
"""

from __future__ import annotations

import math

import numpy as np

from tfflat.errors import UserError

_HOMOGENEOUS = ("relu", "linear")


def _activation_name(layer) -> str:
    act = getattr(layer, "activation", None)
    return getattr(act, "__name__", str(act)) if act is not None else "linear"


def _layers(model):
    """``model``'s layers, with a bypassed final activation (:func:`tfflat.models.heads.logit_model`'s
    pre-activation layer) replaced by its Dense layer, marked linear (second item True)."""
    from tfflat.models import heads

    for layer in model.layers:
        if isinstance(layer, heads.PreActivation()):
            yield layer.dense, True
        else:
            yield layer, False


def _check_paths(model) -> None:
    import keras

    L = keras.layers
    passthrough = (L.InputLayer, L.Flatten, L.Reshape, L.Dropout, L.Add, L.Concatenate, L.Identity)
    weighted = (L.Dense, L.Conv1D, L.Conv2D, L.Conv3D)
    for layer, linear in _layers(model):
        if linear or isinstance(layer, passthrough):
            continue
        if isinstance(layer, weighted) or isinstance(layer, L.Activation):
            if _activation_name(layer) in _HOMOGENEOUS:
                continue
            raise UserError(f"the path norm needs ReLU or linear units; layer {layer.name} has activation "
                            f"{_activation_name(layer)!r}")
        if isinstance(layer, L.ReLU) and not layer.max_value and not layer.negative_slope and not layer.threshold:
            continue
        raise UserError(f"the path norm is defined for Dense/convolution ReLU networks; layer {layer.name} "
                        f"({type(layer).__name__}) is not a sum over paths")
    if model.non_trainable_variables:
        raise UserError("the path norm needs a network without non-trainable state (e.g. BatchNorm statistics)")
    if len(model.inputs) != 1:
        raise UserError("the path norm needs a model with one input")


def path_norm(model) -> dict:
    """The ℓ2 path norm φ₂(w) of ``model`` (biases as paths from a constant unit).

    Returns:
      ``{"value": φ₂, "squared": φ₂²}``.
    """
    import tensorflow as tf

    _check_paths(model)
    squared = [tf.square(v) for v in model.trainable_variables]
    shape = (1,) + tuple(int(s) for s in model.inputs[0].shape[1:])
    out, _ = model.stateless_call(squared, [], tf.ones(shape), training=False)
    total = float(np.sum(np.asarray(out, np.float64)))
    return {"value": math.sqrt(total), "squared": total}


def spectral_norm_product(model) -> dict:
    """Π_i ‖W_i‖₂ over the kernels of ``model``'s Dense (and convolution) layers.

    Returns:
      ``{"value": the product, "log10": its log10, "norms": {layer: ‖W‖₂}}``.
    """
    import keras

    norms = {}
    for layer, _ in _layers(model):
        if isinstance(layer, (keras.layers.Dense, keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)):
            k = np.asarray(layer.kernel.numpy(), np.float64)
            norms[layer.name] = float(np.linalg.norm(k.reshape(-1, k.shape[-1]), 2))
    if not norms:
        raise UserError(f"model {model.name!r} has no Dense or convolution kernels")
    log10 = float(sum(math.log10(v) if v > 0 else -math.inf for v in norms.values()))
    return {"value": float(np.prod(list(norms.values()))), "log10": log10, "norms": norms}
