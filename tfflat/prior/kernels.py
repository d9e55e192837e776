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

    @tf.function(input_signature=[mat, mat, vec, vec, tf.TensorSpec([], tf.int32), vec, vec])
    def block(xb, x, qb0, q0, depth, sigma_w2, sigma_b2):
        d = tf.cast(tf.shape(x)[1], tf.float64)
        k = sigma_b2[0] + sigma_w2[0] * tf.matmul(xb, x, transpose_b=True) / d        # K⁰
        qb, q = qb0, q0
        for l in tf.range(1, depth + 1):
            sw2, sb2 = sigma_w2[l], sigma_b2[l]
            norm = tf.sqrt(qb[:, None] * q[None, :])
            c = tf.clip_by_value(k / norm, -1.0, 1.0)
            theta = tf.acos(c)
            k = sb2 + sw2 / (2 * math.pi) * norm * (tf.sqrt(1.0 - c * c) + (math.pi - theta) * c)
            qb, q = sb2 + 0.5 * sw2 * qb, sb2 + 0.5 * sw2 * q
        return k

    return block


_BLOCK_FN = None


def _per_layer(value, depth: int, name: str) -> np.ndarray:
    v = np.asarray(value, np.float64).reshape(-1)
    if v.size == 1:
        v = np.full(depth + 1, v[0])
    if v.size != depth + 1:
        raise UserError(f"`{name}` needs one value or one per layer ({depth + 1} for depth {depth}), got {v.size}")
    return v


def nngp_kernel(x, depth: int, sigma_w, sigma_b, block: int = BLOCK) -> np.ndarray:
    """The NNGP kernel of a ReLU FCN with ``depth`` hidden layers (Cho & Saul 2009; Lee et al. 2017).

    K⁰(x,x') = σb₀² + σw₀² x·x'/d, then for l = 1..depth
    Kˡ = σbₗ² + σwₗ²/(2π) √(Kˡ⁻¹(x,x) Kˡ⁻¹(x',x')) (sin θ + (π−θ) cos θ), θ = arccos of the correlation.
    This is the covariance of the logit of :func:`tfflat.models.fcn.fcn` at initialisation
    (W ~ N(0, σw²/fan_in), b ~ N(0, σb²)) in the infinite-width limit — for any i.i.d. zero-mean
    initialisation of those variances (the limit depends on the variances only).

    Args:
      x: inputs, shape (n, ...) (flattened to (n, d)).
      depth: number of hidden layers (``len(widths)``), ≥ 0.
      sigma_w, sigma_b: the initialisation's weight and bias scales: one value for every layer, or
        ``depth + 1`` values (layer 0 the first hidden layer, the last the readout).
      block: rows computed per compiled call.
    Returns:
      float64 array (n, n), exactly symmetric.
    """
    global _BLOCK_FN
    import tensorflow as tf

    if int(depth) != depth or depth < 0:
        raise UserError(f"`depth` must be a non-negative integer, got {depth}")
    sw, sb = _per_layer(sigma_w, int(depth), "sigma_w"), _per_layer(sigma_b, int(depth), "sigma_b")
    if not (np.all(sw > 0) and np.all(sb >= 0) and np.all(np.isfinite(sw)) and np.all(np.isfinite(sb))):
        raise UserError(f"need σw > 0 and σb ≥ 0, got σw = {sigma_w}, σb = {sigma_b}")
    x = _flat(x)
    n, d = x.shape
    sw2, sb2 = sw ** 2, sb ** 2
    q0 = sb2[0] + sw2[0] * np.einsum("ij,ij->i", x, x) / d
    if np.any(q0 <= 0):
        raise UserError("an all-zero input with σb = 0 has zero prior variance; use σb > 0")
    _BLOCK_FN = _BLOCK_FN or _arccos_block_fn()
    xt, qt = tf.constant(x), tf.constant(q0)
    args = (tf.constant(int(depth)), tf.constant(sw2), tf.constant(sb2))
    out = np.empty((n, n))
    block = max(1, int(block))
    for i in range(0, n, block):
        j = min(n, i + block)
        # only the upper block triangle is computed; the rest is mirrored
        out[i:j, i:] = _BLOCK_FN(xt[i:j], xt[i:], qt[i:j], qt[i:], *args).numpy()
    _mirror_upper(out, block)
    return out


