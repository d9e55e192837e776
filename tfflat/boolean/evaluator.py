"""The compiled evaluator of the Boolean prior sampler: one XLA call evaluates a block of random
networks on all 2ⁿ inputs and returns their functions packed (:mod:`tfflat.data.keys`).

The weights are made in-graph from the stream of :mod:`tfflat.boolean.stream` (float32 here, float64
there; the tests hold the two together), so sample ``s`` is the same network in every call. The
graph pieces (:func:`weights`, :func:`logits`, :func:`pack`) are functions of tensors, composed by
:class:`Network` (and by ``benchmarks/bench_sampler.py --profile``, which times them one by one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tfflat.boolean.stream import (GAMMA, GAMMA32, LOWBIAS32, SPLITMIX64, layer_sizes, normals_per_sample,
                                   stream_key, weight_scales)
from tfflat.data.keys import n_words

# float32 kernels of the compiled stream: ln x (Cephes logf, |relative error| < 1e-7, no division so
# the normals stay one fused, vectorised loop) and sin(πw/2)/w on [−1, 1] (Taylor to w¹², error < 1e-9)
_LOG_P = (7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1, 1.4249322787e-1,
          -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1)
_SIN_P = tuple((-1) ** k * (math.pi / 2) ** (2 * k + 1) / math.factorial(2 * k + 1) for k in range(6, -1, -1))

# XLA options of the sampler's worker processes (:mod:`tfflat.boolean.workers`), measured on the
# 2-core Sapphire Rapids: 512-bit vectors (XLA's CPU default is 256: the normals run ~1.6× faster)
# and copy insertion by region analysis (without it XLA copies the loop-carried normals twice a step)
XLA_FLAGS = ("--xla_cpu_prefer_vector_width=512", "--xla_cpu_copy_insertion_use_region_analysis=true")


# ---------------------------------------------------------------------------------------------
# the stream in graph (float32): see stream.sample_keys, stream.words, stream.reference_normals


def _mix(x, spec):
    """``stream.mix`` in graph."""
    import tensorflow as tf

    dtype, shifts, mults = spec
    for sh, m in zip(shifts, mults):
        x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(dtype(sh)))) * tf.constant(dtype(m))
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(dtype(shifts[-1]))))


def _poly(coef, x):
    p = coef[0]
    for c in coef[1:]:
        p = p * x + c
    return p


def _log(x):
    """ln x for normal float32 x > 0: x = 2^e·m, m ∈ [√½, √2), ln m by Cephes' polynomial."""
    import tensorflow as tf

    i = tf.bitcast(x, tf.int32)
    e = tf.bitwise.right_shift(i - 0x3F3504F3, 23)
    f = tf.bitcast(i - tf.bitwise.left_shift(e, 23), tf.float32) - 1.0
    z = f * f
    return f + (f * z * _poly(_LOG_P, f) - 0.5 * z) + tf.cast(e, tf.float32) * math.log(2)


def keys(start, key, count: int):
    """(lo, hi) 32-bit halves, (count, 1) each, of the keys of samples ``start …`` (int64 tensor)
    of the stream ``key`` (uint64 tensor)."""
    import tensorflow as tf

    idx = tf.cast(start + tf.range(count, dtype=tf.int64) + 1, tf.uint64)
    z = _mix(key + idx * tf.constant(np.uint64(GAMMA)), SPLITMIX64)
    lo = tf.cast(tf.bitwise.bitwise_and(z, tf.constant(np.uint64(0xFFFFFFFF))), tf.uint32)
    return lo[:, None], tf.cast(tf.bitwise.right_shift(z, tf.constant(np.uint64(32))), tf.uint32)[:, None]


def normals(lo, hi, jgamma):
    """Standard normals j of each sample given jgamma = j·γ₃₂ mod 2³² (1, m) uint32: (count, m)."""
    import tensorflow as tf

    b = _mix(tf.bitwise.bitwise_xor(lo + jgamma, hi), LOWBIAS32)
    c = _mix(b + hi, LOWBIAS32)
    u = (tf.cast(tf.bitcast(tf.bitwise.right_shift(b, tf.constant(np.uint32(1))), tf.int32), tf.float32) + 0.5) * 2.0 ** -31
    w = tf.cast(tf.bitcast(c, tf.int32), tf.float32) * 2.0 ** -31        # rounded to float32: |Δz| < 4e-7
    return tf.sqrt(-2.0 * _log(u)) * (w * _poly(_SIN_P, w * w))


