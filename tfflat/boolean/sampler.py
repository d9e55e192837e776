"""Direct sampling of the prior P(f) over Boolean functions (paper §5.1, SPEC §5).

Draw the weights of an n-bit ReLU FCN from the initialisation distribution
(W ~ N(0, σw²/fan_in), b ~ N(0, σb²)), evaluate it on all 2ⁿ inputs, and count how often each
function f : {0,1}ⁿ → {0,1} (label 1 iff logit ≥ 0) comes out. P(f) ≈ count / samples.

Speed: one XLA call evaluates a block of networks in a loop of cache-sized steps; the Gaussian
weights are made in-graph from a counter-based stream (a SplitMix64 key per sample, Steele et al.
2014, then a low-bias 32-bit mixer per weight and Box–Muller; :func:`reference_normals`), so sample
``s`` has the same weights however the run is batched, chunked, threaded or interrupted: a resumed
run gives the table of an uninterrupted one. Each network's 2ⁿ output bits are packed in-graph
into 64-bit words (word w, bit j = f(x_{64w+j})); counting is numpy ``unique`` per chunk of
samples, while the thread pool computes the next blocks. Each finished chunk's table is written
atomically to ``STATE/chunks/`` so a stopped run resumes there.
"""

from __future__ import annotations

import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from tfflat import defaults
from tfflat.errors import UserError

MAX_BITS = 20
RNG = "splitmix64+mix32+box-muller/2"     # recorded with the state; change it if the weight stream changes
_GAMMA, _GAMMA32 = 0x9E3779B97F4A7C15, 0x9E3779B9     # golden-ratio increments
_MASK = (1 << 64) - 1
# xorshift-multiply mixers (dtype, shifts, multipliers): SplitMix64's finaliser (Steele et al. 2014)
# and the low-bias 32-bit mixer of Wellons' hash-prospector; both are bijections
SPLITMIX64 = (np.uint64, (30, 27, 31), (0xBF58476D1CE4E5B9, 0x94D049BB133111EB))
LOWBIAS32 = (np.uint32, (16, 15, 15), (0x21F0AAAD, 0x735A2D97))


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


def _mix_np(x, spec) -> np.ndarray:
    """Xorshift-multiply mixer ``spec``: x ← (x ⊕ x ≫ s)·m for each (s, m), then x ⊕ x ≫ s_last."""
    (dtype, shifts, mults) = spec
    x = np.asarray(x, dtype)
    with np.errstate(over="ignore"):
        for sh, m in zip(shifts, mults):
            x = (x ^ (x >> dtype(sh))) * dtype(m)
    return x ^ (x >> dtype(shifts[-1]))


def stream_key(seed: int) -> int:
    """The 64-bit key of a seed's weight stream (seeds are any integers)."""
    return int(_mix_np(np.uint64((int(seed) * _GAMMA) & _MASK) ^ np.uint64(0x5DEECE66D), SPLITMIX64))


def sample_keys(seed: int, start: int, count: int) -> np.ndarray:
    """The 64-bit keys of samples ``start … start+count-1``: SplitMix64 outputs, all distinct."""
    idx = np.arange(start, start + count, dtype=np.uint64) + np.uint64(1)
    with np.errstate(over="ignore"):
        return _mix_np(np.uint64(stream_key(seed)) + idx * np.uint64(_GAMMA), SPLITMIX64)


def layer_sizes(bits: int, widths) -> list[tuple[int, int]]:
    """(fan_in, fan_out) of each dense layer of the n-bit FCN ``bits-widths…-1``."""
    dims = [bits, *widths, 1]
    return list(zip(dims[:-1], dims[1:]))


def normals_per_sample(bits: int, widths) -> int:
    return sum((i + 1) * o for i, o in layer_sizes(bits, widths))


