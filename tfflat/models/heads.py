"""Heads: how a classifier's outputs become the logit(s) that tfflat measures, and their loss.

Every measure (sharpness, Hessian, the prior's f) and the trainer take the head as a parameter —
the loss applied to the network's outputs, as curvlinops takes the loss. The head of a Keras model
is read from its final layer and, where the model is compiled, from its loss's ``from_logits``:

=================================  ==========  ======================================  ==================
the model ends in                  head        measured logit(s)                       loss (per example)
=================================  ==========  ======================================  ==================
``Dense(1)`` (linear)              ``logit``   z, the output                           sigmoid CE
``Dense(1, "sigmoid")``            ``sigmoid`` z, the sigmoid's input (pre-activation)  sigmoid CE
``Dense(2)`` / ``Dense(2, "softmax")``  ``logits`` / ``softmax``  z₁ − z₀ (binary)   sigmoid CE of z₁ − z₀
``Dense(K ≥ 3)`` / softmax         ``logits`` / ``softmax``  z ∈ ℝᴷ                    softmax CE
=================================  ==========  ======================================  ==================

(the sigmoid CE of z₁ − z₀ *is* the 2-class softmax CE: softplus(z₁₋ᵧ − zᵧ)). A final activation is
never inverted: the measured network is the user's with that last activation bypassed —
:func:`logit_model` rebuilds the functional graph up to the last layer's input and applies the same
kernel and bias, sharing the very variables (subclassed models: a private clone whose last layer is
made linear). :func:`resolve` checks that the activation of those logits equals the model's own
outputs on the data, so the measured function is the user's. Labels: 1 iff the binary logit ≥ 0,
argmax for K classes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from tfflat.errors import UserError

HEADS = ("logit", "sigmoid", "logits", "softmax")
_BINARY_LOSSES = ("BinaryCrossentropy", "BinaryFocalCrossentropy", "binary_crossentropy",
                  "binary_focal_crossentropy", "bce")
_CATEGORICAL_LOSSES = ("CategoricalCrossentropy", "SparseCategoricalCrossentropy", "CategoricalFocalCrossentropy",
                       "categorical_crossentropy", "sparse_categorical_crossentropy",
                       "categorical_focal_crossentropy")
_ACCEPTED = ("the model must end in Dense(1) (a logit), Dense(1, activation='sigmoid'), or Dense(K ≥ 2) "
             "with a linear or softmax activation (or an Activation/Softmax layer after a linear layer)")


def sigmoid_ce(logits, labels):
    """Per-example sigmoid cross-entropy on one logit; labels 0/1."""
    import tensorflow as tf

    return tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.cast(labels, logits.dtype),
                                                   logits=tf.reshape(logits, [-1]))


@dataclass(frozen=True)
class Head:
    """What a model outputs and the cross-entropy measured on it.

    Attributes:
      name: ``logit`` | ``sigmoid`` (one output) or ``logits`` | ``softmax`` (K ≥ 2 outputs): what the
        user's model returns; ``sigmoid``/``softmax`` are measured on their pre-activation.
      outputs: units of the model's output, 1, 2 or K.
    """

    name: str
    outputs: int

    @property
    def classes(self) -> int:
        return 2 if self.outputs <= 2 else self.outputs

    @property
    def binary(self) -> bool:
        return self.classes == 2

    @property
    def activation(self) -> str:
        """The final activation that is bypassed: ``sigmoid``, ``softmax`` or ``linear``."""
        return self.name if self.name in ("sigmoid", "softmax") else "linear"

    def linear(self) -> "Head":
        """The same head for a network that already returns the pre-activation logits."""
        return replace(self, name="logit" if self.outputs == 1 else "logits")

    @property
    def key(self) -> tuple:
        return (self.name, self.outputs)

    def to_dict(self) -> dict:
        return {"head": self.name, "outputs": self.outputs, "classes": self.classes}

    # ---- graph functions on the pre-activation outputs z (batch, outputs) --------------------------
    def logit(self, z):
        """Binary heads: the one logit (batch,) — z itself, or z₁ − z₀ for two outputs."""
        import tensorflow as tf

        if self.outputs == 1:
            return tf.reshape(z, [-1])
        if self.outputs == 2:
            return z[:, 1] - z[:, 0]
        raise UserError(f"a {self.classes}-class head has no single logit")

    def loss(self, z, labels):
        """Per-example cross-entropy (batch,) of the pre-activation outputs ``z`` and labels (float)."""
        import tensorflow as tf

        if self.binary:
            return sigmoid_ce(self.logit(z), labels)
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(labels, tf.int32),
                                                              logits=tf.reshape(z, [-1, self.outputs]))

    # ---- numpy ---------------------------------------------------------------------------------------
    def binary_logit(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z).reshape(len(z), -1)
        return z[:, 0] if self.outputs == 1 else z[:, 1] - z[:, 0]

    def predict(self, z: np.ndarray) -> np.ndarray:
        """Labels from the pre-activation outputs: 1 iff the binary logit ≥ 0; argmax for K classes."""
        if self.binary:
            return (self.binary_logit(z) >= 0).astype(np.int64)
        return np.argmax(np.asarray(z).reshape(len(z), -1), axis=1).astype(np.int64)

    def check_labels(self, y, what: str = "y") -> np.ndarray:
        """Labels as float32 (n,) class indices: 0/1 for binary heads, 0…K−1 otherwise (one-hot accepted)."""
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        elif y.ndim == 2 and y.shape[1] == self.classes and np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1):
            y = np.argmax(y, axis=1)                                    # one-hot rows
        if y.ndim != 1:
            raise UserError(f"`{what}` has shape {y.shape}; give one class index per example (n,) or one-hot "
                            f"rows (n, {self.classes})")
        if y.dtype.kind not in "biuf":
            raise UserError(f"`{what}` has {y.dtype} entries; give integer class indices")
        ok = np.isin(y, np.arange(self.classes))
        if not np.all(ok):
            want = "0 or 1" if self.binary else f"integers 0…{self.classes - 1}"
            raise UserError(f"`{what}` holds the label {y[~ok][0].item()!r}; a {self.name} head with {self.outputs} "
                            f"output unit(s) needs labels {want}")
        return y.astype(np.float32)


LOGIT = Head("logit", 1)


def named(name: str, outputs: int) -> Head:
    """The head called ``name`` for a model with ``outputs`` output units (checked)."""
    if isinstance(name, Head):
        return name
    if name not in HEADS:
        raise UserError(f"unknown `head` {name!r}; choose one of {', '.join(HEADS)}")
    if name in ("logit", "sigmoid") and outputs != 1:
        raise UserError(f"`head` {name!r} needs one output unit; the model has {outputs} "
                        "(use 'logits' or 'softmax')")
    if name in ("logits", "softmax") and outputs < 2:
        raise UserError(f"`head` {name!r} needs K ≥ 2 output units; the model has one (use 'logit' or 'sigmoid')")
    return Head(name, int(outputs))


# ---- reading a Keras model ----------------------------------------------------------------------------

def is_graph(model) -> bool:
    """A functional or (built) Sequential model, whose layer graph can be read; not a subclassed one."""
    import keras
    from keras.src.models.functional import Functional

    if not isinstance(model, (Functional, keras.Sequential)):
        return False
    try:
        return bool(model.inputs) and bool(model.outputs)
    except (AttributeError, ValueError):
        return False


def walk(layer):
    """``layer`` and every layer nested in it (depth first)."""
    yield layer
    for sub in getattr(layer, "layers", None) or ():
        if sub is not layer:
            yield from walk(sub)


def refuse_savedmodel(model, purpose: str) -> None:
    """A :class:`UserError` for a model wrapping a SavedModel (``keras.layers.TFSMLayer``): its weights are
    baked into a traced graph, so ``stateless_call`` cannot replace them and its architecture is unknown."""
    import keras

    for layer in walk(model):
        if isinstance(layer, keras.layers.TFSMLayer):
            raise UserError(f"model {model.name!r} is a SavedModel: a traced graph {purpose}; measure the Keras "
                            "model itself, saved with model.save('model.keras')")


def is_dense(model) -> bool:
    """Only Dense/Flatten layers (XLA-compiled, the whole data set in one forward pass)."""
    import keras

    return all(isinstance(l, (keras.layers.Dense, keras.layers.Flatten, keras.layers.InputLayer, PreActivation()))
               for l in model.layers)


def _activation_name(fn) -> str:
    import keras

    if fn is None or fn is keras.activations.linear:
        return "linear"
    return getattr(fn, "__name__", type(fn).__name__)


def _final(model):
    """(layer, its input tensor or None) of the operation producing a graph model's single output."""
    out = model.outputs
    if len(out) != 1:
        raise UserError(f"model {model.name!r} has {len(out)} outputs; tfflat measures single-output classifiers")
    op, node_index, _ = out[0]._keras_history
    inputs = op._inbound_nodes[node_index].input_tensors
    return op, (inputs[0] if len(inputs) == 1 else None)


