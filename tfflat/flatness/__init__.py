"""Flatness of a trained network (SPEC §4): Keskar sharpness and the Hessian spectrum of the loss on S.

Both measure the mean sigmoid cross-entropy on S with the network in inference mode (BatchNorm on
its moving statistics) and leave the model's weights untouched.
"""

from tfflat.flatness.hessian import (HVP, HessianResult, hessian_measures, hutchinson_trace, hvp, spectral_norm,
                                     top_eigenvalues)
from tfflat.flatness.sharpness import SharpnessResult, sharpness

__all__ = ["HVP", "HessianResult", "SharpnessResult", "hessian_measures", "hutchinson_trace", "hvp", "sharpness",
           "spectral_norm", "top_eigenvalues"]