def reference_normals(seed: int, start: int, count: int, per_sample: int) -> np.ndarray:
    """The stream's standard normals for samples ``start … start+count-1`` in float64 numpy,
    shape (count, per_sample): the definition the compiled sampler is tested against.

    Sample s has the 64-bit key K = (lo, hi) of :func:`sample_keys`; its normal j (j = 1 …) takes two
    32-bit words from a low-bias 32-bit mixer (Wellons' hash-prospector, a bijection):
    a = mix(lo + j·γ₃₂), b = mix(a ⊕ hi), c = mix(b + hi). Box–Muller: r = √(−2 ln u) with
    u = (⌊b/2⌋ + ½)·2⁻³¹, and z = ±r·cos(πv/2) with v = ⌊c/2⁸⌋·2⁻²⁴ and the sign from c's low
    bit (|cos Θ| for Θ uniform on the circle is distributed as cos(πv/2); the sign is a fair coin)."""
    keys = sample_keys(seed, start, count)
    lo = (keys & np.uint64(0xFFFFFFFF)).astype(np.uint32)[:, None]
    hi = (keys >> np.uint64(32)).astype(np.uint32)[:, None]
    j = np.arange(1, per_sample + 1, dtype=np.uint32)[None, :]
    with np.errstate(over="ignore"):
        a = _mix_np(lo + j * np.uint32(_GAMMA32), LOWBIAS32)
        b = _mix_np(a ^ hi, LOWBIAS32)
        c = _mix_np(b + hi, LOWBIAS32)
    r = np.sqrt(-2.0 * np.log(((b >> np.uint32(1)).astype(np.float64) + 0.5) * 2.0 ** -31))
    v = (c >> np.uint32(8)).astype(np.float64) * 2.0 ** -24
    return r * np.cos(np.pi / 2 * v) * np.where(c & np.uint32(1), -1.0, 1.0)


def split_weights(z, bits: int, widths, sigma_w: float, sigma_b: float, reshape=np.reshape):
    """Standard normals (B, per_sample) → per layer G (B, fan_out, fan_in + 1), scaled: row j is
    unit j's incoming weights (σw/√fan_in · N(0,1)) followed by its bias (σb · N(0,1))."""
    out, at = [], 0
    for fan_in, fan_out in layer_sizes(bits, widths):
        g = reshape(z[:, at:at + fan_out * (fan_in + 1)], (-1, fan_out, fan_in + 1)) * _scale(fan_in, sigma_w, sigma_b)
        at += fan_out * (fan_in + 1)
        out.append(g)
    return out


def _scale(fan_in: int, sigma_w: float, sigma_b: float) -> np.ndarray:
    return np.array([sigma_w / math.sqrt(fan_in)] * fan_in + [sigma_b], np.float32)


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


# float32 kernels of the compiled stream: ln x (Cephes logf, |relative error| < 1e-7, no division so
# each layer's normals stay one fused, vectorised loop) and cos(πv/2) (Taylor to v¹⁴, error < 2e-10)
_LOG_P = (7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1, 1.4249322787e-1,
          -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1)
_COS_P = tuple((-1) ** k * (math.pi / 2) ** (2 * k) / math.factorial(2 * k) for k in range(7, -1, -1))


