"""Training on S ∪ A to the first zero-error epoch (SPEC §3), one compiled call per epoch.

Each epoch is a single ``tf.function`` (XLA-compiled for dense networks): an in-graph shuffle,
a loop over minibatches, and the optimizer updates. The last partial minibatch is padded and
masked, so its gradient equals that of the smaller batch. After every epoch the network is
evaluated (inference mode) on S, A and E in one more compiled call.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from tfflat import defaults
from tfflat.data import Splits
from tfflat.errors import UserError
from tfflat.models.heads import is_dense, predict_logits, sigmoid_ce  # noqa: F401  (moved; re-exported)


@dataclass
class TrainResult:
    """What :func:`train` did. ``history[0]`` is the initialisation (epoch 0)."""

    zero_error_epoch: int | None
    epochs: int
    history: list = field(default_factory=list)
    seconds: float = 0.0
    gradient_evaluations: int = 0

    @property
    def final(self) -> dict:
        return self.history[-1]

    @property
    def train_accuracy(self) -> float:
        return self.final["acc_S"]

    @property
    def test_accuracy(self) -> float:
        return self.final["acc_E"]


class Trainer:
    """Compiled epoch and evaluation functions for one (model, optimizer, S ∪ A) triple.

    Args:
      model: a Keras model whose outputs are ``head``'s logits (default: one logit).
      optimizer: a Keras optimizer (any, including :class:`~tfflat.training.entropy_sgd.EntropySGD`).
      x_fit, y_fit: the training set S ∪ A (labels 0/1, or 0…K−1 for a K-class head).
      batch_size: minibatch size; ``None`` or ≥ |S ∪ A| means full batch.
      seed: shuffling seed.
      x_eval: inputs evaluated after every epoch (e.g. S ∪ A ∪ E); for dense networks the
        evaluation runs inside the same compiled call as the epoch.
      jit_compile: XLA-compile the epoch; default: only for dense networks.
      head: the loss, a :class:`tfflat.models.heads.Head` applied to the model's outputs (default:
        sigmoid CE of one logit).
      strategy: a ``tf.distribute`` strategy or device spec (:mod:`tfflat.devices`): with several
        replicas the epoch runs on all of them (:mod:`tfflat.training.replicas`: the one-device steps up
        to float rounding); one device (the default strategy): this one-device code path. ``None``: the
        strategy whose scope the caller is in, else all visible GPUs, else the CPU (``"auto"``).
      precision: ``"float32"`` (default), ``"mixed_bfloat16"`` or ``"mixed_float16"`` (loss scaling): the
        layers but the output compute in that precision; weights, evaluation and measures stay float32.
    """

    def __init__(self, model, optimizer, x_fit, y_fit, batch_size: int | None, seed: int = 0,
                 x_eval=None, jit_compile: bool | None = None, head=None, strategy=None, precision=None):
        import tensorflow as tf

        from tfflat import devices
        from tfflat.models.heads import LOGIT
        from tfflat.training import batched, replicas

        n = len(y_fit)
        if n == 0:
            raise UserError("the training set S ∪ A is empty")
        bs = n if batch_size is None else int(batch_size)
        if bs < 1:
            raise UserError(f"--batch-size must be ≥ 1, got {batch_size}")
        bs = min(bs, n)
        strategy = devices.strategy(strategy)
        replicated = not devices.is_default(strategy)
        self.precision = replicas.check_precision(precision)
        self.strategy = strategy if replicated else None
        net = model          # what is trained: the model, or its copy on the devices / in mixed precision
        if replicated or self.precision != "float32":
            net = replicas.working_copy(model, self.strategy, self.precision)
            optimizer = replicas.copy_optimizer(optimizer, self.strategy, self.precision)
        self._net = net
        self.model, self.optimizer, self.n, self.batch_size = model, optimizer, n, bs
        self.head = LOGIT if head is None else head
        loss_fn = self.head.loss
        self.batches = math.ceil(n / bs)
        inner = int(getattr(optimizer, "inner_steps", 1))   # Entropy-SGD: whole outer steps per epoch
        self.steps = math.ceil(self.batches / inner) * inner
        self.jit = (is_dense(model) if jit_compile is None else bool(jit_compile)) and net is model
        self.x = tf.constant(x_fit, tf.float32)
        self.y = tf.constant(y_fit, tf.float32)
        self.x_eval = None if x_eval is None else tf.constant(x_eval, tf.float32)
        self.rng = np.random.default_rng(seed)     # shuffling order, independent of XLA's RNG
        with strategy.scope() if replicated else _nothing():
            optimizer.build(net.trainable_variables)
        self._initial_state = [v.numpy() for v in optimizer.variables]
        pad = self.batches * bs - n
        steps, batches, variables = self.steps, self.batches, net.trainable_variables
        fused = self.jit and self.x_eval is not None

        def epoch(perm):
            slots = tf.reshape(tf.concat([perm, tf.fill([pad], -1)], 0), [batches, bs])
            for b in tf.range(steps):
                idx = tf.gather(slots, b % batches)
                mask = tf.cast(idx >= 0, tf.float32)
                safe = tf.maximum(idx, 0)
                xb, yb = tf.gather(self.x, safe), tf.gather(self.y, safe)
                with tf.GradientTape() as tape:
                    ce = loss_fn(model(xb, training=True), yb)
                    loss = tf.reduce_sum(ce * mask) / tf.reduce_sum(mask)
                optimizer.apply(tape.gradient(loss, variables), variables)
            if fused:
                return tf.reshape(model(self.x_eval, training=False), [-1])
            return tf.zeros([0])

        if net is not model:
            self._epoch = replicas.replicated_epoch(strategy if replicated else tf.distribute.get_strategy(), net,
                                                    optimizer, loss_fn, self.x, self.y, n, bs, self.batches, steps,
                                                    scale_loss=self.precision == "mixed_float16")
        elif fused and self.head.name == "logit" and batched.plain_sgd(model, optimizer):
            # the same steps, written out (tfflat.training.batched)
            self._epoch = batched.variable_epoch(variables, optimizer, self.x, self.y, self.x_eval, bs, self.batches)
        else:
            self._epoch = tf.function(epoch, jit_compile=self.jit,
                                      input_signature=[tf.TensorSpec([n], tf.int32)])
        self._fused = fused
        # Non-fused evaluation (big models) is compiled once; fused trainers evaluate eagerly only at epoch 0.
        self._logits = (tf.function(lambda x: tf.reshape(model(x, training=False), [-1]), reduce_retracing=True)
                        if not fused else lambda x: tf.reshape(model(x, training=False), [-1]))

    def reset(self, seed: int) -> None:
        """Restore the optimizer's initial state and reseed the shuffling, so the following epochs
        equal those of a new Trainer with this ``seed`` (the model's weights are the caller's to set).
        Lets a sweep reuse one compiled epoch for many runs. Optimizer state outside
        ``optimizer.variables`` (e.g. a noise generator) is not restored."""
        for v, value in zip(self.optimizer.variables, self._initial_state):
            v.assign(value)
        self.rng = np.random.default_rng(seed)
        if self._net is not self.model:
            self._net.set_weights(self.model.get_weights())

    def get_state(self) -> dict:
        """What a resumed run needs besides the model's weights: the optimizer's variables and the
        shuffling RNG's state (JSON-able)."""
        return {"optimizer": [np.array(v.numpy()) for v in self.optimizer.variables],
                "rng": self.rng.bit_generator.state}

    def set_state(self, state: dict) -> None:
        """Restore :meth:`get_state`'s ``state``: the following epochs are those the saved trainer would run."""
        values = state["optimizer"]
        if len(values) != len(self.optimizer.variables) or any(
                tuple(np.shape(a)) != tuple(v.shape) for a, v in zip(values, self.optimizer.variables)):
            raise UserError("the saved optimizer state does not fit this optimizer and model")
        for v, value in zip(self.optimizer.variables, values):
            v.assign(value)
        self.rng.bit_generator.state = state["rng"]
        if self._net is not self.model:          # the working copy continues from the model's (restored) weights
            self._net.set_weights(self.model.get_weights())

    def epoch(self) -> np.ndarray | None:
        """One pass over S ∪ A (Entropy-SGD: rounded up to whole outer steps).

        Returns the logits on ``x_eval`` afterwards (``None`` if there is no ``x_eval``).
        """
        z = self._epoch(self.rng.permutation(self.n).astype(np.int32))
        if self._net is not self.model:          # the model (float32, default device) holds the new weights
            self.model.set_weights(self._net.get_weights())
        if self._fused:
            return z.numpy()
        return None if self.x_eval is None else self.logits()

    def logits(self, x=None, chunk: int | None = None) -> np.ndarray:
        """Inference-mode logits on ``x`` (default ``x_eval``), in chunks (dense nets: one chunk)."""
        x = self.x_eval if x is None else x
        n = int(x.shape[0])
        if n == 0:
            return np.zeros(0, np.float32)
        chunk = chunk or (n if self.jit else 128)
        return np.concatenate([self._logits(x[i:i + chunk]).numpy() for i in range(0, n, chunk)])