def _last_layer(model):
    """The layer that produces the output: read from the graph, or for a subclassed model the layer
    assigned last in ``__init__`` (a convention; :func:`resolve` checks it where it matters)."""
    import keras

    if is_graph(model):
        layer, _ = _final(model)
        return _last_layer(layer) if is_graph(layer) else layer
    layers = [l for l in getattr(model, "layers", []) if not isinstance(l, keras.layers.InputLayer)]
    return layers[-1] if layers else None


def final_activation(layer) -> str | None:
    """The activation a layer applies last: ``linear``, ``sigmoid``, ``softmax``, another name, or None
    when the layer type does not say (e.g. a Lambda)."""
    import keras

    if layer is None:
        return None
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    if isinstance(layer, (keras.layers.Dense, keras.layers.EinsumDense, keras.layers.Activation)) or \
            callable(getattr(layer, "activation", None)):
        return _activation_name(getattr(layer, "activation", None))
    return None


def compiled_loss(model) -> tuple[str, bool | None] | None:
    """(``binary`` | ``categorical`` | the loss's name, from_logits) of a compiled model, else None."""
    loss = getattr(model, "loss", None)
    if loss is None:
        return None
    if isinstance(loss, (list, tuple, dict)):
        if len(loss) != 1:
            return ("several losses", None)
        loss = next(iter(loss.values())) if isinstance(loss, dict) else loss[0]
    if isinstance(loss, str):
        name, from_logits = loss, False
    else:
        name = type(loss).__name__
        if name == "LossFunctionWrapper":
            name = getattr(getattr(loss, "fn", None), "__name__", name)
        elif not hasattr(loss, "get_config"):          # a plain function
            name = getattr(loss, "__name__", name)
        from_logits = getattr(loss, "from_logits", None)
        if from_logits is None:
            from_logits = (getattr(loss, "_fn_kwargs", None) or {}).get("from_logits", False)
    if name in _BINARY_LOSSES:
        return ("binary", bool(from_logits))
    if name in _CATEGORICAL_LOSSES:
        return ("categorical", bool(from_logits))
    return (str(name), None)


