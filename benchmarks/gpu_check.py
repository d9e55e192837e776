"""The stages of benchmarks/gpu_check.sh: one Fig. 3(c) point at the paper's sizes on a GPU, timed.

    python benchmarks/gpu_check.py env|train|sharpness|kernel|ep|ep-large|estimate --work DIR

Each stage reads what earlier stages left in ``--work`` (the trained model, f, the kernel), prints
everything and writes ``<stage>.json`` there. A stage stops its own work inside ``--budget`` seconds (the
shell script's timeout is a little longer), so a slow stage still reports what it measured.
ResNet50 on CIFAR-10 cats/cars, |S| = 5000, |E| = 2000, |A| = 0; sharpness with Table 1's ResNet row
(ζ = 1e-5, batch 128, lr 100; a few of its 100 epochs, timed); the empirical kernel (eq. 7, He-normal,
eval mode; a few of its M = 0.1 (|S| + |E|) = 700 samples, timed) and EP on S + E; EP at n = 11000.
"""

import argparse
import inspect
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
S = int(os.environ.get("GPU_CHECK_S", 5000))       # smaller only for a CPU smoke run of the script
E = int(os.environ.get("GPU_CHECK_E", 2000))
SWEEP_A = list(range(0, 5001, 500))
SWEEP_SEEDS = 5
T0 = time.perf_counter()


def log(msg):
    print(f"  [{time.perf_counter() - T0:7.1f}s] {msg}", flush=True)


def save(work, stage, rec):
    (Path(work) / f"{stage}.json").write_text(json.dumps(rec, indent=1, default=str))
    print(json.dumps({stage: rec}, default=str), flush=True)


def load(work, stage):
    p = Path(work) / f"{stage}.json"
    return json.loads(p.read_text()) if p.is_file() else None


def strategy_kw(fn):
    """``strategy="auto"`` for library functions that take it (issue 17's option), else nothing."""
    return {"strategy": "auto"} if "strategy" in inspect.signature(fn).parameters else {}


def splits_of(data_dir):
    from tfflat.data import load_task, make_splits

    task = load_task("cifar_cats_cars", data_dir)
    return task, make_splits(task, S, 0, E, seed=0)


# ---------------------------------------------------------------------------------------------- stages
def env(args):
    import tensorflow as tf

    import tfflat
    from tfflat import devices

    gpus = tf.config.list_physical_devices("GPU")
    rec = {"python": sys.version.split()[0], "tensorflow": tf.__version__, "tfflat": tfflat.__version__,
           "gpus": [g.name for g in gpus], "cuda_build": tf.sysconfig.get_build_info().get("cuda_version"),
           "cudnn_build": tf.sysconfig.get_build_info().get("cudnn_version"), "devices_auto": str(devices.parse("auto")),
           "cpu_count": os.cpu_count()}
    if gpus:
        rec["gpu_details"] = tf.config.experimental.get_device_details(gpus[0])
        devices.memory_growth()
        t = time.perf_counter()
        with tf.device("/gpu:0"):
            a = tf.random.normal((8192, 8192))
            float(tf.reduce_sum(a @ a))
            t = time.perf_counter()
            for _ in range(10):
                b = a @ a
            float(tf.reduce_sum(b))
            rec["matmul_fp32_tflops"] = 10 * 2 * 8192 ** 3 / (time.perf_counter() - t) / 1e12
    save(args.work, "env", rec)
    if not gpus:
        print("WARNING: TensorFlow sees no GPU: every stage runs on the CPU", flush=True)