def _nothing():
    import contextlib

    return contextlib.nullcontext()


def eval_inputs(splits: Splits) -> np.ndarray:
    """S ∪ A ∪ E in the order :func:`evaluate` expects."""
    return np.concatenate([splits.x_train, splits.x_attack, splits.x_test])


def evaluate(z: np.ndarray, splits: Splits) -> dict:
    """Loss on S and on S ∪ A, accuracy on S, A, E (label 1 iff logit ≥ 0) from the logits ``z``
    on :func:`eval_inputs`."""
    z = np.asarray(z, np.float64)
    ns, na = len(splits.y_train), len(splits.y_attack)
    parts = {"S": (z[:ns], splits.y_train), "A": (z[ns:ns + na], splits.y_attack),
             "E": (z[ns + na:], splits.y_test)}
    out = {}
    for k, (zk, yk) in parts.items():
        out[f"acc_{k}"] = float(np.mean((zk >= 0) == (yk == 1))) if len(yk) else None
    ce = lambda z, y: np.logaddexp(0.0, z) - y * z   # noqa: E731  stable sigmoid CE
    out["loss_S"] = float(np.mean(ce(*parts["S"])))
    out["loss"] = float(np.mean(ce(z[:ns + na], np.concatenate([splits.y_train, splits.y_attack]))))
    return out


