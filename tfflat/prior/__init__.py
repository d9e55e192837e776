"""The prior log P(f) of a network's function (SPEC §5, App. C–D).

- :mod:`tfflat.prior.kernels` — the analytic arc-cosine NNGP kernel of ReLU FCNs and the Monte-Carlo
  empirical kernel of eq. (7) for any Keras model;
- :mod:`tfflat.prior.ep` — Expectation Propagation for ln P(f), Heaviside or probit likelihood
  (its O(n³) linear algebra in :mod:`tfflat.prior.linalg`: SciPy, or TensorFlow on a GPU);
- :mod:`tfflat.prior.classifier` — the EP GP classifier and the GP's own error on E;
- :mod:`tfflat.prior.bounds` — the PAC-Bayes bound of eq. (4);
- :mod:`tfflat.prior.prior` — f of a run or of any Keras binary classifier, the matching kernel
  (content-keyed cache), the whole pipeline.

Names are imported lazily (TensorFlow loads only for kernels, or EP on its TensorFlow backend).
"""

import importlib

_EXPORTS = {
    "nngp_kernel": "kernels", "empirical_kernel": "kernels", "feature_model": "kernels",
    "ep_log_prior": "ep", "EPResult": "ep", "check_psd": "ep", "LIKELIHOODS": "ep",
    "EPClassifier": "classifier", "gp_test_error": "classifier",
    "pac_bayes_bound": "bounds",
    "kernel_for": "prior", "kernel_params": "prior", "kernel_key": "prior", "log_prior": "prior",
    "function_of_run": "prior", "log_prior_of_run": "prior", "KERNELS": "prior",
    "function_of_model": "prior", "log_prior_of_model": "prior", "model_kernel_params": "prior",
    "kernel_of_model": "prior", "KernelScaleWarning": "prior", "fcn_structure": "kernels",
}

__all__ = sorted(_EXPORTS)  # noqa: PLE0605


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"tfflat.prior.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'tfflat.prior' has no attribute {name!r}")
