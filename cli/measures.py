"""``tfflat flatness``: the flatness-measure zoo (:mod:`tfflat.flatness.measures`) of a trained network.

MODEL is what ``tfflat sharpness`` takes (:mod:`.inputs`): a tfflat run — measured on its own S,
each result added to RUN/flatness.json under "measures" (the library's cache) — or a ``.keras``
file, a ModelCheckpoint folder or a SavedModel with ``--data``/``--dataset``.
"""

from __future__ import annotations

import json

import click

from .inputs import data_options, echo_warnings, open_inputs, write_out
from .output import Progress, emit


def parse_settings(items) -> dict:
    """``--set KEY=VALUE`` → settings: ``rho=0.1`` for every measure that has ``rho``,
    ``m_sharpness.m=64`` for one measure; VALUE is read as JSON (a number, true/false) or else text."""
    from tfflat.errors import UserError

    out: dict = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--set {item!r} is not KEY=VALUE (e.g. --set rho=0.1 or --set m_sharpness.m=64)")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        measure, dot, setting = key.rpartition(".")
        if dot:
            out.setdefault(measure, {})
            if not isinstance(out[measure], dict):
                raise UserError(f"--set {item!r}: {measure} is both a setting and a measure")
            out[measure][setting] = value
        else:
            out[key] = value
    return out


@click.command()
@click.argument("model", metavar="MODEL", type=click.Path(), required=False)
@data_options
@click.option("--measures", default="all", show_default=True, metavar="all|NAME,...",
              help="Which measures (`tfflat flatness --list` names them).")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="A measure setting: rho=0.1 (every measure that has it) or m_sharpness.m=64 (one); repeatable.")
@click.option("--seed", type=int, default=0, show_default=True, help="Probes, noise draws and minibatches.")
@click.option("--eval-batch", type=click.IntRange(1), default=None, help="Examples per forward chunk.")
@click.option("--invariance", is_flag=True,
              help="Also measure each one on α-rescaled copies (layer- and neuron-wise) and print the "
                   "invariance table, expected vs measured (a ReLU FCN; 1 + 2·layers·alphas evaluations).")
@click.option("--alpha", "alphas", type=float, multiple=True, help="--invariance: the factors α [default: 0.2, 5.9].")
@click.option("--layer", "layers", type=click.IntRange(1), multiple=True,
              help="--invariance: hidden layers to rescale (1-based) [default: all].")
@click.option("--list", "list_only", is_flag=True, help="List the measures: paper, definition, expected invariance.")
@click.option("--force", is_flag=True, help="Recompute even the measures RUN/flatness.json holds.")
@click.option("--out", type=click.Path(), default=None, help="Also write the result as JSON to this file.")
@click.option("--json", "as_json", is_flag=True, help="Print a one-object JSON summary.")
def flatness(model, data_file, dataset, data_dir, train_size, test_size, data_seed, head, measures, settings, seed,
             eval_batch, invariance, alphas, layers, list_only, force, out, as_json):
    """Flatness measures of MODEL on its training set S, each with its invariance under α-rescaling.

    Keskar sharpness, Hessian norm/trace/top-k product, per-layer Hessians, spectral density,
    adaptive sharpness, PAC-Bayes flatness and sharpness (plain and magnitude-aware), Fisher–Rao
    norm, relative flatness, m-sharpness, path norm and spectral-norm product — every value grows
    with sharpness. `invariant_layerwise`/`invariant_neuronwise` are what each definition implies
    (`--invariance` measures them).

    \b
    tfflat flatness RUN                                   every measure, added to RUN/flatness.json
    tfflat flatness RUN --measures fisher_rao_norm,path_norm --json
    tfflat flatness m.keras --data d.npz --set rho=0.05   any Keras classifier, your data
    tfflat flatness RUN --invariance --layer 2            the invariance table, measured
    """
    from tfflat.errors import UserError
    from tfflat.flatness import measures as zoo

    selected = zoo.names(measures)
    if list_only:
        info = zoo.measure_info(selected)
        def yn(b):
            return "yes" if b else "no"

        emit({"measures": info}, as_json, [f"{'measure':<28} invariant: layer-/neuron-wise  definition  [paper]"] + [
            f"{n:<28} {yn(i['invariant_layerwise']):<4} {yn(i['invariant_neuronwise']):<4} {i['definition']}  "
            f"[{i['paper']}]" for n, i in info.items()])
        return
    if model is None:
        raise UserError("give MODEL (a run, a .keras file or a checkpoint folder), or --list")
    if (alphas or layers) and not invariance:
        raise UserError("--alpha and --layer go with --invariance")
    given = parse_settings(settings)
    inputs = open_inputs(model, data_file, dataset, data_dir, train_size, test_size, data_seed, head)
    record = _measure(inputs, selected, seed, given, eval_batch, force, head)
    if invariance:
        record["invariance"] = _invariance(inputs, selected, seed, given, eval_batch, alphas, layers, head)
    written = write_out(out, record)
    lines = _lines(record)
    lines += [f"saved in {f}" for f in (record["file"], written) if f]
    emit(record, as_json, lines)


