"""The compiled evaluator of the Boolean prior sampler: one XLA call evaluates a block of random
networks on all 2ⁿ inputs and returns their functions packed (:mod:`tfflat.data.keys`).

The weights are made in-graph from the stream of :mod:`tfflat.boolean.stream` (float32 here, float64
there; the tests hold the two together), so sample ``s`` is the same network in every call.
"""

from __future__ import annotations

import math

import numpy as np

from tfflat.boolean.stream import (GAMMA, GAMMA32, LOWBIAS32, SPLITMIX64, layer_sizes, normals_per_sample,
                                   stream_key, weight_scales)
from tfflat.data.keys import n_words

# float32 kernels of the compiled stream: ln x (Cephes logf, |relative error| < 1e-7, no division so
# the normals stay one fused, vectorised loop) and cos(πv/2) (Taylor to v¹⁴, error < 2e-10)
_LOG_P = (7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1, 1.4249322787e-1,
          -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1)
_COS_P = tuple((-1) ** k * (math.pi / 2) ** (2 * k) / math.factorial(2 * k) for k in range(7, -1, -1))

# XLA options the sampler's worker processes compile with (:mod:`tfflat.boolean.workers`): 512-bit
# vectors where the CPU has them (XLA's CPU default is 256; the normals run 1.6× faster), and copy
# insertion by region analysis, without which XLA copies the loop-carried normals twice per step
XLA_FLAGS = ("--xla_cpu_prefer_vector_width=512", "--xla_cpu_copy_insertion_use_region_analysis=true")