# ---- reading a Keras model: its layers' initialisers, a ReLU FCN, the features of eq. (7) -------------

TRUNCATED_NORMAL_STD = 0.87962566103423978    # std of N(0, 1) truncated to [−2, 2] (Keras' TruncatedNormal)


def init_variance(init, shape) -> float | None:
    """The variance of each entry a Keras initializer draws for a weight of ``shape``, when it draws
    them i.i.d. with mean zero (RandomNormal, TruncatedNormal, RandomUniform, VarianceScaling and its
    Glorot/He/Lecun forms, Zeros); None otherwise (Orthogonal, Identity, Ones, non-zero means)."""
    import keras

    inits = keras.initializers
    if isinstance(init, inits.Zeros):
        return 0.0
    if isinstance(init, inits.Constant):
        return 0.0 if np.all(np.asarray(init.value) == 0) else None
    if isinstance(init, inits.RandomNormal):
        return float(init.stddev) ** 2 if float(init.mean) == 0 else None
    if isinstance(init, inits.TruncatedNormal):
        return (TRUNCATED_NORMAL_STD * float(init.stddev)) ** 2 if float(init.mean) == 0 else None
    if isinstance(init, inits.RandomUniform):
        lo, hi = float(init.minval), float(init.maxval)
        return (hi - lo) ** 2 / 12.0 if lo == -hi else None
    if isinstance(init, inits.VarianceScaling):
        fan_in, fan_out = _fans(init, tuple(shape))
        n = {"fan_in": fan_in, "fan_out": fan_out}.get(init.mode, (fan_in + fan_out) / 2.0)
        return float(init.scale) / max(1.0, n)
    return None


def _fans(init, shape):
    try:
        from keras.src.initializers.random_initializers import compute_fans
    except ImportError:                                    # pragma: no cover - Keras moved it
        return (shape[-2] if len(shape) > 1 else shape[0]), shape[-1]
    kwargs = {k: getattr(init, k) for k in ("input_axes", "output_axes") if getattr(init, k, None) is not None}
    return compute_fans(shape, **kwargs)


def dense_sigmas(layer) -> tuple[float | None, float | None]:
    """(σw, σb) of a Dense layer's initialisers: W ~ (0, σw²/fan_in) i.i.d., b ~ (0, σb²); None where unreadable."""
    var_w = init_variance(layer.kernel_initializer, layer.kernel.shape)
    var_b = init_variance(layer.bias_initializer, layer.bias.shape) if layer.use_bias else 0.0
    fan_in = int(layer.kernel.shape[0])
    return (None if var_w is None else math.sqrt(var_w * fan_in)), (None if var_b is None else math.sqrt(var_b))


def fcn_structure(model) -> tuple[dict | None, str]:
    """A plain ReLU FCN's (depth, per-layer σw, σb) read from its layers, or (None, why it is not one).

    Plain: a functional or Sequential chain of an optional Flatten, Dense-ReLU layers and a Dense output
    (Dropout is allowed: it is the identity in inference mode), every weight initialised i.i.d. with
    zero mean (see :func:`init_variance`).
    """
    import keras

    from tfflat.data.arrays import example_shape
    from tfflat.models.heads import is_graph

    if not is_graph(model):
        return None, f"{type(model).__name__} model {model.name!r} is not a functional or Sequential model"
    layers = [l for l in model.layers if not isinstance(l, keras.layers.InputLayer)]
    dense = [l for l in layers if isinstance(l, keras.layers.Dense)]
    if not dense:
        return None, f"model {model.name!r} has no Dense layer"
    for prev, layer in zip(layers, layers[1:]):
        nodes = layer._inbound_nodes
        src = nodes[0].input_tensors if len(nodes) == 1 else ()
        if len(src) != 1 or src[0]._keras_history[0] is not prev:
            return None, f"model {model.name!r} is not a chain of layers (layer {layer.name!r})"
    for i, layer in enumerate(layers):
        if isinstance(layer, keras.layers.Flatten) and i == 0 or isinstance(layer, keras.layers.Dropout):
            continue
        if not isinstance(layer, keras.layers.Dense):
            return None, f"model {model.name!r} has a {type(layer).__name__} layer ({layer.name!r})"
    if layers[-1] is not dense[-1]:
        return None, f"model {model.name!r} does not end in its Dense layer"
    if not isinstance(layers[0], keras.layers.Flatten) and len(example_shape(model) or ()) != 1:
        return None, f"model {model.name!r} applies Dense layers to unflattened inputs"
    for layer in dense[:-1]:
        if layer.activation is not keras.activations.relu:
            name = getattr(layer.activation, "__name__", layer.activation)
            return None, f"hidden layer {layer.name!r} of model {model.name!r} has activation {name!r}, not ReLU"
    sigma_w, sigma_b = [], []
    for layer in dense:
        sw, sb = dense_sigmas(layer)
        if sw is None or sb is None:
            what = layer.kernel_initializer if sw is None else layer.bias_initializer
            return None, (f"layer {layer.name!r} of model {model.name!r} is initialised by {type(what).__name__}, "
                          "which has no i.i.d. variance")
        sigma_w.append(sw)
        sigma_b.append(sb)
    return {"depth": len(dense) - 1, "sigma_w": sigma_w, "sigma_b": sigma_b}, ""


