"""α-rescaling of ReLU networks (Dinh et al. 2017; paper App. F eq. 9, SPEC §3).

Layer-wise, for hidden Dense layer i with a positively homogeneous activation (ReLU, or none)
whose output feeds only Dense layer i + 1::

    (W_i, b_i, W_{i+1}) → (α W_i, α b_i, W_{i+1} / α),   α > 0                   (eq. 9)

leaves the network's function unchanged, since relu(α z) = α relu(z); neuron-wise rescaling does
the same for chosen hidden units only (column u of W_i and b_i[u] × α, row u of W_{i+1} ÷ α).
Sharpness and Hessian measures change; the prior P(f), a function of f alone, does not.

Both functions edit the model's variables in place, so they also work mid-training (e.g. in a
:func:`tfflat.training.train` callback, as in Fig. 5). Optimizer state (momenta, Adam moments) is
left as it is. Layers where rescaling would change the function are refused with a
:class:`~tfflat.errors.UserError`.
"""

from __future__ import annotations

import numpy as np

from tfflat.errors import UserError


def _hidden_pair(model, layer: int):
    """(Dense i, Dense i+1) for the 1-based hidden layer ``layer``, after checking that eq. 9 holds."""
    import keras

    dense = [l for l in model.layers if isinstance(l, keras.layers.Dense)]
    hidden = len(dense) - 1
    if not isinstance(layer, (int, np.integer)) or isinstance(layer, bool):
        raise UserError(f"`layer` must be an integer, got {layer!r}")
    if hidden < 1:
        raise UserError(f"model {model.name!r} has no hidden Dense layer to rescale; α-rescaling applies "
                        "to fully connected ReLU networks")
    if not 1 <= layer <= hidden:
        what = "the output layer" if layer == hidden + 1 else "out of range"
        raise UserError(f"`layer` {layer} is {what}: rescaling needs a hidden Dense layer followed by "
                        f"another Dense; choose 1…{hidden}")
    first = dense[layer - 1]
    if first.activation not in (keras.activations.relu, keras.activations.linear):
        name = getattr(first.activation, "__name__", str(first.activation))
        raise UserError(f"layer {layer} ({first.name}) has activation {name!r}; α-rescaling preserves the "
                        "function only for ReLU (or linear) units")
    consumers = [node.operation for node in first._outbound_nodes]
    if len(consumers) != 1 or not isinstance(consumers[0], keras.layers.Dense):
        names = ", ".join(f"{c.name} ({type(c).__name__})" for c in consumers) or "nothing"
        raise UserError(f"layer {layer} ({first.name}) feeds {names}, not a single Dense layer; rescaling "
                        "would change the function (e.g. through BatchNorm or a skip connection)")
    if any(getattr(t, "_keras_history", None) and t._keras_history[0] is first for t in model.outputs):
        raise UserError(f"layer {layer} ({first.name}) is also a model output; rescaling would change it")
    return first, consumers[0]


def _check_alpha(alpha) -> np.ndarray:
    a = np.asarray(alpha, np.float64)
    if a.size == 0 or not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise UserError(f"`alpha` must be finite and > 0 (ReLU is only positively homogeneous), got {alpha}")
    return a


def _apply(pairs, alpha) -> None:
    """Scale every (variable, factor), all checked first: when the variable's dtype cannot hold a result —
    an entry overflows to ±inf, or a nonzero entry underflows to 0, either of which changes the function —
    it is a :class:`UserError` and the model is left as it was."""
    values = []
    for variable, factor in pairs:
        old = np.asarray(variable.numpy(), np.float64)
        value = old * factor
        with np.errstate(over="ignore", under="ignore"):
            cast = value.astype(variable.dtype)
        info = np.finfo(cast.dtype)
        if not np.all(np.isfinite(cast)) or np.any((old != 0) & (np.abs(value) < info.tiny)):
            name = getattr(variable, "path", getattr(variable, "name", "a weight"))
            raise UserError(f"`alpha` {alpha} takes {name} outside what {cast.dtype} holds (|w| from "
                            f"{np.min(np.abs(old[old != 0])):.3g} to {np.max(np.abs(old)):.3g}, × or ÷ α; range "
                            f"{info.tiny:.3g} … {info.max:.3g}): the network would change; choose α nearer 1")
        values.append((variable, cast))
    for variable, value in values:
        variable.assign(value)


