"""ResNet50 with one logit for 32×32×3 inputs (SPEC §2): Keras' ResNet50(weights=None) + Dense(1)."""

from __future__ import annotations

import keras

from tfflat.errors import UserError


def resnet50(input_shape=(32, 32, 3), seed: int | None = 0, bn_momentum: float | None = None,
             name: str = "resnet50") -> keras.Model:
    """Keras' ResNet50 trunk (random init, global average pooling) and a single-logit head.

    BatchNorm layers are trained as usual; the zero-error test and every measurement (sharpness,
    Hessian, kernels) call the model in inference mode, i.e. with the BatchNorm moving statistics.
    ``bn_momentum`` overrides Keras' 0.99: on a few images (a few steps per epoch) the moving
    statistics otherwise lag far behind the weights, so the inference-mode function never fits S.
    """
    if tuple(input_shape) != (32, 32, 3) and len(input_shape) != 3:
        raise UserError(f"resnet50 needs image inputs (H, W, 3), got {tuple(input_shape)}; use --model fcn")
    if seed is not None:
        keras.utils.set_random_seed(seed)
    trunk = keras.applications.ResNet50(weights=None, include_top=False, input_shape=tuple(input_shape),
                                        pooling="avg")
    if bn_momentum is not None:
        if not 0.0 <= bn_momentum < 1.0:
            raise UserError(f"--bn-momentum must be in [0, 1), got {bn_momentum}")
        for layer in trunk.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = float(bn_momentum)
    inputs = keras.Input(tuple(input_shape))
    logit = keras.layers.Dense(1, name="logit")(trunk(inputs))
    return keras.Model(inputs, logit, name=name)
