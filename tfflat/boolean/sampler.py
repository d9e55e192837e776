"""Direct sampling of the prior P(f) over Boolean functions (paper §5.1, SPEC §5).

Draw the weights of an n-bit ReLU FCN from the initialisation distribution
(W ~ N(0, σw²/fan_in), b ~ N(0, σb²)), evaluate it on all 2ⁿ inputs, and count how often each
function f : {0,1}ⁿ → {0,1} (label 1 iff logit ≥ 0) comes out. P(f) ≈ count / samples.

Speed: everything for a batch of networks happens in compiled TensorFlow. The Gaussian weights are
made in-graph from a counter-based generator (SplitMix64, Steele et al. 2014, on the counter
``sample index × words per sample + word``) and the Box–Muller transform, so sample ``s`` has the
same weights however the run is batched, chunked, threaded or interrupted: a resumed run gives the
table of an uninterrupted one. Each network's 2ⁿ output bits are packed in-graph into 64-bit words
(word w, bit j = f(x_{64w+j})); counting is numpy ``unique`` per chunk of samples. Each finished
chunk's table is written atomically to ``STATE/chunks/`` so a stopped run resumes there.
"""

from __future__ import annotations

import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from tfflat import defaults
from tfflat.errors import UserError

MAX_BITS = 20
RNG = "splitmix64+box-muller/1"     # recorded with the state; change it if the weight stream changes
_GAMMA = 0x9E3779B97F4A7C15
_M1, _M2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
_MASK = (1 << 64) - 1


# ---------------------------------------------------------------------------------------------
# keys: Σ_k f(x_k)·2^k as little-endian 64-bit words, and its hex form (tfflat.data.function_key)


