"""Fully connected ReLU networks whose initialisation matches the NNGP prior (SPEC §2).

W ~ N(0, σw²/fan_in), b ~ N(0, σb²); one logit. The same (σw, σb, depth) define the analytic
arc-cosine kernel used for log P(f) (SPEC §5), so the spec is kept with the model.
"""

from __future__ import annotations

import math

import keras

from tfflat.errors import UserError


def fcn(input_shape, widths=(40, 40), sigma_w: float = math.sqrt(2.0), sigma_b: float = 1.0,
        seed: int | None = 0, name: str = "fcn") -> keras.Model:
    """A ReLU FCN ``d-widths…-1`` (inputs are flattened first).

    Args:
      input_shape: shape of one example, e.g. ``(28, 28)`` or ``(7,)``.
      widths: hidden layer widths.
      sigma_w, sigma_b: weight and bias standard deviations (weights scaled by 1/√fan_in).
      seed: initialisation seed (``None`` draws from Keras' global generator).
    Returns:
      An uncompiled Keras model mapping inputs to one logit, shape (batch, 1).
    """
    widths = tuple(int(w) for w in widths)
    if not widths or min(widths) < 1:
        raise UserError(f"hidden widths must be positive integers, got {widths}")
    if sigma_w <= 0 or sigma_b < 0:
        raise UserError(f"need σw > 0 and σb ≥ 0, got σw = {sigma_w}, σb = {sigma_b}")
    d = math.prod(input_shape)
    inputs = keras.Input(tuple(input_shape))
    h = keras.layers.Flatten(name="flatten")(inputs)
    for i, (units, (kernel, bias)) in enumerate(zip(widths + (1,), _initializers(d, widths, sigma_w, sigma_b, seed))):
        h = keras.layers.Dense(
            units, activation="relu" if i < len(widths) else None, name=f"dense_{i}" if i < len(widths) else "logit",
            kernel_initializer=kernel, bias_initializer=bias)(h)
    return keras.Model(inputs, h, name=name)


def _initializers(d: int, widths: tuple, sigma_w: float, sigma_b: float, seed: int | None) -> list:
    """(kernel, bias) initializers of each Dense layer of :func:`fcn`."""
    fan_ins, out = (d,) + widths, []
    for i in range(len(widths) + 1):
        s = None if seed is None else seed * 1000 + 2 * i
        out.append((keras.initializers.RandomNormal(0.0, sigma_w / math.sqrt(fan_ins[i]), seed=s),
                    keras.initializers.RandomNormal(0.0, sigma_b, seed=None if s is None else s + 1)))
    return out


def initial_weights(input_shape, widths=(40, 40), sigma_w: float = math.sqrt(2.0), sigma_b: float = 1.0,
                    seed: int = 0) -> list:
    """``fcn(input_shape, widths, sigma_w, sigma_b, seed).get_weights()`` without building the model
    (the same initializers; ~25x faster, for sweeps that train many FCNs as one stack)."""
    import numpy as np

    widths = tuple(int(w) for w in widths)
    fan_ins, out = (math.prod(input_shape),) + widths, []
    for i, (kernel, bias) in enumerate(_initializers(fan_ins[0], widths, sigma_w, sigma_b, seed)):
        units = (widths + (1,))[i]
        out += [np.asarray(kernel((fan_ins[i], units)), np.float32), np.asarray(bias((units,)), np.float32)]
    return out


def reinitialize(model: keras.Model, spec: dict, seed: int) -> None:
    """Redraw an FCN's weights in place from the distribution of ``spec`` (no retracing needed)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    dense = [l for l in model.layers if isinstance(l, keras.layers.Dense)]
    for layer in dense:
        fan_in = layer.kernel.shape[0]
        layer.kernel.assign(rng.normal(0, spec["sigma_w"] / math.sqrt(fan_in), layer.kernel.shape).astype("float32"))
        layer.bias.assign(rng.normal(0, spec["sigma_b"], layer.bias.shape).astype("float32"))
