"""Seconds per Keskar sharpness (Table 1, MNIST FCN row): tfflat's compiled ascent versus an eager loop.

FCN 784-40-40-1 trained on real MNIST (|S| = 500) to its zero-error epoch; ζ = 1e-4, batch 32,
lr 1e-3, 100 epochs = 1600 ascent steps, the full-S loss evaluated after every step and its maximum
tracked. Baseline (the published code's pattern): per minibatch one Keras SGD step on −L
(``train_on_batch``), the clip into the box in numpy, then the full-S loss (``predict_on_batch``).
tfflat: :func:`tfflat.flatness.sharpness`, the whole ascent one compiled loop (timed warm, and cold
including tracing and XLA compilation). Both follow identical semantics; the printed sharpness values
differ only through the minibatch order. ``--synthetic`` times the same shapes on random data with
an untrained network (for machines without the data). The arithmetic cost of a step (a 32-example forward and
backward pass plus a 500-example forward pass) is set against this machine's float32 matmul rate.
Run:

    python benchmarks/bench_sharpness.py [--data-dir ../shared/data] [--run RUN] [--synthetic] [--repeats 3]
"""

import argparse
import math
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def baseline(model, x, y, zeta, lr, epochs, batch_size, seed):
    """The published code's loop: a Keras SGD step on −L (``train_on_batch``), the clip into the box
    in numpy (``get_weights``/``set_weights``), then the full-S loss (``predict_on_batch``), every minibatch."""
    import keras

    w0 = model.get_weights()
    lo = [w - zeta * (np.abs(w) + 1) for w in w0]
    hi = [w + zeta * (np.abs(w) + 1) for w in w0]
    ce = keras.losses.BinaryCrossentropy(from_logits=True)
    model.compile(keras.optimizers.SGD(lr), loss=lambda t, z: -ce(t, z))

    def full_loss():
        z = model.predict_on_batch(x).ravel().astype(np.float64)
        return float(np.mean(np.logaddexp(0, z) - y * z))

    rng = np.random.default_rng(seed)
    loss = best = full_loss()
    n = len(y)
    for _ in range(epochs):
        order = rng.permutation(n)
        for i in range(0, n, batch_size):
            b = order[i:i + batch_size]
            model.train_on_batch(x[b], y[b])
            model.set_weights([np.clip(w, l, h) for w, l, h in zip(model.get_weights(), lo, hi)])
            best = max(best, full_loss())
    model.set_weights(w0)
    return 100 * (best - loss) / (1 + loss)


def matmul_rate(x, width, seconds=1.0):
    """GFLOP/s of this machine on the step's dominant product, (|S| × 784) @ (784 × 40), compiled."""
    import tensorflow as tf

    xt = tf.constant(x.reshape(len(x), -1))
    w = tf.random.normal([xt.shape[1], width])
    reps = 200

    @tf.function(jit_compile=True)
    def loop(w):
        s = tf.constant(0.0)
        for i in tf.range(reps):
            s += tf.reduce_sum(tf.matmul(xt, w + tf.cast(i, tf.float32)))
        return s

    loop(w)
    t0, calls = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        loop(w).numpy()
        calls += 1
    dt = (time.perf_counter() - t0) / (calls * reps)
    return 2 * xt.shape[0] * xt.shape[1] * width / dt / 1e9


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    ap.add_argument("--run", default=None, help="an MNIST FCN run directory (default: train one, |S| = 500)")
    ap.add_argument("--synthetic", action="store_true", help="random data of the same shapes, untrained network")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import tensorflow as tf

    from tfflat import defaults, runs
    from tfflat.flatness import sharpness

    if args.synthetic:
        from tfflat import models
        rng = np.random.default_rng(0)
        x = rng.random((500, 28, 28), dtype=np.float32)
        y = (rng.random(500) < 0.5).astype(np.float32)
        model = models.build(models.model_spec("fcn", "mnist", (28, 28)), seed=0)
    elif args.run:
        run = runs.load(args.run)
        model, x, y = run.model, run.splits.x_train, run.splits.y_train
    else:
        from tfflat.training.run import TrainConfig, train_run
        model, _, splits = train_run(TrainConfig(dataset="mnist", data_dir=args.data_dir, train_size=500,
                                                 test_size=0))
        x, y = splits.x_train, splits.y_train
    x, y = x.astype(np.float32), y.astype(np.float32)
    s = defaults.SHARPNESS[("mnist", "fcn")]
    zeta, lr, epochs, bs = s["zeta"], s["lr"], s["epochs"], s["batch_size"]
    n = len(y)
    steps = epochs * math.ceil(n / bs)

    widths = [l.kernel.shape[1] for l in model.layers if hasattr(l, "kernel")]
    fan = [l.kernel.shape[0] for l in model.layers if hasattr(l, "kernel")]
    forward = 2 * sum(a * b for a, b in zip(fan, widths))          # FLOPs per example, forward
    step_flops = bs * 3 * forward + n * forward                     # minibatch fwd+bwd, full-S forward

    t0 = time.perf_counter()
    cold = sharpness(model, x, y, zeta, "sgd", lr, epochs, bs, seed=0)
    cold_s = time.perf_counter() - t0
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} cores; FCN {fan[0]}-{'-'.join(map(str, widths))}, "
          f"|S| = {n}, ζ = {zeta}, batch {bs}, lr {lr}, {epochs} epochs = {steps} steps, full-S loss every step")
    print(f"tfflat cold (trace + XLA compile + run): {cold_s:.2f} s, sharpness {cold.sharpness:.5f}")
    rows = []
    for r in range(args.repeats):
        t0 = time.perf_counter()
        b = baseline(model, x, y, zeta, lr, epochs, bs, seed=r)
        tb = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = sharpness(model, x, y, zeta, "sgd", lr, epochs, bs, seed=r)
        tt = time.perf_counter() - t0
        rows.append((tb, tt))
        print(f"  repeat {r}: baseline {tb:6.2f} s ({tb / steps * 1e3:5.2f} ms/step, sharpness {b:.5f})   "
              f"tfflat {tt:6.2f} s ({tt / steps * 1e3:5.3f} ms/step, sharpness {res.sharpness:.5f})   "
              f"ratio {tb / tt:5.2f}x")
    tb, tt = np.median([r[0] for r in rows]), np.median([r[1] for r in rows])
    rate = matmul_rate(x, widths[0])
    ideal = step_flops / (rate * 1e9)
    print(f"median: baseline {tb:.2f} s, tfflat {tt:.2f} s per sharpness, speed-up {tb / tt:.2f}x (goal >= 5x)")
    print(f"arithmetic: {step_flops / 1e6:.1f} MFLOP per step; this machine's compiled float32 rate on the "
          f"({n}x{fan[0]})@({fan[0]}x{widths[0]}) product: {rate:.1f} GFLOP/s -> {ideal * 1e3:.3f} ms/step ideal; "
          f"tfflat {tt / steps * 1e3:.3f} ms/step = {ideal / (tt / steps):.0%} of it")
    t0 = time.perf_counter()
    ep = sharpness(model, x, y, zeta, "sgd", lr, epochs, bs, seed=0, track="epoch")
    ep = sharpness(model, x, y, zeta, "sgd", lr, epochs, bs, seed=0, track="epoch")
    print(f"track='epoch' (full-S loss once per epoch): {ep.seconds:.2f} s, sharpness {ep.sharpness:.5f}, "
          f"{tb / ep.seconds:.1f}x the baseline")


if __name__ == "__main__":
    main()
