"""The whole Fig. 3(a) MNIST sweep — 55 points of train + sharpness + log P(f) — versus the published
code's per-point pipeline (goal: tfflat under 5 minutes on 2 CPU cores).

tfflat: one command, ``tfflat sweep configs/fig3_mnist_sgd.toml`` (|S| = 500, |E| = 1000,
|A| = 0, 50, …, 500, 5 seeds, SGD; sharpness Table 1; probit EP on the one NNGP kernel of S + E),
timed end to end in a fresh process (TensorFlow start-up included).

Baseline (the published code's pattern), timed on a few points and extrapolated to 55: per point a
new Keras model trained with ``train_on_batch`` per minibatch and the training accuracy after every
epoch until it is 1; the sharpness ascent of ``bench_sharpness.baseline`` (Keras step, numpy clip and
a full-S ``predict_on_batch`` per minibatch); the NNGP kernel of S + E recomputed and GPy's EP
(Bernoulli/probit) when a Python with GPy is given (``--gpy-python``), else tfflat's EP (noted).
The issue's reference: 15–25 s per point (training 1–22 s, sharpness ~4.5 s, GPy EP ~1.5 s). Run:

    python benchmarks/bench_sweep.py [--data-dir ../shared/data] [--workers 1] [--baseline-points 3]
                                     [--gpy-python /path/to/python-with-GPy] [--quick]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
GPY_SCRIPT = """
import sys, time, numpy as np, GPy
from GPy.inference.latent_function_inference.expectation_propagation import EP
from paramz import ObsAr
K, y = np.load(sys.argv[1]), np.load(sys.argv[2])
lik = GPy.likelihoods.Bernoulli(gp_link=GPy.likelihoods.link_functions.Probit())
t = time.perf_counter()
_, lml, _ = EP().inference(None, np.zeros((len(y), 1)), lik, ObsAr(y.astype(float)[:, None]), K=K)
print(time.perf_counter() - t, float(lml))
"""


def run_tfflat(args) -> dict:
    """The sweep as a user runs it: one fresh ``tfflat sweep`` process, wall time from launch to exit."""
    out = Path(tempfile.mkdtemp()) / "fig3.jsonl"
    cmd = [sys.executable, "-m", "tfflat_cli.main", "sweep", str(ROOT / "configs" / "fig3_mnist_sgd.toml"),
           "--data-dir", args.data_dir, "--out", str(out), "--workers", str(args.workers), "--json"]
    if args.quick:
        cmd.append("--quick")
    t0, c0 = time.perf_counter(), _child_cpu()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, _child_cpu() - c0
    if done.returncode != 0:
        sys.exit(f"tfflat sweep failed:\n{done.stderr[-3000:]}")
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    stage = {k: float(np.sum([r.get(k, 0.0) for r in recs]))
             for k in ("seconds_train", "seconds_sharpness", "seconds_prior")}
    return {"wall": wall, "cpu": cpu, "points": len(recs), "stages": stage, "out": str(out), "records": recs}


def _child_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def baseline_point(task, spec, attack_size, seed, args, sharp_baseline):
    import keras

    from tfflat import models
    from tfflat.data import make_splits
    from tfflat.prior import ep, kernels

    s = make_splits(task, 500 if not args.quick else 100, attack_size, 1000 if not args.quick else 200, seed=0)
    x, y = s.x_fit, s.y_fit.astype(np.float32)
    times = {}
    c0, g0 = time.process_time(), _child_cpu()
    t0 = time.perf_counter()
    model = models.build(spec, seed=seed)
    model.compile(keras.optimizers.SGD(0.01), keras.losses.BinaryCrossentropy(from_logits=True))
    rng = np.random.default_rng(seed)
    epochs = 0
    while epochs < 10000:
        perm = rng.permutation(len(y))
        for i in range(0, len(y), 32):
            b = perm[i:i + 32]
            model.train_on_batch(x[b], y[b])
        epochs += 1
        if np.all((model.predict_on_batch(s.x_train).ravel() >= 0) == (s.y_train == 1)):
            break
    times["train"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    sh = sharp_baseline(model, s.x_train, s.y_train.astype(np.float64), 1e-4, 1e-3,
                        100 if not args.quick else 10, 32, seed)
    times["sharpness"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    x_se = np.concatenate([s.x_train, s.x_test])
    k = kernels.nngp_kernel(x_se, 2, spec["sigma_w"], spec["sigma_b"])      # recomputed per point
    f = np.concatenate([s.y_train, (model.predict_on_batch(s.x_test).ravel() >= 0).astype(int)])
    kernel_seconds = time.perf_counter() - t0
    if args.gpy_python:      # GPy's EP in its own interpreter; its import is not timed
        tmp = Path(tempfile.mkdtemp())
        np.save(tmp / "K.npy", k)
        np.save(tmp / "y.npy", f)
        r = subprocess.run([args.gpy_python, "-c", GPY_SCRIPT, str(tmp / "K.npy"), str(tmp / "y.npy")],
                           capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"GPy failed: {r.stderr[-2000:]}")
        times["prior"] = kernel_seconds + float(r.stdout.split()[0])
    else:
        t0 = time.perf_counter()
        ep.ep_log_prior(k, f, "probit")
        times["prior"] = kernel_seconds + time.perf_counter() - t0
    times["cpu"] = time.process_time() - c0 + _child_cpu() - g0
    times["epochs"] = epochs
    times["sharpness_value"] = sh
    return times


def run_baseline(args) -> dict:
    sys.path.insert(0, str(HERE))
    from bench_sharpness import baseline as sharp_baseline

    from tfflat import models
    from tfflat.data import load_task

    task = load_task("mnist", args.data_dir)
    spec = models.model_spec("fcn", "mnist", task.input_shape)
    sizes = [0, 250, 500] if not args.quick else [0, 50, 100]
    points = [(sizes[i % len(sizes)], i // len(sizes)) for i in range(args.baseline_points)]
    rows = []
    for a, seed in points:
        rows.append({"attack_size": a, "seed": seed, **baseline_point(task, spec, a, seed, args, sharp_baseline)})
        print(f"  baseline |A|={a} seed {seed}: " + ", ".join(f"{k} {v:.1f}" for k, v in rows[-1].items()
                                                              if k not in ("attack_size", "seed")), flush=True)
    return {"points": rows}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--baseline-points", type=int, default=3, help="points of the baseline to time (0: skip)")
    ap.add_argument("--gpy-python", default=None, help="a Python interpreter that has GPy (for the baseline EP)")
    ap.add_argument("--quick", action="store_true", help="the config's [quick] sizes (a smoke test)")
    args = ap.parse_args()

    print(f"tfflat sweep configs/fig3_mnist_sgd.toml{' --quick' if args.quick else ''} "
          f"--workers {args.workers} (fresh process) …", flush=True)
    tf_res = run_tfflat(args)
    n = tf_res["points"]
    st = tf_res["stages"]
    print(f"tfflat: {n} points in {tf_res['wall']:.1f} s wall ({tf_res['wall'] / n:.2f} s/point), "
          f"{tf_res['cpu']:.0f} CPU-s ({tf_res['cpu'] / n:.2f} CPU-s/point); summed stage "
          f"seconds: train {st['seconds_train']:.1f}, sharpness {st['seconds_sharpness']:.1f}, "
          f"prior {st['seconds_prior']:.1f}")
    if args.baseline_points <= 0:
        return
    print(f"baseline (published code's pattern) on {args.baseline_points} points …", flush=True)
    base = run_baseline(args)
    per = [r["train"] + r["sharpness"] + r["prior"] for r in base["points"]]
    mean = float(np.mean(per))
    cpu = float(np.mean([r["cpu"] for r in base["points"]]))
    print(f"baseline: {mean:.1f} s/point, {cpu:.1f} CPU-s/point on average → {mean * n:.0f} s wall, "
          f"{cpu * n:.0f} CPU-s for {n} points (EP: {'GPy' if args.gpy_python else 'tfflat EP, GPy not given'})")
    print(f"ratio baseline / tfflat: wall {mean * n / tf_res['wall']:.1f}×, CPU {cpu * n / tf_res['cpu']:.1f}×  "
          f"(goal: tfflat < 300 s for the 55 points on 2 cores; issue's reference 15–25 s/point = 825–1375 s)")
    print(f"load average during the run: {os.getloadavg()[0]:.1f} (on {os.cpu_count()} cores: timings are "
          f"pessimistic when it exceeds the core count)")


if __name__ == "__main__":
    main()