def train(args):
    import keras
    import numpy as np

    from tfflat import models
    from tfflat.training import train as train_fn

    _, splits = splits_of(args.data_dir)
    spec = models.model_spec("resnet50", "cifar_cats_cars", (32, 32, 3))
    kw = strategy_kw(train_fn)
    if "precision" in inspect.signature(train_fn).parameters and args.precision:
        kw["precision"] = args.precision
    model = models.build(spec, seed=0)
    budget = args.budget
    epochs = []

    def callback(epoch, rec, _model):
        epochs.append(rec)
        log(f"epoch {epoch}: acc S {rec['acc_S']:.4f}, acc E {rec['acc_E']:.4f}, loss S {rec['loss_S']:.4f}")
        return rec["seconds"] > budget

    t0 = time.perf_counter()
    r = train_fn(model, splits, "sgd", batch_size=32, max_epochs=args.max_epochs, seed=0, callback=callback, **kw)
    wall = time.perf_counter() - t0
    n_fit, n_eval = len(splits.y_fit), len(splits.y_fit) + len(splits.y_test)
    per_epoch = np.diff([h["seconds"] for h in r.history])
    steady = float(np.median(per_epoch[1:])) if len(per_epoch) > 2 else float(per_epoch[-1]) if len(per_epoch) else None
    import tensorflow as tf

    x = np.concatenate([splits.x_train, splits.x_test]).astype(np.float32)
    logits = tf.function(lambda xb: tf.reshape(model(xb, training=False), [-1]), reduce_retracing=True)
    chunks = [x[i:i + 128] for i in range(0, len(x), 128)]     # as the trainer evaluates: chunks of 128
    logits(chunks[0]), logits(chunks[-1])
    t = time.perf_counter()
    z = np.concatenate([logits(c).numpy() for c in chunks])
    eval_s = (time.perf_counter() - t) * n_eval / len(x)        # the per-epoch evaluation of S ∪ A ∪ E
    train_s = steady - eval_s if steady and steady > 1.05 * eval_s else None
    rec = {"zero_error_epoch": r.zero_error_epoch, "epochs": r.epochs, "seconds": wall,
           "first_epoch_seconds": float(per_epoch[0]) if len(per_epoch) else None,
           "seconds_per_epoch": steady, "eval_seconds_per_epoch": eval_s, "train_images": n_fit,
           "eval_images": n_eval, "train_images_per_second": None if train_s is None else n_fit / train_s,
           "images_per_second_incl_eval": None if not steady else n_fit / steady,
           "eval_images_per_second": n_eval / eval_s, "train_accuracy": r.train_accuracy,
           "test_accuracy": r.test_accuracy, "options": kw, "budget_stop": r.zero_error_epoch is None}
    f = np.concatenate([splits.y_train, (z[S:] >= 0)]).astype(np.int8)
    np.save(Path(args.work) / "f.npy", f)
    model.save(Path(args.work) / "resnet50.keras")
    keras.backend.clear_session()
    save(args.work, "train", rec)


def sharpness(args):
    import keras
    import numpy as np

    from tfflat import defaults
    from tfflat.flatness import sharpness as sharp_fn

    _, splits = splits_of(args.data_dir)
    path = Path(args.work) / "resnet50.keras"
    if path.is_file():
        model = keras.models.load_model(path, compile=False)
        trained = True
    else:
        from tfflat import models

        model, trained = models.build(models.model_spec("resnet50", "cifar_cats_cars", (32, 32, 3)), seed=0), False
    t1 = dict(defaults.SHARPNESS[("cifar_cats_cars", "resnet50")])
    times = []
    t0 = time.perf_counter()

    def cb(epoch, best):
        times.append(time.perf_counter() - t0)
        log(f"ascent epoch {epoch}: max loss {best:.6g}")

    epochs = max(1, args.epochs)
    r = sharp_fn(model, splits.x_train, splits.y_train, zeta=t1["zeta"], lr=t1["lr"], batch_size=t1["batch_size"],
                 epochs=epochs, seed=0, track="epoch", callback=cb, **strategy_kw(sharp_fn))
    per_epoch = float(np.median(np.diff(times))) if len(times) > 1 else times[-1]
    steps = math.ceil(S / t1["batch_size"])
    # one full-S evaluation inside the compiled epoch ≈ the epoch's forward share: (per epoch) × 1/4
    # (a step = forward + backward ≈ 3 forwards; track="epoch": steps·3 + 1 forward passes of a batch)
    full_eval = per_epoch / (3 * steps * t1["batch_size"] / S + 1)
    rec = {"trained_model": trained, "epochs_run": epochs, "first_epoch_seconds": times[0],
           "seconds_per_epoch_track_epoch": per_epoch,
           "images_per_second": (S + S) / per_epoch, "full_S_eval_seconds_estimate": full_eval,
           "seconds_per_epoch_track_step_estimate": per_epoch + (steps - 1) * full_eval,
           "table1": t1, "sharpness_after_these_epochs": r.sharpness, "loss": r.loss, "max_loss": r.max_loss,
           "corner_loss": r.corner_loss, "seconds": r.seconds}
    save(args.work, "sharpness", rec)


