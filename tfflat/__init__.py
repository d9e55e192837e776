"""tfflat: flatness versus the Bayesian prior log P(f) as predictors of generalization.

Reimplements "Why flatness does and does not correlate with generalization for deep neural
networks" for TensorFlow 2 / Keras 3.  Submodules are imported lazily so that ``import tfflat``
(and ``tfflat --help``) stays fast; TensorFlow is loaded by the modules that need it.

``tfflat.measure(model, x_train, y_train, x_test, y_test)`` measures any Keras classifier
(:mod:`tfflat.api`); ``tfflat.keras.FlatnessCallback`` measures during ``model.fit``.
"""

import importlib

__version__ = "0.1.0"

from tfflat.errors import UserError  # noqa: E402,F401


def __getattr__(name):
    if name == "measure":
        from tfflat.api import measure

        return measure
    if name == "keras":
        return importlib.import_module("tfflat.keras")
    raise AttributeError(f"module 'tfflat' has no attribute {name!r}")