def rescale_layer(model, layer: int, alpha: float) -> dict:
    """Eq. 9 in place: (W_i, b_i, W_{i+1}) → (αW_i, αb_i, W_{i+1}/α) for hidden layer ``layer``.

    Args:
      model: a Keras model whose hidden layers are Dense ReLU layers (e.g. :func:`tfflat.models.fcn.fcn`).
      layer: 1-based index of the hidden Dense layer i (1 = first hidden layer).
      alpha: the factor α > 0.
    Returns:
      The record ``{"kind": "layer", "layer", "alpha", "units": None, "layers": [name_i, name_i+1]}``.
    """
    first, second = _hidden_pair(model, layer)
    a = float(_check_alpha(alpha))
    _apply([(first.kernel, a)] + ([(first.bias, a)] if first.use_bias else []) + [(second.kernel, 1.0 / a)],
           alpha)
    return {"kind": "layer", "layer": int(layer), "alpha": a, "units": None,
            "layers": [first.name, second.name]}


def rescale_neurons(model, layer: int, units, alpha) -> dict:
    """Neuron-wise rescaling in place: for each hidden unit u of layer i, column u of W_i and b_i[u]
    × α_u and row u of W_{i+1} ÷ α_u.

    Args:
      model, layer: as for :func:`rescale_layer`.
      units: 0-based unit indices in layer i (distinct).
      alpha: one α > 0 for all units, or one per unit.
    Returns:
      The record ``{"kind": "neuron", "layer", "alpha", "units", "layers"}``.
    """
    first, second = _hidden_pair(model, layer)
    width = int(first.kernel.shape[-1])
    try:
        idx = np.asarray([int(u) for u in np.atleast_1d(units)], np.int64)
    except (TypeError, ValueError):
        raise UserError(f"units must be integers, got {units!r}") from None
    if idx.size == 0:
        raise UserError("no units given (`units`); name the hidden units to rescale, e.g. 0,3,5")
    if idx.min() < 0 or idx.max() >= width:
        raise UserError(f"unit indices must be in 0…{width - 1} for layer {layer} ({first.name}), got "
                        f"{idx.min() if idx.min() < 0 else idx.max()}")
    if len(set(idx.tolist())) != idx.size:
        raise UserError("unit indices must be distinct")
    a = _check_alpha(alpha)
    if a.ndim > 1 or a.size not in (1, idx.size):
        raise UserError(f"give one α or one per unit ({idx.size}), got {a.size}")
    factor = np.ones(width)
    factor[idx] = a
    _apply([(first.kernel, factor[None, :])] + ([(first.bias, factor)] if first.use_bias else [])
           + [(second.kernel, 1.0 / factor[:, None])], alpha)
    alpha_out = float(a) if a.size == 1 else [float(v) for v in a]
    return {"kind": "neuron", "layer": int(layer), "alpha": alpha_out, "units": idx.tolist(),
            "layers": [first.name, second.name]}


def parse_units(text: str) -> list[int]:
    """``"0,3,5-7"`` → ``[0, 3, 5, 6, 7]`` (ranges inclusive)."""
    out = []
    for part in str(text).split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        try:
            out.extend(range(int(lo), int(hi) + 1) if sep else [int(part)])
        except ValueError:
            raise UserError(f"`units` {text!r}: write unit indices like 0,3,5-7") from None
    return out


