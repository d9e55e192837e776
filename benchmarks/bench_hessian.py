"""Seconds for the top-50 Hessian eigenvalues of the 784-40-40-1 FCN on |S| = 500 (goal: < 30 s on 2 cores).

tfflat: :func:`tfflat.flatness.top_eigenvalues` — ARPACK ``eigsh`` on the compiled (XLA)
forward-over-reverse Hessian-vector product; then the spectral norm and a 100-probe Hutchinson
trace, i.e. all of ``tfflat hessian``. Baseline: the same ``eigsh`` on a straightforward eager
double-backprop HVP (``tape.gradient`` of ``g · v``, the Keras model called eagerly). The two
spectra are compared. ``--synthetic`` uses random MNIST-shaped data and an untrained network
(same shapes and cost; for machines without the data). Run:

    python benchmarks/bench_hessian.py [--data-dir ../shared/data] [--run RUN] [--synthetic]
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def eager_hvp(model, x, y):
    """v ↦ H v by double backprop, eagerly (no tf.function)."""
    import tensorflow as tf

    from tfflat.training import sigmoid_ce

    variables = model.trainable_variables
    shapes = [v.shape for v in variables]
    sizes = [int(np.prod(s)) for s in shapes]
    xt, yt = tf.constant(x), tf.constant(y)

    def matvec(v):
        vs = [tf.reshape(p, s) for p, s in zip(tf.split(tf.constant(v.ravel(), tf.float32), sizes), shapes)]
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                loss = tf.reduce_mean(sigmoid_ce(model(xt, training=False), yt))
            grads = inner.gradient(loss, variables)
            gv = tf.add_n([tf.reduce_sum(g * t) for g, t in zip(grads, vs)])
        return np.concatenate([tf.reshape(h, [-1]).numpy() for h in outer.gradient(gv, variables)]).astype(np.float64)

    return matvec, sum(sizes)


def load(args):
    if args.synthetic:
        from tfflat import models
        rng = np.random.default_rng(0)
        x = rng.random((500, 28, 28), dtype=np.float32)
        y = (rng.random(500) < 0.5).astype(np.float32)
        return models.build(models.model_spec("fcn", "mnist", (28, 28)), seed=0), x, y
    if args.run:
        from tfflat import runs
        run = runs.load(args.run)
        return run.model, run.splits.x_train, run.splits.y_train
    from tfflat.training.run import TrainConfig, train_run
    model, _, splits = train_run(TrainConfig(dataset="mnist", data_dir=args.data_dir, train_size=500, test_size=0))
    return model, splits.x_train, splits.y_train


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    ap.add_argument("--run", default=None, help="an MNIST FCN run directory (default: train one, |S| = 500)")
    ap.add_argument("--synthetic", action="store_true", help="random data of the same shapes, untrained network")
    ap.add_argument("--top-k", type=int, default=50)
    ap.add_argument("--no-baseline", action="store_true")
    args = ap.parse_args()

    import tensorflow as tf
    from scipy.sparse.linalg import LinearOperator, eigsh

    from tfflat.flatness import hessian_measures, hvp, top_eigenvalues

    model, x, y = load(args)
    x, y = x.astype(np.float32), y.astype(np.float32)
    k = args.top_k
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} cores; FCN 784-40-40-1, |S| = {len(y)}, top-{k} "
          f"eigenvalues{' (synthetic data)' if args.synthetic else ''}")

    t0 = time.perf_counter()
    h = hvp(model, x, y)
    h(np.ones(h.size))
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(20):
        h(np.ones(h.size))
    per_hvp = (time.perf_counter() - t0) / 20
    h.matvecs = 0
    t0 = time.perf_counter()
    ours = top_eigenvalues(h, k)
    ours_s = time.perf_counter() - t0
    print(f"tfflat: HVP {per_hvp * 1e3:.2f} ms (trace + XLA compile {compile_s:.1f} s); top-{k}: {ours_s:.2f} s, "
          f"{h.matvecs} HVPs ({h.matvecs * per_hvp:.2f} s of HVPs, {ours_s - h.matvecs * per_hvp:.2f} s ARPACK)")
    t0 = time.perf_counter()
    full = hessian_measures(model, x, y, top_k=k)
    full_s = time.perf_counter() - t0
    print(f"tfflat: all of `tfflat hessian` (top-{k}, spectral norm, 100-probe trace): {full_s:.2f} s, "
          f"{full.matvecs} HVPs; λmax {full.eigenvalues[0]:.5g}, ‖H‖ {full.spectral_norm:.5g}, "
          f"log10 Π top-{k} {full.log10_top_product:.4f}, trace {full.trace:.4g} ± {full.trace_stderr:.2g}  "
          f"(goal < 30 s)")
    if args.no_baseline:
        return
    matvec, size = eager_hvp(model, x, y)
    matvec(np.ones(size))
    calls = [0]

    def counted(v):
        calls[0] += 1
        return matvec(v)

    t0 = time.perf_counter()
    op = LinearOperator((size, size), matvec=counted, dtype=np.float64)
    base = np.sort(eigsh(op, k=k, which="LA", tol=1e-6, v0=np.random.default_rng(0).standard_normal(size),
                         return_eigenvectors=False))[::-1]
    base_s = time.perf_counter() - t0
    print(f"baseline (eager double-backprop HVP + eigsh): {base_s:.2f} s, {calls[0]} HVPs")
    print(f"speed-up on the top-{k}: {base_s / ours_s:.2f}x; max relative difference of the eigenvalues "
          f"{np.max(np.abs(base - ours) / np.abs(base).max()):.1e}")


if __name__ == "__main__":
    main()
