"""Model builders: the paper's FCNs (prior-matching init) and ResNet50, from a JSON-able spec."""

from __future__ import annotations

from tfflat import defaults
from tfflat.errors import UserError


def model_spec(model: str, task: str, input_shape, widths=None, sigma_w=None, sigma_b=None,
               bn_momentum=None) -> dict:
    """The JSON-able description of a model: ``fcn`` (d-40-40-1), ``fcn-small`` (d-10-40-1), a custom
    ``fcn:W1,W2,…`` or ``resnet50``; σw, σb default to the task's (SPEC §2)."""
    sw, sb = defaults.SIGMAS.get(task, defaults.SIGMAS["mnist"])
    sigma_w = sw if sigma_w is None else float(sigma_w)
    sigma_b = sb if sigma_b is None else float(sigma_b)
    if model == "resnet50":
        if tuple(input_shape) != (32, 32, 3):
            raise UserError(f"resnet50 takes 32×32×3 images; the {task} task has inputs {tuple(input_shape)}; "
                            "use --model fcn or --dataset cifar_cats_cars")
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
