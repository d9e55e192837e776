"""The paper's optimizers by name, with its defaults (SPEC §3) and overridable hyperparameters.

``sgd`` (lr 0.01, batch 32, as in the authors' code), ``gd`` (full batch), ``momentum`` (0.9),
``adam``/``adagrad``/``rmsprop`` (Keras defaults) and ``entropy-sgd`` (Chaudhari et al. 2019).
"""

from __future__ import annotations

import inspect

from tfflat import defaults
from tfflat.errors import UserError

NAMES = tuple(defaults.OPTIMIZERS)


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
        params["learning_rate"] = float(learning_rate)
    signature = inspect.signature(_keras_class(name).__init__).parameters
    allowed = set(signature) - {"self", "name", "kwargs"}
    for key, value in args.items():
        if key not in allowed:
            raise UserError(f"optimizer {name} has no argument {key!r}; known: {', '.join(sorted(allowed))}")
        default = params.get(key, signature[key].default)
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)          # --opt-arg momentum=1 → 1.0 (Keras checks types)
        params[key] = value
    return params


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
