"""The weight stream of the Boolean prior sampler, in float64 numpy: its definition (SPEC §5.1).

The Gaussian weights (W ~ N(0, σw²/fan_in), b ~ N(0, σb²)) of sample ``s`` come from a
counter-based stream: a SplitMix64 key per sample (Steele et al. 2014), then two rounds of a
low-bias 32-bit mixer per weight and Box–Muller (:func:`reference_normals`). So sample ``s`` has the
same weights however a run is batched, chunked, threaded or interrupted.
:mod:`tfflat.boolean.evaluator` computes the same stream in float32 inside XLA; the functions here
are what it is tested against.
"""

from __future__ import annotations

import math

import numpy as np

from tfflat import defaults

RNG = "splitmix64+weyl32+mix32x2+box-muller-sin"     # recorded with the state; change it if the stream changes
GAMMA, GAMMA32 = 0x9E3779B97F4A7C15, 0x9E3779B9     # golden-ratio increments
_MASK = (1 << 64) - 1
# xorshift-multiply mixers (dtype, shifts, multipliers): SplitMix64's finaliser (Steele et al. 2014)
# and the low-bias 32-bit mixer of Wellons' hash-prospector; both are bijections
SPLITMIX64 = (np.uint64, (30, 27, 31), (0xBF58476D1CE4E5B9, 0x94D049BB133111EB))
LOWBIAS32 = (np.uint32, (16, 15, 15), (0x21F0AAAD, 0x735A2D97))


def mix(x, spec) -> np.ndarray:
    """Xorshift-multiply mixer ``spec``: x ← (x ⊕ x ≫ s)·m for each (s, m), then x ⊕ x ≫ s_last."""
    (dtype, shifts, mults) = spec
    x = np.asarray(x, dtype)
    with np.errstate(over="ignore"):
        for sh, m in zip(shifts, mults):
            x = (x ^ (x >> dtype(sh))) * dtype(m)
    return x ^ (x >> dtype(shifts[-1]))


def stream_key(seed: int) -> int:
    """The 64-bit key of a seed's weight stream (seeds are any integers)."""
    return int(mix(np.uint64((int(seed) * GAMMA) & _MASK) ^ np.uint64(0x5DEECE66D), SPLITMIX64))


def sample_keys(seed: int, start: int, count: int) -> np.ndarray:
    """The 64-bit keys of samples ``start … start+count-1``: SplitMix64 outputs, all distinct."""
    idx = np.arange(start, start + count, dtype=np.uint64) + np.uint64(1)
    with np.errstate(over="ignore"):
        return mix(np.uint64(stream_key(seed)) + idx * np.uint64(GAMMA), SPLITMIX64)


def layer_sizes(bits: int, widths) -> list[tuple[int, int]]:
    """(fan_in, fan_out) of each dense layer of the n-bit FCN ``bits-widths…-1``."""
    dims = [bits, *widths, 1]
    return list(zip(dims[:-1], dims[1:]))


def normals_per_sample(bits: int, widths) -> int:
    return sum((i + 1) * o for i, o in layer_sizes(bits, widths))


def words(lo, hi, j):
    """The two 32-bit words (b, c) of normal ``j`` (1, 2, …) of the samples with key halves (lo, hi):
    b = mix(((lo + j·γ₃₂) mod 2³²) ⊕ hi), c = mix(b + hi), with Wellons' low-bias mixer (a
    bijection). For one sample, lo + j·γ₃₂ is a Weyl sequence, so its words are a SplitMix-style
    hash of distinct counters; the high half enters every word, so samples whose keys share a half
    still get unrelated words."""
    with np.errstate(over="ignore"):
        b = mix((np.asarray(lo, np.uint32) + np.asarray(j, np.uint32) * np.uint32(GAMMA32)) ^ hi, LOWBIAS32)
        return b, mix(b + np.asarray(hi, np.uint32), LOWBIAS32)