class _Network:
    """One compiled XLA call evaluates ``block`` random networks on all 2ⁿ inputs → packed words.

    Inside, a loop over steps of ``batch`` networks keeps every intermediate in cache (this machine
    has ~9 GB/s of memory bandwidth but ~40 GB/s from cache): the step's per-layer normals (one fused
    loop each), layer 1 as one GEMM (B·w₁, n+1) × (n+1, 2ⁿ), the hidden layers as batched GEMMs
    (B, w, w'+1) × (B, w'+1, 2ⁿ) whose last activation row is a constant 1 that carries the biases,
    the output unit as w fused multiply-adds, the sign, and the bit packing. Layouts are (network,
    unit, input); only 2ⁿ bits per network leave the loop.
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
        shifts = tf.constant(np.arange(32, dtype=np.uint32))
        x_aug = tf.constant(np.concatenate([boolean_inputs(bits), np.ones((nout, 1), np.float32)], 1).T)
        const = tf.constant
        u32 = lambda v: const(np.uint32(v))            # noqa: E731
        u64 = lambda v: const(np.uint64(v))            # noqa: E731

        def mix(x, spec):
            """:func:`_mix_np` in graph."""
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

        def keys(start, key):
            """(lo, hi) 32-bit halves of the keys of samples start … start+batch−1 (sample_keys)."""
            idx = tf.cast(start + tf.range(batch, dtype=tf.int64) + 1, tf.uint64)
            z = mix(key + idx * u64(_GAMMA), SPLITMIX64)
            lo = tf.cast(tf.bitwise.bitwise_and(z, u64(0xFFFFFFFF)), tf.uint32)
            return lo[:, None], tf.cast(tf.bitwise.right_shift(z, u64(32)), tf.uint32)[:, None]

        def normals(lo, hi, at, n):
            """Normals at + 1 … at + n of each sample: (batch, n), see :func:`reference_normals`."""
            j = tf.cast(tf.range(at + 1, at + n + 1), tf.uint32)[None, :]
            a = mix(lo + j * u32(_GAMMA32), LOWBIAS32)
            b = mix(tf.bitwise.bitwise_xor(a, hi), LOWBIAS32)
            c = mix(b + hi, LOWBIAS32)
            u = (tf.cast(tf.bitcast(tf.bitwise.right_shift(b, u32(1)), tf.int32), tf.float32) + 0.5) * 2.0 ** -31
            v = tf.cast(tf.bitcast(tf.bitwise.right_shift(c, u32(8)), tf.int32), tf.float32) * 2.0 ** -24
            z = tf.sqrt(-2.0 * log(u)) * poly(_COS_P, v * v)
            sign = tf.bitwise.left_shift(tf.bitwise.bitwise_and(c, u32(1)), u32(31))
            return tf.bitcast(tf.bitwise.bitwise_xor(tf.bitcast(z, tf.uint32), sign), tf.float32)

        def layers(start, key):
            lo, hi = keys(start, key)
            out, at = [], 0
            for fan_in, fan_out in sizes:
                n = fan_out * (fan_in + 1)
                scale = np.tile(_scale(fan_in, sigma_w, sigma_b), fan_out)      # scaled flat: one vector loop
                out.append(tf.reshape(normals(lo, hi, at, n) * scale, [batch, fan_out, fan_in + 1]))
                at += n
            return out

        def step(start, key):
            g_first, *hidden, g_out = layers(start, key)
            w = g_first.shape[1]
            u = tf.reshape(tf.matmul(tf.reshape(g_first, [batch * w, bits + 1]), x_aug), [batch, w, nout])
            for g in hidden:
                u = tf.matmul(g, tf.concat([tf.nn.relu(u), tf.ones_like(u[:, :1, :])], axis=1))
            z = g_out[:, 0, -1:]
            for j in range(u.shape[1]):
                z = z + tf.nn.relu(u[:, j, :]) * g_out[:, 0, j:j + 1]
            f = tf.cast(z >= 0, tf.uint32)
            if n32 * 32 > nout:
                f = tf.pad(f, [[0, 0], [0, n32 * 32 - nout]])
            return tf.reduce_sum(tf.bitwise.left_shift(tf.reshape(f, [batch, n32, 32]), shifts), axis=2)

        @tf.function(jit_compile=True)
        def run(start, key):
            ta = tf.TensorArray(tf.uint32, size=steps, element_shape=[batch, n32])

            def body(i, ta):
                return i + 1, ta.write(i, step(start + tf.cast(i, tf.int64) * batch, key))

            _, ta = tf.while_loop(lambda i, _: i < steps, body, [tf.constant(0), ta])
            w32 = tf.reshape(ta.stack(), [block, n32])
            return tf.pad(w32, [[0, 0], [0, 1]]) if n32 == 1 else w32        # disjoint bits: sum = or

        @tf.function(jit_compile=True)
        def all_normals(start, key):
            lo, hi = keys(start, key)
            return normals(lo, hi, 0, normals_per_sample(bits, widths))

        self._run, self._normals = run, all_normals

    @staticmethod
    def _args(seed: int, start: int):
        import tensorflow as tf

        return tf.constant(start, tf.int64), tf.constant(np.uint64(stream_key(seed)))

    def __call__(self, seed: int, start: int) -> np.ndarray:
        """Packed functions of samples ``start … start+block-1`` of ``seed``: (block, n_words) uint64."""
        w32 = self._run(*self._args(seed, start)).numpy()
        return np.ascontiguousarray(w32).view("<u4").view("<u8").reshape(self.block, self.words)

    def normals(self, seed: int, start: int) -> np.ndarray:
        """The compiled stream's unscaled normals of samples ``start … start+batch-1`` (for tests)."""
        return self._normals(*self._args(seed, start)).numpy()