def jgamma(j) -> np.ndarray:
    """j·γ₃₂ mod 2³² for stream indices ``j`` (1, m) uint32, the constant operand of :func:`normals`."""
    return (np.asarray(j, np.uint64) * GAMMA32 % 2 ** 32).astype(np.uint32).reshape(1, -1)


# ---------------------------------------------------------------------------------------------
# the network in graph


@dataclass(frozen=True)
class Layout:
    """Which scaled normals a step carries: one array per hidden layer's weight matrix (its rows:
    unit k's weights, then its bias), and one for the first layer's rows, the output unit's row and
    padding to 16 (normals past the sample's last: drawn, unused). ``index[a]`` are the stream
    indices j of array a, ``scale[a]`` its scales (σw/√fan_in, σb)."""

    sizes: tuple
    index: tuple
    scale: tuple

    @classmethod
    def of(cls, bits: int, widths, sigma_w: float, sigma_b: float) -> "Layout":
        sizes = tuple(layer_sizes(bits, widths))
        ends = np.cumsum([0] + [(i + 1) * o for i, o in sizes])
        index = [np.arange(ends[k], ends[k + 1]) + 1 for k in range(1, len(sizes) - 1)]
        small = np.concatenate([np.arange(ends[0], ends[1]), np.arange(ends[-2], ends[-1])]) + 1
        pad = -(-len(small) // 16) * 16 - len(small)
        index.append(np.concatenate([small, ends[-1] + 1 + np.arange(pad)]))
        scale = [np.tile(weight_scales(i, sigma_w, sigma_b), o) for i, o in sizes]
        scale = scale[1:-1] + [np.concatenate([scale[0], scale[-1], np.zeros(pad, np.float32)])]
        return cls(sizes, tuple(index), tuple(s.astype(np.float32) for s in scale))


def weights(layout: Layout, start, key, batch: int) -> list:
    """The carried arrays (batch, ·) of samples ``start … start+batch-1``: scaled weights and biases."""
    import tensorflow as tf

    lo, hi = keys(start, key, batch)
    return [normals(lo, hi, tf.constant(jgamma(j))) * tf.constant(s[None, :])
            for j, s in zip(layout.index, layout.scale)]


def logits(layout: Layout, carried, batch: int):
    """Output pre-activations (batch, 2ⁿ) of the networks in ``carried`` on all 2ⁿ inputs: layer 1
    as n fused multiply-adds per (unit, input), ReLU and a constant-1 row (the next layer's bias),
    the hidden layers as batched GEMMs (B, w, w'+1) × (B, w'+1, 2ⁿ) (XLA's YNNPACK kernel), the
    output unit as w fused multiply-adds."""
    import tensorflow as tf

    from tfflat.data import boolean_inputs

    (n, w1), (wl, _) = layout.sizes[0], layout.sizes[-1]
    *hidden, small = carried
    g1 = tf.reshape(small[:, :(n + 1) * w1], [batch, w1, n + 1])
    g_out = small[:, (n + 1) * w1:(n + 1) * w1 + wl + 1]
    x_t = tf.constant(boolean_inputs(n).T)                         # (n, 2ⁿ)
    u = g1[:, :, n:]                                               # bias + Σ_i w_i x_i
    for i in range(n):
        u = u + g1[:, :, i:i + 1] * x_t[i][None, None, :]
    for g, (i, o) in zip(hidden, layout.sizes[1:-1]):
        h = tf.nn.relu(u)
        u = tf.matmul(tf.reshape(g, [batch, o, i + 1]), tf.concat([h, tf.ones_like(h[:, :1, :])], axis=1))
    z = g_out[:, -1:]
    for j in range(wl):
        z = z + tf.nn.relu(u[:, j, :]) * g_out[:, j:j + 1]
    return z


def pack(z):
    """Signs of the logits (batch, 2ⁿ) → (batch, ⌈2ⁿ/32⌉) uint32 words, bit k = [z_k ≥ 0]."""
    import tensorflow as tf

    batch, nout = z.shape
    n32 = max(nout, 32) // 32
    f = tf.cast(z >= 0, tf.uint32)
    if n32 * 32 > nout:
        f = tf.pad(f, [[0, 0], [0, n32 * 32 - nout]])
    shifts = tf.constant(np.arange(32, dtype=np.uint32))
    return tf.reduce_sum(tf.bitwise.left_shift(tf.reshape(f, [batch, n32, 32]), shifts), axis=2)


def pipelined(step, layout: Layout, batch: int, steps: int, make=weights):
    """A compiled ``run(start, key)`` → (steps·batch, ·) looping ``step(carried)`` over steps of
    ``batch`` networks, each step also making the *next* step's carried normals with ``make``
    (software pipelining: loop-carried, XLA emits them as long-row fused loops of 16-lane vectors
    rather than in the dot operands' 8- or 41-long rows)."""
    import tensorflow as tf

    @tf.function(jit_compile=True)
    def run(start, key):
        carried = make(layout, start, key, batch)
        out = step(carried)                                        # its shape; pruned from the graph
        ta = tf.TensorArray(out.dtype, size=steps, element_shape=out.shape)

        def body(i, carried, ta):
            nxt = make(layout, start + tf.cast(i + 1, tf.int64) * batch, key, batch)
            return i + 1, nxt, ta.write(i, step(carried))

        _, _, ta = tf.while_loop(lambda i, *_: i < steps, body, [tf.constant(0), carried, ta])
        return tf.reshape(ta.stack(), [steps * batch, -1])

    return run


class Network:
    """One compiled XLA call evaluates ``block`` random networks on all 2ⁿ inputs → packed words:
    a loop (:func:`pipelined`) over steps of ``batch`` networks whose intermediates stay in cache
    (~9 GB/s of memory bandwidth here, ~40 GB/s from cache); only 2ⁿ bits per network leave it."""

    def __init__(self, bits: int, widths, sigma_w: float, sigma_b: float, batch: int, block: int):
        import tensorflow as tf

        if block % batch:
            raise ValueError("block must be a multiple of batch")
        self.batch, self.block, self.words = batch, block, n_words(bits)
        layout = Layout.of(bits, widths, sigma_w, sigma_b)
        run = pipelined(lambda carried: pack(logits(layout, carried, batch)), layout, batch, block // batch)
        j_all = np.arange(1, normals_per_sample(bits, widths) + 1)

        @tf.function(jit_compile=True)
        def all_normals(start, key):
            return normals(*keys(start, key, batch), tf.constant(jgamma(j_all)))

        self._run, self._normals = run, all_normals

    @staticmethod
    def _args(seed: int, start: int):
        import tensorflow as tf

        return tf.constant(start, tf.int64), tf.constant(np.uint64(stream_key(seed)))

    def __call__(self, seed: int, start: int) -> np.ndarray:
        """Packed functions of samples ``start … start+block-1`` of ``seed``: (block, n_words) uint64."""
        w32 = self._run(*self._args(seed, start)).numpy()
        if w32.shape[1] == 1:
            w32 = np.pad(w32, [[0, 0], [0, 1]])                  # < 64 inputs: one zero-padded word
        return np.ascontiguousarray(w32).view("<u4").view("<u8").reshape(self.block, self.words)

    def count(self, seed: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """The distinct functions of samples ``lo … hi-1`` and their counts (``table.count_rows``)."""
        from tfflat.boolean.table import count_rows

        return count_rows(np.concatenate([self(seed, s)[:hi - s] for s in range(lo, hi, self.block)]))

    def normals(self, seed: int, start: int) -> np.ndarray:
        """The compiled stream's unscaled normals of samples ``start … start+batch-1`` (for tests)."""
        return self._normals(*self._args(seed, start)).numpy()


_NETWORKS: dict = {}


def network(bits: int, widths, sigma_w: float, sigma_b: float, batch: int, block: int | None = None) -> Network:
    """The compiled evaluator for these settings (kept, so a process compiles each one once)."""
    key = (int(bits), tuple(int(w) for w in widths), float(sigma_w), float(sigma_b), int(batch), int(block or batch))
    if key not in _NETWORKS:
        if len(_NETWORKS) >= 8:
            _NETWORKS.pop(next(iter(_NETWORKS)))
        _NETWORKS[key] = Network(*key)
    return _NETWORKS[key]


def default_batch(bits: int, widths) -> int:
    """Networks per step of the compiled loop: ~1 MB of activations per layer (cache-resident),
    a power of 2 ≤ 64 (for 7-40-40-1: 32; 16 and 64 measured 10-40 % slower)."""
    per = 2 ** bits * (max(widths) + 1) * 4
    return 2 ** max(0, min(6, int(math.log2(max(1, 2 ** 20 // per)))))


def default_block(bits: int, widths, batch: int) -> int:
    """Networks per compiled call: a multiple of ``batch`` worth ~2.5 GFLOP (tens of ms), ≤ 8192."""
    flop = 2 * 2 ** bits * sum((i + 1) * o for i, o in layer_sizes(bits, widths))
    return batch * 2 ** max(0, min(int(math.log2(8192 // batch)), int(math.log2(max(1, 2.5e9 / (flop * batch))))))
