"""Samples per second of the Boolean prior sampler: tfflat's compiled sampler versus batched numpy.

n = 7, FCN 7-40-40-1, σw = 1, σb = 0.1: each sample draws 2001 Gaussian weights, evaluates all
128 inputs (0.49 MFLOP) and counts its function. Baseline: the best plain numpy sampler we know —
numpy's ziggurat normals (float32) in one thread per CPU, layer 1 as one shared-input GEMM, stacked
``np.matmul`` for layer 2, ``np.packbits`` and ``np.unique`` for counting.
tfflat: :func:`tfflat.boolean.sampling.sample` (one XLA call per block of 4096 networks: in-graph
counter-based normals, cache-sized GEMM steps, in-graph bit packing; chunked counting overlapped
with compute), timed after a warm-up call that compiles it. Prints samples/s
(wall), CPU-µs per sample, the ratio, the fraction of a float32 peak (``--peak``, GFLOPS) and the
time 10⁸ samples would take. Run:

    python benchmarks/bench_sampler.py [--samples 2000000] [--peak 200]

On a shared machine wall-clock rates depend on the load; CPU time per sample is the steadier number.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

FLOP = 2 * 128 * (7 * 40 + 40 * 40 + 40)     # multiply-adds of one 7-40-40-1 network on 128 inputs


def numpy_sampler(samples: int, seed: int = 0, batch: int = 256, threads: int | None = None):
    """The baseline: float32 numpy in one thread per CPU (BLAS single-threaded, its own Generator
    each); layer 1 as one GEMM over the whole batch (the inputs are shared), layer 2 as a stacked
    ``np.matmul``, the output as an ``einsum``; counting with packbits + unique."""
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    from tfflat.data import boolean_inputs

    x = np.concatenate([boolean_inputs(7), np.ones((128, 1), np.float32)], 1)          # (128, 8)
    s1 = np.array([1 / np.sqrt(7)] * 7 + [0.1], np.float32)
    s2 = np.array([1 / np.sqrt(40)] * 40 + [0.1], np.float32)

    def work(i, n):
        rng, keys = np.random.default_rng([seed, i]), []
        for start in range(0, n, batch):
            b = min(batch, n - start)
            h = np.maximum(x @ (rng.standard_normal((8, b * 40), dtype=np.float32) * s1[:, None]), 0)
            h = h.reshape(128, b, 40).transpose(1, 0, 2)                                # (b, 128, 40)
            w = rng.standard_normal((b, 41, 40), dtype=np.float32) * s2[None, :, None]
            h = np.maximum(np.matmul(h, w[:, :40]) + w[:, 40:], 0)
            w = rng.standard_normal((b, 41), dtype=np.float32) * s2
            z = np.einsum("bik,bk->bi", h, w[:, :40]) + w[:, 40:]
            keys.append(np.packbits(z >= 0, axis=1, bitorder="little").view(np.dtype((np.void, 16))).ravel())
        return np.concatenate(keys)

    threads = threads or os.cpu_count() or 1
    shares = [samples // threads + (i < samples % threads) for i in range(threads)]
    with threadpool_limits(1), ThreadPoolExecutor(threads) as pool:
        keys = np.concatenate(list(pool.map(work, range(threads), shares)))
    return np.unique(keys, return_counts=True)


def timed(fn):
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t, time.process_time() - c


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=2_000_000)
    ap.add_argument("--baseline-samples", type=int, default=None, help="default: --samples / 4")
    ap.add_argument("--peak", type=float, default=200.0, help="float32 matmul peak of the machine, GFLOPS")
    args = ap.parse_args()

    from tfflat.boolean import sampling

    nb = args.baseline_samples or max(1000, args.samples // 4)
    (_, base_counts), base_wall, base_cpu = timed(lambda: numpy_sampler(nb))
    sampling.sample(4096, 7, seed=1)                           # compile outside the timing
    table, wall, cpu = timed(lambda: sampling.sample(args.samples, 7, seed=0))
    rows = [("numpy (baseline)", nb, base_wall, base_cpu, len(base_counts)),
            ("tfflat", args.samples, wall, cpu, table.distinct)]
    print(f"{'':18s} {'samples':>9s} {'samples/s':>10s} {'cpu-µs/sample':>14s} {'% of peak':>9s} "
          f"{'1e8 samples':>12s} {'distinct':>9s}")
    for name, n, w, c, d in rows:
        rate = n / w
        print(f"{name:18s} {n:9d} {rate:10,.0f} {1e6 * c / n:14.1f} {100 * rate * FLOP / (args.peak * 1e9):8.1f}% "
              f"{1e8 / rate / 60:10.1f} min {d:9d}")
    print(f"ratio tfflat / numpy: {(args.samples / wall) / (nb / base_wall):.2f}× (wall), "
          f"{(base_cpu / nb) / (cpu / args.samples):.2f}× (CPU time per sample); load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