def kernel(args):
    import numpy as np

    from tfflat import models
    from tfflat.prior import kernel_for
    from tfflat.prior.kernels import conditioning

    _, splits = splits_of(args.data_dir)
    x = np.concatenate([splits.x_train, splits.x_test]).astype(np.float32)
    spec = models.model_spec("resnet50", "cifar_cats_cars", (32, 32, 3))
    times = []
    t0 = time.perf_counter()

    def progress(done, total):
        times.append(time.perf_counter() - t0)
        if done in (1, 2) or done % 5 == 0:
            log(f"kernel sample {done}/{total}")

    # samples sized to the budget: the first one (build, trace) is timed, then the rest
    k = kernel_for(spec, x, "empirical", task="cifar_cats_cars", samples=args.samples, progress=progress,
                   **strategy_kw(kernel_for))
    per_sample = float(np.median(np.diff(times))) if len(times) > 1 else times[-1]
    m_paper = round(0.1 * len(x))            # M = 0.1 (|S| + |E|) = 700 at the paper's sizes
    t = time.perf_counter()
    cond = conditioning(k, eigenvalues=False)
    import tensorflow as tf

    ev = tf.linalg.eigvalsh(tf.constant(k)).numpy()          # float64, on the GPU when there is one
    cond.update(eigenvalue_min=float(ev[0]), eigenvalue_max=float(ev[-1]),
                condition_number=float(ev[-1] / ev[0]) if ev[0] > 0 else None,
                top_share=float(ev[-1] / np.trace(k)))
    cond_s = time.perf_counter() - t
    np.save(Path(args.work) / "kernel.npy", k)
    rec = {"n": len(x), "samples": len(times), "seconds": times[-1], "first_sample_seconds": times[0],
           "seconds_per_sample": per_sample, "images_per_second": len(x) / per_sample,
           "paper_samples": m_paper, "paper_kernel_seconds_estimate": times[0] + (m_paper - 1) * per_sample,
           "conditioning_seconds": cond_s, "conditioning": cond}
    save(args.work, "kernel", rec)


def _ep(k, f, likelihood):
    from tfflat.prior.ep import ep_log_prior

    kw = {"backend": "auto"} if "backend" in inspect.signature(ep_log_prior).parameters else {}
    t = time.perf_counter()
    r = ep_log_prior(k, f, likelihood, progress=lambda s, lz: log(f"EP sweep {s}: ln Z {lz:.6f}"), **kw)
    return {"likelihood": likelihood, "seconds": time.perf_counter() - t, "ln_z": r.ln_z, "log10_p": r.log10_p,
            "sweeps": r.sweeps, "converged": r.converged, "backend": getattr(r, "backend", "numpy (no GPU backend)"),
            "options": kw}


def ep(args):
    import numpy as np

    k = np.load(Path(args.work) / "kernel.npy")
    fpath = Path(args.work) / "f.npy"
    if fpath.is_file():
        f, what = np.load(fpath), "the trained network's f"
    else:
        _, splits = splits_of(args.data_dir)
        f, what = np.concatenate([splits.y_train, splits.y_test]).astype(np.int8), "true labels (no trained model)"
    out = {"n": len(f), "f": what}
    for lik in ("probit", "heaviside"):
        out[lik] = _ep(k, f, lik)
        log(f"EP {lik} n={len(f)}: {out[lik]['seconds']:.1f}s, log10 P(f) {out[lik]['log10_p']:.3f}")
    save(args.work, "ep", out)


