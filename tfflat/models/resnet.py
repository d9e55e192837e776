"""ResNet50 with one logit for 32×32×3 inputs (SPEC §2): Keras' ResNet50(weights=None) + Dense(1)."""

from __future__ import annotations

import keras

from tfflat.errors import UserError


def resnet50(input_shape=(32, 32, 3), seed: int | None = 0, name: str = "resnet50") -> keras.Model:
    """Keras' ResNet50 trunk (random init, global average pooling) and a single-logit head.

    BatchNorm layers are trained as usual; every measurement (sharpness, Hessian, kernels) calls
    the model in inference mode, i.e. with the BatchNorm moving statistics.
    """
    if tuple(input_shape) != (32, 32, 3) and len(input_shape) != 3:
        raise UserError(f"resnet50 needs image inputs (H, W, 3), got {tuple(input_shape)}; use --model fcn")
    if seed is not None:
        keras.utils.set_random_seed(seed)
    trunk = keras.applications.ResNet50(weights=None, include_top=False, input_shape=tuple(input_shape),
                                        pooling="avg")
    inputs = keras.Input(tuple(input_shape))
    logit = keras.layers.Dense(1, name="logit")(trunk(inputs))
    return keras.Model(inputs, logit, name=name)