_NETWORKS: dict = {}


def network(bits: int, widths, sigma_w: float, sigma_b: float, batch: int, block: int | None = None) -> _Network:
    """The compiled evaluator for these settings (kept, so a process compiles each one once)."""
    key = (int(bits), tuple(int(w) for w in widths), float(sigma_w), float(sigma_b), int(batch), int(block or batch))
    if key not in _NETWORKS:
        if len(_NETWORKS) >= 8:
            _NETWORKS.pop(next(iter(_NETWORKS)))
        _NETWORKS[key] = _Network(*key)
    return _NETWORKS[key]


# ---------------------------------------------------------------------------------------------
# the run: chunks of samples, each counted and written atomically, then merged


@dataclass
class Table:
    """Sampled frequencies of Boolean functions, most frequent first.

    Attributes:
      bits: n; functions are on the 2ⁿ inputs of :func:`tfflat.data.boolean_inputs`.
      samples: weight samples drawn.
      keys: packed functions (distinct, n_words(bits) uint64 words each; see :func:`pack`).
      counts: how often each came out, descending (ties in the byte order of the packed keys).
      seconds: compute time summed over all chunks (also those of earlier, interrupted runs).
      config: bits, widths, σw, σb, seed, generator, chunk size.
    """

    bits: int
    samples: int
    keys: np.ndarray
    counts: np.ndarray
    seconds: float
    config: dict

    @property
    def distinct(self) -> int:
        return len(self.counts)

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else 0.0

    def hex(self, k: int | None = None) -> list[str]:
        """Hex keys (``tfflat.data.function_key`` convention) of the ``k`` most frequent."""
        return hex_keys(self.keys[:k], self.bits)

    def log10_prior(self, k: int | None = None) -> np.ndarray:
        """log10(count / samples) of the ``k`` most frequent."""
        return np.log10(self.counts[:k] / self.samples)


def check_settings(bits: int, samples: int, widths=(40, 40), sigma_w: float = 1.0, sigma_b: float = 0.1) -> None:
    """Raise :class:`UserError` for settings that cannot be sampled."""
    if not isinstance(bits, (int, np.integer)) or not 1 <= bits <= MAX_BITS:
        raise UserError(f"--bits must be an integer between 1 and {MAX_BITS}, got {bits}")
    if not isinstance(samples, (int, np.integer)) or samples < 0:
        raise UserError(f"--samples must be a non-negative integer, got {samples}")
    if not widths or min(int(w) for w in widths) < 1:
        raise UserError(f"hidden widths must be positive integers, got {tuple(widths)}")
    if not (sigma_w > 0 and sigma_b >= 0 and math.isfinite(sigma_w) and math.isfinite(sigma_b)):
        raise UserError(f"need σw > 0 and σb ≥ 0, got σw = {sigma_w}, σb = {sigma_b}")