def n_words(bits: int) -> int:
    """64-bit words per function of ``bits`` inputs (2^bits output bits)."""
    return max(1, (2 ** bits) // 64)


def pack(f: np.ndarray) -> np.ndarray:
    """Outputs ``f`` of shape (m, 2ⁿ) in {0, 1} → words (m, n_words) uint64 (bit k = f(x_k))."""
    f = np.asarray(f).astype(bool)
    m, size = f.shape
    padded = np.zeros((m, max(size, 64)), bool)
    padded[:, :size] = f
    return np.packbits(padded, axis=1, bitorder="little").view("<u8").astype(np.uint64)


def unpack(words: np.ndarray, bits: int) -> np.ndarray:
    """Inverse of :func:`pack`: (m, n_words) uint64 → (m, 2ⁿ) uint8 outputs."""
    words = np.ascontiguousarray(np.asarray(words, dtype="<u8")).reshape(len(words), -1)
    return np.unpackbits(words.view(np.uint8), axis=1, bitorder="little")[:, :2 ** bits]


def hex_keys(words: np.ndarray, bits: int) -> list[str]:
    """Hex keys (``tfflat.data.function_key``: MSB first, 2ⁿ/4 digits) of packed functions."""
    words = np.ascontiguousarray(np.asarray(words, dtype="<u8")).reshape(len(words), -1)
    m, w = words.shape
    digits = max(1, 2 ** bits // 4)
    if m == 0:
        return []
    text = words.view(np.uint8)[:, ::-1].tobytes().hex()      # each row: 16·w hex digits, MSB first
    width = 16 * w
    return [text[i * width + width - digits:(i + 1) * width] for i in range(m)]


def parse_keys(keys, bits: int) -> np.ndarray:
    """Hex keys → packed words (m, n_words) uint64."""
    w = n_words(bits)
    out = np.zeros((len(keys), w), np.uint64)
    for i, k in enumerate(keys):
        v = int(k, 16)
        for j in range(w):
            out[i, j] = (v >> (64 * j)) & _MASK
    return out


def count_rows(words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of ``words`` (m, w) and how often each occurs (rows in byte order)."""
    words = np.ascontiguousarray(words, dtype=np.uint64)
    if len(words) == 0:
        return words.reshape(0, words.shape[1]), np.zeros(0, np.int64)
    void = words.view(np.dtype((np.void, 8 * words.shape[1]))).ravel()
    keys, counts = np.unique(void, return_counts=True)
    return keys.view(np.uint64).reshape(-1, words.shape[1]), counts.astype(np.int64)


def merge(tables) -> tuple[np.ndarray, np.ndarray]:
    """Sum a list of (keys, counts) tables into one."""
    tables = [t for t in tables if len(t[0])]
    if not tables:
        return np.zeros((0, 1), np.uint64), np.zeros(0, np.int64)
    if len(tables) == 1:
        return tables[0]
    keys = np.concatenate([k for k, _ in tables])
    counts = np.concatenate([c for _, c in tables])
    void = np.ascontiguousarray(keys).view(np.dtype((np.void, 8 * keys.shape[1]))).ravel()
    uniq, inverse = np.unique(void, return_inverse=True)
    total = np.bincount(inverse.ravel(), weights=counts, minlength=len(uniq))
    return uniq.view(np.uint64).reshape(-1, keys.shape[1]), np.rint(total).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# the weight stream


def _mix64_np(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(_M1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(_M2)
    return z ^ (z >> np.uint64(31))


def stream_key(seed: int) -> int:
    """The 64-bit key of a seed's weight stream (seeds are any integers)."""
    return int(_mix64_np(np.uint64((int(seed) * _GAMMA) & _MASK) ^ np.uint64(0x5DEECE66D)))


def layer_sizes(bits: int, widths) -> list[tuple[int, int]]:
    """(fan_in, fan_out) of each dense layer of the n-bit FCN ``bits-widths…-1``."""
    dims = [bits, *widths, 1]
    return list(zip(dims[:-1], dims[1:]))


def normals_per_sample(bits: int, widths) -> int:
    return sum((i + 1) * o for i, o in layer_sizes(bits, widths))


def reference_normals(seed: int, start: int, count: int, per_sample: int) -> np.ndarray:
    """The stream's standard normals for samples ``start … start+count-1`` in float64 numpy,
    shape (count, per_sample): the definition the compiled sampler is tested against.

    Sample s owns SplitMix64 outputs s·q … s·q+q−1 (q = ⌈per_sample/2⌉); output i is
    mix64(key + (i+1)·γ); its low 32 bits give the radius, its top 24 bits the angle of a
    Box–Muller pair; the q cosines come first, then the q sines."""
    q = (per_sample + 1) // 2
    idx = (np.arange(start * q, (start + count) * q, dtype=np.uint64) + np.uint64(1))
    with np.errstate(over="ignore"):
        x = _mix64_np(np.uint64(stream_key(seed)) + idx * np.uint64(_GAMMA))
    lo = (x & np.uint64(0xFFFFFFFF)).astype(np.float64)
    hi = (x >> np.uint64(40)).astype(np.float64)
    r = np.sqrt(-2.0 * np.log((lo + 0.5) * 2.0 ** -32))
    a = 2 * np.pi * hi * 2.0 ** -24
    z = np.concatenate([(r * np.cos(a)).reshape(count, q), (r * np.sin(a)).reshape(count, q)], axis=1)
    return z[:, :per_sample]


def split_weights(z, bits: int, widths, sigma_w: float, sigma_b: float, reshape=np.reshape):
    """Standard normals (B, per_sample) → per layer G (B, fan_out, fan_in + 1), scaled: row j is
    unit j's incoming weights (σw/√fan_in · N(0,1)) followed by its bias (σb · N(0,1))."""
    out, at = [], 0
    for fan_in, fan_out in layer_sizes(bits, widths):
        scale = np.array([sigma_w / math.sqrt(fan_in)] * fan_in + [sigma_b], np.float32)
        g = reshape(z[:, at:at + fan_out * (fan_in + 1)], (-1, fan_out, fan_in + 1)) * scale
        at += fan_out * (fan_in + 1)
        out.append(g)
    return out


def reference_functions(seed: int, start: int, count: int, bits: int, widths=(40, 40),
                        sigma_w: float = 1.0, sigma_b: float = 0.1) -> np.ndarray:
    """The outputs (count, 2ⁿ) of samples ``start…`` evaluated in float64 numpy (slow; for tests)."""
    from tfflat.data import boolean_inputs

    z = reference_normals(seed, start, count, normals_per_sample(bits, widths))
    h = np.broadcast_to(boolean_inputs(bits).astype(np.float64), (count, 2 ** bits, bits))
    layers = split_weights(z, bits, widths, sigma_w, sigma_b)
    for i, g in enumerate(layers):
        h = h @ np.swapaxes(g[:, :, :-1], 1, 2) + g[:, None, :, -1]
        if i < len(layers) - 1:
            h = np.maximum(h, 0.0)
    return (h[..., 0] >= 0).astype(np.uint8)


class _Network:
    """Compiled evaluation of ``batch`` random networks on all 2ⁿ inputs → packed words."""

    def __init__(self, bits: int, widths, sigma_w: float, sigma_b: float, seed: int, batch: int):
        import tensorflow as tf

        from tfflat.data import boolean_inputs

        self.batch, self.words = batch, n_words(bits)
        per = normals_per_sample(bits, widths)
        q = (per + 1) // 2
        key = tf.constant(np.uint64(stream_key(seed)))
        gamma, m1, m2 = (tf.constant(np.uint64(v)) for v in (_GAMMA, _M1, _M2))
        nout = 2 ** bits
        nbits32 = max(nout, 32)
        shifts = tf.constant(np.arange(32, dtype=np.uint32))
        two_pi = 2.0 * math.pi

        def sincos(u):
            # sin/cos(2πu), u ∈ [0, 1): quadrant reduction + minimax polynomials on [-π/4, π/4]
            # (Cephes sinf/cosf), |error| < 1e-7; XLA's own sin/cos are scalar and 5× slower here.
            quad = tf.round(4.0 * u)
            x = (u - 0.25 * quad) * two_pi
            x2 = x * x
            s = x + x * x2 * (-1.6666654611e-1 + x2 * (8.3321608736e-3 + x2 * -1.9515295891e-4))
            c = 1.0 - 0.5 * x2 + x2 * x2 * (4.166664568298827e-2 + x2 * (-1.388731625493765e-3
                                                                         + x2 * 2.443315711809948e-5))
            k = tf.cast(quad, tf.int32) % 4
            sin = tf.where(k == 0, s, tf.where(k == 1, c, tf.where(k == 2, -s, -c)))
            cos = tf.where(k == 0, c, tf.where(k == 1, -s, tf.where(k == 2, -c, s)))
            return sin, cos

        def normals(start):
            # SplitMix64 output i = mix64(key + (i+1)·γ); each 64-bit word → two Box–Muller normals
            idx = tf.cast(start, tf.uint64) * q + tf.cast(tf.range(batch * q, dtype=tf.int64), tf.uint64) + 1
            z = key + idx * gamma
            z = tf.bitwise.bitwise_xor(z, tf.bitwise.right_shift(z, tf.constant(np.uint64(30)))) * m1
            z = tf.bitwise.bitwise_xor(z, tf.bitwise.right_shift(z, tf.constant(np.uint64(27)))) * m2
            z = tf.bitwise.bitwise_xor(z, tf.bitwise.right_shift(z, tf.constant(np.uint64(31))))
            lo = tf.cast(tf.bitwise.bitwise_and(z, tf.constant(np.uint64(0xFFFFFFFF))), tf.uint32)
            hi = tf.cast(tf.bitwise.right_shift(z, tf.constant(np.uint64(40))), tf.uint32)
            r = tf.sqrt(-2.0 * tf.math.log((tf.cast(lo, tf.float32) + 0.5) * 2.0 ** -32))
            sin, cos = sincos(tf.cast(hi, tf.float32) * 2.0 ** -24)
            r, sin, cos = (tf.reshape(t, [batch, q]) for t in (r, sin, cos))
            return tf.concat([r * cos, r * sin], axis=1)[:, :per]

        width1 = widths[0]
        ones_unit = tf.constant(np.eye(1, bits + 1, bits, dtype=np.float32)[None])   # picks the input 1

        def weights(start):
            g = split_weights(normals(start), bits, widths, sigma_w, sigma_b, tf.reshape)
            # an extra first-layer unit with output 1 (relu(1) = 1) carries the next layer's bias
            g1 = tf.concat([g[0], tf.tile(ones_unit, [batch, 1, 1])], axis=1)
            return [tf.reshape(g1, [batch * (width1 + 1), bits + 1])] + g[1:]

        def head(u, g_out):
            # u: (B, width, 2ⁿ) last hidden pre-activations (bias included); g_out: (B, 1, width+1)
            z = tf.reduce_sum(tf.nn.relu(u) * g_out[:, 0, :-1, None], axis=1) + g_out[:, 0, -1:]
            f = tf.cast(z >= 0, tf.uint32)
            if nbits32 > nout:
                f = tf.pad(f, [[0, 0], [0, nbits32 - nout]])
            f = tf.reshape(f, [batch, nbits32 // 32, 32])
            w32 = tf.reduce_sum(tf.bitwise.left_shift(f, shifts), axis=2)   # disjoint bits: sum = or
            if nbits32 == 32:
                w32 = tf.pad(w32, [[0, 0], [0, 1]])
            return w32

        def augment(u):             # relu, and a row of ones that carries the next layer's bias
            return tf.concat([tf.nn.relu(u), tf.ones_like(u[:, :1, :])], axis=1)

        weights_c = tf.function(weights, jit_compile=True)
        augment_c = tf.function(augment, jit_compile=True)
        head_c = tf.function(head, jit_compile=True)
        x_aug = tf.constant(np.concatenate([boolean_inputs(bits), np.ones((nout, 1), np.float32)], 1).T)

        @tf.function
        def run(start):
            g1, *hidden, g_out = weights_c(start)
            # everything is transposed (units × inputs) so that layer 1 is one plain GEMM
            u = tf.reshape(tf.nn.relu(tf.matmul(g1, x_aug)), [batch, width1 + 1, nout])
            for i, g in enumerate(hidden):
                u = tf.matmul(g, u)                      # (B, w, w_prev+1) @ (B, w_prev+1, 2ⁿ)
                if i < len(hidden) - 1:
                    u = augment_c(u)
            if not hidden:                               # one hidden layer: drop the ones row
                u = u[:, :-1, :]
            return head_c(u, g_out)

        self._run = run

    def __call__(self, start: int) -> np.ndarray:
        """Packed functions of samples ``start … start+batch-1``: (batch, n_words) uint64."""
        import tensorflow as tf

        w32 = self._run(tf.constant(start, tf.int64)).numpy()
        return np.ascontiguousarray(w32).view("<u4").view("<u8").reshape(self.batch, self.words)
