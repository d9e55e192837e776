"""Seconds per Keskar sharpness (Table 1, MNIST FCN row): the authors' published TF1 loop, run
unchanged, versus tfflat.

Same arithmetic on both sides: FCN 784-40-40-1 trained on real MNIST (|S| = 500, the same images)
to zero training error; ζ = 1e-4, batch 32, lr 1e-3, 100 epochs = 1600 ascent steps, the full-S loss
evaluated after every step and its maximum tracked.

* **authors**: ``FCN/sharpness-generalization.py`` of sofuncheung/ICML_2021, unchanged, launched by
  ``benchmarks/authors.py`` (TF1 graph mode on ``tensorflow.compat.v1``). Per step: one
  ``session.run`` of the ascent op, one reading all weights back, the box clip in numpy, six
  ``session.run`` assigning the clipped weights, one ``session.run`` of the full-S loss. Timed from
  its first to its last ascent call (its graph is built before training, so no set-up is inside).
* **tfflat**: :func:`tfflat.flatness.sharpness` on a network trained by tfflat on the same S — cold
  (first call in the process: tracing and XLA compilation included) and warm; and
  :func:`tfflat.flatness.batched.sharpness_fcns` for ``--stack`` networks measured at once (what a
  sweep does), per network; and cold in two fresh processes sharing an XLA persistent compilation cache.

The arithmetic of one step (a 32-example forward and backward pass plus a 500-example forward pass)
is set against this machine's compiled float32 matmul rate. Run:

    python benchmarks/bench_sharpness.py [--data-dir ../shared/data] [--stack 11]
"""

import argparse
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def matmul_rate(x, width, seconds=1.0):
    """GFLOP per CPU-second (all threads) of this machine on the step's dominant product, (|S| × d) @ (d × width),
    compiled: the per-core rate, which a busy machine disturbs less than the wall-clock rate."""
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
    t0, c0, calls = time.perf_counter(), time.process_time(), 0
    while time.perf_counter() - t0 < seconds:
        loop(w).numpy()
        calls += 1
    dt = (time.process_time() - c0) / (calls * reps)
    return 2 * xt.shape[0] * xt.shape[1] * width / dt / 1e9


COLD = """
import sys, time, numpy as np
from tfflat import models
from tfflat.flatness import sharpness
d = np.load(sys.argv[1])
model = models.build(models.model_spec("fcn", "mnist", (28, 28)), seed=0)
model.set_weights([d[f"w{i}"] for i in range(6)])
t0 = time.perf_counter()
sharpness(model, d["x"], d["y"], 1e-4, "sgd", 1e-3, 100, 32, seed=0)
print(time.perf_counter() - t0)
"""