def _measure(inputs, selected, seed, settings, eval_batch, force, head) -> dict:
    from tfflat.flatness import flatness_measures, flatness_measures_of_run
    from tfflat.flatness.measures import strict

    bar = Progress("flatness", len(selected), "measures")
    seen = []

    def callback(name, result):
        seen.append(name)
        bar.update(len(seen), f"{name} " + ("(stored)" if result.get("stored") else f"{result['seconds']:.1f}s"))

    try:
        with echo_warnings():
            if inputs.arrays is None:
                r = flatness_measures_of_run(inputs.opened.run, selected, seed, settings, eval_batch=eval_batch,
                                             force=force, callback=callback)
            else:
                results = flatness_measures(inputs.model, inputs.arrays["x_train"], inputs.arrays["y_train"], selected,
                                            seed, settings, head=head, eval_batch=eval_batch, errors="record",
                                            callback=callback)
                r = {"measures": {k: {**v, "stored": False} for k, v in strict(results).items()}, "file": None}
    finally:
        bar.close()
    return {"model": str(inputs.opened.path), "kind": inputs.opened.kind, **r}


def _invariance(inputs, selected, seed, settings, eval_batch, alphas, layers, head) -> list[dict]:
    from tfflat.flatness import invariance_of_run, invariance_table
    from tfflat.flatness.invariance import ALPHAS, hidden_layers
    from tfflat.flatness.measures import finite

    alphas = list(alphas) or list(ALPHAS)
    layers = list(layers) or hidden_layers(inputs.model)
    bar = Progress("invariance", 2 * len(layers) * len(alphas), "rescaled copies")
    seen = []

    def callback(kind, layer, alpha):
        seen.append(1)
        bar.update(len(seen) - 1, f"{kind}-wise, layer {layer}, α {alpha:g}")

    options = dict(alphas=alphas, layers=layers, eval_batch=eval_batch, callback=callback)
    try:
        with echo_warnings():
            if inputs.arrays is None:
                rows = invariance_of_run(inputs.opened.run, selected, seed, settings, **options)
            else:
                rows = invariance_table(inputs.model, inputs.arrays["x_train"], inputs.arrays["y_train"], selected,
                                        seed=seed, settings=settings, head=head, **options)
    finally:
        bar.close()
    return finite(rows)


def _lines(record: dict) -> list[str]:
    from tfflat.flatness.invariance import format_table

    def yn(b):
        return "yes" if b else "no"

    head = f"{'measure':<28} {'value':>12}  {'invariant: layer-wise':<22}{'neuron-wise':<12} {'seconds':>8}"
    lines = [head, "-" * len(head)]
    problems = []
    for name, r in record["measures"].items():
        value = "—" if r["value"] is None else f"{r['value']:.6g}"
        seconds = "stored" if r.get("stored") else f"{r.get('seconds', 0.0):.1f}"
        lines.append(f"{name:<28} {value:>12}  {yn(r['invariant_layerwise']):<22}{yn(r['invariant_neuronwise']):<12} "
                     f"{seconds:>8}")
        if r.get("reason"):
            problems.append(f"{name}: {r['reason']}")
    lines.append("(invariance: what each definition implies; --invariance measures it)")
    lines += problems
    if "invariance" in record:
        lines += ["", "α-rescaling, expected vs measured (relative change):"]
        lines += format_table([{**r, **{k: (float("inf") if r[k] is None else r[k]) for k in
                                        ("max_change_layerwise", "max_change_neuronwise")}}
                               for r in record["invariance"]]).splitlines()
    return lines