def readout(model):
    """The last Dense layer: the readout h ↦ logit of eq. (7) (for a subclassed model, the last Dense
    it assigns in ``__init__``)."""
    import keras

    dense = [l for l in model.layers if isinstance(l, keras.layers.Dense)]
    if not dense:
        raise UserError(f"model {model.name!r} has no Dense layer at its top level; pass `feature_layer` (the "
                        "layer whose output is the last hidden layer), `sigma_w` and `sigma_b`")
    return dense[-1]


def readout_sigmas(model, sigma_w=None, sigma_b=None) -> tuple[float, float]:
    """(σw, σb) of eq. (7): those given, else read from the readout layer's initialisers."""
    if sigma_w is not None and sigma_b is not None:
        return float(sigma_w), float(sigma_b)
    layer = readout(model)
    sw, sb = dense_sigmas(layer)
    sw = sw if sigma_w is None else float(sigma_w)
    sb = sb if sigma_b is None else float(sigma_b)
    if sw is None or sb is None:
        which = "kernel_initializer" if sw is None else "bias_initializer"
        init = getattr(layer, which)
        raise UserError(f"cannot read the prior's scales from the readout layer {layer.name!r} of model "
                        f"{model.name!r} ({which} is {type(init).__name__}, which has no i.i.d. variance): pass "
                        "`sigma_w` and `sigma_b`, the scales of the Gaussian prior over that layer, W ~ N(0, σw²/width), "
                        "b ~ N(0, σb²) — the initialisation you mean to measure the prior of (the paper: σw = √2, σb = 1 "
                        "for images)")
    return sw, sb


def feature_model(model, feature_layer=None):
    """The functional sub-model mapping inputs to the features h of eq. (7): the output of
    ``feature_layer`` (a layer or its name), by default the input of the last Dense layer."""
    import keras

    from tfflat.models.heads import is_graph

    if not is_graph(model):
        raise UserError(f"model {model.name!r} is subclassed: it has no layer graph to cut at a feature layer")
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    if feature_layer is not None:
        try:
            layer = model.get_layer(getattr(feature_layer, "name", feature_layer))
        except ValueError:
            names = ", ".join(l.name for l in model.layers)
            raise UserError(f"model {model.name!r} has no layer {feature_layer!r} (`feature_layer`); it has "
                            f"{names}") from None
        return keras.Model(inputs, layer.output)
    head = readout(model)
    try:
        return keras.Model(inputs, head.input)
    except (AttributeError, ValueError):
        raise UserError(f"the last Dense layer {head.name!r} of model {model.name!r} is used more than once; pass "
                        "`feature_layer`") from None


def _initialised_variables(model) -> list:
    """(variable, initializer) for every weight whose layer keeps its initializer as ``<name>_initializer``."""
    import keras

    from tfflat.models.heads import walk

    found, seen = [], set()
    for layer in walk(model):
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


def private_copy(model, x=None):
    """A copy of ``model`` with new variables holding the same values (the caller may redraw them)."""
    import keras

    try:
        clone = keras.models.clone_model(model)
        if not clone.built and x is not None:
            clone(np.asarray(x[:1], np.float32), training=False)
        clone.set_weights(model.get_weights())
    except Exception as err:  # noqa: BLE001 - get_config / from_config / build of custom layers
        raise UserError(f"cannot copy model {model.name!r} to draw its random initialisations ({type(err).__name__}: "
                        f"{str(err).strip().splitlines()[0] if str(err).strip() else ''}); give the empirical kernel a "
                        "function seed -> new model instead, or give the model's classes a get_config") from None
    return clone


