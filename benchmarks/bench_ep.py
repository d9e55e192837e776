"""Seconds per log P(f): tfflat's EP versus GPy's EP (the authors' tool) and a plain numpy/scipy EP,
on the same kernel and labels.

Kernel: the analytic NNGP kernel of the paper's MNIST FCN (784-40-40-1, σw = √2, σb = 1) on n real
MNIST test images (beyond the 10,000 available, jittered copies); labels: the true labels (digit ≥ 5).
First, the O(n³) building blocks in SciPy versus tf.linalg (why tfflat's EP calls LAPACK/BLAS for
them). Every case runs in its own process, started cold but timed warm (tfflat: after one small call that
traces and XLA-compiles its loop; the compile time is printed separately), with the BLAS threads
fixed by ``--threads`` (default 1: "one core"). Printed per case: seconds, ratio baseline/tfflat,
ln Z, relative difference to tfflat, sweeps, and memory (peak RSS of the process; for tfflat also the
peak of numpy allocations inside EP, tracemalloc).

Baselines:
- GPy (``--gpy PYTHON``: a Python with GPy installed, e.g. a separate venv — GPy is never a tfflat
  dependency): ``GPy.inference.latent_function_inference.EP`` with ``Bernoulli(Probit|Heaviside)``, its
  default sequential schedule (one BLAS rank-one update of Σ per site) and stopping rule; the whole
  ``inference`` call is timed, since that is what GPy users pay. Runs up to ``--gpy-max-n``.
- numpy: parallel EP written plainly with scipy's Cholesky and triangular solve (what one would
  write by hand), undamped, same stopping rule as tfflat.

Run:

    python benchmarks/bench_ep.py [--sizes 600 1500 5000] [--big 11000] [--gpy /work/gpyvenv/bin/python]
                                  [--gpy-max-n 1500] [--threads 1] [--data-dir ../shared/data]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="*", default=[600, 1500, 5000])
    p.add_argument("--big", type=int, nargs="*", default=[11000], help="tfflat-only sizes (peak memory)")
    p.add_argument("--gpy", default="/work/gpyvenv/bin/python", help="a Python that has GPy ('' to skip)")
    p.add_argument("--gpy-max-n", type=int, default=1500)
    p.add_argument("--numpy-max-n", type=int, default=5000)
    p.add_argument("--likelihoods", nargs="*", default=["probit", "heaviside"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-dir", default=str(HERE.parents[2] / "shared" / "data"))
    p.add_argument("--worker", choices=["tfflat", "numpy", "gpy", "linalg"], help=argparse.SUPPRESS)
    p.add_argument("--files", nargs=2, default=("-", "-"), help=argparse.SUPPRESS)
    p.add_argument("--likelihood", help=argparse.SUPPRESS)
    return p.parse_args()


# ------------------------------------------------------------------ workers (one per process)


def peak_rss_mb() -> float:
    """VmHWM of this process (ru_maxrss would include the parent's RSS from before exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker_tfflat(k, y, likelihood):
    import tracemalloc

    import numpy as np

    from tfflat.prior.ep import ep_log_prior

    t0 = time.perf_counter()
    ep_log_prior(k[:200, :200], y[:200], likelihood, check=False)     # trace + XLA-compile the loop
    compile_s = time.perf_counter() - t0
    tracemalloc.start()
    t0 = time.perf_counter()
    res = ep_log_prior(k, y, likelihood, check=False)
    sec = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del np
    return {"seconds": sec, "ln_z": res.ln_z, "sweeps": res.sweeps, "converged": res.converged,
            "compile_seconds": compile_s, "ep_peak_mb": peak / 2 ** 20}


def worker_numpy(k, y, likelihood, tol=1e-6, max_sweeps=100):
    """Parallel EP (R&W §3.6 updates for all sites at once, Σ from a Cholesky of B each sweep)."""
    import numpy as np
    from scipy.linalg import cholesky, solve_triangular
    from scipy.special import log_ndtr

    t0 = time.perf_counter()
    v = 1.0 if likelihood == "probit" else 0.0
    n = len(k)
    s = 2.0 * y - 1
    tau, nu = np.zeros(n), np.zeros(n)
    sig, mu = np.diag(k).copy(), np.zeros(n)
    history, sweeps = [], 0
    for sweeps in range(1, max_sweeps + 1):
        tc, nc = 1 / sig - tau, mu / sig - nu
        mc, s2 = nc / tc, 1 / tc
        z = s * mc / np.sqrt(v + s2)
        r = np.exp(-0.5 * z * z - 0.5 * np.log(2 * np.pi) - log_ndtr(z))
        mh = mc + s * s2 * r / np.sqrt(v + s2)
        s2h = s2 - s2 ** 2 * r / (v + s2) * (z + r)
        tau = np.maximum(1 / s2h - tc, 0)
        nu = mh / s2h - nc
        sw = np.sqrt(tau)
        L = cholesky(np.eye(n) + sw[:, None] * k * sw[None, :], lower=True, check_finite=False)
        V = solve_triangular(L, sw[:, None] * k, lower=True, check_finite=False)
        sig = np.diag(k) - np.einsum("ij,ij->j", V, V)
        mu = k @ nu - V.T @ (V @ nu)
        tc, nc = 1 / sig - tau, mu / sig - nu
        lz = log_ndtr(s * nc / tc / np.sqrt(v + 1 / tc))
        ln_z = (-np.sum(np.log(np.diag(L))) + lz.sum() + nu @ mu / 2 - sig @ nu ** 2 / 2
                + nc @ ((tau / tc * nc - 2 * nu) * sig) / 2 + np.sum(np.log1p(tau / tc)) / 2)
        history.append(ln_z)
        if len(history) > 1 and abs(history[-1] - history[-2]) <= tol * max(1, abs(ln_z)):
            break
    return {"seconds": time.perf_counter() - t0, "ln_z": float(history[-1]), "sweeps": sweeps,
            "converged": sweeps < max_sweeps}


def worker_gpy(k, y, likelihood):
    import GPy
    import numpy as np
    from GPy.inference.latent_function_inference import expectation_propagation as gep
    from paramz import ObsAr

    np.random.seed(0)
    link = GPy.likelihoods.link_functions.Heaviside() if likelihood == "heaviside" else \
        GPy.likelihoods.link_functions.Probit()
    lik = GPy.likelihoods.Bernoulli(gp_link=link)
    ep = gep.EP()
    sweeps = [0]
    local = ep._local_updates

    def counted(*a, **kw):
        sweeps[0] += 1
        return local(*a, **kw)

    ep._local_updates = counted
    t0 = time.perf_counter()
    _, log_marginal, _ = ep.inference(None, np.zeros((len(y), 1)), lik, ObsAr(y.astype(float)[:, None]), K=k)
    return {"seconds": time.perf_counter() - t0, "ln_z": float(log_marginal), "sweeps": sweeps[0], "converged": True,
            "gpy": GPy.__version__}


def linalg_comparison(n=1500, repeats=3):
    """Seconds for EP's O(n³) kernels in SciPy (LAPACK/BLAS) and in tf.linalg, same thread count."""
    import numpy as np
    import tensorflow as tf
    from scipy.linalg import blas, lapack

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n))
    b = a @ a.T / n + np.eye(n)
    w = rng.standard_normal((n, 128))

    def best(fn):
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    u = lapack.dpotrf(b.T.copy(order="F"), lower=0)[0]
    bt, ut, wt = tf.constant(b), tf.constant(u), tf.constant(w)
    chol = tf.function(lambda x: tf.linalg.cholesky(x))
    trsm = tf.function(lambda l, x: tf.linalg.triangular_solve(l, x, lower=False, adjoint=True))
    rank = tf.function(lambda c, x: c - tf.matmul(x, x, transpose_b=True))
    out = {
        "cholesky": (best(lambda: lapack.dpotrf(b, lower=1)), best(lambda: chol(bt).numpy())),
        "triangular solve (n rhs)": (best(lambda: blas.dtrsm(1.0, u, b.T, side=1, lower=0)),
                                     best(lambda: trsm(ut, bt).numpy())),
        "rank-128 update (syrk vs matmul)": (best(lambda: blas.dsyrk(-1.0, w, beta=1.0, c=b)),
                                             best(lambda: rank(bt, wt).numpy())),
    }
    return {k: {"scipy": v[0], "tf": v[1]} for k, v in out.items()}


