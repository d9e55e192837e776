"""The loss of SPEC §4 as a pure function of the weights, shared by sharpness and the Hessian.

L(w) = (1/|S|) Σ_{(x,y)∈S} CE(f_w(x), y), the mean cross-entropy of the model's head
(:mod:`tfflat.models.heads`: sigmoid CE of one logit — for a final sigmoid its pre-activation, for
two outputs z₁ − z₀ — or the softmax CE of K logits), the loss passed as a parameter. The network
(with any final sigmoid/softmax bypassed) is evaluated in **inference mode**
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
      template: a :class:`Template`: a model with the architecture of the measured one (the one whose
        graph is traced) and the head whose loss is measured.
      functions: the compiled functions of that architecture, by name (see :func:`compiled`).
      w0: the trainable weights at which everything is measured (tensors, a snapshot).
      state: the non-trainable variables (BatchNorm statistics), held fixed.
      x, y: the data (n, …) float32 and (n,) float32 class indices (0/1 for binary heads).
      chunks: (xp, yp, mp): x, y padded to a multiple of ``chunk`` and the 0/1 mask.
      chunk: examples per forward pass.
      jit: XLA-compile (dense networks).
      head: the model's :class:`~tfflat.models.heads.Head` (the template's is its linear form).
      net: the network whose trainable variables are w₀ (the model, or the model with its final
        sigmoid/softmax bypassed: :func:`tfflat.models.heads.logit_model`).
    """

    template: "Template"
    functions: dict
    w0: list
    state: list
    x: object
    y: object
    chunks: tuple
    chunk: int
    jit: bool
    head: object = None
    net: object = None
    strategy: object = None        # a tf.distribute strategy of several replicas (tfflat.flatness.replicas), or None

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


@dataclass(frozen=True)
class Template:
    """The model whose graph the compiled functions trace (one per architecture) and the head whose
    loss they measure."""

    model: object
    head: object

    @property
    def kwargs(self) -> dict:
        """``training=False`` where the model's ``call`` takes it (inner layers default to inference)."""
        return {"training": False} if takes_training(self.model) else {}


def takes_training(model) -> bool:
    import inspect

    try:
        params = inspect.signature(model.call).parameters
    except (TypeError, ValueError):
        return True
    return "training" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def check_data(x, y, head=None, model=None) -> tuple[np.ndarray, np.ndarray]:
    """``x`` float32 (n, …) and ``y`` float32 (n,) class indices valid for ``head``, or a :class:`UserError`.

    ``x``, ``y`` may be numpy arrays, tensors or a ``tf.data.Dataset`` of (x, y) (then ``y`` is None)."""
    from tfflat.data.arrays import as_arrays, check_inputs
    from tfflat.models.heads import LOGIT

    x, y = as_arrays(x, y, model=model)
    if y is None:
        raise UserError("`y` is missing: give the labels, or a tf.data.Dataset of (x, y) pairs as `x`")
    if len(y) == 0 or len(x) != len(y):
        raise UserError(f"need as many labels as inputs and at least one example, got {len(x)} inputs "
                        f"and {len(y)} labels")
    check_inputs(x, model)
    return x, (head or LOGIT).check_labels(y)


def problem(model, x, y, eval_batch: int | None = None, head=None, strategy=None) -> Problem:
    """Snapshot ``model``'s weights and set up L on (x, y).

    Args:
      model: a built Keras classifier (see :mod:`tfflat.models.heads`).
      x, y: inputs (n, …) and labels (n,): numpy arrays, tensors, or a ``tf.data.Dataset`` of (x, y) as
        ``x`` with ``y=None``.
      eval_batch: examples per forward chunk (default: all of them for dense networks, 256 otherwise).
      head: ``None`` (read from the model), a name (``logit``, ``sigmoid``, ``logits``, ``softmax``) or a
        :class:`~tfflat.models.heads.Head`.
      strategy: a ``tf.distribute`` strategy or device spec (:mod:`tfflat.devices`); with several replicas
        the measures' sums over S are split over the devices (:mod:`tfflat.flatness.replicas`).
    """
    import tensorflow as tf

    from tfflat.data.arrays import as_arrays, check_inputs
    from tfflat.models import heads

    heads.refuse_savedmodel(model, "whose weights tfflat cannot perturb")
    x, y = as_arrays(x, y, model=model)
    check_inputs(x, model)
    head, net = heads.resolve(model, head, x)
    x, y = check_data(x, y, head, model)
    if not getattr(net, "built", False) or not net.trainable_variables:
        raise UserError("the model has no trainable weights (is it built?)")
    n, dense = len(y), heads.is_dense(net)
    chunk = int(eval_batch) if eval_batch else (n if dense else DEFAULT_EVAL_BATCH)
    if chunk < 1:
        raise UserError(f"`eval_batch` must be ≥ 1, got {eval_batch}")
    chunk = min(chunk, n)
    pad = -n % chunk
    xp = np.concatenate([x, np.zeros((pad,) + x.shape[1:], np.float32)]) if pad else x
    yp = np.concatenate([y, np.zeros(pad, np.float32)])
    mp = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
    tx = tf.constant(x)
    tmpl, functions = _template(net, head.linear())
    from tfflat import devices

    strategy = devices.strategy(strategy)
    return Problem(
        template=tmpl, functions=functions,
        w0=[tf.constant(v.numpy()) for v in net.trainable_variables],
        state=[tf.constant(v.numpy()) for v in net.non_trainable_variables],
        x=tx, y=tf.constant(y),
        chunks=(tx if pad == 0 else tf.constant(xp), tf.constant(yp), tf.constant(mp)),
        chunk=chunk, jit=dense, head=head, net=net, strategy=None if devices.is_default(strategy) else strategy)


