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
    x = mix64(key + (i+1)·γ). Each x is one Box–Muller pair (r cos θ, r sin θ): the low 32 bits
    give r = √(−2 ln u), u = (lo + ½)/2³²; the high 32 bits give θ uniform on the circle as an angle
    in [0, π/4) (21 bits) mapped by one of the 8 symmetries of the square (3 bits: swap the pair,
    negate the first, negate the second). The q first members come first, then the q second ones."""
    q = (per_sample + 1) // 2
    idx = (np.arange(start * q, (start + count) * q, dtype=np.uint64) + np.uint64(1))
    with np.errstate(over="ignore"):
        x = _mix64_np(np.uint64(stream_key(seed)) + idx * np.uint64(_GAMMA))
    lo = (x & np.uint64(0xFFFFFFFF)).astype(np.float64)
    hi = (x >> np.uint64(32)).astype(np.uint64)
    r = np.sqrt(-2.0 * np.log((lo + 0.5) * 2.0 ** -32))
    angle = (hi >> np.uint64(11)).astype(np.float64) * (np.pi / 4 * 2.0 ** -21)
    swap = (hi & np.uint64(1)).astype(bool)
    a = np.where(swap, np.sin(angle), np.cos(angle)) * np.where(hi & np.uint64(2), -1.0, 1.0)
    b = np.where(swap, np.cos(angle), np.sin(angle)) * np.where(hi & np.uint64(4), -1.0, 1.0)
    z = np.concatenate([(r * a).reshape(count, q), (r * b).reshape(count, q)], axis=1)
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
    """Compiled evaluation of ``batch`` random networks on all 2ⁿ inputs → packed words.

    Three calls per batch: (1, XLA) the weights from the stream and the first layer's activations,
    (2, TF's batched GEMM, faster than XLA's on CPU) each further hidden layer, (3, XLA) the output
    layer, the sign and the bit packing. Layouts are (network, unit, input) throughout; each
    layer's last row of activations is a constant 1 that carries the next layer's biases.
    """

    def __init__(self, bits: int, widths, sigma_w: float, sigma_b: float, batch: int):
        import tensorflow as tf

        from tfflat.data import boolean_inputs

        self.batch, self.words = batch, n_words(bits)
        per = normals_per_sample(bits, widths)
        q = (per + 1) // 2
        u64 = lambda v: tf.constant(np.uint64(v))      # noqa: E731
        gamma, m1, m2 = u64(_GAMMA), u64(_M1), u64(_M2)
        nout = 2 ** bits
        n32 = max(nout, 32) // 32
        shifts = tf.constant(np.arange(32, dtype=np.uint32))
        x_aug = np.concatenate([boolean_inputs(bits), np.ones((nout, 1), np.float32)], 1).T   # (n+1, 2ⁿ)
        s1, s2, s3 = -1.6666654611e-1, 8.3321608736e-3, -1.9515295891e-4
        c1, c2, c3 = 4.166664568298827e-2, -1.388731625493765e-3, 2.443315711809948e-5

        def normals(start, key):
            """(batch, per) standard normals of samples start…; see :func:`reference_normals`."""
            idx = tf.cast(start, tf.uint64) * q + tf.cast(tf.range(batch * q, dtype=tf.int64), tf.uint64) + 1
            z = key + idx * gamma
            z = tf.bitwise.bitwise_xor(z, tf.bitwise.right_shift(z, u64(30))) * m1
            z = tf.bitwise.bitwise_xor(z, tf.bitwise.right_shift(z, u64(27))) * m2
            z = tf.bitwise.bitwise_xor(z, tf.bitwise.right_shift(z, u64(31)))
            lo = tf.cast(tf.bitwise.bitwise_and(z, u64(0xFFFFFFFF)), tf.uint32)
            hi = tf.cast(tf.bitwise.right_shift(z, u64(32)), tf.uint32)
            r = tf.sqrt(-2.0 * tf.math.log((tf.cast(lo, tf.float32) + 0.5) * 2.0 ** -32))
            # sin, cos on [0, π/4): Cephes sinf/cosf minimax polynomials (|error| < 1e-7); XLA's own
            # sin and cos are several times slower here
            x = tf.cast(tf.bitwise.right_shift(hi, 11), tf.float32) * (math.pi / 4 * 2.0 ** -21)
            x2 = x * x
            sin = x + x * x2 * (s1 + x2 * (s2 + x2 * s3))
            cos = 1.0 - 0.5 * x2 + x2 * x2 * (c1 + x2 * (c2 + x2 * c3))
            swap = tf.bitwise.bitwise_and(hi, 1) > 0
            sign_a = tf.bitwise.left_shift(tf.bitwise.bitwise_and(hi, 2), 30)    # bit 1 → sign bit
            sign_b = tf.bitwise.left_shift(tf.bitwise.bitwise_and(hi, 4), 29)    # bit 2 → sign bit
            a = tf.bitcast(tf.bitwise.bitwise_xor(tf.bitcast(r * tf.where(swap, sin, cos), tf.uint32), sign_a),
                           tf.float32)
            b = tf.bitcast(tf.bitwise.bitwise_xor(tf.bitcast(r * tf.where(swap, cos, sin), tf.uint32), sign_b),
                           tf.float32)
            return tf.concat([tf.reshape(a, [batch, q]), tf.reshape(b, [batch, q])], axis=1)[:, :per]

        def first(start, key):
            g1, *rest = split_weights(normals(start, key), bits, widths, sigma_w, sigma_b, tf.reshape)
            # layer 1 on all inputs: n+1 broadcast multiply-adds (XLA's batched dot is slow on CPU)
            u = g1[:, :, :1] * x_aug[0]
            for t in range(1, bits + 1):
                u = u + g1[:, :, t:t + 1] * x_aug[t]
            return [augment(u)] + rest

        def augment(u):
            """relu, and a row of ones that carries the next layer's biases."""
            return tf.concat([tf.nn.relu(u), tf.ones_like(u[:, :1, :])], axis=1)

        def head(u, g):
            """u: (B, width, 2ⁿ) last hidden pre-activations; g: (B, 1, width + 1) output weights."""
            z = g[:, 0, -1:]
            for j in range(u.shape[1]):
                z = z + tf.nn.relu(u[:, j, :]) * g[:, 0, j:j + 1]
            f = tf.cast(z >= 0, tf.uint32)
            if n32 * 32 > nout:
                f = tf.pad(f, [[0, 0], [0, n32 * 32 - nout]])
            w32 = tf.reduce_sum(tf.bitwise.left_shift(tf.reshape(f, [batch, n32, 32]), shifts), axis=2)
            return tf.pad(w32, [[0, 0], [0, 1]]) if n32 == 1 else w32          # disjoint bits: sum = or

        first_c = tf.function(first, jit_compile=True)
        augment_c = tf.function(augment, jit_compile=True)
        head_c = tf.function(head, jit_compile=True)

        @tf.function
        def run(start, key):
            a, *hidden, g_out = first_c(start, key)
            if not hidden:                       # one hidden layer: undo the relu-and-ones step
                return head_c(a[:, :-1, :], g_out)
            for i, g in enumerate(hidden):
                u = tf.matmul(g, a)              # (B, w, w_prev + 1) @ (B, w_prev + 1, 2ⁿ)
                if i < len(hidden) - 1:
                    a = augment_c(u)
            return head_c(u, g_out)

        self._run = run
        self.parts = {"first": first_c, "head": head_c, "normals": normals}   # for the benchmark

    def __call__(self, seed: int, start: int) -> np.ndarray:
        """Packed functions of samples ``start … start+batch-1`` of ``seed``: (batch, n_words) uint64."""
        import tensorflow as tf

        w32 = self._run(tf.constant(start, tf.int64), tf.constant(np.uint64(stream_key(seed)))).numpy()
        return np.ascontiguousarray(w32).view("<u4").view("<u8").reshape(self.batch, self.words)


