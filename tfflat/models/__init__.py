"""Model builders: the paper's FCNs (prior-matching init) and ResNet50, from a JSON-able spec."""

from __future__ import annotations

import math

from tfflat import defaults, memory, validate
from tfflat.errors import UserError

RESNET50_PARAMETERS = 23_536_641       # trainable: Keras' ResNet50 trunk (include_top=False) + Dense(1)
OPTIMIZER_SLOTS = {"sgd": 1, "gd": 1, "momentum": 1, "adam": 2, "adagrad": 1, "rmsprop": 2, "entropy-sgd": 4}


def model_spec(model: str, task: str, input_shape, widths=None, sigma_w=None, sigma_b=None,
               bn_momentum=None) -> dict:
    """The JSON-able description of a model: ``fcn`` (d-40-40-1), ``fcn-small`` (d-10-40-1), a custom
    ``fcn:W1,W2,…`` or ``resnet50``; σw, σb default to the task's (SPEC §2)."""
    sw, sb = defaults.SIGMAS.get(task, defaults.SIGMAS["mnist"])
    sigma_w = sw if sigma_w is None else validate.number("sigma_w", sigma_w, above=0)
    sigma_b = sb if sigma_b is None else validate.number("sigma_b", sigma_b, least=0)
    if not isinstance(model, str):
        raise UserError(f"`model` must be a name (fcn, fcn-small, fcn:W1,W2,… or resnet50), got {model!r}")
    if model == "resnet50":
        if tuple(input_shape) != (32, 32, 3):
            raise UserError(f"resnet50 takes 32×32×3 images; the {task} task has inputs {tuple(input_shape)}; "
                            "use --model fcn or --dataset cifar_cats_cars")
        bn_momentum = validate.number("bn_momentum", bn_momentum, least=0, below=1, none=True)
        return {"kind": "resnet50", "input_shape": list(input_shape), "bn_momentum": bn_momentum}
    if model in defaults.FCN_PRESETS:
        widths = defaults.FCN_PRESETS[model] if widths is None else widths
    elif model.startswith("fcn:"):
        try:
            widths = tuple(int(w) for w in model[4:].split(","))
        except ValueError:
            raise UserError(f"bad model {model!r}: write fcn:W1,W2,… with integer widths") from None
    else:
        raise UserError(f"unknown model {model!r}; choose fcn, fcn-small, fcn:W1,W2,… or resnet50")
    if not widths or min(int(w) for w in widths) < 1:
        raise UserError(f"bad model {model!r}: the hidden widths must be integers ≥ 1")
    return {"kind": "fcn", "input_shape": list(input_shape), "widths": [int(w) for w in widths],
            "sigma_w": sigma_w, "sigma_b": sigma_b}


def build(spec: dict, seed: int | None = 0):
    """Build a fresh Keras model from :func:`model_spec`'s dict."""
    if spec["kind"] == "fcn":
        from tfflat.models.fcn import fcn
        return fcn(spec["input_shape"], spec["widths"], spec["sigma_w"], spec["sigma_b"], seed=seed)
    if spec["kind"] == "resnet50":
        from tfflat.models.resnet import resnet50
        return resnet50(spec["input_shape"], seed=seed, bn_momentum=spec.get("bn_momentum"))
    raise UserError(f"unknown model kind {spec['kind']!r}")


def parameter_count(spec: dict) -> int:
    """Trainable parameters of the model :func:`build` makes from ``spec`` (without building it)."""
    if spec["kind"] == "resnet50":
        return RESNET50_PARAMETERS
    sizes = [math.prod(spec["input_shape"]), *spec["widths"], 1]
    return sum(a * b + b for a, b in zip(sizes, sizes[1:]))


def training_bytes(spec: dict, n_fit: int, n_eval: int, batch_size: int, optimizer: str = "sgd") -> int:
    """A lower estimate of the memory that training ``spec`` needs: float32 weights, gradients, optimizer
    slots and a checkpoint's copy, the inputs (held three times: the splits, S ∪ A and the evaluation
    set) and, for an FCN, the activations of a minibatch and of the one-call evaluation."""
    p = parameter_count(spec)
    slots = OPTIMIZER_SLOTS.get(optimizer, 2)
    d = math.prod(spec["input_shape"])
    total = 4 * p * (3 + slots) + 4 * d * (n_eval + n_fit + n_eval)
    if spec["kind"] == "fcn":
        total += 4 * 3 * sum(spec["widths"]) * (min(batch_size, max(n_fit, 1)) + n_eval)
    return total


def check_training_memory(spec: dict, n_fit: int, n_eval: int, batch_size: int, optimizer: str = "sgd") -> None:
    """Refuse up front (one :class:`UserError` line with the numbers) a model whose training cannot fit."""
    p = parameter_count(spec)
    memory.require(training_bytes(spec, n_fit, n_eval, batch_size, optimizer),
                   f"training this {spec['kind']} ({p:,} parameters)", "choose smaller widths (`model`) or sizes")


def check_matches(spec: dict, model, where: str = "the model") -> None:
    """A :class:`UserError` unless ``model`` is the network ``spec`` describes (so a kernel built from the
    spec is the model's): an FCN's input shape, widths and σw, σb read from its initialisers; a ResNet50's
    input shape and parameter count."""
    from tfflat.data.arrays import example_shape

    shape = example_shape(model)
    if shape is not None and list(shape) != list(spec["input_shape"]):
        raise UserError(f"{where} takes inputs of shape {tuple(shape)}, but its model_spec says "
                        f"{tuple(spec['input_shape'])}; the run's files do not belong together (retrain it)")
    if spec["kind"] == "resnet50":
        p = sum(math.prod(v.shape) for v in model.trainable_variables)
        if p != RESNET50_PARAMETERS:
            raise UserError(f"{where} has {p:,} parameters, but its model_spec says resnet50 "
                            f"({RESNET50_PARAMETERS:,}); the run's files do not belong together (retrain it)")
        return
    from tfflat.prior.kernels import fcn_structure

    import keras

    fcn, why = fcn_structure(model)
    if fcn is None:
        raise UserError(f"{where} is not the FCN its model_spec describes ({why}); the run's files do not belong "
                        "together (retrain it)")
    widths = [l.units for l in model.layers if isinstance(l, keras.layers.Dense)]
    if widths != list(spec["widths"]) + [1]:
        raise UserError(f"{where} has Dense widths {widths}, but its model_spec says {list(spec['widths']) + [1]}; "
                        "the run's files do not belong together (retrain it)")
    for name, got in (("sigma_w", fcn["sigma_w"]), ("sigma_b", fcn["sigma_b"])):
        want = float(spec[name])
        if any(not math.isclose(g, want, rel_tol=1e-5, abs_tol=1e-12) for g in got):
            raise UserError(f"{where} was initialised with {name} {', '.join(f'{g:.4g}' for g in got)}, but its "
                            f"model_spec says {want:g}; the prior's kernel would not be the model's (retrain it)")