def run_worker(args):
    if args.worker == "linalg":
        print("RESULT " + json.dumps(linalg_comparison()))
        return
    import numpy as np

    k = np.load(args.files[0])
    y = np.load(args.files[1]).astype(np.int64)
    fn = {"tfflat": worker_tfflat, "numpy": worker_numpy, "gpy": worker_gpy}[args.worker]
    out = fn(k, y, args.likelihood)
    out["peak_rss_mb"] = peak_rss_mb()
    print("RESULT " + json.dumps(out))


# ------------------------------------------------------------------ orchestration


def make_problem(n, data_dir, tmp):
    """Kernel of the paper's MNIST FCN on n images (jittered copies past the 10,000 available) + labels."""
    import math

    import numpy as np

    from tfflat.data import load_task, make_splits
    from tfflat.prior.kernels import nngp_kernel

    task = load_task("mnist", data_dir)
    pool = sum(len(p.labels) for p in task.pools.values())
    sp = make_splits(task, min(n, pool), 0, 0, seed=0)
    x, y = sp.x_train, sp.y_train
    if n > len(x):
        rng = np.random.default_rng(1)
        extra = rng.integers(0, len(x), n - len(x))
        x = np.concatenate([x, np.clip(x[extra] + rng.normal(0, 0.1, x[extra].shape), 0, 1).astype(np.float32)])
        y = np.concatenate([y, y[extra]])
    t0 = time.perf_counter()
    k = nngp_kernel(x, 2, math.sqrt(2), 1.0)
    kernel_s = time.perf_counter() - t0
    kf, yf = Path(tmp) / f"k{n}.npy", Path(tmp) / f"y{n}.npy"
    np.save(kf, k)
    np.save(yf, y.astype(np.int8))
    return kf, yf, kernel_s


