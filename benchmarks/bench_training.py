"""Seconds per training epoch: tfflat's compiled epoch versus the published code's plain loop.

FCN 784-40-40-1 on real MNIST, |S ∪ A| = 1000 (|S| = 500, |A| = 500), batch 32, SGD lr 0.01.
Baseline: one ``train_on_batch`` call per minibatch, then the training accuracy after every epoch
(the pattern of the authors' code). tfflat: one compiled call per epoch plus the per-epoch
evaluation of S, A *and* E (|E| = 1000) that the history records. Run:

    python benchmarks/bench_training.py [--data-dir ../shared/data] [--epochs 30]
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import keras
    import tensorflow as tf

    from tfflat import models
    from tfflat.data import load_task, make_splits
    from tfflat.training import Trainer, evaluate, optimizers
    from tfflat.training.loop import eval_inputs

    task = load_task("mnist", args.data_dir)
    splits = make_splits(task, 500, 500, 1000, seed=0)
    spec = models.model_spec("fcn", "mnist", task.input_shape)
    x, y = splits.x_fit, splits.y_fit.astype(np.float32)

    def baseline():
        model = models.build(spec, seed=0)
        model.compile(keras.optimizers.SGD(0.01), keras.losses.BinaryCrossentropy(from_logits=True))
        rng = np.random.default_rng(0)
        model.train_on_batch(x[:32], y[:32])          # build/compile outside the timing
        model.predict_on_batch(x)
        t0 = time.perf_counter()
        for _ in range(args.epochs):
            perm = rng.permutation(len(y))
            for i in range(0, len(y), 32):
                b = perm[i:i + 32]
                model.train_on_batch(x[b], y[b])
            acc = np.mean((model.predict_on_batch(x).ravel() >= 0) == (y == 1))
        return (time.perf_counter() - t0) / args.epochs, acc

    def tfflat_epoch():
        model = models.build(spec, seed=0)
        trainer = Trainer(model, optimizers.make("sgd"), x, splits.y_fit, 32, seed=0,
                          x_eval=eval_inputs(splits))
        evaluate(trainer.epoch(), splits)
        t0 = time.perf_counter()
        for _ in range(args.epochs):
            rec = evaluate(trainer.epoch(), splits)
        return (time.perf_counter() - t0) / args.epochs, rec["acc_S"]

    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} cores; FCN 784-40-40-1, |S ∪ A| = 1000, batch 32")
    rows = []
    for r in range(args.repeats):
        b, _ = baseline()
        t, _ = tfflat_epoch()
        rows.append((b, t))
        print(f"  repeat {r}: baseline {b * 1e3:7.2f} ms/epoch   tfflat {t * 1e3:7.2f} ms/epoch   "
              f"ratio {b / t:5.2f}x")
    b, t = np.median([r[0] for r in rows]), np.median([r[1] for r in rows])
    print(f"median: baseline {b * 1e3:.2f} ms/epoch, tfflat {t * 1e3:.2f} ms/epoch "
          f"(incl. evaluation of S, A, E), speed-up {b / t:.2f}x (goal >= 3x)")


if __name__ == "__main__":
    main()
