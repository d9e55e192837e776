"""Which flatness measures survive α-rescaling (paper §1, App. F): expected from the definition, and measured.

Layer-wise (eq. 9) and neuron-wise α-rescaling of a ReLU network (:mod:`tfflat.rescale`) change the
weights but not the function. For each measure of :mod:`tfflat.flatness.measures`,
:func:`invariance_table` computes it on the network and on rescaled copies of it (every hidden
layer, layer-wise and neuron-wise — every other unit of the layer — at each α), and calls it
invariant when no copy moves it by more than ``rtol`` relative to its value (float32 rounding moves
an invariant measure by ~1e-6). Each row sets this measured answer beside the one the registry
derives from the definition (:meth:`tfflat.flatness.measures.Measure.expected`).
"""

from __future__ import annotations

import math

import numpy as np

from tfflat.errors import UserError
from tfflat.flatness.measures import MEASURES, flatness_measures, names

ALPHAS = (0.2, 5.9)         # 5.9: Fig. 5's α; 0.2: a shrinking one
RTOL = 1e-4
KINDS = ("layer", "neuron")


def hidden_layers(model) -> list[int]:
    """The 1-based hidden layers of ``model`` that α-rescaling applies to."""
    from tfflat.rescale import _hidden_pair

    out, i = [], 1
    while True:
        try:
            _hidden_pair(model, i)
        except UserError:
            break
        out.append(i)
        i += 1
    if not out:
        raise UserError(f"model {model.name!r} has no hidden ReLU Dense layer that α-rescaling applies to "
                        "(it needs a fully connected ReLU network)")
    return out


def copy_model(model):
    """A copy of ``model`` with its weights, of the same architecture (so compiled measures are reused)."""
    import keras

    try:
        copy = model.__class__.from_config(model.get_config())
    except Exception:                       # a subclassed model without a config
        copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def rescaled_copy(model, kind: str, layer: int, alpha: float, units=None):
    """A copy of ``model`` rescaled layer-wise, or neuron-wise on ``units`` of ``layer`` (default every
    other unit: 0, 2, 4, …); ``model`` itself is not touched."""
    from tfflat.rescale import _hidden_pair, rescale_layer, rescale_neurons

    if kind not in KINDS:
        raise UserError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    copy = copy_model(model)
    if kind == "layer":
        rescale_layer(copy, layer, alpha)
    else:
        if units is None:
            units = range(0, int(_hidden_pair(copy, layer)[0].kernel.shape[-1]), 2)
        rescale_neurons(copy, layer, list(units), alpha)
    return copy


def relative_change(before: float, after: float) -> float:
    """|after − before| / max(|before|, |after|) (0 when both are equal, including ±inf)."""
    if before == after:
        return 0.0
    if not (math.isfinite(before) and math.isfinite(after)):
        return math.inf
    return abs(after - before) / max(abs(before), abs(after))


def invariance_table(model, x, y, measures="all", alphas=ALPHAS, layers=None, seed: int = 0,
                     settings: dict | None = None, rtol: float = RTOL, *, head=None, eval_batch: int | None = None,
                     callback=None) -> list[dict]:
    """Measure each selected flatness measure's invariance under α-rescaling of ``model``.

    Args:
      model: a trained fully connected ReLU network with one logit (left unchanged).
      x, y: the data S.
      measures: as for :func:`tfflat.flatness.measures.flatness_measures`.
      alphas: the factors α (default 0.2 and 5.9).
      layers: hidden layers to rescale (1-based; default all of them).
      seed, settings, head, eval_batch: as for :func:`flatness_measures` (the same for every copy).
      rtol: the largest relative change still called invariant.
      callback: ``callback(kind, layer, alpha)`` before each rescaled copy is measured.
    Returns:
      One row per measure: ``{"measure", "value", "expected_layerwise", "invariant_layerwise",
      "max_change_layerwise", "expected_neuronwise", "invariant_neuronwise", "max_change_neuronwise",
      "agrees", "changes": [{"kind", "layer", "alpha", "value", "relative_change"}]}``.
    """
    from tfflat.training import predict_logits

    selected = names(measures)
    alphas = [float(a) for a in np.atleast_1d(alphas)]
    if not alphas:
        raise UserError("give at least one α")
    layers = hidden_layers(model) if layers is None else [int(l) for l in np.atleast_1d(layers)]
    if not (rtol > 0):
        raise UserError(f"rtol must be positive, got {rtol}")
    kw = dict(measures=selected, seed=seed, settings=settings, head=head, eval_batch=eval_batch)
    base = flatness_measures(model, x, y, **kw)
    logits = predict_logits(model, np.asarray(x, np.float32))
    changes = {name: [] for name in selected}
    for kind in KINDS:
        for layer in layers:
            for alpha in alphas:
                if callback is not None:
                    callback(kind, layer, alpha)
                copy = rescaled_copy(model, kind, layer, alpha)
                drift = np.max(np.abs(predict_logits(copy, np.asarray(x, np.float32)) - logits))
                if drift > 1e-4 * max(1.0, float(np.max(np.abs(logits)))):
                    raise UserError(f"{kind}-wise rescaling of layer {layer} by {alpha} changed the network's "
                                    f"outputs by {drift:.3g}; it is not a ReLU network this applies to")
                res = flatness_measures(copy, x, y, **kw)
                for name in selected:
                    changes[name].append({"kind": kind, "layer": layer, "alpha": alpha, "value": res[name]["value"],
                                          "relative_change": relative_change(base[name]["value"],
                                                                             res[name]["value"])})
    rows = []
    for name in selected:
        m = MEASURES[name]
        expected = m.expected(base[name]["settings"])
        row = {"measure": name, "value": base[name]["value"]}
        for kind, exp in zip(KINDS, expected):
            worst = max(c["relative_change"] for c in changes[name] if c["kind"] == kind)
            key = "layerwise" if kind == "layer" else "neuronwise"
            row.update({f"expected_{key}": bool(exp), f"invariant_{key}": bool(worst <= rtol),
                        f"max_change_{key}": worst})
        row["agrees"] = (row["expected_layerwise"] == row["invariant_layerwise"]
                         and row["expected_neuronwise"] == row["invariant_neuronwise"])
        row["changes"] = changes[name]
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    """The table as text: measure | invariant layer-wise (expected, tested, max change) | neuron-wise | agrees."""
    def yn(b):
        return "yes" if b else "no"

    head = f"{'measure':<28} {'layer-wise: expected tested max-change':<40} " \
           f"{'neuron-wise: expected tested max-change':<41} agrees"
    lines = [head, "-" * len(head)]
    for r in rows:
        lw = f"{yn(r['expected_layerwise']):<9}{yn(r['invariant_layerwise']):<7}{r['max_change_layerwise']:.2e}"
        nw = f"{yn(r['expected_neuronwise']):<9}{yn(r['invariant_neuronwise']):<7}{r['max_change_neuronwise']:.2e}"
        lines.append(f"{r['measure']:<28} {'':<12}{lw:<28} {'':<13}{nw:<28} {yn(r['agrees'])}")
    return "\n".join(lines)