def rescale_run(run_dir, out, alpha: float, layer: int, units=None, *, data_dir=None) -> dict:
    """Rescale a saved run's network (layer-wise, or neuron-wise when ``units`` is given) and save it
    as a new run ``out``: the rescaled ``model.keras`` and a copy of ``run.json`` whose ``"rescale"``
    list gains this record. S, A, E and the training history are those of the original run.

    The record carries a check on S ∪ A ∪ E: ``max_rel_logit_change`` = max|z′ − z| / max|z| and
    ``labels_changed`` (predicted labels that flipped; 0 unless a logit sits at round-off from 0).
    ``data_dir``: where the run's data is now, if it moved (:func:`tfflat.runs.load`).
    Returns:
      The record (with ``"from"`` and ``"run_dir"``).
    """
    from pathlib import Path

    from tfflat import runs
    from tfflat.models.heads import predict_logits

    if not str(out).strip():
        raise UserError("`out` is empty; give a new directory for the rescaled run")
    run = runs.load(run_dir, data_dir=data_dir)
    if Path(out).resolve() == run.path.resolve():
        raise UserError(f"`out` {out} is the run being rescaled; choose a new directory")
    if (Path(out) / runs.RUN_FILE).exists() or (Path(out) / runs.MODEL_FILE).exists():
        raise UserError(f"{out} already holds a run; choose another `out` or delete it")
    s = run.splits
    x = np.concatenate([s.x_train, s.x_attack, s.x_test])
    before = predict_logits(run.model, x)
    record = (rescale_layer(run.model, layer, alpha) if units is None
              else rescale_neurons(run.model, layer, units, alpha))
    after = predict_logits(run.model, x)
    scale = float(np.max(np.abs(before))) or 1.0
    record.update({"from": str(run_dir), "max_rel_logit_change": float(np.max(np.abs(after - before)) / scale),
                   "labels_changed": int(np.sum((after >= 0) != (before >= 0)))})
    meta = {**run.meta, "rescale": list(run.meta.get("rescale", [])) + [record]}
    meta.pop("versions", None)
    runs.save(out, run.model, meta)
    return {**record, "run_dir": str(out)}


def rescale_model_file(model_path, out, alpha: float, layer: int, units=None, x=None, seed: int = 0) -> dict:
    """Rescale a saved Keras model (a ``.keras`` file or the newest of a ModelCheckpoint folder) and save
    the result as the new ``.keras`` file ``out``; the source file is not changed.

    The record's check (as for :func:`rescale_run`) is on ``x`` when given, else on 256 standard-normal
    inputs of the model's input shape (drawn from ``seed``).
    Returns:
      The record (with ``"from"`` and ``"file"``).
    """
    from pathlib import Path

    from tfflat import runs
    from tfflat.data.arrays import example_shape
    from tfflat.models.heads import predict_logits

    out = Path(out)
    if out.suffix != ".keras":
        raise UserError(f"`out` {out} must be a .keras file for a rescaled Keras model")
    if out.exists():
        raise UserError(f"{out} already exists; choose another `out` or delete it")
    opened = runs.open_model(model_path, data=False)
    if opened.kind == "savedmodel":
        raise UserError(f"{model_path} is a SavedModel: its weights are baked into a traced graph; rescale the Keras "
                        "model (a .keras file)")
    if opened.kind == "run":
        raise UserError(f"{model_path} is a tfflat run; rescale it with rescale_run (a new run directory)")
    if opened.file is not None and out.resolve() == opened.file.resolve():
        raise UserError(f"`out` {out} is the model being rescaled; choose a new file")
    model = opened.model
    if x is None:
        shape = example_shape(model)
        if shape is None or any(s is None for s in shape):
            raise UserError(f"model {model.name!r} does not fix its input shape; give data to check the rescaling on")
        x = np.random.default_rng(seed).standard_normal((256,) + tuple(shape)).astype(np.float32)
    before = predict_logits(model, x)
    record = (rescale_layer(model, layer, alpha) if units is None else rescale_neurons(model, layer, units, alpha))
    after = predict_logits(model, x)
    scale = float(np.max(np.abs(before))) or 1.0
    flips = (np.argmax(after, 1) != np.argmax(before, 1)) if np.ndim(before) == 2 else ((after >= 0) != (before >= 0))
    record.update({"from": str(opened.file), "max_rel_logit_change": float(np.max(np.abs(after - before)) / scale),
                   "labels_changed": int(np.sum(flips)), "checked_on": len(x)})
    runs.save_model(out, model)
    return {**record, "file": str(out)}