def launch(python, worker, files, likelihood, threads, timeout=7200):
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads), "TF_NUM_INTRAOP_THREADS": str(threads), "TF_CPP_MIN_LOG_LEVEL": "3"}
    cmd = [python, str(HERE), "--worker", worker, "--files", *map(str, files), "--likelihood", likelihood]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}


def main():
    args = parse()
    if args.worker:
        return run_worker(args)
    import shutil

    gpy = args.gpy if args.gpy and shutil.which(args.gpy) else None
    print(f"EP benchmark: BLAS threads {args.threads}, {os.cpu_count()} CPUs; GPy: {gpy or 'not available'}")
    lin = launch(sys.executable, "linalg", ("-", "-"), "-", args.threads)
    for op, t in lin.items() if "error" not in lin else ():
        print(f"  n = 1500 {op:<34} scipy {t['scipy']:.3f} s   tf.linalg {t['tf']:.3f} s   "
              f"(tf/scipy {t['tf'] / t['scipy']:.1f}×)")
    print(f"{'n':>6} {'likelihood':>10} {'impl':>7} {'seconds':>9} {'ratio':>7} {'ln Z':>14} {'rel diff':>9} "
          f"{'sweeps':>6} {'peak RSS MB':>11}  notes")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_ep_") as tmp:
        for n in list(args.sizes) + list(args.big):
            kf, yf, kernel_s = make_problem(n, args.data_dir, tmp)
            print(f"{n:>6} kernel computed in {kernel_s:.1f} s ({n * n * 8 / 2 ** 20:.0f} MB)", flush=True)
            for lik in args.likelihoods:
                ours = launch(sys.executable, "tfflat", (kf, yf), lik, args.threads)
                cases = [("tfflat", ours)]
                if n not in args.big:
                    if n <= args.numpy_max_n:
                        cases.append(("numpy", launch(sys.executable, "numpy", (kf, yf), lik, args.threads)))
                    if gpy and n <= args.gpy_max_n:
                        cases.append(("GPy", launch(gpy, "gpy", (kf, yf), lik, args.threads)))
                for name, r in cases:
                    if "error" in r:
                        print(f"{n:>6} {lik:>10} {name:>7}   failed: {r['error']}", flush=True)
                        continue
                    ok = "error" not in ours
                    ratio = r["seconds"] / ours["seconds"] if ok else float("nan")
                    rel = abs(r["ln_z"] - ours["ln_z"]) / abs(ours["ln_z"]) if ok else float("nan")
                    notes = (f"compile {r['compile_seconds']:.1f} s, EP arrays peak {r['ep_peak_mb']:.0f} MB"
                             if name == "tfflat" else "")
                    notes += "" if r.get("converged", True) else " NOT converged"
                    print(f"{n:>6} {lik:>10} {name:>7} {r['seconds']:>9.2f} {ratio:>7.1f} {r['ln_z']:>14.6f} "
                          f"{rel:>9.1e} {r['sweeps']:>6} {r['peak_rss_mb']:>11.0f}  {notes}", flush=True)
                    rows.append({"n": n, "likelihood": lik, "impl": name, **r})
            os.unlink(kf)
    print("ratio = that implementation's seconds / tfflat's (same n, likelihood); rel diff = |Δ ln Z| / |ln Z_tfflat|")
    return rows


if __name__ == "__main__":
    main()