def cold_with_xla_cache(model, x, y) -> list:
    """Cold seconds of one sharpness in two fresh processes sharing an XLA persistent compilation cache
    (``TF_XLA_FLAGS=--tf_xla_persistent_cache_directory=…``): the second loads the compiled epoch."""
    import subprocess
    import tempfile

    tmp = tempfile.mkdtemp()
    path = os.path.join(tmp, "net.npz")
    np.savez(path, x=x, y=y, **{f"w{i}": w for i, w in enumerate(model.get_weights())})
    env = dict(os.environ, TF_XLA_FLAGS=f"--tf_xla_persistent_cache_directory={tmp}/xla", TF_CPP_MIN_LOG_LEVEL="3")
    return [float(subprocess.run([sys.executable, "-c", COLD, path], capture_output=True, text=True, env=env,
                                 check=True).stdout.split()[-1]) for _ in range(2)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--stack", type=int, default=11, help="networks measured at once (0: skip)")
    ap.add_argument("--repo", default=None, help="the authors' repository (default: the mirror)")
    ap.add_argument("--no-xla-cache", action="store_true", help="skip the persistent-compilation-cache measurement")
    args = ap.parse_args()

    import authors
    import tensorflow as tf

    from tfflat import defaults, models
    from tfflat.data import load_task, make_splits
    from tfflat.flatness import batched, sharpness
    from tfflat.training import train

    task = load_task("mnist", args.data_dir)
    splits = make_splits(task, 500, 0, 1000, seed=0)
    x, y = splits.x_train, splits.y_train.astype(np.float32)
    s = defaults.SHARPNESS[("mnist", "fcn")]
    zeta, lr, epochs, bs = s["zeta"], s["lr"], s["epochs"], s["batch_size"]
    steps = epochs * math.ceil(len(y) / bs)
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; FCN 784-40-40-1, "
          f"|S| = {len(y)}, ζ = {zeta}, batch {bs}, lr {lr}, {epochs} epochs = {steps} steps, full-S loss every step",
          flush=True)

    raw = authors.run(splits, samples=1, **({"repo": args.repo} if args.repo else {}))
    a = authors.summarise(raw)["networks"][0]
    ta = a["ascent_s"]
    calls = ", ".join(f"{k} {v:.3f}" for k, v in a["ms_per_step_by_call"].items())
    print(f"authors: {ta:.2f} s ({a['ascent_cpu_s']:.2f} CPU-s) for {a['ascent_steps']} steps "
          f"({ta / a['ascent_steps'] * 1e3:.2f} ms/step; "
          f"ms/step by call: {calls})", flush=True)

    model = models.build(models.model_spec("fcn", "mnist", task.input_shape), seed=0)
    train(model, splits, "sgd", seed=0)
    t0, c0 = time.perf_counter(), time.process_time()
    cold = sharpness(model, x, y, zeta, "sgd", lr, epochs, bs, seed=0)
    t_cold, c_cold = time.perf_counter() - t0, time.process_time() - c0
    warm, warm_c = [], []
    for r in range(3):
        t0, c0 = time.perf_counter(), time.process_time()
        sharpness(model, x, y, zeta, "sgd", lr, epochs, bs, seed=r)
        warm.append(time.perf_counter() - t0)
        warm_c.append(time.process_time() - c0)
    t_warm, c_warm = float(np.median(warm)), float(np.median(warm_c))
    print(f"tfflat one network: cold {t_cold:.2f} s ({c_cold:.2f} CPU-s; trace + XLA compile + run), warm "
          f"{t_warm:.2f} s ({c_warm:.2f} CPU-s) (sharpness {cold.sharpness:.5f}; seeds 0-2 warm: "
          f"{', '.join(f'{w:.2f}' for w in warm)})", flush=True)
    t_stack, c_stack = None, float("nan")
    if args.stack > 0:
        w = model.get_weights()
        batched.sharpness_fcns([w] * args.stack, x, y, zeta, lr, 1, bs, seeds=0)   # compile
        t0, c0 = time.perf_counter(), time.process_time()
        many = batched.sharpness_fcns([w] * args.stack, x, y, zeta, lr, epochs, bs, seeds=0)
        t_stack, c_stack = (time.perf_counter() - t0) / args.stack, (time.process_time() - c0) / args.stack
        print(f"tfflat stack of {args.stack} (one seed, as in a sweep): {t_stack:.3f} s ({c_stack:.3f} CPU-s) per network "
              f"(sharpness {many[0].sharpness:.5f} vs one-network {cold.sharpness:.5f})", flush=True)

    cached = None
    if not args.no_xla_cache:
        cached = cold_with_xla_cache(model, x, y)
        print(f"tfflat one network, cold in a fresh process with an XLA persistent compilation cache: first "
              f"{cached[0]:.2f} s, second (compiled epoch loaded from the cache) {cached[1]:.2f} s", flush=True)
    widths = [int(v.shape[1]) for v in model.get_weights()[::2]]
    kept = int(np.any(x.reshape(len(x), -1) != 0, axis=0).sum())
    fan = [kept] + widths[:-1]
    forward = 2 * sum(i * o for i, o in zip(fan, widths))
    step_flops = len(y) * forward + bs * 2 * fan[0] * widths[0]     # full-S forward + first-layer weight gradient
    rate = matmul_rate(x, widths[0])
    ideal = steps * step_flops / (rate * 1e9)
    print(f"arithmetic: {step_flops / 1e6:.1f} MFLOP per step ({kept} of {x[0].size} inputs nonzero on S); "
          f"compiled float32 rate on ({len(y)}x{x[0].size})@({x[0].size}x{widths[0]}): {rate:.0f} GFLOP per CPU-s "
          f"-> {ideal:.2f} CPU-s ideal per ascent (tfflat warm: {c_warm:.2f} CPU-s, stack {c_stack:.2f})")
    ca = a["ascent_cpu_s"]
    print(f"speed-up vs the authors' loop, wall (CPU): one network warm {ta / t_warm:.1f}x ({ca / c_warm:.1f}x), "
          f"cold {ta / t_cold:.1f}x ({ca / c_cold:.1f}x)"
          + (f", stack {ta / t_stack:.1f}x ({ca / c_stack:.1f}x) per network" if t_stack else "")
          + (f", cold with the compilation cache {ta / cached[1]:.1f}x" if cached else "")
          + f" (goal >= 5x); load now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