def reference_normals(seed: int, start: int, count: int, per_sample: int) -> np.ndarray:
    """The stream's standard normals for samples ``start … start+count-1`` in float64 numpy,
    shape (count, per_sample): the definition the compiled sampler is tested against.

    Sample s has the 64-bit key K = (lo, hi) of :func:`sample_keys`; its normal j (j = 1 …) is
    Box–Muller on the words (b, c) of :func:`words`: z = r·sin(πw/2) with r = √(−2 ln u),
    u = (⌊b/2⌋ + ½)·2⁻³¹ ∈ (0, 1), and w = c'·2⁻³¹ ∈ [−1, 1) for c' = c read as a signed 32-bit
    integer. Θ = πw/2 is uniform on [−π/2, π/2), and sin Θ has the arcsine law of the sine of an
    angle uniform on the circle, so z ~ N(0, 1) exactly as Box–Muller's r·sin(2πU)."""
    keys = sample_keys(seed, start, count)
    lo = (keys & np.uint64(0xFFFFFFFF)).astype(np.uint32)[:, None]
    hi = (keys >> np.uint64(32)).astype(np.uint32)[:, None]
    b, c = words(lo, hi, np.arange(1, per_sample + 1, dtype=np.uint32)[None, :])
    r = np.sqrt(-2.0 * np.log(((b >> np.uint32(1)).astype(np.float64) + 0.5) * 2.0 ** -31))
    return r * np.sin(np.pi / 2 * c.view(np.int32).astype(np.float64) * 2.0 ** -31)


def weight_scales(fan_in: int, sigma_w: float, sigma_b: float) -> np.ndarray:
    """Scales of one unit's incoming row (fan_in weights, then the bias): σw/√fan_in …, σb."""
    return np.array([sigma_w / math.sqrt(fan_in)] * fan_in + [sigma_b], np.float32)


def split_weights(z, bits: int, widths, sigma_w: float, sigma_b: float, reshape=np.reshape):
    """Standard normals (B, per_sample) → per layer G (B, fan_out, fan_in + 1), scaled: row j is
    unit j's incoming weights (σw/√fan_in · N(0,1)) followed by its bias (σb · N(0,1))."""
    out, at = [], 0
    for fan_in, fan_out in layer_sizes(bits, widths):
        g = reshape(z[:, at:at + fan_out * (fan_in + 1)], (-1, fan_out, fan_in + 1)) * weight_scales(
            fan_in, sigma_w, sigma_b)
        at += fan_out * (fan_in + 1)
        out.append(g)
    return out


def reference_functions(seed: int, start: int, count: int, bits: int, widths=defaults.FCN_PRESETS["fcn"],
                        sigma_w: float = defaults.SIGMAS["boolean"][0],
                        sigma_b: float = defaults.SIGMAS["boolean"][1], normals=None, logits: bool = False):
    """The outputs (count, 2ⁿ) of samples ``start…`` evaluated in float64 numpy (slow; for tests).

    ``normals`` (count, per_sample): evaluate these standard normals instead of the stream's (e.g.
    the compiled stream's float32 ones, to test the evaluation alone). ``logits``: also return the
    output pre-activations (count, 2ⁿ)."""
    from tfflat.data import boolean_inputs

    z = reference_normals(seed, start, count, normals_per_sample(bits, widths)) if normals is None else normals
    h = np.broadcast_to(boolean_inputs(bits).astype(np.float64), (count, 2 ** bits, bits))
    layers = split_weights(np.asarray(z, np.float64), bits, widths, sigma_w, sigma_b)
    for i, g in enumerate(layers):
        h = h @ np.swapaxes(g[:, :, :-1], 1, 2) + g[:, None, :, -1]
        if i < len(layers) - 1:
            h = np.maximum(h, 0.0)
    f = (h[..., 0] >= 0).astype(np.uint8)
    return (f, h[..., 0]) if logits else f
