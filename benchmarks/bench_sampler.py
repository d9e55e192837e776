"""Samples per second of the Boolean prior sampler: tfflat versus the best numpy sampler we could write.

n = 7, FCN 7-40-40-1, σw = 1, σb = 0.1: each sample draws 2001 Gaussian weights, evaluates all
128 inputs (0.51 MFLOP) and counts its 128-bit function exactly.

Baseline (:func:`numpy_sampler`), every trick we found measured faster in numpy on this machine:
one forked process per CPU with single-threaded OpenBLAS (AVX-512 sgemm), its own SFC64 stream;
Box–Muller normals in float32 from raw 64-bit draws (mantissa trick, numpy's SIMD log/sqrt/cos/sin;
2.6× faster than numpy's ziggurat here), preallocated buffers (temporaries > 128 kB cost page
faults); ReLU homogeneity folds σw/√fan_in into the biases, so weights stay standard normal; layer 1
as one GEMM over the whole batch and all 128 inputs (the inputs are shared, the bias is a ones
column); layer 2 as a stacked ``np.matmul`` (one sgemm per network: 135 GFLOPS on one core here), its
bias carried by a constant unit of layer 1 (weights 0, bias 1: a row of ones after the ReLU); the
output unit as a stacked matrix–vector product; ``np.packbits`` and ``np.unique`` per process, one
merge.

tfflat: :func:`tfflat.boolean.sampling.sample` with its defaults (worker processes), timed end to
end (worker start-up and compilation included) and in steady state (from the first finished piece
on). The two run alternately, ``--rounds`` times, under the same background load; the ratio is
printed per round. Also prints the time 10⁸ samples would take. Run:

    python benchmarks/bench_sampler.py [--samples 2000000] [--rounds 2]
    python benchmarks/bench_sampler.py --profile      # where a step's time goes, on one core

``--profile`` runs, in a child with the workers' environment (one thread, their XLA flags), the
compiled step with one stage at a time replaced by a stand-in that costs ~nothing (the difference is
that stage's cost), the machine's matmul peaks on one core (OpenBLAS sgemm, the step's batched
shapes, oneDNN bf16 on AMX, XLA bf16), and how many samples a bf16 evaluation would have to
re-check in float32 (their outputs come within its rigorous error bound of 0).
"""

import argparse
import os
import resource
import subprocess
import sys
import time

import numpy as np

FLOP = 2 * 128 * (8 * 40 + 41 * 40 + 41)     # multiply-adds of one 7-40-40-1 network on 128 inputs


# ---------------------------------------------------------------------------- the numpy baseline

