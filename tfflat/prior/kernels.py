"""Gaussian-process kernels of networks at initialisation (SPEC §5, App. D): the analytic arc-cosine
NNGP kernel of a ReLU FCN and the Monte-Carlo empirical kernel of eq. (7) for any Keras model.

Both return float64 ``(n, n)`` numpy arrays, exactly symmetric, computed in row blocks so that the
working memory beyond the result is O(block · n).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from tfflat import defaults
from tfflat.errors import UserError

BLOCK = 2048          # rows per block (analytic kernel)
LOGIT_LAYER = "logit"


def _flat(x) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim < 1 or len(x) == 0:
        raise UserError(f"need at least one input to compute a kernel, got an array of shape {x.shape}")
    x = x.reshape(len(x), -1).astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise UserError("the inputs contain NaN or infinite values")
    return x


def _mirror_upper(k: np.ndarray, block: int, from_lower: bool = False) -> None:
    """Copy the upper block triangle onto the lower one (or the lower onto the upper) in place:
    exact symmetry, no n×n temporary."""
    n = len(k)
    for i in range(0, n, block):
        for j in range(i + block, n, block):
            if from_lower:
                k[i:i + block, j:j + block] = k[j:j + block, i:i + block].T
            else:
                k[j:j + block, i:i + block] = k[i:i + block, j:j + block].T
        d = k[i:i + block, i:i + block]
        d[...] = np.tril(d) + np.tril(d, -1).T if from_lower else np.triu(d) + np.triu(d, 1).T


def _arccos_block_fn():
    import tensorflow as tf

    vec, mat, scalar = (tf.TensorSpec([None], tf.float64), tf.TensorSpec([None, None], tf.float64),
                        tf.TensorSpec([], tf.float64))

    @tf.function(input_signature=[mat, mat, vec, vec, tf.TensorSpec([], tf.int32), scalar, scalar])
    def block(xb, x, qb0, q0, depth, sigma_w2, sigma_b2):
        d = tf.cast(tf.shape(x)[1], tf.float64)
        k = sigma_b2 + sigma_w2 * tf.matmul(xb, x, transpose_b=True) / d        # K⁰
        qb, q = qb0, q0
        for _ in tf.range(depth):
            norm = tf.sqrt(qb[:, None] * q[None, :])
            c = tf.clip_by_value(k / norm, -1.0, 1.0)
            theta = tf.acos(c)
            k = sigma_b2 + sigma_w2 / (2 * math.pi) * norm * (tf.sqrt(1.0 - c * c) + (math.pi - theta) * c)
            qb, q = sigma_b2 + 0.5 * sigma_w2 * qb, sigma_b2 + 0.5 * sigma_w2 * q
        return k

    return block


_BLOCK_FN = None


def nngp_kernel(x, depth: int, sigma_w: float, sigma_b: float, block: int = BLOCK) -> np.ndarray:
    """The NNGP kernel of a ReLU FCN with ``depth`` hidden layers (Cho & Saul 2009; Lee et al. 2017).

    K⁰(x,x') = σb² + σw² x·x'/d, then for l = 1..depth
    Kˡ = σb² + σw²/(2π) √(Kˡ⁻¹(x,x) Kˡ⁻¹(x',x')) (sin θ + (π−θ) cos θ), θ = arccos of the correlation.
    This is the covariance of the logit of :func:`tfflat.models.fcn.fcn` at initialisation
    (W ~ N(0, σw²/fan_in), b ~ N(0, σb²)) in the infinite-width limit.

    Args:
      x: inputs, shape (n, ...) (flattened to (n, d)).
      depth: number of hidden layers (``len(widths)``), ≥ 0.
      sigma_w, sigma_b: the initialisation's weight and bias scales.
      block: rows computed per compiled call.
    Returns:
      float64 array (n, n), exactly symmetric.
    """
    global _BLOCK_FN
    import tensorflow as tf

    if int(depth) != depth or depth < 0:
        raise UserError(f"depth must be a non-negative integer, got {depth}")
    if not (sigma_w > 0 and sigma_b >= 0 and math.isfinite(sigma_w) and math.isfinite(sigma_b)):
        raise UserError(f"need σw > 0 and σb ≥ 0, got σw = {sigma_w}, σb = {sigma_b}")
    x = _flat(x)
    n, d = x.shape
    sw2, sb2 = float(sigma_w) ** 2, float(sigma_b) ** 2
    q0 = sb2 + sw2 * np.einsum("ij,ij->i", x, x) / d
    if np.any(q0 <= 0):
        raise UserError("an all-zero input with σb = 0 has zero prior variance; use σb > 0")
    _BLOCK_FN = _BLOCK_FN or _arccos_block_fn()
    xt, qt = tf.constant(x), tf.constant(q0)
    args = (tf.constant(int(depth)), tf.constant(sw2, tf.float64), tf.constant(sb2, tf.float64))
    out = np.empty((n, n))
    block = max(1, int(block))
    for i in range(0, n, block):
        j = min(n, i + block)
        # only the upper block triangle is computed; the rest is mirrored
        out[i:j, i:] = _BLOCK_FN(xt[i:j], xt[i:], qt[i:j], qt[i:], *args).numpy()
    _mirror_upper(out, block)
    return out


def feature_model(model):
    """The sub-model mapping inputs to the last hidden layer: the input of the layer named ``logit``."""
    import keras

    try:
        head = model.get_layer(LOGIT_LAYER)
    except ValueError:
        raise UserError(f"model {model.name!r} has no layer named {LOGIT_LAYER!r}; the empirical kernel needs "
                        "the final Dense(1) layer to be named 'logit'") from None
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return keras.Model(inputs, head.input)


def _walk(layer):
    yield layer
    for sub in getattr(layer, "layers", None) or ():
        if sub is not layer:
            yield from _walk(sub)


def _initialised_variables(model) -> list:
    """(variable, initializer) for every weight whose layer keeps its initializer as ``<name>_initializer``."""
    import keras

    found, seen = [], set()
    for layer in _walk(model):
        for attr, init in vars(layer).items():
            if attr.endswith("_initializer") and isinstance(init, keras.initializers.Initializer):
                var = getattr(layer, attr[:-len("_initializer")], None)
                if isinstance(var, keras.Variable) and id(var) not in seen:
                    seen.add(id(var))
                    found.append((var, init))
    return found


def redraw(model, seed: int) -> bool:
    """Redraw every weight of a Keras model in place from its layers' own initializers, with new seeds.

    Returns False (and changes nothing) unless every weight of the model has a known initializer; then
    build a fresh model instead. Much cheaper than rebuilding a deep network (e.g. ResNet50) per sample.
    """
    pairs = _initialised_variables(model)
    if len(pairs) != len(model.weights):
        return False
    rng = np.random.default_rng(seed)
    for var, init in pairs:
        config = init.get_config()
        if "seed" in config:
            config["seed"] = int(rng.integers(2 ** 31 - 1))
            init = type(init).from_config(config)
        var.assign(init(tuple(var.shape), dtype=var.dtype))
    return True


def empirical_kernel(x, model_fn: Callable[[int], object], samples: int | None = None, *,
                     sigma_w: float, sigma_b: float, seed: int = 0, batch_size: int = 256,
                     reinit: Callable[[object, int], None] | None = None,
                     progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Monte-Carlo NNGP kernel of eq. (7) from ``samples`` random initialisations of a network.

    Σ(x_i, x_j) = σw²/(M n) Σ_m Σ_c h_c⁽ᵐ⁾(x_i) h_c⁽ᵐ⁾(x_j) + σb², with h⁽ᵐ⁾ the last hidden layer
    (the input of the ``logit`` layer, inference mode) of the m-th initialisation and n its width.

    Args:
      x: inputs, shape (n, ...) in the model's input shape.
      model_fn: ``model_fn(seed)`` → a freshly initialised Keras model (e.g.
        ``functools.partial(tfflat.models.build, spec)``); all calls must give the same architecture.
      samples: M, default ``EMPIRICAL_KERNEL_FRACTION · n`` (paper: 0.1 (|S|+|E|)), at least 1.
      sigma_w, sigma_b: the scales of the last (fully connected) layer.
      seed: sample m uses seed + m (the first model is ``model_fn(seed)``).
      batch_size: inputs per forward pass.
      reinit: ``reinit(model, seed)`` that redraws a model's weights in place (e.g.
        :func:`tfflat.models.fcn.reinitialize`); default :func:`redraw` (the layers' own initializers,
        new seeds) when it covers every weight, else a model is built per sample.
      progress: ``progress(done, total)`` after every initialisation.
    Returns:
      float64 array (n, n), exactly symmetric.
    """
    import tensorflow as tf
    from scipy.linalg import blas

    x = np.asarray(x, np.float32)
    if x.ndim < 1 or len(x) == 0:
        raise UserError(f"need at least one input to compute a kernel, got an array of shape {x.shape}")
    n = len(x)
    m_total = max(1, round(defaults.EMPIRICAL_KERNEL_FRACTION * n)) if samples is None else int(samples)
    if m_total < 1:
        raise UserError(f"the empirical kernel needs at least one sample, got {samples}")
    base = model_fn(seed)
    feats = feature_model(base)
    if reinit is None and len(_initialised_variables(base)) == len(base.weights):
        reinit = redraw
    fn = tf.function(lambda xb: feats(xb, training=False), reduce_retracing=True)
    bs = max(1, int(batch_size))
    acc = np.zeros((n, n))
    group, width = [], None
    for m in range(m_total):
        if m > 0 and reinit is not None:
            reinit(base, seed + m)
        elif m > 0:   # same variables, new values: the compiled feature function is reused
            fresh = model_fn(seed + m)
            base.set_weights(fresh.get_weights())
            del fresh
        h = np.concatenate([np.asarray(fn(tf.constant(x[i:i + bs]))).reshape(len(x[i:i + bs]), -1)
                            for i in range(0, n, bs)]).astype(np.float64)
        width = h.shape[1]
        group.append(h)
        if sum(g.shape[1] for g in group) >= 512 or m == m_total - 1:
            # acc += hg hgᵀ on acc's lower triangle (acc.T is the Fortran view; its upper = acc's lower)
            hg = np.asfortranarray(np.concatenate(group, axis=1))
            out = blas.dsyrk(1.0, hg, beta=1.0, c=acc.T, trans=0, lower=0, overwrite_c=1)
            if not np.shares_memory(out, acc):
                acc.T[...] = out
            group = []
        if progress:
            progress(m + 1, m_total)
    _mirror_upper(acc, BLOCK, from_lower=True)
    acc *= float(sigma_w) ** 2 / (m_total * width)
    acc += float(sigma_b) ** 2
    return acc