def output_units(model, x=None) -> int:
    """Output units K of a single-output classifier whose outputs are (batch, K) or (batch,)."""
    if is_graph(model):
        _final(model)                   # one output, or a UserError
        shape = tuple(model.outputs[0].shape)
    elif x is not None:
        try:
            out = model(np.asarray(x[:1], np.float32), training=False)
        except Exception as err:  # noqa: BLE001 - Keras raises many types for bad input shapes
            raise UserError(f"model {model.name!r} cannot take inputs of shape {np.shape(x)[1:]}: "
                            f"{str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}") from None
        if isinstance(out, (list, tuple, dict)):
            raise UserError(f"model {model.name!r} returns {len(out)} outputs; tfflat measures single-output "
                            "classifiers")
        shape = (None,) + tuple(out.shape[1:])
    else:
        raise UserError(f"cannot tell the output size of the subclassed model {model.name!r} without data")
    if len(shape) == 1:
        return 1
    if len(shape) != 2 or shape[-1] is None:
        raise UserError(f"the model's output has shape {shape}; tfflat measures classifiers with outputs "
                        "(batch, K): one logit, a sigmoid, or K logits / softmax probabilities")
    return int(shape[-1])


def detect(model, head=None, x=None) -> Head:
    """The :class:`Head` of ``model``: ``head`` (a name or a :class:`Head`) when given; else read from
    the final activation (functional and Sequential models) and the compiled loss's ``from_logits``
    (needed for subclassed models). Anything else: a :class:`UserError` naming what was found."""
    if isinstance(head, Head):
        return head
    if head is None and isinstance(getattr(model, "_tfflat_head", None), Head):
        return model._tfflat_head          # a network made by logit_model: it returns logits
    k = output_units(model, x)
    if head is not None:
        return named(head, k)
    graph = is_graph(model)
    layer = _last_layer(model) if graph else None
    act = final_activation(layer) if graph else None
    loss = compiled_loss(model)
    where = f"{type(layer).__name__} {layer.name!r}" if layer is not None else "its last layer"
    units = f"{k} output unit{'s' if k > 1 else ''}"
    linear = "logit" if k == 1 else "logits"
    if loss is None:
        if not graph:
            raise UserError(f"cannot see the final activation of the subclassed model {model.name!r}: compile it "
                            "with its loss, or pass `head`='logit'|'sigmoid'|'logits'|'softmax'")
        if act is None:
            raise UserError(f"model {model.name!r} ends in {where}; tfflat cannot tell whether its output is a "
                            "logit or a probability: compile it with its loss or pass `head`")
        found = {"linear": linear, "sigmoid": "sigmoid" if k == 1 else None,
                 "softmax": "softmax" if k >= 2 else None}.get(act)
        if found is None:
            raise UserError(f"model {model.name!r} ends in {where} with activation {act!r} and {units}; {_ACCEPTED}")
        return named(found, k)
    family, from_logits = loss
    if from_logits is None:
        raise UserError(f"model {model.name!r} is compiled with the loss {family!r}; tfflat measures the "
                        "cross-entropy of classifiers (binary_crossentropy, categorical_crossentropy, "
                        "sparse_categorical_crossentropy): pass `head`='logit'|'sigmoid'|'logits'|'softmax' to say "
                        "what the output is")
    if family == "binary" and k != 1:
        raise UserError(f"model {model.name!r} has {units} but is compiled with a binary cross-entropy; "
                        f"{_ACCEPTED}; or pass `head`")
    if family == "categorical" and k < 2:
        raise UserError(f"model {model.name!r} has one output unit but is compiled with a categorical "
                        f"cross-entropy; {_ACCEPTED}; or pass `head`")
    expected = "linear" if from_logits else ("sigmoid" if family == "binary" else "softmax")
    if graph and act is not None and act != expected:
        raise UserError(f"model {model.name!r} ends in {where} with activation {act!r}, but its compiled loss has "
                        f"from_logits={from_logits} (expecting {expected!r}); pass `head` to say which is right")
    if graph and act is None and expected != "linear":
        raise UserError(f"model {model.name!r} ends in {where}, whose {expected} tfflat cannot bypass; {_ACCEPTED}")
    return named(linear if expected == "linear" else expected, k)