class _NumpyNetworks:
    """Buffers and constants of one baseline process: normals and functions of ``batch`` networks."""

    def __init__(self, batch: int, sw: float, sb: float, bits: int = 7, widths=(40, 40)):
        self.batch, self.bits, (self.w1, self.w2) = batch, bits, widths
        self.inputs = 2 ** bits
        x = ((np.arange(self.inputs)[:, None] >> np.arange(bits)[None, :]) & 1).astype(np.float32)
        self.xt = np.ascontiguousarray(np.concatenate([x, np.ones((self.inputs, 1), np.float32)], 1).T)
        # folding: layer l's pre-activation divided by s_l = Π_{i≤l} σw/√fan_in_i keeps its sign
        self.c1 = np.float32(sb / (sw / np.sqrt(bits)))
        self.c2 = np.float32(self.c1 / (sw / np.sqrt(self.w1)))
        self.c3 = np.float32(self.c2 / (sw / np.sqrt(self.w2)))
        # layer 1 gets a constant unit (weights 0, bias 1): its output row of ones carries layer 2's bias
        self.per = (bits + 1) * (self.w1 + 1) + (self.w1 + 1) * self.w2 + (self.w2 + 1)
        self.pairs = pairs = -(-self.per * batch // 2)
        self.words = np.empty(2 * pairs, np.uint32)
        self.r, self.t, self.z = np.empty(pairs, np.float32), np.empty(pairs, np.float32), np.empty(2 * pairs, np.float32)
        self.h = np.empty((batch * (self.w1 + 1), self.inputs), np.float32)
        self.u = np.empty((batch, self.w2, self.inputs), np.float32)
        self.y = np.empty((batch, 1, self.inputs), np.float32)
        self.one = np.zeros(bits + 1, np.float32)
        self.one[bits] = 1

    def normals(self, bg) -> np.ndarray:
        """batch·per standard normals: Box–Muller on uniforms in [1, 2) built from raw bits."""
        words, r, t, z, p = self.words, self.r, self.t, self.z, self.pairs
        np.right_shift(bg.random_raw(p).view(np.uint32), np.uint32(9), out=words)
        np.bitwise_or(words, np.uint32(0x3F800000), out=words)
        f = words.view(np.float32)
        np.subtract(np.float32(2), f[:p], out=r)                     # (0, 1]
        np.log(r, out=r)
        np.multiply(r, np.float32(-2), out=r)
        np.sqrt(r, out=r)
        np.multiply(f[p:], np.float32(2 * np.pi), out=t)             # 2π·[1, 2): cos, sin of 2π·U
        np.cos(t, out=z[:p])
        np.multiply(z[:p], r, out=z[:p])
        np.sin(t, out=z[p:])
        np.multiply(z[p:], r, out=z[p:])
        return z

    def functions(self, z: np.ndarray) -> np.ndarray:
        """Packed functions (batch, 16 bytes) of the networks whose standard normals are ``z``, layer
        by layer: all networks' layer-1 rows (w1 + 1 units × (n+1), the last overwritten by the
        constant unit), then layer 2's (w2 × (w1+1)), then the output rows (w2+1); each row is a
        unit's weights, then its bias."""
        b, n, w1, w2 = self.batch, self.bits, self.w1, self.w2
        a1, a2 = b * (n + 1) * (w1 + 1), b * (w1 + 1) * w2
        g1 = z[:a1].reshape(b, w1 + 1, n + 1)
        g2 = z[a1:a1 + a2].reshape(b, w2, w1 + 1)
        g3 = z[a1 + a2:a1 + a2 + b * (w2 + 1)].reshape(b, w2 + 1)
        g1[:, :, n] *= self.c1
        g1[:, w1] = self.one
        g2[:, :, w1] *= self.c2
        np.matmul(g1.reshape(b * (w1 + 1), n + 1), self.xt, out=self.h)     # layer 1: all networks, all inputs
        np.maximum(self.h, 0, out=self.h)
        np.matmul(g2, self.h.reshape(b, w1 + 1, self.inputs), out=self.u)
        np.maximum(self.u, 0, out=self.u)
        np.matmul(g3[:, None, :w2], self.u, out=self.y)
        self.y += (self.c3 * g3[:, w2])[:, None, None]
        return np.packbits(self.y[:, 0] >= 0, axis=1, bitorder="little")


def _numpy_share(args) -> tuple[np.ndarray, np.ndarray]:
    """One process: ``n`` samples from stream ``(seed, index)``, counted: (distinct 16-byte keys, counts)."""
    seed, index, n, batch, sw, sb = args
    from threadpoolctl import threadpool_limits

    nets = _NumpyNetworks(batch, sw, sb)
    bg = np.random.SFC64(np.random.SeedSequence([seed, index]))
    keys = []
    with threadpool_limits(1):
        for start in range(0, n, batch):
            f = nets.functions(nets.normals(bg))
            keys.append(f[:min(batch, n - start)].view(np.dtype((np.void, 16))).ravel())
    return np.unique(np.concatenate(keys), return_counts=True)


def numpy_sampler(samples: int, seed: int = 0, workers: int | None = None, batch: int = 16,
                  sigma_w: float = 1.0, sigma_b: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """The baseline: ``samples`` networks in ``workers`` forked processes, their functions counted
    exactly. Returns (distinct functions as 16-byte keys, counts)."""
    import multiprocessing

    workers = workers or len(os.sched_getaffinity(0))
    shares = [samples // workers + (i < samples % workers) for i in range(workers)]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        parts = pool.map(_numpy_share, [(seed, i, n, batch, sigma_w, sigma_b) for i, n in enumerate(shares)])
    keys = np.concatenate([k for k, _ in parts])
    counts = np.concatenate([c for _, c in parts])
    order = np.argsort(keys, kind="stable")
    first = np.flatnonzero(np.concatenate([[True], keys[order][1:] != keys[order][:-1]]))
    return keys[order][first], np.add.reduceat(counts[order], first)


# ---------------------------------------------------------------------------- timing

def cpu_seconds() -> float:
    """CPU time of this process and its finished children."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def run_numpy(samples: int, seed: int):
    t, c = time.perf_counter(), cpu_seconds()
    keys, counts = numpy_sampler(samples, seed)
    wall, cpu = time.perf_counter() - t, cpu_seconds() - c
    assert counts.sum() == samples
    top = np.argsort(-counts, kind="stable")[:20]
    return {"wall": wall, "steady": wall, "cpu": cpu, "distinct": len(counts),
            "top": {bytes(k).hex(): int(c) for k, c in zip(keys[top], counts[top])}}


def run_tfflat(samples: int, seed: int):
    from tfflat.boolean import sampling

    marks = []
    t, c = time.perf_counter(), cpu_seconds()
    table = sampling.sample(samples, 7, seed=seed, progress=lambda done, total: marks.append((time.perf_counter(), done)))
    wall, cpu = time.perf_counter() - t, cpu_seconds() - c
    assert table.counts.sum() == samples
    top = {bytes(np.ascontiguousarray(k, "<u8").view(np.uint8)).hex(): int(c) for k, c in zip(table.keys[:20], table.counts[:20])}
    first = next(i for i, (_, done) in enumerate(marks) if done > 0)
    (t0, d0), (t1, d1) = marks[first], marks[-1]
    steady = (t1 - t0) * samples / (d1 - d0) if d1 > d0 else wall
    return {"wall": wall, "steady": steady, "cpu": cpu, "distinct": table.distinct, "top": top,
            "startup": t0 - t - (t1 - t0) / (d1 - d0) * d0 if d1 > d0 else 0.0}


def agreement(a: dict, b: dict, n: int) -> str:
    """χ² of the two samplers' counts of the functions among both's 20 most frequent (a wrong
    baseline would not agree with tfflat, nor tfflat with it)."""
    from scipy import stats

    keys = sorted(set(a) & set(b))
    table = np.array([[a[k] for k in keys], [b[k] for k in keys]])
    chi2, p, dof, _ = stats.chi2_contingency(table)
    const = [a.get("00" * 16, 0) / n, b.get("00" * 16, 0) / n, a.get("ff" * 16, 0) / n, b.get("ff" * 16, 0) / n]
    return (f"χ² = {chi2:.1f} on {dof} dof over {len(keys)} shared top functions (p = {p:.2f}); P(0…0) "
            f"{const[0]:.4f} vs {const[1]:.4f}, P(1…1) {const[2]:.4f} vs {const[3]:.4f}")


def machine() -> str:
    model, flags = "?", set()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name") and model == "?":
                    model = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = " ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_int8") if f in flags)
    return f"{model}, {len(os.sched_getaffinity(0))} CPUs, {isa}"


# ---------------------------------------------------------------------------- --profile

def _cpu_best(fn, reps: int) -> float:
    fn()
    best = float("inf")
    for _ in range(reps):
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return best


def _knockout_logits(layout, carried, batch, layer1=True, dot=True, out=True):
    """``evaluator.logits`` with stages replaced by one-op stand-ins of the same shapes."""
    import tensorflow as tf

    from tfflat.data import boolean_inputs

    (n, w1), (wl, _) = layout.sizes[0], layout.sizes[-1]
    *hidden, small = carried
    g1 = tf.reshape(small[:, :(n + 1) * w1], [batch, w1, n + 1])
    g_out = small[:, (n + 1) * w1:(n + 1) * w1 + wl + 1]
    x_t = tf.constant(boolean_inputs(n).T)
    u = g1[:, :, n:] + g1[:, :, :1] * x_t[0][None, None, :]
    for i in range(1, n if layer1 else 1):
        u = u + g1[:, :, i:i + 1] * x_t[i][None, None, :]
    for g, (i, o) in zip(hidden, layout.sizes[1:-1]):
        h = tf.nn.relu(u)
        h = tf.concat([h, tf.ones_like(h[:, :1, :])], axis=1)
        g = tf.reshape(g, [batch, o, i + 1])
        u = tf.matmul(g, h) if dot else h[:, :o, :] * g[:, :, :1]
    z = g_out[:, -1:] + tf.nn.relu(u[:, 0, :]) * g_out[:, :1]
    for j in range(1, wl if out else 1):
        z = z + tf.nn.relu(u[:, j, :]) * g_out[:, j:j + 1]
    return z


def _cheap_weights(layout, start, key, batch):
    """Stand-in for ``evaluator.weights``: the same arrays from one xor and one conversion."""
    import tensorflow as tf

    from tfflat.boolean import evaluator as E

    lo, _ = E.keys(start, key, batch)
    return [tf.cast(tf.bitwise.bitwise_xor(lo, tf.constant(E.jgamma(j))), tf.float32) * (2.0 ** -31) * tf.constant(s[None, :])
            for j, s in zip(layout.index, layout.scale)]


def profile_child(reps: int = 12) -> None:
    import tensorflow as tf

    from tfflat.boolean import evaluator as E
    from tfflat.boolean.stream import stream_key

    batch, steps = 32, 128
    layout = E.Layout.of(7, (40, 40), 1.0, 0.1)
    args = (tf.constant(0, tf.int64), tf.constant(np.uint64(stream_key(0))))
    variants = {
        "full step": (E.weights, {}),
        "normals → stand-in": (_cheap_weights, {}),
        "layer 1 → 1 FMA": (E.weights, {"layer1": False}),
        "layer 2 GEMM → stand-in": (E.weights, {"dot": False}),
        "output → 1 FMA": (E.weights, {"out": False}),
        "all → stand-ins": (_cheap_weights, {"layer1": False, "dot": False, "out": False}),
    }
    runs = {k: E.pipelined(lambda c, kw=kw: E.pack(_knockout_logits(layout, c, batch, **kw)), layout, batch, steps, make=make)
            for k, (make, kw) in variants.items()}
    best = {k: float("inf") for k in runs}
    for k in runs:
        runs[k](*args).numpy()
    for _ in range(reps):                                           # interleaved: the same background load
        for k, run in runs.items():
            t = time.process_time()
            run(*args).numpy()
            best[k] = min(best[k], time.process_time() - t)
    us = {k: 1e6 * v / (batch * steps) for k, v in best.items()}
    full = us["full step"]
    flop = {"layer 1 → 1 FMA": 2 * 40 * 7 * 128, "layer 2 GEMM → stand-in": 2 * 40 * 41 * 128, "output → 1 FMA": 2 * 40 * 128}
    print(f"compiled step on one core (batch {batch}, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}):")
    print(f"  {'full step':30s} {full:6.2f} µs/sample  ({FLOP / full / 1e3:.0f} GFLOPS overall)")
    names = {"normals → stand-in": "normals (2001, counter-based)", "layer 1 → 1 FMA": "layer 1 (7 of 8 FMAs, ReLU)",
             "layer 2 GEMM → stand-in": "layer 2 batched GEMM", "output → 1 FMA": "output (39 of 40 FMAs)"}
    for k, name in names.items():
        cost = full - us[k]
        g = f"  {flop[k] / cost / 1e3:5.0f} GFLOPS" if k in flop and cost > 0 else ""
        print(f"  {name:30s} {cost:6.2f} µs/sample{g}")
    print(f"  {'rest (keys, ReLU, pack, loop)':30s} {us['all → stand-ins']:6.2f} µs/sample")

    from threadpoolctl import threadpool_limits

    print("matmul peaks on one core:")
    rng = np.random.default_rng(0)
    with threadpool_limits(1):
        a = rng.standard_normal((2048, 2048), dtype=np.float32)
        t = _cpu_best(lambda: a @ a, 3)
        print(f"  numpy/OpenBLAS sgemm 2048³{'':15s} {2 * 2048 ** 3 / t / 1e9:6.0f} GFLOPS")
        w, h, o = (rng.standard_normal((16, 40, 41), dtype=np.float32), rng.standard_normal((16, 41, 128), dtype=np.float32),
                   np.empty((16, 40, 128), np.float32))
        t = _cpu_best(lambda: [np.matmul(w, h, out=o) for _ in range(64)], reps)
        print(f"  numpy stacked (40×41)·(41×128), 16×{'':7s} {64 * 16 * 2 * 40 * 41 * 128 / t / 1e9:6.0f} GFLOPS")
    a16 = tf.cast(tf.constant(a), tf.bfloat16)
    t = _cpu_best(lambda: tf.matmul(a16, a16).numpy(), 3)
    print(f"  TF bf16 matmul 2048³ (oneDNN, AMX){'':7s} {2 * 2048 ** 3 / t / 1e9:6.0f} GFLOPS (bf16 output)")
    w16 = tf.cast(tf.random.normal((256, 40, 64)), tf.bfloat16)
    h16 = tf.cast(tf.random.normal((256, 64, 128)), tf.bfloat16)
    t = _cpu_best(lambda: tf.matmul(w16, h16).numpy(), reps)
    print(f"  TF bf16 batched (40×64)·(64×128), 256× {256 * 2 * 40 * 64 * 128 / t / 1e9:6.0f} GFLOPS (bf16 output)")
    xla = tf.function(lambda x, y: tf.matmul(x, y), jit_compile=True)
    t = _cpu_best(lambda: xla(w16, h16).numpy(), reps)
    print(f"  XLA bf16 batched, same shapes{'':12s} {256 * 2 * 40 * 64 * 128 / t / 1e9:6.0f} GFLOPS (converted to f32, no AMX)")
    print("a bf16 evaluation with an exact float32 re-check (20000 samples, float64 simulation):")
    for name, eps in (("bf16 operands", 2.0 ** -8), ("bf16x3 split operands", 3 * 2.0 ** -17 + 64 * 2.0 ** -24)):
        print(f"  {name:24s} samples to re-check: {100 * _recheck_fraction(eps, rng):5.1f} %")


def _recheck_fraction(eps: float, rng, samples: int = 20000) -> float:
    """Fraction of 7-40-40-1 samples with some output within the error bound of an evaluation whose
    layer-2 products carry relative error ``eps``: |Δz_x| ≤ eps·Σ_j |w3_j|·(Σ_k |W2_jk|·|h_kx| + |b2_j|)."""
    x = ((np.arange(128)[:, None] >> np.arange(7)[None, :]) & 1).astype(np.float64)
    h = np.maximum(x @ rng.standard_normal((samples, 7, 40)) + 0.1 * np.sqrt(7) * rng.standard_normal((samples, 1, 40)), 0)
    w2, b2 = rng.standard_normal((samples, 40, 40)), 0.1 * np.sqrt(7 * 40) * rng.standard_normal((samples, 1, 40))
    w3, b3 = rng.standard_normal((samples, 40)), 0.1 * np.sqrt(7 * 40 * 40) * rng.standard_normal((samples, 1))
    z = np.einsum("nxj,nj->nx", np.maximum(h @ w2 + b2, 0), w3) + b3
    bound = eps * np.einsum("nxj,nj->nx", np.abs(h) @ np.abs(w2) + np.abs(b2), np.abs(w3))
    return float((np.abs(z) <= bound).any(axis=1).mean())


def profile() -> None:
    from tfflat.boolean.workers import worker_env

    print(f"machine: {machine()}; load {os.getloadavg()[0]:.1f}")
    subprocess.run([sys.executable, os.path.abspath(__file__), "--profile-child"], env=worker_env(), check=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=float, default=2e6, help="samples per sampler and round")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds (numpy, tfflat, numpy, …)")
    ap.add_argument("--profile", action="store_true", help="where the compiled step's time goes, on one core")
    ap.add_argument("--profile-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.profile_child:
        return profile_child()
    if args.profile:
        return profile()
    n = int(args.samples)

    print(f"machine: {machine()}; load {os.getloadavg()[0]:.1f} at start")
    print(f"{'round':>5s} {'sampler':8s} {'samples':>10s} {'samples/s':>10s} {'steady/s':>10s} {'cpu-µs/sample':>13s} "
          f"{'GFLOPS':>7s} {'1e8 (steady)':>12s} {'distinct':>9s} {'load':>5s}")
    ratios = []
    for rnd in range(args.rounds):
        res = {}
        for name, fn in (("numpy", run_numpy), ("tfflat", run_tfflat)):
            r = res[name] = fn(n, seed=rnd)
            print(f"{rnd + 1:5d} {name:8s} {n:10d} {n / r['wall']:10,.0f} {n / r['steady']:10,.0f} "
                  f"{1e6 * r['cpu'] / n:13.2f} {FLOP * n / r['steady'] / 1e9:7.1f} "
                  f"{1e8 * r['steady'] / n / 60:9.1f} min {r['distinct']:9d} {os.getloadavg()[0]:5.1f}"
                  + (f"  (start-up {r['startup']:.1f} s)" if "startup" in r else ""), flush=True)
        print(f"      same distribution? {agreement(res['numpy']['top'], res['tfflat']['top'], n)}")
        ratios.append((res["numpy"]["wall"] / res["tfflat"]["wall"], res["numpy"]["wall"] / res["tfflat"]["steady"],
                       (res["numpy"]["cpu"]) / res["tfflat"]["cpu"]))
        print(f"      ratio tfflat / numpy: {ratios[-1][0]:.2f}× end to end, {ratios[-1][1]:.2f}× steady, "
              f"{ratios[-1][2]:.2f}× CPU time per sample")
    med = np.median(np.array(ratios), axis=0)
    print(f"median over {args.rounds} rounds: {med[0]:.2f}× end to end, {med[1]:.2f}× steady, {med[2]:.2f}× CPU; "
          f"load {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()
