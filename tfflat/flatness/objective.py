"""The loss of SPEC §4 as a pure function of the weights, shared by sharpness and the Hessian.

L(w) = (1/|S|) Σ_{(x,y)∈S} CE(f_w(x), y), the mean sigmoid cross-entropy of
:func:`tfflat.training.sigmoid_ce`. The network is evaluated in **inference mode**
(``training=False``: BatchNorm uses its moving statistics, dropout is off) and through Keras'
``stateless_call`` with the weights passed as tensors. So a flatness measure perturbs w without
ever assigning the model's variables: the model is left exactly as it was.

w is the list of the model's *trainable* variables (kernels, biases and, for ResNet50, BatchNorm's
γ and β); BatchNorm's moving statistics are held fixed. Large |S| is processed in chunks of
``eval_batch`` examples (padded and masked to static shapes), summed inside the compiled graph.

Compiled functions are traced once per *architecture*, not per model: they take the weights as
arguments and call a template model of the same architecture, so measuring many runs of one
architecture (a sweep, or every epoch of a run) pays tracing and XLA compilation once.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from tfflat.errors import UserError

DEFAULT_EVAL_BATCH = 256          # examples per forward chunk for non-dense models (ResNet50)
_CACHE: OrderedDict = OrderedDict()
_CACHE_SIZE = 8


@dataclass
class Problem:
    """The loss on one data set at one point w₀, ready for the compiled functions.

    Attributes:
      template: a model with the architecture of the measured one (the one whose graph is traced).
      functions: the compiled functions of that architecture, by name (see :func:`compiled`).
      w0: the trainable weights at which everything is measured (tensors, a snapshot).
      state: the non-trainable variables (BatchNorm statistics), held fixed.
      x, y: the data (n, …) float32 and (n,) float32 labels 0/1.
      chunks: (xp, yp, mp): x, y padded to a multiple of ``chunk`` and the 0/1 mask.
      chunk: examples per forward pass.
      jit: XLA-compile (dense networks).
    """

    template: object
    functions: dict
    w0: list
    state: list
    x: object
    y: object
    chunks: tuple
    chunk: int
    jit: bool

    @property
    def n(self) -> int:
        return int(self.y.shape[0])

    @property
    def shapes(self) -> list:
        return [tuple(w.shape) for w in self.w0]

    @property
    def size(self) -> int:
        """Number of parameters p = dim w."""
        return sum(int(np.prod(s)) for s in self.shapes)

    @property
    def data(self) -> tuple:
        return (self.x, self.y) + tuple(self.chunks)

    def weights_numpy(self) -> np.ndarray:
        """w₀ as one float64 vector (the layout of :func:`flatten`)."""
        return np.concatenate([w.numpy().ravel() for w in self.w0]).astype(np.float64)


def check_data(x, y) -> tuple[np.ndarray, np.ndarray]:
    """``x`` float32 (n, …) and ``y`` float32 (n,) in {0, 1}, or a :class:`UserError`."""
    x = np.asarray(x, np.float32)
    y = np.asarray(y).reshape(-1)
    if len(y) == 0 or len(x) != len(y):
        raise UserError(f"need as many labels as inputs and at least one example, got {len(x)} inputs "
                        f"and {len(y)} labels")
    if not np.all((y == 0) | (y == 1)):
        raise UserError("labels must be 0 or 1 (one sigmoid logit)")
    if not np.all(np.isfinite(x)):
        raise UserError("inputs contain NaN or infinite values")
    return x, y.astype(np.float32)


def problem(model, x, y, eval_batch: int | None = None) -> Problem:
    """Snapshot ``model``'s weights and set up L on (x, y).

    Args:
      model: a built Keras model with one logit.
      x, y: inputs (n, …) and 0/1 labels (n,).
      eval_batch: examples per forward chunk (default: all of them for dense networks, 256 otherwise).
    """
    import tensorflow as tf

    from tfflat.training.loop import is_dense

    x, y = check_data(x, y)
    if not getattr(model, "built", False) or not model.trainable_variables:
        raise UserError("the model has no trainable weights (is it built?)")
    n, dense = len(y), is_dense(model)
    chunk = int(eval_batch) if eval_batch else (n if dense else DEFAULT_EVAL_BATCH)
    if chunk < 1:
        raise UserError(f"eval_batch must be ≥ 1, got {eval_batch}")
    chunk = min(chunk, n)
    pad = -n % chunk
    xp = np.concatenate([x, np.zeros((pad,) + x.shape[1:], np.float32)]) if pad else x
    yp = np.concatenate([y, np.zeros(pad, np.float32)])
    mp = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
    tx = tf.constant(x)
    tmpl, functions = _template(model)
    return Problem(
        template=tmpl, functions=functions,
        w0=[tf.constant(v.numpy()) for v in model.trainable_variables],
        state=[tf.constant(v.numpy()) for v in model.non_trainable_variables],
        x=tx, y=tf.constant(y),
        chunks=(tx if pad == 0 else tf.constant(xp), tf.constant(yp), tf.constant(mp)),
        chunk=chunk, jit=dense)


def _arch_key(model):
    shapes = tuple((tuple(v.shape), str(v.dtype)) for v in model.trainable_variables + model.non_trainable_variables)
    if type(model).__name__ in ("Functional", "Sequential"):
        try:
            return json.dumps(model.get_config(), sort_keys=True, default=str), shapes
        except Exception:       # an unserialisable custom layer: fall back to this very model
            pass
    return id(model), shapes


def _template(model):
    """(model with ``model``'s architecture, its compiled functions); ``model`` itself the first time."""
    key = _arch_key(model)
    if key not in _CACHE:
        _CACHE[key] = (model, {})
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    _CACHE.move_to_end(key)
    return _CACHE[key]


def compiled(prob: Problem, name: str, build):
    """The ``tf.function`` ``build(prob.template, prob.jit)``, built once per architecture."""
    if name not in prob.functions:
        prob.functions[name] = build(prob.template, prob.jit)
    return prob.functions[name]


def mean_loss(prob: Problem) -> float:
    """L(w₀), eagerly (no compilation), chunk by chunk."""
    xp, yp, mp = prob.chunks
    total = sum(float(loss_sum(prob.template, prob.w0, prob.state, xp[i:i + prob.chunk], yp[i:i + prob.chunk],
                               mp[i:i + prob.chunk])) for i in range(0, int(xp.shape[0]), prob.chunk))
    return total / prob.n


# ---- graph helpers: called inside tf.functions, with the template model closed over ----------------

def logits(template, ws, state, xb):
    """Inference-mode logits (n,) of the template architecture at weights ``ws``."""
    import tensorflow as tf

    out, _ = template.stateless_call(list(ws), list(state), xb, training=False)
    return tf.reshape(out, [-1])


def loss_sum(template, ws, state, xb, yb, mb):
    """Σ mask · CE over a chunk (divide by |S| for L)."""
    import tensorflow as tf

    from tfflat.training.loop import sigmoid_ce

    return tf.reduce_sum(sigmoid_ce(logits(template, ws, state, xb), yb) * mb)


def chunk_sum(part, xp, yp, mp, chunk: int):
    """Σ over chunks of ``part(xb, yb, mb)`` (a tensor or list of tensors), in one graph loop."""
    import tensorflow as tf

    nc = int(xp.shape[0]) // chunk
    if nc == 1:
        return part(xp, yp, mp)

    def piece(c):
        start = c * chunk
        return part(xp[start:start + chunk], yp[start:start + chunk], mp[start:start + chunk])

    acc = piece(0)
    for c in tf.range(1, nc):
        acc = tf.nest.map_structure(tf.add, acc, piece(c))
    return acc


def flatten(tensors):
    import tensorflow as tf

    return tf.concat([tf.reshape(t, [-1]) for t in tensors], 0)


def unflatten(vector, like):
    import tensorflow as tf

    sizes = [math.prod(w.shape) for w in like]
    return [tf.reshape(p, w.shape) for p, w in zip(tf.split(vector, sizes), like)]
