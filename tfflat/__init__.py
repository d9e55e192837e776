"""tfflat: flatness versus the Bayesian prior log P(f) as predictors of generalization.

Reimplements "Why flatness does and does not correlate with generalization for deep neural
networks" for TensorFlow 2 / Keras 3.  Submodules are imported lazily so that ``import tfflat``
(and ``tfflat --help``) stays fast; TensorFlow is loaded by the modules that need it.
"""

__version__ = "0.1.0"

from tfflat.errors import UserError  # noqa: E402,F401