def _features_fn(model, feature_layer=None):
    """xb ↦ h(xb) (inference mode), the features of eq. (7) of ``model`` (a private copy: for a
    subclassed model the readout layer's call is wrapped to record its input)."""
    import tensorflow as tf

    from tfflat.models.heads import is_graph

    if is_graph(model):
        feats = feature_model(model, feature_layer)
        return tf.function(lambda xb: feats(xb, training=False), reduce_retracing=True)
    if feature_layer is not None:
        try:
            layer, record = model.get_layer(feature_layer), "output"
        except ValueError:
            raise UserError(f"model {model.name!r} has no layer {feature_layer!r} (`feature_layer`)") from None
    else:
        layer, record = readout(model), "input"
    box, call = [], layer.call

    def recording(inputs, *args, **kwargs):
        out = call(inputs, *args, **kwargs)
        box.append(inputs if record == "input" else out)
        return out

    layer.call = recording           # on the private copy only

    @tf.function(reduce_retracing=True)
    def fn(xb):
        box.clear()
        model(xb, training=False)
        return box[-1]

    return fn


INITS = ("model", "he")                    # how each sample of the empirical kernel is drawn
BATCHNORM_MODES = ("inference", "batch")   # which statistics BatchNorm uses while features are sampled


def he_redraw(model, seed: int) -> None:
    """Redraw ``model`` in place as the authors' ``he_init`` does for their ResNet50 kernel
    (``ResNet50/empirical_kernel.py``: ``torch.nn.init.kaiming_normal_(mode="fan_in",
    nonlinearity="relu")`` on every convolution and linear layer, fresh BatchNorm):

    * every Conv/Dense kernel ~ N(0, 2 / fan_in), untruncated (fan_in = receptive field × input channels);
    * every bias of those layers 0 (the authors' convolutions have none; Keras' ResNet50 ones do, and a
      zero bias is the same function);
    * BatchNorm γ = 1, β = 0, moving mean 0, moving variance 1 — in inference mode the identity up to
      1/√(1 + ε), as a fresh BatchNorm in PyTorch's eval mode;
    * any other weight from its layer's own initializer (new seed).

    Draws are TensorFlow stateless normals keyed by (seed, variable index): the same numbers on every
    device, generated where the variable lives.
    """
    import keras
    import tensorflow as tf

    from tfflat.models.heads import walk

    done = set()
    index = 0

    def put(var, value):
        var.assign(tf.cast(value, var.dtype))
        done.add(id(var))

    for layer in walk(model):
        kernel = getattr(layer, "kernel", None) if isinstance(layer, (keras.layers.Dense, keras.layers.Conv1D,
                                                                       keras.layers.Conv2D, keras.layers.Conv3D)) \
            else None
        if kernel is not None and id(kernel) not in done:
            shape = tuple(kernel.shape)
            fan_in = max(1, math.prod(shape[:-1]))
            index += 1
            put(kernel, math.sqrt(2.0 / fan_in) *
                tf.random.stateless_normal(shape, seed=[int(seed), index], dtype=tf.float32))
            bias = getattr(layer, "bias", None)
            if bias is not None:
                put(bias, tf.zeros(tuple(bias.shape)))
        elif isinstance(layer, keras.layers.BatchNormalization):
            for name, value in (("gamma", 1.0), ("beta", 0.0), ("moving_mean", 0.0), ("moving_variance", 1.0)):
                var = getattr(layer, name, None)
                if var is not None:
                    put(var, tf.fill(tuple(var.shape), value))
    rest = [(v, init) for v, init in _initialised_variables(model) if id(v) not in done]
    rng = np.random.default_rng(seed)
    for var, init in rest:
        config = init.get_config()
        if "seed" in config:
            config["seed"] = int(rng.integers(2 ** 31 - 1))
            init = type(init).from_config(config)
        var.assign(init(tuple(var.shape), dtype=var.dtype))
        done.add(id(var))
    missing = [v.path for v in model.weights if id(v) not in done]
    if missing:
        raise UserError(f"cannot He-initialise weight {missing[0]!r} of model {model.name!r} (no known initializer); "
                        "use `init`='model' or give `reinit`")


