"""Training on several devices and in mixed precision (issue 17): what :class:`tfflat.training.Trainer`
uses when it is given a ``tf.distribute`` strategy with several replicas or a mixed ``precision``.

* :func:`working_copy`: the network that is trained — a copy of the model whose variables live under the
  strategy (mirrored, one copy per device) and whose layers compute in ``precision`` (the output layer in
  float32); the trainer copies its weights back into the model after every epoch, so the model, its
  evaluation and every measurement stay in float32 on the default device.
* :func:`replicated_epoch`: the compiled epoch with one replica per device: each minibatch of the
  one-device epoch (same shuffle, same padding and mask) is split into equal slices, one per replica;
  each replica's loss is its slice's CE sum over the *global* minibatch size, the optimizer sums the
  replicas' gradients (Keras' all-reduce), so every step is the one-device step up to float rounding.
  BatchNorm in training mode normalises each replica's slice by its own statistics (as tf.distribute
  and PyTorch's DataParallel do): keep ≥ 16 examples per replica.
"""

from __future__ import annotations

import contextlib
import math

from tfflat.errors import UserError

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def check_precision(precision) -> str:
    p = "float32" if precision is None else str(precision)
    if p not in PRECISIONS:
        raise UserError(f"unknown `precision` {precision!r}; choose {', '.join(PRECISIONS)}")
    return p


def _with_policy(config, policy: str, keep: set[str]):
    """``config`` with every layer's float32 DTypePolicy replaced by ``policy`` except in the layers named
    in ``keep`` (the outputs: logits in float32)."""
    if isinstance(config, list):
        return [_with_policy(c, policy, keep) for c in config]
    if not isinstance(config, dict):
        return config
    inner = config.get("config")
    if "class_name" in config and isinstance(inner, dict) and inner.get("name") in keep:
        return config                                   # an output layer: stays float32
    if config.get("class_name") == "DTypePolicy" and isinstance(inner, dict) and inner.get("name") == "float32":
        return {**config, "config": {**inner, "name": policy}}
    return {key: _with_policy(value, policy, keep) for key, value in config.items()}


def working_copy(model, strategy=None, precision: str = "float32"):
    """The network :class:`~tfflat.training.Trainer` trains in place of ``model`` (see the module doc)."""
    import keras

    from tfflat.models.heads import is_graph

    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope:
        try:
            if precision == "float32":
                copy = keras.models.clone_model(model)
            else:
                if not is_graph(model):
                    raise UserError(f"mixed precision needs a functional or Sequential model; {model.name!r} is "
                                    "subclassed (build it with keras.config.set_dtype_policy instead)")
                config = model.get_config()
                if type(model).__name__ == "Sequential":
                    keep = {config["layers"][-1]["config"]["name"]}
                else:
                    outs = config["output_layers"]
                    keep = {outs[0]} if isinstance(outs[0], str) else {entry[0] for entry in outs}
                copy = type(model).from_config(_with_policy(config, precision, keep))
        except UserError:
            raise
        except Exception as err:  # noqa: BLE001 - custom layers without get_config / from_config
            raise UserError(f"cannot copy model {model.name!r} onto the devices or into mixed precision "
                            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); give it a "
                            "get_config, or train on one device in float32") from None
        copy.set_weights(model.get_weights())
    return copy


def copy_optimizer(optimizer, strategy=None, precision: str = "float32"):
    """A fresh optimizer of the same class and config, created under ``strategy`` (Keras' optimizers bind
    to the strategy they are made under); wrapped in a LossScaleOptimizer for float16."""
    import keras

    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope:
        try:
            opt = type(optimizer).from_config(optimizer.get_config())
        except Exception as err:  # noqa: BLE001
            raise UserError(f"cannot copy the optimizer {type(optimizer).__name__} for several devices ({err}); "
                            "give it get_config/from_config, or train on one device") from None
        if precision == "mixed_float16":
            opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt


def replicated_epoch(strategy, net, optimizer, loss_fn, x, y, n: int, batch_size: int, batches: int,
                     steps: int, scale_loss: bool):
    """The compiled epoch of :class:`~tfflat.training.Trainer` with one replica per device (module doc).

    ``perm`` (n,) int32 → nothing; ``x``, ``y`` are the training set (tensors), ``steps`` the optimizer
    steps (Entropy-SGD: whole outer steps), batch ``b % batches`` at step b."""
    import tensorflow as tf

    r = int(strategy.num_replicas_in_sync)
    per = math.ceil(batch_size / r)
    pad = batches * batch_size - n
    variables = net.trainable_variables

    def step(idx, xr, yr):
        k = tf.distribute.get_replica_context().replica_id_in_sync_group
        full = tf.concat([idx, tf.fill([per * r - batch_size], -1)], 0)
        mine = tf.reshape(full, [r, per])[k]
        count = tf.reduce_sum(tf.cast(idx >= 0, tf.float32))
        mask = tf.cast(mine >= 0, tf.float32)
        safe = tf.maximum(mine, 0)
        xb, yb = tf.gather(xr, safe), tf.gather(yr, safe)
        with tf.GradientTape() as tape:
            ce = loss_fn(tf.cast(net(xb, training=True), tf.float32), yb)
            loss = tf.reduce_sum(ce * mask) / count
            target = optimizer.scale_loss(loss) if scale_loss else loss
        optimizer.apply(tape.gradient(target, variables), variables)

    def epoch(perm, xr, yr):
        slots = tf.reshape(tf.concat([perm, tf.fill([pad], -1)], 0), [batches, batch_size])
        for b in tf.range(steps):
            strategy.run(step, args=(tf.gather(slots, b % batches), xr, yr))
        return tf.zeros([0])

    fn = tf.function(epoch)
    # the training set on every device once (not copied from the first device at every step)
    xr, yr = (strategy.experimental_distribute_values_from_function(lambda ctx, t=t: tf.identity(t)) for t in (x, y))
    return lambda perm: fn(tf.constant(perm, tf.int32), xr, yr)
