"""Many FCNs trained at once: the points of an attack-set sweep as one stack (SPEC §3).

The points of a sweep (seeds × attack sizes) share S and E, and A for |A| = a is the first a entries
of the largest A, so network k trains on the first n_k = |S| + a_k rows of S ∪ A_max with its own
shuffle (the very ``numpy`` permutation :class:`~tfflat.training.Trainer` draws for its seed). One
compiled call (:func:`sgd_epoch`) runs an epoch of every network still training and then the
stopping check (logits on S, and on A for ``stop_on="SA"``); the full record of
:func:`~tfflat.training.loop.evaluate` is computed only at the epochs that are kept.

**Bit for bit the single-network trainer.** :class:`~tfflat.training.Trainer` runs the same
:func:`sgd_epoch` for a plain ReLU FCN under plain SGD (a stack of one): inside the compiled loop
the networks are visited one at a time with run-time trip counts, so every minibatch step is the
same two-dimensional XLA computation whatever the stack size, and the stopping check's logits are
row-wise independent of how many rows are evaluated. ``tests/training/test_train_batched.py`` checks
weights, zero-error epochs and records for equality. (Truly batched products — one (K, 32, 784)
matmul — were measured no faster per network on XLA CPU and give other float32 roundings, which the
chaotic fit of flipped labels amplifies into different zero-error epochs.)

What a stack saves is everything around the arithmetic: one compilation for all |A| and seeds
instead of one per (|A|, worker), one host round trip per epoch for all networks, and the stopping
check on S only instead of S, A and E every epoch.

Plain SGD only (no momentum): an optimizer with state would need per-network masking of its
updates; such sweeps train point by point.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from tfflat import defaults
from tfflat.data import Splits
from tfflat.errors import UserError

_CACHE: dict = {}


@dataclass
class Snapshot:
    """One network at one epoch: its :func:`~tfflat.training.loop.evaluate` record, weights
    (``model.get_weights()`` order) and logits on S ∪ A ∪ E (the network's own A)."""

    epoch: int
    record: dict
    weights: list
    logits: np.ndarray


@dataclass
class MemberResult:
    """What training did to one network of the batch (compare :class:`~tfflat.training.TrainResult`).

    Attributes:
      attack_size, seed: the point.
      zero_error_epoch: the first epoch with zero error (``None``: not within ``max_epochs``).
      epochs: the last epoch trained.
      snapshots: {overtraining offset o: Snapshot at epoch zero_error_epoch + o} for the offsets reached.
      final: the Snapshot at ``epochs``.
      seconds: this network's share of the batch's wall time (each epoch's time split evenly
        among the networks still training in it).
    """

    attack_size: int
    seed: int
    zero_error_epoch: int | None
    epochs: int
    snapshots: dict = field(default_factory=dict)
    final: Snapshot | None = None
    seconds: float = 0.0

    @property
    def gradient_evaluations(self) -> int:
        return self.final.record["gradient_evaluations"]


def dense_weights(model) -> list:
    """The model's weights as numpy arrays, ``[W₁, b₁, W₂, b₂, …]``, if it is a plain ReLU FCN
    (Flatten then Dense layers, ReLU between them, a linear one-logit output); else ``None``."""
    import keras

    from tfflat.models.heads import PreActivation

    pre = PreActivation()               # a final Dense with its activation bypassed (heads.logit_model)
    layers = list(model.layers)
    bypassed = bool(layers) and isinstance(layers[-1], pre)
    if bypassed:
        layers[-1] = layers[-1].dense
    dense = [l for l in layers if isinstance(l, keras.layers.Dense)]
    others = [l for l in layers if not isinstance(l, (keras.layers.Dense, keras.layers.Flatten,
                                                      keras.layers.InputLayer))]
    if others or not dense or dense[-1].units != 1 or any(not l.use_bias for l in dense):
        return None
    if any(str(v.dtype) != "float32" for l in dense for v in (l.kernel, l.bias)) or any(
            a.shape[1] != b.shape[0] for a, b in zip([l.kernel for l in dense], [l.kernel for l in dense[1:]])):
        return None
    acts = [keras.activations.serialize(l.activation) for l in dense]
    names = [a if isinstance(a, str) else a.get("config", {}).get("name", a.get("class_name")) for a in acts]
    if any(n != "relu" for n in names[:-1]) or (names[-1] != "linear" and not bypassed):
        return None
    return [w for l in dense for w in (l.kernel.numpy(), l.bias.numpy())]


def train_fcns(spec: dict, splits: Splits, members, *, learning_rate: float | None = None,
               batch_size: int | None = defaults.BATCH_SIZE, max_epochs: int = defaults.MAX_EPOCHS,
               overtrain=(0,), stop_on: str = "S", progress=None) -> list[MemberResult]:
    """Train the FCNs ``models.build(spec, seed)`` for ``members = [(attack_size, seed), …]`` at once.

    Every network equals, bit for bit, ``train(models.build(spec, seed), splits_a, "sgd", seed=seed, …)``
    on the splits with the first ``attack_size`` entries of ``splits``' A.

    Args:
      spec: an FCN spec of :func:`tfflat.models.model_spec` (``kind="fcn"``).
      splits: S, the *largest* A, E.
      members: (attack_size, seed) pairs, attack_size ≤ |A|.
      learning_rate: SGD step (default: the paper's 0.01).
      batch_size: minibatch size (``None``: full batch; then all members need the same |A|).
      max_epochs: give up after this many epochs (``zero_error_epoch`` is then ``None``).
      overtrain: overtraining offsets o ≥ 0 to keep a :class:`Snapshot` at (epoch zero + o); training
        of a network stops after zero + max(overtrain).
      stop_on: ``"S"`` (zero error on S, the paper) or ``"SA"`` (on S ∪ A).
      progress: ``progress(epoch, networks_still_training)`` after every epoch.
    Returns:
      One :class:`MemberResult` per member, in order.
    """
    import tensorflow as tf

    from tfflat.models import fcn

    members = [(int(a), int(s)) for a, s in members]
    if not members:
        return []
    if spec.get("kind") != "fcn":
        raise UserError("batched training is for FCNs (spec kind 'fcn'); train other models one by one")
    if stop_on not in ("S", "SA"):
        raise UserError(f"stop_on must be 'S' or 'SA', got {stop_on!r}")
    overtrain = sorted({int(o) for o in overtrain}) or [0]
    if max_epochs < 0 or overtrain[0] < 0:
        raise UserError("--max-epochs and --overtrain must be ≥ 0")
    ns, na_max = len(splits.y_train), len(splits.y_attack)
    if ns == 0:
        raise UserError("the training set S is empty")
    if any(a < 0 or a > na_max for a, _ in members):
        raise UserError(f"attack sizes must lie in 0..{na_max} (the A of the given splits)")
    if batch_size is not None and int(batch_size) < 1:
        raise UserError(f"--batch-size must be ≥ 1, got {batch_size}")
    lr = float(defaults.OPTIMIZERS["sgd"]["learning_rate"] if learning_rate is None else learning_rate)
    sizes = np.array([ns + a for a, _ in members])
    bs_k = {n if batch_size is None else min(int(batch_size), n) for n in sizes}
    if len(bs_k) > 1:
        raise UserError("full-batch training of different |A| at once needs equal |S ∪ A|; batch them by |A|")
    bs = bs_k.pop()
    batches = [math.ceil(n / bs) for n in sizes]
    # shapes depend only on the pool S ∪ A_max, the batch size and K: stacks of the same K share one compilation
    n_max, count = ns + na_max, len(members)

    x_fit = np.concatenate([splits.x_train, splits.x_attack[:n_max - ns]]).reshape(n_max, -1).astype(np.float32)
    y_fit = np.concatenate([splits.y_train, splits.y_attack[:n_max - ns]]).astype(np.float32)
    check_rows = ns + (n_max - ns if stop_on == "SA" else 0)
    x_rest = np.concatenate([splits.x_attack, splits.x_test]).reshape(na_max + len(splits.y_test), -1)
    tx, ty, tcheck, trest = (tf.constant(v) for v in (x_fit, y_fit, x_fit[:check_rows], x_rest.astype(np.float32)))
    y_all = np.concatenate([splits.y_train, splits.y_attack])

    init = [fcn.initial_weights(spec["input_shape"], spec["widths"], spec["sigma_w"], spec["sigma_b"], seed=s)
            for _, s in members]
    ws = stack(init)
    epoch_fn, logits_fn = _compiled("epoch"), _compiled("logits")
    # the networks visited: always all of them (XLA takes these indices and their number for compile-time
    # constants, measured: a 1.6 s recompilation per new value); the stopped ones get no steps or logits
    everyone = tf.constant(np.arange(count, dtype=np.int32))
    rngs = [np.random.default_rng(s) for _, s in members]
    results = [MemberResult(a, s, None, 0) for a, s in members]
    active = np.ones(count, bool)

    def snapshot(k, epoch, z_check, host):
        """Network k's record at this epoch: S (and A) logits from the stopping check, the rest computed."""
        from tfflat.training.loop import evaluate

        a = members[k][0]
        weights = unstack(host(), k)
        z_rest = (_eager_logits([weights], x_rest)[0] if epoch == 0 else
                  logits_fn(host_ws(), everyone, tf.constant(count), trest,
                            tf.constant(np.arange(count) == k, tf.int32)).numpy()[k])
        z_a = z_check[ns:ns + a] if stop_on == "SA" else z_rest[:a]
        z = np.concatenate([z_check[:ns], z_a, z_rest[na_max:]])
        sp = Splits(splits.x_train[:0], splits.y_train, splits.x_attack[:0], splits.y_attack[:a],
                    splits.x_test[:0], splits.y_test)
        rec = {"epoch": epoch, **evaluate(z, sp), "gradient_evaluations": epoch * batches[k],
               "seconds": results[k].seconds}
        return Snapshot(epoch, rec, weights, z)

    def visit(k, epoch, z_check, host):
        """The zero-error bookkeeping of ``train`` for network k after ``epoch``; True when it stops."""
        a, r = members[k][0], results[k]
        rows = np.r_[0:ns + a] if stop_on == "SA" else slice(0, ns)
        ok = bool(np.all((z_check[rows] >= 0) == (y_all[rows] == 1)))
        r.epochs = epoch
        if r.zero_error_epoch is None and ok:
            r.zero_error_epoch = epoch
        zero = r.zero_error_epoch
        if zero is not None and epoch - zero in overtrain:
            r.snapshots[epoch - zero] = r.final = snapshot(k, epoch, z_check, host)
        stop = (zero is not None and epoch >= zero + overtrain[-1]) or epoch >= max_epochs
        if stop and (r.final is None or r.final.epoch != epoch):
            r.final = snapshot(k, epoch, z_check, host)
        return stop

    # epoch 0: the initial weights, evaluated eagerly as train() evaluates its first record
    z = _eager_logits(init, x_fit[:check_rows])
    host_ws = lambda: ws                          # noqa: E731
    host0 = [w.numpy() for w in ws]
    for k in range(count):
        active[k] = not visit(k, 0, z[k], lambda: host0)
    t_last, epoch = time.perf_counter(), 0
    slots = np.full((count, math.ceil(n_max / bs) * bs), -1, np.int32)
    counts = np.zeros(count, np.int32)
    while active.any():
        epoch += 1
        slots.fill(-1)
        idx = np.flatnonzero(active).astype(np.int32)
        for k in idx:
            slots[k, :sizes[k]] = rngs[k].permutation(int(sizes[k]))
        counts[:] = np.where(active, batches, 0)
        ws, z = epoch_fn(ws, tf.constant(slots.reshape(count, -1, bs)), tf.constant(counts), everyone,
                         tf.constant(count), tx, ty, tf.constant(lr, tf.float32), tcheck)
        z = z.numpy()
        now = time.perf_counter()
        share, t_last = (now - t_last) / len(idx), now
        cache = []

        def host():
            if not cache:
                cache.append([v.numpy() for v in ws])
            return cache[0]

        for k in idx:
            results[k].seconds += share
            active[k] = not visit(k, epoch, z[k], host)
        if progress is not None:
            progress(epoch, int(active.sum()))
    return results


def stack(weights_list) -> tuple:
    """``get_weights()`` lists of K FCNs → the stacked tensors of :func:`sgd_epoch` (kernels (K, out, in))."""
    import tensorflow as tf

    return tuple(tf.constant(np.stack([np.asarray(w[i], np.float32).T if i % 2 == 0 else np.asarray(w[i], np.float32)
                                       for w in weights_list])) for i in range(len(weights_list[0])))


def unstack(arrays, k) -> list:
    """Network k of stacked numpy arrays, back in ``get_weights()`` layout."""
    return [np.ascontiguousarray(a[k].T) if i % 2 == 0 else a[k].copy() for i, a in enumerate(arrays)]


def sgd_epoch(ws, slots, counts, active, n_active, x, y, lr):
    """Plain SGD for one epoch of each active network of a stack; the traced body of every compiled epoch.

    Args (tensors): ``ws`` the stacked weights ``[W₁ᵀ (K, h₁, d), b₁ (K, h₁), …]`` (kernels (out, in));
    ``slots`` (K, B, bs)
    the rows of ``x``/``y`` of each minibatch (−1: padding); ``counts`` (K,) minibatches per network;
    ``active`` (K,) network indices, the first ``n_active`` of which are trained; ``lr`` the step.

    Networks are visited one at a time and each minibatch step is the same two-dimensional
    computation whatever K is (the loops' trip counts are run-time values), so a network's trajectory
    is the same bit for bit in a stack of any size, including the single-network trainer's K = 1.
    """
    import tensorflow as tf

    n_w = len(ws)

    def network(j, arrays):
        k = active[j]
        w = [a.read(k) for a in arrays]

        def step(b, *w):
            idx = slots[k, b]
            mask = tf.cast(idx >= 0, tf.float32)
            safe = tf.maximum(idx, 0)
            grads = _gradients(list(w), tf.gather(x, safe), tf.gather(y, safe), mask / tf.reduce_sum(mask))
            return (b + 1,) + tuple(v - g * lr for v, g in zip(w, grads))

        w = tf.while_loop(lambda b, *_: b < counts[k], step, (tf.constant(0),) + tuple(w))[1:]
        return j + 1, tuple(a.write(k, v) for a, v in zip(arrays, w))

    arrays = tuple(tf.TensorArray(tf.float32, size=ws[i].shape[0], element_shape=ws[i].shape[1:],
                                  clear_after_read=False).unstack(ws[i]) for i in range(n_w))
    _, arrays = tf.while_loop(lambda j, _: j < n_active, network, (tf.constant(0), arrays))
    return [a.stack() for a in arrays]


def _gradients(w, xb, yb, weight):
    """∇ of Σ_b weight_b · CE(f_w(x_b), y_b) for one FCN ``w = [W₁ᵀ (h₁, d), b₁, …]`` (kernels
    stored (out, in)), written out: the forward pass is features × examples, and the first layer's
    gradient is ∂/∂Z₁ times the minibatch (no input gradient)."""
    import tensorflow as tf

    pre, acts = [], [tf.transpose(xb)]
    for i in range(0, len(w), 2):
        pre.append(tf.matmul(w[i], acts[-1]) + w[i + 1][:, None])
        if i + 2 < len(w):
            acts.append(tf.nn.relu(pre[-1]))
    dz = (tf.sigmoid(pre[-1]) - yb[None]) * weight[None]             # ∂/∂logit, (1, bs)
    grads = []
    for i in range(len(w) - 2, -1, -2):
        grads = [tf.matmul(dz, xb) if i == 0 else tf.matmul(dz, acts[i // 2], transpose_b=True),
                 tf.reduce_sum(dz, 1)] + grads
        if i:
            dz = tf.matmul(w[i], dz, transpose_a=True) * tf.cast(pre[i // 2 - 1] > 0, tf.float32)
    return grads


def stacked_logits(ws, active, n_active, x, counts=None):
    """Logits (K, m) of the first ``n_active`` networks ``active`` of a stack on shared inputs x (m, d)
    (rows of the others, and with ``counts`` of those with ``counts[k] = 0``: 0). Row by row the same
    numbers for any m ≥ 2 and any K."""
    import tensorflow as tf

    k_all, m = ws[0].shape[0], tf.shape(x)[0]

    def network(j, out):
        k = active[j]
        if counts is None:
            return j + 1, out.write(k, logits([v[k] for v in ws], x))
        z = tf.cond(counts[k] > 0, lambda: logits([v[k] for v in ws], x), lambda: tf.zeros([m]))
        return j + 1, out.write(k, z)

    out = tf.TensorArray(tf.float32, size=k_all, element_shape=[None])
    out = out.unstack(tf.zeros([k_all, m]))
    _, out = tf.while_loop(lambda j, _: j < n_active, network, (tf.constant(0), out))
    return out.stack()


def logits(w, x):
    """Logits (m,) of one FCN ``w = [W₁ᵀ (h₁, d), b₁, …]`` on x (m, d)."""
    import tensorflow as tf

    h = x
    for i in range(0, len(w), 2):
        h = tf.matmul(h, w[i], transpose_b=True) + w[i + 1]
        if i + 2 < len(w):
            h = tf.nn.relu(h)
    return h[:, 0]


def _eager_logits(weights_list, x):
    """Logits (K, m) of each network, op by op like the eager Keras call of ``train``'s epoch 0."""
    import tensorflow as tf

    out = []
    for ws in weights_list:
        h = tf.constant(x)
        for i in range(0, len(ws), 2):
            h = tf.add(tf.matmul(h, ws[i]), ws[i + 1])
            if i + 2 < len(ws):
                h = tf.nn.relu(h)
        out.append(tf.reshape(h, [-1]).numpy())
    return np.stack(out)


def _compiled(kind):
    """The compiled stack epoch (with the stopping check's logits) or stack logits, traced per shape."""
    import tensorflow as tf

    if kind not in _CACHE:
        if kind == "epoch":
            def fn(ws, slots, counts, active, n_active, x, y, lr, x_check):
                ws = sgd_epoch(list(ws), slots, counts, active, n_active, x, y, lr)
                return tuple(ws), stacked_logits(ws, active, n_active, x_check, counts)
        else:
            def fn(ws, active, n_active, x, counts):
                return stacked_logits(list(ws), active, n_active, x, counts)
        _CACHE[kind] = tf.function(fn, jit_compile=True, autograph=False)
    return _CACHE[kind]


# ---- the single-network trainer's epoch (``Trainer`` for a plain FCN under plain SGD) ---------------

def plain_sgd(model, optimizer) -> bool:
    """Whether ``optimizer`` is plain SGD (constant rate, no momentum, decay, clipping or EMA) and
    ``model`` a plain ReLU FCN with one logit: the case :func:`sgd_epoch` computes."""
    import keras

    if type(optimizer) is not keras.optimizers.SGD or dense_weights(model) is None:
        return False
    cfg = optimizer.get_config()
    plain = dict(momentum=0.0, nesterov=False, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, use_ema=False, loss_scale_factor=None, gradient_accumulation_steps=None)
    return (all(cfg.get(k, v) in (v, 0) if v is None else cfg.get(k, v) == v for k, v in plain.items())
            and isinstance(cfg.get("learning_rate"), float))


def variable_epoch(variables, optimizer, x, y, x_eval, batch_size: int, batches: int):
    """``epoch(perm) -> logits on x_eval``: one compiled call running :func:`sgd_epoch` on the model's
    variables (a stack of one) in the order ``perm`` and assigning the result back."""
    import tensorflow as tf

    n = int(y.shape[0])
    pad = batches * batch_size - n
    x, x_eval = tf.reshape(x, [n, -1]), tf.reshape(x_eval, [int(x_eval.shape[0]), -1])

    def epoch(perm):
        ws = [tf.transpose(v)[None] if i % 2 == 0 else v[None] for i, v in enumerate(variables)]
        slots = tf.reshape(tf.concat([perm, tf.fill([pad], -1)], 0), [1, batches, batch_size])
        one = tf.constant([0])
        ws = sgd_epoch(ws, slots, tf.fill([1], batches), one, tf.size(one), x, y,
                       tf.cast(optimizer.learning_rate, tf.float32))
        for i, (v, w) in enumerate(zip(variables, ws)):
            v.assign(tf.transpose(w[0]) if i % 2 == 0 else w[0])
        return stacked_logits(ws, one, tf.size(one), x_eval)[0]

    return tf.function(epoch, jit_compile=True, autograph=False, input_signature=[tf.TensorSpec([n], tf.int32)])
