"""Flatness of a trained network (SPEC §4): Keskar sharpness and the Hessian spectrum of the loss on S,
and the measure zoo (:mod:`tfflat.flatness.measures`: adaptive, PAC-Bayes, Fisher–Rao, relative
flatness, m-sharpness, per-layer Hessians, spectral density, norms) with its α-rescaling
invariance table (:mod:`tfflat.flatness.invariance`).

All measure the mean cross-entropy of the model's head on S (:mod:`tfflat.models.heads`: one logit,
a final sigmoid's pre-activation, two outputs, K classes) with the network in inference mode
(BatchNorm on its moving statistics) and leave the model's weights untouched. For a saved run,
:func:`sharpness_of_run`, :func:`hessian_of_run` and :func:`flatness_measures_of_run` add Table 1's
settings and a result cache.
"""

from tfflat.flatness.hessian import (HVP, HessianResult, hessian_measures, hutchinson_trace, hvp, spectral_norm,
                                     top_eigenvalues)
from tfflat.flatness.invariance import invariance_table
from tfflat.flatness.measures import MEASURES, flatness_measures, measure_info
from tfflat.flatness.sharpness import NotConvergedWarning, SharpnessResult, sharpness
from tfflat.flatness.stored import (flatness_measures_of_run, hessian_of_run, invariance_of_run,
                                    sharpness_of_run)

__all__ = ["HVP", "HessianResult", "NotConvergedWarning", "SharpnessResult", "hessian_measures", "hessian_of_run",
           "hutchinson_trace", "hvp", "sharpness", "sharpness_of_run", "spectral_norm", "top_eigenvalues",
           "MEASURES", "flatness_measures", "invariance_table", "measure_info", "flatness_measures_of_run",
           "invariance_of_run"]