_NETWORKS: dict = {}


def network(bits: int, widths, sigma_w: float, sigma_b: float, batch: int) -> _Network:
    """The compiled evaluator for these settings (kept, so a process compiles each one once)."""
    key = (int(bits), tuple(int(w) for w in widths), float(sigma_w), float(sigma_b), int(batch))
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
    """Networks per compiled call: ~16 MB of activations per layer in flight, a power of 2 ≤ 512."""
    per = 2 ** bits * (max(widths) + 1) * 4
    return 2 ** max(0, min(9, int(math.log2(max(1, 2 ** 24 // per)))))


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
      chunk: samples per chunk (the unit of checkpointing and counting).
      batch: networks per compiled call (default :func:`default_batch`).
      threads: concurrent compiled calls (default: the number of CPUs, at most 4).
      progress: ``progress(samples_done, samples)`` after every batch.
    Returns:
      :class:`Table`, most frequent function first.
    """
    from tfflat import runs

    sw, sb = defaults.SIGMAS["boolean"]
    sigma_w, sigma_b = float(sw if sigma_w is None else sigma_w), float(sb if sigma_b is None else sigma_b)
    widths = tuple(int(w) for w in widths)
    check_settings(bits, samples, widths, sigma_w, sigma_b)
    batch = int(batch or default_batch(bits, widths))
    chunk = max(batch, int(chunk) // batch * batch)
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
    finished = sum(hi - lo for lo, hi in plan) - sum(hi - lo for lo, hi, _ in todo)
    if progress:
        progress(finished, samples)
    if todo:
        net = network(bits, widths, sigma_w, sigma_b, batch)
        threads = int(threads or min(4, os.cpu_count() or 1))
        with ThreadPoolExecutor(threads) as pool:
            for lo, hi, name in todo:
                t0 = time.perf_counter()
                parts, pending = [], [pool.submit(net, seed, s) for s in range(lo, hi, batch)]
                for i, fut in enumerate(pending):
                    parts.append(fut.result())
                    if progress:
                        progress(finished + min((i + 1) * batch, hi - lo), samples)
                keys, counts = count_rows(np.concatenate(parts)[:hi - lo])
                dt = time.perf_counter() - t0
                seconds += dt
                finished += hi - lo
                tables.append((keys, counts))
                if state_dir is not None:
                    _save_chunk(state_dir / "chunks" / f"{name}.npz", keys, counts, dt)
    keys, counts = merge(tables)
    if len(counts) == 0:
        keys = np.zeros((0, n_words(bits)), np.uint64)
    order = np.argsort(-counts, kind="stable")
    return Table(int(bits), int(samples), keys[order], counts[order], seconds, config)


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