def default_batch(bits: int, widths) -> int:
    """Networks per step of the compiled loop: ~1 MB of activations per layer (cache-resident),
    a power of 2 ≤ 64."""
    per = 2 ** bits * (max(widths) + 1) * 4
    return 2 ** max(0, min(6, int(math.log2(max(1, 2 ** 20 // per)))))


def default_block(bits: int, widths, batch: int) -> int:
    """Networks per compiled call: a multiple of ``batch`` worth ~2.5 GFLOP (tens of ms), ≤ 8192."""
    flop = 2 * 2 ** bits * sum((i + 1) * o for i, o in layer_sizes(bits, widths))
    return batch * 2 ** max(0, min(int(math.log2(8192 // batch)), int(math.log2(max(1, 2.5e9 / (flop * batch))))))


def sample(samples: int, bits: int = defaults.BOOLEAN_BITS, widths=(40, 40), sigma_w: float | None = None,
           sigma_b: float | None = None, seed: int = 0, *, state_dir=None, chunk: int = 2 ** 20,
           batch: int | None = None, threads: int | None = None,
           progress: Callable[[int, int], None] | None = None) -> Table:
    """Sample ``samples`` networks' functions and count them (paper §5.1: 10⁸ samples, 7-40-40-1).

    Args:
      samples: weight samples to draw.
      bits: n, the number of Boolean inputs (1 … 20).
      widths: hidden layer widths.
      sigma_w, sigma_b: initialisation scales (default: ``defaults.SIGMAS["boolean"]`` = 1, 0.1).
      seed: the weight stream; sample s of a seed is the same network in every run.
      state_dir: where finished chunks are kept (``state_dir/chunks/*.npz`` + ``state.json``); a run
        with the same settings resumes from them. ``None``: keep nothing.
      chunk: samples per chunk (the unit of checkpointing and counting; rounded to whole blocks).
      batch: networks per step of the compiled loop (default :func:`default_batch`).
      threads: concurrent compiled calls (default: the number of CPUs).
      progress: ``progress(samples_done, samples)`` after every compiled call.
    Returns:
      :class:`Table`, most frequent function first. ``seconds`` is wall-clock time.
    """
    from tfflat import runs

    sw, sb = defaults.SIGMAS["boolean"]
    sigma_w, sigma_b = float(sw if sigma_w is None else sigma_w), float(sb if sigma_b is None else sigma_b)
    widths = tuple(int(w) for w in widths)
    check_settings(bits, samples, widths, sigma_w, sigma_b)
    batch = int(batch or default_batch(bits, widths))
    block = min(default_block(bits, widths, batch), max(batch, int(chunk) // batch * batch))
    chunk = max(block, int(chunk) // block * block)
    config = {"bits": int(bits), "widths": list(widths), "sigma_w": sigma_w, "sigma_b": sigma_b,
              "seed": int(seed), "generator": RNG, "chunk": chunk}
    done = {}
    if state_dir is not None:
        state_dir = Path(state_dir)
        runs.ensure_dir(state_dir / "chunks")
        state_file = state_dir / "state.json"
        if state_file.exists():
            old = runs.read_json(state_file).get("config")
            if old != config:
                diff = ", ".join(f"{k} {old.get(k)!r} → {v!r}" for k, v in config.items() if (old or {}).get(k) != v)
                raise UserError(f"{state_dir} holds samples drawn with other settings ({diff}); "
                                "use another --out or delete that directory")
        else:
            runs.write_json(state_file, {"config": config, "versions": runs.versions()})
        done = {p.stem: p for p in (state_dir / "chunks").glob("*.npz")}
    plan = [(lo, min(lo + chunk, samples)) for lo in range(0, samples, chunk)]
    tables, seconds = [], 0.0
    todo = []
    for lo, hi in plan:
        name = f"{lo:013d}-{hi:013d}"
        if name in done:
            with np.load(done[name]) as z:
                tables.append((z["keys"], z["counts"]))
                seconds += float(z["seconds"])
        else:
            todo.append((lo, hi, name))
    finished = samples - sum(hi - lo for lo, hi, _ in todo)
    if progress:
        progress(finished, samples)
    if todo:
        net = network(bits, widths, sigma_w, sigma_b, batch, block)
        for (lo, hi, name), keys, counts, dt in _chunks(net, seed, todo, threads, progress, finished, samples):
            seconds += dt
            tables.append((keys, counts))
            if state_dir is not None:
                _save_chunk(state_dir / "chunks" / f"{name}.npz", keys, counts, dt)
    keys, counts = merge(tables)
    if len(counts) == 0:
        keys = np.zeros((0, n_words(bits)), np.uint64)
    order = np.argsort(-counts, kind="stable")
    return Table(int(bits), int(samples), keys[order], counts[order], seconds, config)


def _chunks(net: _Network, seed: int, todo, threads, progress, finished: int, samples: int):
    """Yield ((lo, hi, name), keys, counts, wall seconds) per chunk of ``todo``, in order, while the
    thread pool already evaluates the next blocks (the compiled calls release the GIL)."""
    from collections import deque

    threads = int(threads or os.cpu_count() or 1)
    blocks = iter([(c, s) for c, (lo, hi, _) in enumerate(todo) for s in range(lo, hi, net.block)])
    pool = ThreadPoolExecutor(threads)
    pending: deque = deque()

    def refill():
        while len(pending) < 2 * threads:
            nxt = next(blocks, None)
            if nxt is None:
                return
            pending.append((nxt, pool.submit(net, seed, nxt[1])))

    try:
        refill()
        t0 = time.perf_counter()
        for c, (lo, hi, name) in enumerate(todo):
            parts = []
            while pending and pending[0][0][0] == c:
                (_, start), fut = pending.popleft()
                parts.append(fut.result()[:hi - start])
                refill()
                finished += len(parts[-1])
                if progress:
                    progress(finished, samples)
            keys, counts = count_rows(np.concatenate(parts))
            t1 = time.perf_counter()
            yield (lo, hi, name), keys, counts, t1 - t0
            t0 = t1
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _save_chunk(path: Path, keys, counts, seconds: float) -> None:
    import io

    from tfflat import runs

    buf = io.BytesIO()
    np.savez(buf, keys=keys, counts=counts, seconds=np.float64(seconds))
    runs.atomic_write(path, buf.getvalue())


# ---------------------------------------------------------------------------------------------
# the CSV: function,count,log10_prior (most frequent first)

CSV_HEADER = "function,count,log10_prior"


def write_table(path, table: Table, min_count: int = 1, block: int = 10 ** 6) -> int:
    """Write the functions seen at least ``min_count`` times as CSV; returns the number of rows."""
    from tfflat import runs

    if min_count < 1:
        raise UserError(f"--min-count must be ≥ 1, got {min_count}")
    rows = int(np.searchsorted(-table.counts, -min_count, side="right"))
    with runs.atomic_open(path) as fh:
        fh.write(CSV_HEADER + "\n")
        for i in range(0, rows, block):
            j = min(rows, i + block)
            keys = hex_keys(table.keys[i:j], table.bits)
            logp = np.log10(table.counts[i:j] / table.samples)
            fh.write("".join(f"{k},{c},{p:.6f}\n" for k, c, p in zip(keys, table.counts[i:j].tolist(), logp.tolist())))
    return rows


def read_table(path, top: int | None = None) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(hex keys, counts, log10 P) of the first ``top`` rows of a :func:`write_table` CSV."""
    path = Path(path)
    keys, counts, logp = [], [], []
    try:
        with open(path) as fh:
            if fh.readline().strip() != CSV_HEADER:
                raise UserError(f"{path} is not a table of `tfflat boolean` (header {CSV_HEADER!r} expected)")
            for line in fh:
                if top is not None and len(keys) >= top:
                    break
                k, c, p = line.rstrip("\n").split(",")
                keys.append(k)
                counts.append(int(c))
                logp.append(float(p))
    except FileNotFoundError:
        raise UserError(f"{path} does not exist; run `tfflat boolean --out {path.parent}` first") from None
    except ValueError:
        raise UserError(f"{path} is corrupt (a row is not function,count,log10_prior)") from None
    return keys, np.asarray(counts, np.int64), np.asarray(logp, np.float64)