def ep_large(args):
    import numpy as np

    from tfflat.data import load_task, make_splits
    from tfflat.prior.kernels import nngp_kernel

    task = load_task("cifar_cats_cars", args.data_dir)
    n_test = min(len(task.pools["test"]), max(1, args.n // 11))         # 1000 of the 11000
    sp = make_splits(task, args.n - n_test, 0, n_test, seed=0)
    x = np.concatenate([sp.x_train, sp.x_test]).reshape(args.n, -1)
    y = np.concatenate([sp.y_train, sp.y_test]).astype(np.int8)
    t = time.perf_counter()
    k = nngp_kernel(x, 2, math.sqrt(2), 1.0)
    kt = time.perf_counter() - t
    log(f"NNGP kernel (CIFAR FCN 3072-40-40-1) n={args.n}: {kt:.1f}s")
    out = {"n": args.n, "kernel": "analytic NNGP of the CIFAR FCN on real images", "kernel_seconds": kt,
           "heaviside": _ep(k, y, "heaviside")}
    save(args.work, "ep_large", out)


def estimate(args):
    """Fig. 3(c) per GPU from the per-stage costs (printed with the formula)."""
    tr, sh, ke, e = (load(args.work, s) or {} for s in ("train", "sharpness", "kernel", "ep"))
    print("\nEstimate of the full Fig. 3(c) sweep (ResNet50, |S| = 5000, |E| = 2000, |A| = 0..5000 step 500, "
          "5 seeds: 55 points) on ONE GPU of this kind:")
    t_ep = (e.get("probit") or {}).get("seconds")
    need = {"train.seconds_per_epoch": tr.get("seconds_per_epoch"),
            "sharpness.seconds_per_epoch_track_step_estimate": sh.get("seconds_per_epoch_track_step_estimate"),
            "kernel.paper_kernel_seconds_estimate": ke.get("paper_kernel_seconds_estimate"), "ep.probit.seconds": t_ep}
    missing = [k for k, v in need.items() if v is None]
    if missing:
        print(f"  cannot estimate: stage(s) missing {missing}")
        save(args.work, "estimate", {"missing": missing})
        return
    e0 = tr["zero_error_epoch"] or tr["epochs"]
    t_ep_epoch = tr["seconds_per_epoch"]
    # training: epochs to zero error E(A) ≈ E(0) (1 + A/S) (random labels take longer: an assumption,
    # to be replaced by the sweep's own numbers) times the epoch cost, which grows with |S ∪ A|
    train_s = sum(SWEEP_SEEDS * e0 * (1 + a / S) * t_ep_epoch * (S + a + E / 3) / (S + E / 3) for a in SWEEP_A)
    sharp_step = 100 * sh["seconds_per_epoch_track_step_estimate"] * len(SWEEP_A) * SWEEP_SEEDS
    sharp_epoch = 100 * sh["seconds_per_epoch_track_epoch"] * len(SWEEP_A) * SWEEP_SEEDS
    ep_s = t_ep * len(SWEEP_A) * SWEEP_SEEDS
    kern = ke["paper_kernel_seconds_estimate"]
    total = train_s + sharp_step + ep_s + kern
    lines = [
        "  T = Σ_A 5·E(A)·t_epoch(A) + 55·100·t_sharp_epoch + 55·t_EP + T_kernel, with",
        f"    E(A) = E(0)(1 + A/5000), E(0) = {e0} epochs (measured{'' if tr['zero_error_epoch'] else ': budget hit, a lower bound'}),",
        f"    t_epoch(A) = {t_ep_epoch:.2f} s × (|S ∪ A| + |E|/3)/(5000 + 2000/3)   (train + per-epoch evaluation),",
        f"    t_sharp_epoch = {sh['seconds_per_epoch_track_step_estimate']:.2f} s (Table 1: full-S loss after every step; "
        f"{sh['seconds_per_epoch_track_epoch']:.2f} s with track='epoch'),",
        f"    t_EP = {t_ep:.1f} s (n = 7000, probit), T_kernel = {kern:.0f} s (M = 700 samples, once per sweep)",
        f"  training {train_s / 3600:.2f} h + sharpness {sharp_step / 3600:.2f} h (track='epoch': {sharp_epoch / 3600:.2f} h)"
        f" + EP {ep_s / 3600:.2f} h + kernel {kern / 3600:.2f} h",
        f"  = {total / 3600:.1f} GPU-hours per GPU ({(total - sharp_step + sharp_epoch) / 3600:.1f} h with track='epoch');"
        f" with --workers/--shard over G GPUs ≈ {total / 3600:.1f}/G h",
    ]
    print("\n".join(lines), flush=True)
    save(args.work, "estimate", {"total_hours": total / 3600, "training_hours": train_s / 3600,
                                 "sharpness_hours": sharp_step / 3600, "sharpness_hours_track_epoch": sharp_epoch / 3600,
                                 "ep_hours": ep_s / 3600, "kernel_hours": kern / 3600, "formula": lines})


STAGES = {"env": env, "train": train, "sharpness": sharpness, "kernel": kernel, "ep": ep, "ep-large": ep_large,
          "estimate": estimate}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True, help="folder for the stages' files")
    ap.add_argument("--data-dir", default=os.environ.get("TFFLAT_DATA_DIR"))
    ap.add_argument("--budget", type=float, default=120.0, help="seconds of work in this stage (train)")
    ap.add_argument("--max-epochs", type=int, default=200)
    ap.add_argument("--precision", default=None, help="train: mixed_bfloat16 | mixed_float16 (if supported)")
    ap.add_argument("--epochs", type=int, default=3, help="sharpness: ascent epochs timed (Table 1: 100)")
    ap.add_argument("--samples", type=int, default=20, help="kernel: samples timed (the paper's M: 700)")
    ap.add_argument("--n", type=int, default=11000, help="ep-large: n")
    ap.add_argument("stage", choices=sorted(STAGES))
    args = ap.parse_args()
    Path(args.work).mkdir(parents=True, exist_ok=True)
    STAGES[args.stage](args)


if __name__ == "__main__":
    main()
