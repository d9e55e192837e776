"""Flatness of a trained network (SPEC §4): Keskar sharpness and the Hessian spectrum of the loss on S,
and the measure zoo (:mod:`tfflat.flatness.measures`: adaptive, PAC-Bayes, Fisher–Rao, relative
flatness, m-sharpness, per-layer Hessians, spectral density, norms) with its α-rescaling
invariance table (:mod:`tfflat.flatness.invariance`).

All measure the mean sigmoid cross-entropy on S with the network in inference mode (BatchNorm on
its moving statistics) and leave the model's weights untouched.
"""

from tfflat.flatness.hessian import (HVP, HessianResult, hessian_measures, hutchinson_trace, hvp, spectral_norm,
                                     top_eigenvalues)
from tfflat.flatness.invariance import invariance_table
from tfflat.flatness.measures import MEASURES, flatness_measures, measure_info
from tfflat.flatness.sharpness import SharpnessResult, sharpness

__all__ = ["HVP", "HessianResult", "SharpnessResult", "hessian_measures", "hutchinson_trace", "hvp", "sharpness",
           "spectral_norm", "top_eigenvalues",
           "MEASURES", "flatness_measures", "invariance_table", "measure_info"]