def batch_statistics(model) -> None:
    """Make every BatchNorm layer of ``model`` (a private copy) normalise with the statistics of the
    batch it is called on, in inference mode too, without updating its moving statistics; dropout and
    every other layer keep inference mode."""
    import keras
    from keras import ops

    from tfflat.models.heads import walk

    for layer in walk(model):
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue

        def call(inputs, training=None, mask=None, _bn=layer):
            x = ops.cast(inputs, "float32")
            axes = [a for a in range(len(x.shape)) if a != _bn.axis % len(x.shape)]
            mean, var = ops.moments(x, axes=axes)
            return ops.batch_normalization(x, mean, var, axis=_bn.axis, offset=_bn.beta if _bn.center else None,
                                           scale=_bn.gamma if _bn.scale else None, epsilon=_bn.epsilon)

        layer.call = call


def _batches(n: int, batch_size: int) -> list[slice]:
    """``n`` rows cut into ceil(n / batch_size) contiguous batches of near-equal size (their sizes differ
    by at most one), so that batch statistics never come from a tiny last batch."""
    count = max(1, math.ceil(n / max(1, int(batch_size))))
    edges = np.linspace(0, n, count + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]


class _Accumulator:
    """Σ_m h⁽ᵐ⁾ h⁽ᵐ⁾ᵀ in float64: BLAS ``dsyrk`` on the host (the default), or one float64 GEMM per
    group on the first GPU of the features (``device``); exactly symmetric either way."""

    GROUP = 512           # feature columns per update (BLAS-3 sized)

    def __init__(self, n: int, device: str | None):
        self.n, self.device, self.group, self.width = n, device, [], 0
        if device is None:
            self.acc = np.zeros((n, n))
        else:
            import tensorflow as tf

            with tf.device(device):
                self.acc = tf.Variable(tf.zeros((n, n), tf.float64), trainable=False)

    def add(self, h: np.ndarray | object, last: bool) -> None:
        self.group.append(h)
        self.width = int(h.shape[1])
        if sum(int(g.shape[1]) for g in self.group) >= self.GROUP or last:
            self._flush()

    def _flush(self) -> None:
        if self.device is None:
            from scipy.linalg import blas

            # acc += hg hgᵀ on acc's lower triangle (acc.T is the Fortran view; its upper = acc's lower)
            hg = np.asfortranarray(np.concatenate([np.asarray(g, np.float64) for g in self.group], axis=1))
            out = blas.dsyrk(1.0, hg, beta=1.0, c=self.acc.T, trans=0, lower=0, overwrite_c=1)
            if not np.shares_memory(out, self.acc):
                self.acc.T[...] = out
        else:
            import tensorflow as tf

            with tf.device(self.device):
                hg = tf.concat([tf.cast(g, tf.float64) for g in self.group], axis=1)
                self.acc.assign_add(tf.matmul(hg, hg, transpose_b=True))
        self.group = []

    def result(self) -> np.ndarray:
        acc = self.acc if self.device is None else self.acc.numpy()
        _mirror_upper(acc, BLOCK, from_lower=True)
        return acc


def _gpu_device(strategy) -> str | None:
    """The first device of ``strategy`` when it is a GPU (where the float64 accumulation then runs)."""
    import tensorflow as tf

    from tfflat import devices

    if devices.is_default(strategy):                 # TensorFlow's default device
        gpus = tf.config.list_logical_devices("GPU")
        return gpus[0].name if gpus else None
    first = list(strategy.extended.worker_devices)[0]
    return first if "GPU" in first.upper().split("/")[-1] else None