def make_trainer(model, splits: Splits, optimizer="sgd", *, learning_rate: float | None = None,
                 opt_args: dict | None = None, batch_size: int | None = defaults.BATCH_SIZE, seed: int = 0,
                 jit_compile: bool | None = None, strategy=None, precision: str | None = None) -> Trainer:
    """The :class:`Trainer` that :func:`train` builds for these arguments (to keep a handle on it, e.g.
    for checkpoints: pass it back as ``train(..., trainer=...)``)."""
    import keras

    from tfflat.training import optimizers

    keras.utils.set_random_seed(seed)           # before the optimizer: Entropy-SGD draws its noise seed
    if isinstance(optimizer, str):
        if optimizer == "gd":
            batch_size = None
        optimizer = optimizers.make(optimizer, learning_rate, **(opt_args or {}))
    return Trainer(model, optimizer, splits.x_fit, splits.y_fit, batch_size, seed, x_eval=eval_inputs(splits),
                   jit_compile=jit_compile, strategy=strategy, precision=precision)


def train(model, splits: Splits, optimizer: str = "sgd", *, learning_rate: float | None = None,
          opt_args: dict | None = None, batch_size: int | None = defaults.BATCH_SIZE,
          max_epochs: int = defaults.MAX_EPOCHS, overtrain: int = 0, stop_on: str = "S", seed: int = 0,
          callback: Callable | None = None, jit_compile: bool | None = None,
          trainer: Trainer | None = None, resume: dict | None = None, strategy=None,
          precision: str | None = None) -> TrainResult:
    """Train ``model`` on S ∪ A until the first epoch with zero error on S (or on S ∪ A).

    Args:
      model: Keras model with one logit (changed in place).
      splits: the data (:class:`tfflat.data.Splits`).
      optimizer: a name from :mod:`tfflat.training.optimizers` or a Keras optimizer instance.
      batch_size: minibatch size (ignored for ``gd``, which is full batch).
      max_epochs: give up after this many epochs (``zero_error_epoch`` is then ``None``).
      overtrain: keep training this many epochs after the zero-error epoch.
      stop_on: ``"S"`` (the paper) or ``"SA"`` (zero error on S ∪ A).
      seed: seeds shuffling (and any optimizer noise); the init seed belongs to the model.
      callback: ``callback(epoch, record, model)`` after every epoch (and for epoch 0); returning
        ``True`` stops training.
      trainer: a :class:`Trainer` already built for this model, these splits and this optimizer, to
        reuse (it is :meth:`Trainer.reset` to ``seed``; ``optimizer`` and ``batch_size`` are then unused).
      resume: continue a run: ``{"history": its records so far, "trainer": Trainer.get_state()}`` (the
        model holding that epoch's weights); the epochs that follow equal the uninterrupted run's.
      strategy, precision: the devices (a ``tf.distribute`` strategy or a :mod:`tfflat.devices` spec;
        default: one device) and the training precision (``float32``, ``mixed_bfloat16``,
        ``mixed_float16``) — see :class:`Trainer`.
    Returns:
      :class:`TrainResult` with the per-epoch history (loss, accuracy on S, A, E, gradient evaluations).
    """
    import keras

    if stop_on not in ("S", "SA"):
        raise UserError(f"stop_on must be 'S' or 'SA', got {stop_on!r}")
    if max_epochs < 0 or overtrain < 0:
        raise UserError("--max-epochs and --overtrain must be ≥ 0")
    keras.utils.set_random_seed(seed)
    if trainer is not None:
        trainer.reset(seed)
    else:
        trainer = make_trainer(model, splits, optimizer, learning_rate=learning_rate, opt_args=opt_args,
                               batch_size=batch_size, seed=seed, jit_compile=jit_compile, strategy=strategy,
                               precision=precision)

    def done(rec):
        ok = rec["acc_S"] == 1.0
        return ok and (stop_on == "S" or not len(splits.y_attack) or rec["acc_A"] == 1.0)

    history, zero, evals, before = [], None, 0, 0.0
    if resume is not None:
        trainer.set_state(resume["trainer"])
        history = [dict(r) for r in resume["history"]]
        zero = next((r["epoch"] for r in history if done(r)), None)
        evals, before = history[-1]["gradient_evaluations"], history[-1]["seconds"]
        if zero is not None and history[-1]["epoch"] >= zero + overtrain:
            max_epochs = history[-1]["epoch"]             # it had finished: nothing left to train
    t0 = time.perf_counter() - before
    for epoch in range(len(history), max_epochs + 1):
        if epoch > 0:
            z = trainer.epoch()
            evals += trainer.steps
        else:
            z = trainer.logits()
        rec = {"epoch": epoch, **evaluate(z, splits), "gradient_evaluations": evals,
               "seconds": time.perf_counter() - t0}
        history.append(rec)
        if zero is None and done(rec):
            zero = epoch
        stop = callback(epoch, rec, model) if callback else False
        if stop or (zero is not None and epoch >= zero + overtrain):
            break
    return TrainResult(zero, history[-1]["epoch"], history, time.perf_counter() - t0, evals)
