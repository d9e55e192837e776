"""Independent float64 truths for the measure zoo: logistic regression in closed form, tiny ReLU nets in numpy."""

import numpy as np
from scipy.special import expit, log_ndtr


def ce(z, y):
    """Sigmoid cross-entropy per example, float64."""
    return np.logaddexp(0, z) - y * z


def logistic(model):
    """(θ, b) of an Input → Dense(1) model, float64."""
    k, b = model.get_weights()
    return k.astype(np.float64).ravel(), float(b[0])


def augmented(x):
    """x̃ = (x, 1): the bias as a weight on a constant input."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    return np.concatenate([x, np.ones((len(x), 1))], 1)


def gauss_ce(z, s, y, nodes=80):
    """E_ζ CE(z + s ζ, y), ζ ~ N(0, 1), by Gauss–Hermite quadrature (per example)."""
    t, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = w / w.sum()
    return (ce(z[:, None] + s[:, None] * t[None, :], y[:, None]) * w[None, :]).sum(1)


def gauss_error(z, s, y):
    """P(prediction wrong) for a logit z + s ζ, ζ ~ N(0, 1): Φ(−m/s) with m = (2y − 1) z the signed margin."""
    m = (2 * y - 1) * z
    return np.exp(log_ndtr(-m / s))


def relu_forward(weights, x):
    """(penultimate features h, logits z) of a Dense-ReLU net [K0, b0, …, K_L, b_L], float64."""
    h = np.asarray(x, np.float64).reshape(len(x), -1)
    pairs = list(zip(weights[::2], weights[1::2]))
    for k, b in pairs[:-1]:
        h = np.maximum(h @ np.asarray(k, np.float64) + np.asarray(b, np.float64), 0)
    k, b = pairs[-1]
    return h, (h @ np.asarray(k, np.float64) + np.asarray(b, np.float64)).ravel()


def sigmoid_prime(z):
    p = expit(z)
    return p * (1 - p)


def rescaled(model, kind, layer, alpha, units=None):
    """A copy of ``model`` α-rescaled with tfflat.rescale (layer- or neuron-wise)."""
    from tfflat.flatness.invariance import rescaled_copy

    return rescaled_copy(model, kind, layer, alpha, units)