def _pad(n: int, to: int = 16) -> int:
    return -(-n // to) * to


class Network:
    """One compiled XLA call evaluates ``block`` random networks on all 2ⁿ inputs → packed words.

    Inside, a loop over steps of ``batch`` networks keeps every intermediate in cache (this machine
    has ~9 GB/s of memory bandwidth but ~40 GB/s from cache). A step makes the *next* step's
    normals (software pipelining: they are loop-carried, so XLA emits them as long-row fused loops
    of 16-lane vectors rather than the dot operands' 8- or 41-long rows) — one (batch, ·) array per
    hidden layer's weight matrix, one for the first and output layers — and evaluates its own:
    layer 1 as n fused multiply-adds per (unit, input) with ReLU and the hidden layers' constant-1
    bias row, the hidden layers as batched GEMMs (B, w, w'+1) × (B, w'+1, 2ⁿ) (XLA's YNNPACK
    kernel), the output unit as w fused multiply-adds, the sign and the bit packing. Layouts are
    (network, unit, input); only 2ⁿ bits per network leave the loop.
    """

    def __init__(self, bits: int, widths, sigma_w: float, sigma_b: float, batch: int, block: int):
        import tensorflow as tf

        from tfflat.data import boolean_inputs

        if block % batch:
            raise ValueError("block must be a multiple of batch")
        self.batch, self.block, self.words = batch, block, n_words(bits)
        sizes = layer_sizes(bits, widths)
        nout, n32 = 2 ** bits, max(2 ** bits, 32) // 32
        steps = block // batch
        const = tf.constant
        u32 = lambda v: const(np.uint32(v))            # noqa: E731
        u64 = lambda v: const(np.uint64(v))            # noqa: E731
        shifts = const(np.arange(32, dtype=np.uint32))
        x_t = const(boolean_inputs(bits).T)            # (n, 2ⁿ)

        # stream indices j (1, 2, …) of the carried arrays: each hidden layer's rows, then the first
        # layer's rows, the output unit's row and padding (normals past the sample's last, unused)
        offsets = np.cumsum([0] + [(i + 1) * o for i, o in sizes])
        first, last = sizes[0], sizes[-1]
        index = [np.arange(offsets[k], offsets[k + 1]) + 1 for k in range(1, len(sizes) - 1)]
        small = np.concatenate([np.arange(offsets[0], offsets[1]), np.arange(offsets[-2], offsets[-1])]) + 1
        index.append(np.concatenate([small, offsets[-1] + 1 + np.arange(_pad(len(small)) - len(small))]))
        scales = [np.tile(weight_scales(i, sigma_w, sigma_b), o) for i, o in sizes]
        scales = scales[1:-1] + [np.concatenate([scales[0], scales[-1], np.zeros(len(index[-1]) - len(small))])]
        jgamma = [const((j.astype(np.uint64) * GAMMA32 % 2 ** 32).astype(np.uint32)[None, :]) for j in index]
        scales = [const(s.astype(np.float32)[None, :]) for s in scales]

        def mix(x, spec):
            """``stream.mix`` in graph."""
            dtype, shifts, mults = spec
            for sh, m in zip(shifts, mults):
                x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, const(dtype(sh)))) * const(dtype(m))
            return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, const(dtype(shifts[-1]))))

        def poly(coef, x):
            p = coef[0]
            for c in coef[1:]:
                p = p * x + c
            return p

        def log(x):
            """ln x for normal float32 x > 0: x = 2^e·m, m ∈ [√½, √2), ln m by Cephes' polynomial."""
            i = tf.bitcast(x, tf.int32)
            e = tf.bitwise.right_shift(i - 0x3F3504F3, 23)
            f = tf.bitcast(i - tf.bitwise.left_shift(e, 23), tf.float32) - 1.0
            z = f * f
            return f + (f * z * poly(_LOG_P, f) - 0.5 * z) + tf.cast(e, tf.float32) * math.log(2)

        def keys(start, key, count):
            """(lo, hi) 32-bit halves, (count, 1) each, of the keys of samples start … (``stream.sample_keys``)."""
            idx = tf.cast(start + tf.range(count, dtype=tf.int64) + 1, tf.uint64)
            z = mix(key + idx * u64(GAMMA), SPLITMIX64)
            lo = tf.cast(tf.bitwise.bitwise_and(z, u64(0xFFFFFFFF)), tf.uint32)
            return lo[:, None], tf.cast(tf.bitwise.right_shift(z, u64(32)), tf.uint32)[:, None]

        def normals(lo, hi, jg):
            """Unscaled normals j of each sample, jg = j·γ₃₂ (1, m): (count, m); ``stream.reference_normals``."""
            b = mix(tf.bitwise.bitwise_xor(lo + jg, hi), LOWBIAS32)
            c = mix(b + hi, LOWBIAS32)
            u = (tf.cast(tf.bitcast(tf.bitwise.right_shift(b, u32(1)), tf.int32), tf.float32) + 0.5) * 2.0 ** -31
            v = tf.cast(tf.bitcast(tf.bitwise.right_shift(c, u32(8)), tf.int32), tf.float32) * 2.0 ** -24
            z = tf.sqrt(-2.0 * log(u)) * poly(_COS_P, v * v)
            sign = tf.bitwise.left_shift(tf.bitwise.bitwise_and(c, u32(1)), u32(31))
            return tf.bitcast(tf.bitwise.bitwise_xor(tf.bitcast(z, tf.uint32), sign), tf.float32)

        def weights(start, key):
            """The carried arrays of samples start … start+batch−1 (scaled weights and biases)."""
            lo, hi = keys(start, key, batch)
            return [normals(lo, hi, jg) * s for jg, s in zip(jgamma, scales)]

        def with_ones(h):
            return tf.concat([h, tf.ones_like(h[:, :1, :])], axis=1)

        def step(carried):
            *hidden, small = carried
            (n, w1), (wl, _) = first, last
            g1 = tf.reshape(small[:, :(n + 1) * w1], [batch, w1, n + 1])
            g_out = small[:, (n + 1) * w1:(n + 1) * w1 + wl + 1]
            u = g1[:, :, n:]                                              # layer 1: bias + Σ_i w_i x_i
            for i in range(n):
                u = u + g1[:, :, i:i + 1] * x_t[i][None, None, :]
            for g, (i, o) in zip(hidden, sizes[1:-1]):
                u = tf.matmul(tf.reshape(g, [batch, o, i + 1]), with_ones(tf.nn.relu(u)))
            z = g_out[:, -1:]
            for j in range(wl):
                z = z + tf.nn.relu(u[:, j, :]) * g_out[:, j:j + 1]
            f = tf.cast(z >= 0, tf.uint32)
            if n32 * 32 > nout:
                f = tf.pad(f, [[0, 0], [0, n32 * 32 - nout]])
            return tf.reduce_sum(tf.bitwise.left_shift(tf.reshape(f, [batch, n32, 32]), shifts), axis=2)

        @tf.function(jit_compile=True)
        def run(start, key):
            ta = tf.TensorArray(tf.uint32, size=steps, element_shape=[batch, n32])

            def body(i, carried, ta):
                nxt = weights(start + tf.cast(i + 1, tf.int64) * batch, key)
                return i + 1, nxt, ta.write(i, step(carried))

            _, _, ta = tf.while_loop(lambda i, *_: i < steps, body, [tf.constant(0), weights(start, key), ta])
            w32 = tf.reshape(ta.stack(), [block, n32])
            return tf.pad(w32, [[0, 0], [0, 1]]) if n32 == 1 else w32        # disjoint bits: sum = or

        per_sample = normals_per_sample(bits, widths)
        jg_all = const((np.arange(1, per_sample + 1, dtype=np.uint64) * GAMMA32 % 2 ** 32).astype(np.uint32)[None, :])

        @tf.function(jit_compile=True)
        def all_normals(start, key):
            return normals(*keys(start, key, batch), jg_all)

        self._run, self._normals = run, all_normals

    @staticmethod
    def _args(seed: int, start: int):
        import tensorflow as tf

        return tf.constant(start, tf.int64), tf.constant(np.uint64(stream_key(seed)))

    def __call__(self, seed: int, start: int) -> np.ndarray:
        """Packed functions of samples ``start … start+block-1`` of ``seed``: (block, n_words) uint64."""
        w32 = self._run(*self._args(seed, start)).numpy()
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