def empirical_kernel(x, model, samples: int | None = None, *, sigma_w: float, sigma_b: float, seed: int = 0,
                     batch_size: int = 256, feature_layer=None, reinit: Callable[[object, int], None] | None = None,
                     init: str = "model", batchnorm: str = "inference", strategy=None,
                     progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Monte-Carlo NNGP kernel of eq. (7) from ``samples`` random initialisations of a network.

    Σ(x_i, x_j) = σw²/(M n) Σ_m Σ_c h_c⁽ᵐ⁾(x_i) h_c⁽ᵐ⁾(x_j) + σb², with h⁽ᵐ⁾ the last hidden layer (by
    default the input of the last Dense layer, inference mode) of the m-th initialisation and n its width.
    Every initialisation is drawn on a private copy: the given model and its weights are never touched
    (its trained weights are not used either — only its architecture and initialisers).

    Args:
      x: inputs, shape (n, ...) in the model's input shape.
      model: a Keras model (each sample redraws a copy's weights from the layers' own initialisers,
        with new seeds), or ``model_fn(seed)`` → a freshly initialised model (e.g.
        ``functools.partial(tfflat.models.build, spec)``; sample 0 is ``model_fn(seed)``'s initialisation).
      samples: M, default ``EMPIRICAL_KERNEL_FRACTION · n`` (paper: 0.1 (|S|+|E|)), at least 1.
      sigma_w, sigma_b: the scales of the readout (last, fully connected) layer.
      seed: sample m uses seed + m.
      batch_size: inputs per forward pass (at most; x is cut into equal batches in input order).
      feature_layer: the layer (or its name) whose output is h, instead of the last Dense layer's input.
      reinit: ``reinit(model, seed)`` that redraws a model's weights in place (e.g.
        :func:`tfflat.models.fcn.reinitialize`); default :func:`redraw` (the layers' own initializers,
        new seeds) when it covers every weight, else (``model_fn`` only) a model is built per sample.
      init: ``"model"`` (the layers' own initializers, or ``reinit``) or ``"he"`` (:func:`he_redraw`:
        He-normal fan-in weights, zero biases, fresh BatchNorm — the authors' ResNet50 kernel; every
        sample, the first included, is drawn so).
      batchnorm: ``"inference"`` (BatchNorm on its moving statistics: for a fresh BatchNorm the identity,
        the authors' eval mode) or ``"batch"`` (each forward batch normalised by its own statistics,
        :func:`batch_statistics`; an input's features then depend on the other inputs of its batch —
        fixed, equal batches of at most ``batch_size`` in input order, so the kernel is reproducible).
      strategy: a ``tf.distribute`` strategy or a device spec (:mod:`tfflat.devices`; ``None``: the
        caller's strategy scope, else all visible GPUs, else the CPU): with several replicas the forward batches are sharded over the devices (one
        batch per replica at a time, the features gathered in input order), the same numbers as on one
        device up to float rounding. Where the features run on a GPU, Σ hhᵀ is accumulated there in float64.
      progress: ``progress(done, total)`` after every initialisation.
    Returns:
      float64 array (n, n), exactly symmetric.
    """
    import contextlib

    import keras
    import tensorflow as tf

    from tfflat import devices

    if init not in INITS:
        raise UserError(f"unknown `init` {init!r}; choose {' or '.join(INITS)}")
    if batchnorm not in BATCHNORM_MODES:
        raise UserError(f"unknown `batchnorm` {batchnorm!r}; choose {' or '.join(BATCHNORM_MODES)}")
    if init == "he" and reinit is not None:
        raise UserError("give `reinit` or `init`='he', not both")
    x = np.asarray(x, np.float32)
    if x.ndim < 1 or len(x) == 0:
        raise UserError(f"need at least one input to compute a kernel, got an array of shape {x.shape}")
    n = len(x)
    m_total = max(1, round(defaults.EMPIRICAL_KERNEL_FRACTION * n)) if samples is None else int(samples)
    if m_total < 1:
        raise UserError(f"the empirical kernel needs at least one sample (`samples`), got {samples}")
    strat = devices.strategy(strategy)
    sharded = not devices.is_default(strat)
    given = isinstance(model, keras.layers.Layer)
    model_fn = None if given else model
    feature_layer = getattr(feature_layer, "name", feature_layer)      # a layer of the copy, by name
    with strat.scope() if sharded else contextlib.nullcontext():
        base = private_copy(model if given else model_fn(seed), x)
    if init == "he":
        reinit = he_redraw
    if reinit is None and len(_initialised_variables(base)) == len(base.weights):
        reinit = redraw
    if reinit is None and given:
        raise UserError(f"not every weight of model {model.name!r} has an initializer tfflat can redraw; give the "
                        "empirical kernel a function seed -> freshly initialised model instead")
    if batchnorm == "batch":
        batch_statistics(base)
    fn = _features_fn(base, feature_layer)
    batches = _batches(n, batch_size)
    forward = _sharded_forward(fn, strat, x, batches) if sharded else \
        (lambda: [np.asarray(fn(tf.constant(x[b]))).reshape(b.stop - b.start, -1) for b in batches])
    acc = _Accumulator(n, _gpu_device(strat))
    redraw_first = given or init == "he"
    for m in range(m_total):
        if reinit is not None and (m > 0 or redraw_first):
            reinit(base, seed + m)
        elif m > 0:   # same variables, new values: the compiled feature function is reused
            fresh = model_fn(seed + m)
            base.set_weights(fresh.get_weights())
            del fresh
        h = np.concatenate(forward())
        acc.add(h, last=m == m_total - 1)
        if progress:
            progress(m + 1, m_total)
    out = acc.result()
    out *= float(sigma_w) ** 2 / (m_total * acc.width)
    out += float(sigma_b) ** 2
    return out


def _sharded_forward(fn, strat, x, batches):
    """() ↦ the features of every batch, in order: R batches at a time, one per replica."""
    import tensorflow as tf

    r = int(strat.num_replicas_in_sync)
    run = tf.function(lambda xs: strat.run(fn, args=(xs,)), reduce_retracing=True)

    def forward():
        out = []
        for start in range(0, len(batches), r):
            group = batches[start:start + r]
            take = [group[i] if i < len(group) else group[0] for i in range(r)]   # a spare replica repeats one
            xs = strat.experimental_distribute_values_from_function(
                lambda ctx: tf.constant(x[take[ctx.replica_id_in_sync_group]]))
            local = strat.experimental_local_results(run(xs))
            out += [np.asarray(h).reshape(b.stop - b.start, -1) for h, b in zip(local, group)]
        return out

    return forward


# ---- how well the kernel separates inputs -------------------------------------------------------------

def conditioning(k: np.ndarray, eigenvalues: bool = True, block: int = BLOCK) -> dict:
    """How far a kernel is from the constant (uninformative) kernel, for the prior record.

    Returns a JSON-able dict: ``diagonal`` (min, median, max of K_ii: the prior variances),
    ``off_diagonal`` (mean, std, min, max of K_ij, i ≠ j), ``correlation`` (mean, min, max of the
    off-diagonal K_ij / √(K_ii K_jj): all near 1 means a nearly constant kernel, under which every
    function's probability is set by a few directions), and with ``eigenvalues`` the smallest and
    largest eigenvalue, the condition number λ_max/λ_min (None when λ_min ≤ 0) and the share of the trace in the largest
    eigenvalue (``top_share``; 1 for a constant kernel). Row blocks keep the memory at O(block · n) besides
    the eigenvalues' copy of K.
    """
    k = np.asarray(k, np.float64)
    n = len(k)
    d = np.diagonal(k).copy()
    out = {"n": n, "diagonal": {"min": float(d.min()), "median": float(np.median(d)), "max": float(d.max())}}
    if n > 1:
        s1 = s2 = c1 = 0.0
        lo, hi, clo, chi = np.inf, -np.inf, np.inf, -np.inf
        inv = 1.0 / np.sqrt(np.maximum(d, np.finfo(float).tiny))
        for i in range(0, n, block):
            j = min(n, i + block)
            rows = k[i:j].copy()
            rows[np.arange(j - i), np.arange(i, j)] = np.nan
            corr = rows * inv[i:j, None] * inv[None, :]
            s1 += np.nansum(rows)
            s2 += np.nansum(rows * rows)
            c1 += np.nansum(corr)
            lo, hi = min(lo, np.nanmin(rows)), max(hi, np.nanmax(rows))
            clo, chi = min(clo, np.nanmin(corr)), max(chi, np.nanmax(corr))
        count = n * (n - 1)
        mean = s1 / count
        out["off_diagonal"] = {"mean": float(mean), "std": float(np.sqrt(max(0.0, s2 / count - mean * mean))),
                               "min": float(lo), "max": float(hi)}
        out["correlation"] = {"mean": float(c1 / count), "min": float(clo), "max": float(chi)}
    if eigenvalues:
        ev = np.linalg.eigvalsh(k)          # O(n³): about ten Cholesky factorisations, i.e. a few EP sweeps
        lam_min, lam_max = float(ev[0]), float(ev[-1])
        out.update(eigenvalue_min=lam_min, eigenvalue_max=lam_max,
                   condition_number=lam_max / lam_min if lam_min > 0 else None,   # None: singular
                   top_share=lam_max / float(np.sum(d)))
    return out