def _arch_key(model):
    shapes = tuple((tuple(v.shape), str(v.dtype)) for v in model.trainable_variables + model.non_trainable_variables)
    if type(model).__name__ in ("Functional", "Sequential"):
        try:
            return json.dumps(model.get_config(), sort_keys=True, default=str), shapes
        except Exception:       # an unserialisable custom layer: fall back to this very model
            pass
    return id(model), shapes


def _template(model, head):
    """(:class:`Template` of ``model``'s architecture and ``head``, its compiled functions); ``model``
    itself the first time."""
    key = (_arch_key(model), head.key)
    if key not in _CACHE:
        _CACHE[key] = (Template(model, head), {})
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
    """Inference-mode pre-activation outputs (n, K) of the template architecture at weights ``ws``."""
    out, _ = template.model.stateless_call(list(ws), list(state), xb, **template.kwargs)
    return out


def loss_sum(template, ws, state, xb, yb, mb):
    """Σ mask · CE (the template's head) over a chunk (divide by |S| for L)."""
    import tensorflow as tf

    return tf.reduce_sum(template.head.loss(logits(template, ws, state, xb), yb) * mb)


def value_grad_part(template, w0, state, d):
    """``part(xb, yb, mb) -> [Σ loss, ∂/∂Δ …]`` at w0 + Δ (``d``: Δ per weight) over one chunk, for
    :func:`chunk_sum`: the sharpness ascent's loss and gradient."""
    import tensorflow as tf

    def part(xb, yb, mb):
        with tf.GradientTape() as tape:
            tape.watch(d)
            total = loss_sum(template, [w + dw for w, dw in zip(w0, d)], state, xb, yb, mb)
        return [total] + tape.gradient(total, d, unconnected_gradients=tf.UnconnectedGradients.ZERO)

    return part


def minibatch_grad(template, w0, state, d, x, y, idx, mean: bool = True):
    """∂/∂Δ of the loss at w0 + Δ (``d``) over the examples ``idx`` of (x, y) (−1: padding, left out):
    the mean (``mean``) or the sum (to be reduced over replicas first) — one step of the sharpness ascent."""
    import tensorflow as tf

    mask = tf.cast(idx >= 0, tf.float32)
    safe = tf.maximum(idx, 0)
    xb, yb = tf.gather(x, safe), tf.gather(y, safe)
    with tf.GradientTape() as tape:
        tape.watch(d)
        total = loss_sum(template, [w + dw for w, dw in zip(w0, d)], state, xb, yb, mask)
        if mean:
            total = total / tf.reduce_sum(mask)
    return tape.gradient(total, d, unconnected_gradients=tf.UnconnectedGradients.ZERO)


def hvp_part(template, w0, state, tangents):
    """``part(xb, yb, mb) -> [(∇² Σ loss) v …]`` at w0 over one chunk (``tangents``: v per weight),
    forward-over-reverse, for :func:`chunk_sum`."""
    import tensorflow as tf

    def part(xb, yb, mb):
        with tf.autodiff.ForwardAccumulator(w0, tangents) as acc:
            with tf.GradientTape() as tape:
                tape.watch(w0)
                total = loss_sum(template, w0, state, xb, yb, mb)
            grads = tape.gradient(total, w0, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return acc.jvp(grads, unconnected_gradients=tf.UnconnectedGradients.ZERO)

    return part


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