# ---- the measured network: the user's with its final activation bypassed ------------------------------

_PREACTIVATION = None


def PreActivation():
    """The Keras layer class that applies a Dense layer's kernel and bias without its activation
    (defined lazily so that importing this module does not load Keras)."""
    global _PREACTIVATION
    if _PREACTIVATION is None:
        import keras
        from keras import ops

        class PreActivation(keras.layers.Layer):
            """``inputs @ dense.kernel + dense.bias``: the same variables and ops as ``dense.call``, minus
            the activation."""

            def __init__(self, dense, **kwargs):
                super().__init__(name=f"{dense.name}_preactivation", **kwargs)
                self.dense = dense

            def call(self, inputs):
                x = ops.matmul(inputs, self.dense.kernel)
                if self.dense.bias is not None:
                    x = ops.add(x, self.dense.bias)
                return x

            def compute_output_shape(self, input_shape):
                return tuple(input_shape[:-1]) + (self.dense.units,)

            def get_config(self):
                return {"name": self.name, "dense": self.dense.name, "units": self.dense.units,
                        "use_bias": self.dense.use_bias}

        _PREACTIVATION = PreActivation
    return _PREACTIVATION


def logit_model(model, head: Head, x=None):
    """The network whose outputs are ``head``'s pre-activation logits: ``model`` itself for linear
    heads; otherwise ``model`` with its final sigmoid/softmax bypassed (sharing its variables for
    functional and Sequential models, a private clone for subclassed ones). ``model`` is not changed."""
    import keras

    if head.activation == "linear":
        return model
    net = _graph_logit_model(model, head) if is_graph(model) else _cloned_logit_model(model, head, x)
    net._tfflat_head = head.linear()      # what `net` returns, so that detect(net) needs no guessing
    return net


