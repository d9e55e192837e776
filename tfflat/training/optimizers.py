"""The paper's optimizers by name, with its defaults (SPEC §3) and overridable hyperparameters.

``sgd`` (lr 0.01, batch 32, as in the authors' code), ``gd`` (full batch), ``momentum`` (0.9),
``adam``/``adagrad``/``rmsprop`` (Keras defaults) and ``entropy-sgd`` (Chaudhari et al. 2019).
"""

from __future__ import annotations

import inspect

from tfflat import defaults, validate
from tfflat.errors import UserError

NAMES = tuple(defaults.OPTIMIZERS)

# The valid range of each hyperparameter (validate.number's bounds); others only need to be finite.
RANGES = {
    "learning_rate": dict(above=0), "inner_lr": dict(above=0), "epsilon": dict(above=0),
    "clipnorm": dict(above=0), "clipvalue": dict(above=0), "global_clipnorm": dict(above=0),
    "loss_scale_factor": dict(above=0),
    "momentum": dict(least=0, most=1), "inner_momentum": dict(least=0, below=1), "beta_1": dict(least=0, below=1),
    "beta_2": dict(least=0, below=1), "rho": dict(least=0, below=1),
    "ema_momentum": dict(least=0, most=1), "alpha": dict(least=0, most=1),
    "weight_decay": dict(least=0), "initial_accumulator_value": dict(least=0), "gamma0": dict(least=0),
    "gamma1": dict(least=0), "noise": dict(least=0), "noise_factor": dict(least=0),
}
INTEGERS = {"inner_steps": 1, "ema_overwrite_frequency": 1, "gradient_accumulation_steps": 1}


def _keras_class(name: str):
    import keras

    if name == "entropy-sgd":
        from tfflat.training.entropy_sgd import EntropySGD
        return EntropySGD
    return {"sgd": keras.optimizers.SGD, "gd": keras.optimizers.SGD, "momentum": keras.optimizers.SGD,
            "adam": keras.optimizers.Adam, "adagrad": keras.optimizers.Adagrad,
            "rmsprop": keras.optimizers.RMSprop}[name]


def resolve(name: str, learning_rate: float | None = None, **args) -> dict:
    """Validate ``name`` and its overrides; return the full hyperparameter dict (JSON-able)."""
    if name not in defaults.OPTIMIZERS:
        raise UserError(f"unknown optimizer {name!r}; choose one of {', '.join(NAMES)}")
    params = dict(defaults.OPTIMIZERS[name])
    if learning_rate is not None:
        params["learning_rate"] = validate.number("learning_rate", learning_rate, **RANGES["learning_rate"])
    signature = inspect.signature(_keras_class(name).__init__).parameters
    allowed = set(signature) - {"self", "name", "kwargs"}
    for key, value in args.items():
        if key not in allowed:
            raise UserError(f"optimizer {name} has no argument {key!r}; known: {', '.join(sorted(allowed))}")
        try:
            params[key] = _check_arg(key, value, params.get(key, signature[key].default))
        except UserError as err:
            raise UserError(f"optimizer {name}: {err}") from None
    return params


def _check_arg(key: str, value, default):
    """One hyperparameter of ``opt_args``, checked against its default's type and its range."""
    label = f"opt_args {key}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise UserError(f"`opt_args` {key} must be true or false, got {value!r}")
        return value
    if key == "seed":
        return validate.seed(label, value, none=True)
    if key in INTEGERS:
        return validate.integer(label, value, least=INTEGERS[key], none=True)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"`opt_args` {key} must be a number, got {value!r}")
    value = validate.number(label, value, **RANGES.get(key, {}))
    return int(value) if isinstance(default, int) and value.is_integer() else value


def make(name: str, learning_rate: float | None = None, **args):
    """A fresh Keras optimizer for ``name`` (see :func:`resolve`)."""
    params = resolve(name, learning_rate, **args)
    try:
        return _keras_class(name)(**params)
    except (ValueError, TypeError) as err:
        if isinstance(err, UserError):
            raise
        raise UserError(f"optimizer {name}: {str(err).splitlines()[0]}; check --lr and --opt-arg") from None


def parse_opt_args(items) -> dict:
    """``["beta_1=0.8", "nesterov=true"]`` → ``{"beta_1": 0.8, "nesterov": True}``."""
    out = {}
    for item in items or ():
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UserError(f"--opt-arg {item!r} is not KEY=VALUE")
        low = raw.strip().lower()
        if low in ("true", "false"):
            out[key.strip()] = low == "true"
            continue
        try:
            value = float(raw)
            out[key.strip()] = int(value) if value.is_integer() and "." not in raw and "e" not in low else value
        except ValueError:
            raise UserError(f"--opt-arg {key}: {raw!r} is not a number or true/false") from None
    return out