def _graph_logit_model(model, head):
    import keras

    layer, tensor = _final(model)
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    if isinstance(layer, keras.Model) and is_graph(layer):
        inner = _graph_logit_model(layer, head)
        return keras.Model(inputs, inner(tensor), name=f"{model.name}_logits")
    if tensor is None:
        raise UserError(f"the last layer {layer.name!r} of model {model.name!r} takes several inputs; "
                        f"{_ACCEPTED}")
    if isinstance(layer, (keras.layers.Activation, keras.layers.Softmax)):
        return keras.Model(inputs, tensor, name=f"{model.name}_logits")
    if isinstance(layer, keras.layers.Dense):
        if getattr(layer, "quantization_mode", None):
            raise UserError(f"the last Dense layer {layer.name!r} of model {model.name!r} is quantized "
                            f"({layer.quantization_mode}); measure the float model")
        return keras.Model(inputs, PreActivation()(layer)(tensor), name=f"{model.name}_logits")
    raise UserError(f"model {model.name!r} ends in {type(layer).__name__} {layer.name!r} with a "
                    f"{head.activation}, which tfflat cannot bypass; {_ACCEPTED}")


def _cloned_logit_model(model, head, x):
    import keras

    if x is None:
        raise UserError(f"the subclassed model {model.name!r} returns {head.activation} outputs; tfflat needs data "
                        "to build a copy that returns their logits")
    layer = _last_layer(model)
    if final_activation(layer) != head.activation:
        raise UserError(f"the subclassed model {model.name!r} returns {head.activation} outputs, but the layer it "
                        f"assigns last ({getattr(layer, 'name', None)!r}) does not apply the {head.activation}; make "
                        "call() return the logits and pass `head`='logit'|'logits'")
    index = model.layers.index(layer)
    try:
        clone = keras.models.clone_model(model)
        clone(np.asarray(x[:1], np.float32), training=False)
        clone.set_weights(model.get_weights())
    except Exception as err:  # noqa: BLE001 - any failure of get_config / from_config / build
        raise UserError(f"cannot copy the subclassed model {model.name!r} to bypass its final {head.activation} "
                        f"({type(err).__name__}); make call() return the logits and pass `head`='logit'|'logits', "
                        "or give the class a get_config") from None
    target = clone.layers[index]
    if isinstance(target, keras.layers.Softmax):
        target.call = lambda inputs, mask=None: inputs           # our private copy
    else:
        target.activation = keras.activations.linear
    return clone


def resolve(model, head=None, x=None):
    """(:class:`Head`, the network returning its pre-activation logits) for ``model``, checked on ``x``:
    the head's activation of those logits must equal ``model``'s own (inference-mode) outputs."""
    import keras

    if not isinstance(model, keras.Model) and not isinstance(model, keras.layers.Layer):
        raise UserError(f"expected a Keras model, got {type(model).__name__}")
    h = detect(model, head, x)
    net = logit_model(model, h, x)
    if net is not model and x is not None:
        check_logit_model(model, net, h, x)
    return h, net


def check_logit_model(model, net, head: Head, x, n: int = 256) -> None:
    """The activation of ``net``'s logits equals ``model``'s outputs on (up to ``n`` of) ``x``."""
    import tensorflow as tf

    xs = np.asarray(x[:n], np.float32)
    z = net(xs, training=False)
    act = tf.sigmoid(z) if head.activation == "sigmoid" else tf.nn.softmax(z, axis=-1)
    out = np.asarray(model(xs, training=False)).reshape(act.shape)
    act = act.numpy()
    if not np.allclose(act, out, rtol=1e-5, atol=1e-6):
        raise UserError(f"tfflat could not reproduce model {model.name!r}'s outputs from its pre-activation "
                        f"(max difference {np.max(np.abs(act - out)):.3g}); make the model return logits and pass "
                        "`head`='logit'|'logits'")


# ---- evaluation ---------------------------------------------------------------------------------------

def predict_logits(model, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Inference-mode outputs of ``model`` on ``x`` (BatchNorm on its moving statistics): shape (n,) for
    one output unit, (n, K) for K."""
    x = np.asarray(x)
    if len(x) == 0:
        return np.zeros(0, np.float32)
    parts = [np.asarray(model(x[i:i + batch_size], training=False)).reshape(len(x[i:i + batch_size]), -1)
             for i in range(0, len(x), batch_size)]
    out = np.concatenate(parts)
    return out[:, 0] if out.shape[1] == 1 else out


def predict(model, x, head=None, batch_size: int = 1024) -> np.ndarray:
    """The labels ``model`` gives ``x`` (1 iff the binary logit ≥ 0; argmax for K classes)."""
    h, net = resolve(model, head, x)
    return h.predict(predict_logits(net, x, batch_size))
